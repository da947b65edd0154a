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
		case bool:
			f.SetBool(true)
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
