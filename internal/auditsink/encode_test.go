package auditsink

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAppendEventMatchesMarshal: the event JSON is byte for byte what
// json.Marshal writes, on the fast path (fast: true) and through the
// fallback for values that need escaping.
func TestAppendEventMatchesMarshal(t *testing.T) {
	full := func(f func(*Event)) *Event {
		e := testEvent(3)
		e.Schema, e.PDP = SchemaVersion, "pdp-1"
		f(e)
		return e
	}
	tests := []struct {
		name string
		ev   *Event
		fast bool
	}{
		{"allow", full(func(*Event) {}), true},
		{"deny", full(func(e *Event) { *e = *testEvent(1); e.Schema = SchemaVersion }), true},
		{"filtered", full(func(e *Event) { *e = *testEvent(4); e.Schema = SchemaVersion }), true},
		{"zero", &Event{}, true},
		{"empty non-nil lists", full(func(e *Event) { e.RequiredScopes, e.Visible, e.Act = []string{}, []string{}, []Actor{} }), true},
		{"actors", full(func(e *Event) { e.Act = []Actor{{}, {Subject: "a"}, {ClientID: "c"}, {Subject: "a", ClientID: "c"}} }), true},
		{"numeric id", full(func(e *Event) { e.JSONRPCID = json.RawMessage(`-12`) }), true},
		{"string id", full(func(e *Event) { e.JSONRPCID = json.RawMessage(`"req-1"`) }), true},
		{"null id", full(func(e *Event) { e.JSONRPCID = json.RawMessage(`null`) }), true},
		{"arguments", full(func(e *Event) {
			e.Arguments = map[string]any{"z": 1, "a": []any{"<b>", nil, true}, "m": map[string]any{"k": 1.5}}
		}), true},
		{"truncated", full(func(e *Event) { e.Truncated, e.LatencyMicros, e.HTTPStatus = true, -3, 0 }), true},
		{"unverified", full(func(e *Event) { e.Unverified = &Unverified{ClientID: "c"} }), true},
		{"unverified empty", full(func(e *Event) { e.Unverified = &Unverified{} }), true},
		{"unverified escapes", full(func(e *Event) { e.Unverified = &Unverified{Subject: "<script>"} }), false},
		{"chain", full(func(e *Event) { e.Chain, e.Seq, e.Prev = "c1", 7, "ab" }), true},
		{"chain first", full(func(e *Event) { e.Chain, e.Seq = "c1", 1 }), true},
		{"time with zone", full(func(e *Event) { e.Time = time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)) }), true},
		// encoding/json's territory.
		{"quote in reason", full(func(e *Event) { e.Reason = `missing "qr:generate"` }), false},
		{"html in reason", full(func(e *Event) { e.Reason = "a < b & c > d" }), false},
		{"non-ASCII subject", full(func(e *Event) { e.Subject = "zoë" }), false},
		{"invalid UTF-8 target", full(func(e *Event) { e.Target = "a\xffb" }), false},
		{"control in scope", full(func(e *Event) { e.MissingScopes = []string{"a\nb"} }), false},
		{"line separator in actor", full(func(e *Event) { e.Act = []Actor{{Subject: "a\u2028b"}} }), false},
		{"id with spaces", full(func(e *Event) { e.JSONRPCID = json.RawMessage(` 7 `) }), false},
		{"id with escape", full(func(e *Event) { e.JSONRPCID = json.RawMessage(`"a\u0041"`) }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, fast := appendEvent(nil, tc.ev); fast != tc.fast {
				t.Errorf("fast path %v, want %v", fast, tc.fast)
			}
			got, err := marshalEvent(tc.ev)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("marshalEvent:\n%s %v\njson.Marshal:\n%s", got, err, want)
			}
		})
	}
}

// TestAppendEventCoversEveryField sets every field of Event (found by
// reflection, so a field added later is included) and checks the fast path
// writes it as json.Marshal does.
func TestAppendEventCoversEveryField(t *testing.T) {
	var e Event
	v := reflect.ValueOf(&e).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		name := v.Type().Field(i).Name
		switch f.Interface().(type) {
		case string:
			f.SetString(strings.ToLower(name) + "-v")
		case int, int64:
			f.SetInt(int64(100 + i))
		case uint64:
			f.SetUint(uint64(100 + i))
		case bool:
			f.SetBool(true)
		case *Unverified:
			f.Set(reflect.ValueOf(&Unverified{Subject: "u-sub", ClientID: "u-client", Issuer: "u-iss"}))
		case *Limit:
			f.Set(reflect.ValueOf(&Limit{Kind: "quota", Limit: 100, Per: "day", By: "sub+client", Uncounted: true}))
		case time.Time:
			f.Set(reflect.ValueOf(time.Date(2025, 6, 1, 12, 0, 0, 123, time.UTC)))
		case []string:
			f.Set(reflect.ValueOf([]string{name + "-1", name + "-2"}))
		case []Actor:
			f.Set(reflect.ValueOf([]Actor{{Subject: "s", ClientID: "c"}}))
		case map[string]any:
			f.Set(reflect.ValueOf(map[string]any{"k": name}))
		case json.RawMessage:
			f.Set(reflect.ValueOf(json.RawMessage(`42`)))
		default:
			t.Fatalf("field %s of type %s: teach this test (and appendEvent) about it", name, f.Type())
		}
	}
	want, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	got, fast := appendEvent(nil, &e)
	if !fast || !bytes.Equal(got, want) {
		t.Fatalf("appendEvent (fast %v):\n%s\njson.Marshal:\n%s", fast, got, want)
	}
}

// FuzzAppendEvent holds the fast encoder to encoding/json for any event:
// either appendEvent declines (and marshalEvent falls back to json.Marshal),
// or it writes valid JSON that decodes to the same value as json.Marshal's,
// byte for byte the same as the encoder promises. marshalEvent always
// returns what json.Marshal returns, error included. The seeds (run by
// plain go test) cover the fast path, each reason to decline, and the
// values json.Marshal refuses.
func FuzzAppendEvent(f *testing.F) {
	const plainStrings = "dec-1|mcp-pdp.audit/v1|pdp-1|gateway-1|https://mcp.example.com/mcp|demo|tools/call|generate_qr|allow|" +
		"policy says so|alice|claude|user|https://issuer.example.com|sha256:abcd|rev-1"
	const plainLists = "qr:generate|qr:admin,qr:read|a,b|c|agent-1:claude,:c,s:"
	const june = 1748779200 // 2025-06-01T12:00:00Z
	for _, s := range []struct {
		strs, lists string
		num, sec    int64
		nsec, zone  int32
		flags       uint8 // 1: empty non-nil lists, 2: empty non-nil act, 4: zero time, 8: truncated, 16: limit, 32: uncounted
		args, id    string
	}{
		{plainStrings, plainLists, 200, june, 123, 0, 0, `{"z":1,"a":["<b>",null,true],"m":{"k":1.5}}`, `7`},
		{"", "", 0, 0, 0, 0, 4, "", ""},
		{"", "", 0, 0, 0, 0, 1 | 2 | 4, "", ""},
		{plainStrings, plainLists, -3, june, 0, 3600, 8, `{}`, `"req-1"`},
		{plainStrings, "", 403, june, 999999999, -19800, 0, `null`, `null`},
		{"id|||||||t|deny|missing \"qr:generate\"", "", 403, june, 0, 0, 0, "", ""},
		{"id|||||||t|deny|a < b & c > d", "", 403, june, 0, 0, 0, "", ""},
		{"id||||||||allow||zoë", "", 200, june, 0, 0, 0, "", ""},
		{"id|||||||a\xffb", "", 200, june, 0, 0, 0, "", ""},
		{"id", "|a\nb", 200, june, 0, 0, 0, "", ""},
		{"id", "||||a\u2028b:c", 200, june, 0, 0, 0, "", ""},
		{"id\tx|\u007f", "", 200, june, 0, 0, 0, "", ""},
		{"id", "", 200, june, 0, 0, 0, "", ` 7 `},
		{"id", "", 200, june, 0, 0, 0, "", `"a\u0041"`},
		{"id", "", 200, june, 0, 0, 0, "", `{`},                                      // json.Marshal refuses
		{"id", "", 200, 253402300800, 0, 0, 0, "", ""},                               // year 10000: refused
		{"id", "", 200, june, 0, 24 * 3600, 0, "", ""},                               // zone offset out of range
		{"id", "", 200, june, 0, 3601, 0, `{"k":"\u00e9\u2028"}`, ""},                // offset with seconds
		{plainStrings, plainLists + "|rate,1m0s", 429, june, 0, 0, 16, "", ""},       // a limited call
		{plainStrings, plainLists + "|quota,day", 200, june, 0, 0, 16 | 32, "", ""},  // uncounted
		{"id|||||||sub\"+client", "|||||rate,1\u2028m", 429, june, 0, 0, 16, "", ""}, // escapes in the limit
	} {
		f.Add(s.strs, s.lists, s.num, s.sec, s.nsec, s.zone, s.flags, []byte(s.args), []byte(s.id))
	}
	f.Fuzz(func(t *testing.T, strs, lists string, num, sec int64, nsec, zone int32, flags uint8, args, id []byte) {
		e := fuzzEvent(strs, lists, num, sec, nsec, zone, flags, args, id)
		want, werr := json.Marshal(e)
		got, fast := appendEvent(nil, e)
		if fast {
			if werr != nil {
				t.Fatalf("fast path wrote an event json.Marshal refuses (%v):\n%s", werr, got)
			}
			if !json.Valid(got) {
				t.Fatalf("fast path wrote invalid JSON:\n%s", got)
			}
			var gv, wv any
			if err := json.Unmarshal(got, &gv); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &wv); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gv, wv) {
				t.Fatalf("fast path decodes to another value:\n got %v\nwant %v", gv, wv)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("fast path differs from json.Marshal:\n got %s\nwant %s", got, want)
			}
		}
		m, merr := marshalEvent(e)
		if (merr != nil) != (werr != nil) || !bytes.Equal(m, want) {
			t.Fatalf("marshalEvent = %s, %v; json.Marshal = %s, %v", m, merr, want, werr)
		}
	})
}

// fuzzEvent builds an event from fuzz input: strs holds the string fields
// separated by '|', lists the four string lists (items separated by ',')
// and then the actors ("sub:client_id", separated by ','), args the
// arguments as JSON (ignored unless an object), id the raw JSON-RPC id.
func fuzzEvent(strs, lists string, num, sec int64, nsec, zone int32, flags uint8, args, id []byte) *Event {
	e := &Event{HTTPStatus: int(int32(num)), LatencyMicros: num, Truncated: flags&8 != 0}
	sp := strings.Split(strs, "|")
	for i, p := range []*string{&e.ID, &e.Schema, &e.PDP, &e.PEP, &e.Resource, &e.ResourceKey, &e.Method, &e.Target,
		&e.Outcome, &e.Reason, &e.Subject, &e.ClientID, &e.Grant, &e.Issuer, &e.TokenFingerprint, &e.PolicyRevision, &e.TokenValidation} {
		if i < len(sp) {
			*p = sp[i]
		}
	}
	lp := strings.Split(lists, "|")
	part := func(i int) string {
		if i < len(lp) {
			return lp[i]
		}
		return ""
	}
	for i, l := range []*[]string{&e.RequiredScopes, &e.MissingScopes, &e.Visible, &e.Hidden} {
		if p := part(i); p != "" {
			*l = strings.Split(p, ",")
		} else if flags&1 != 0 {
			*l = []string{}
		}
	}
	if p := part(4); p != "" {
		for _, a := range strings.Split(p, ",") {
			sub, client, _ := strings.Cut(a, ":")
			e.Act = append(e.Act, Actor{Subject: sub, ClientID: client})
		}
	} else if flags&2 != 0 {
		e.Act = []Actor{}
	}
	if flags&4 == 0 {
		e.Time = time.Unix(sec, int64(nsec)).In(time.FixedZone("z", int(zone)))
		if zone == 0 {
			e.Time = e.Time.UTC()
		}
	}
	var m map[string]any
	if json.Unmarshal(args, &m) == nil {
		e.Arguments = m
	}
	if len(id) > 0 {
		e.JSONRPCID = json.RawMessage(id)
	}
	if flags&16 != 0 {
		kind, per, _ := strings.Cut(part(5), ",")
		e.Limit = &Limit{Kind: kind, Limit: int(int32(num)), Per: per, By: e.Target, Uncounted: flags&32 != 0}
	}
	return e
}

func BenchmarkMarshalEvent(b *testing.B) {
	e := testEvent(3)
	e.Schema, e.PDP, e.JSONRPCID = SchemaVersion, "pdp-1", json.RawMessage(`7`)
	b.Run("appendEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
