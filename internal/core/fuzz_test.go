package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/core"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// eventLog keeps the audit events of a fuzz run, JSON-encoded as the sink
// would publish them.
type eventLog struct {
	mu     sync.Mutex
	events []*auditsink.Event
	errs   []error
}

func (l *eventLog) Record(_ context.Context, ev *auditsink.Event) error {
	_, err := json.Marshal(ev)
	l.mu.Lock()
	defer l.mu.Unlock()
	c := *ev // Record must not keep ev
	l.events = append(l.events, &c)
	if err != nil {
		l.errs = append(l.errs, err)
	}
	return nil
}

func (l *eventLog) take() ([]*auditsink.Event, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev, errs := l.events, l.errs
	l.events, l.errs = nil, nil
	return ev, errs
}

type fuzzEnv struct {
	svc   *core.Service
	iss   *devissuertest.Server
	v     *token.Verifier
	audit *eventLog
}

// newFuzzEnv is the real core: the default policy, a real verifier against
// a real (dev) issuer, audit of call arguments with redaction.
func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	audit := &eventLog{}
	e := coretest.New(tb, coretest.Options{
		Auditor: audit, AuditArguments: true, Redact: []string{"password"},
		TokenCacheSize: 1000,
		// Generous: the properties must not depend on the machine's load.
		DecisionTimeout: 30 * time.Second,
	})
	return &fuzzEnv{svc: e.Service, iss: e.Issuer, v: e.Verifier, audit: audit}
}

var outcomes = []string{pep.OutcomeAllow, pep.OutcomeFiltered, pep.OutcomeChallenge, pep.OutcomeDeny}

// checkAnswer asserts what every answer of Decide must be: a RequestError
// (4xx, no audit event) or a well-formed, fail-closed Response with exactly
// one audit event.
func (e *fuzzEnv) checkAnswer(t *testing.T, req *pep.Request, resp *pep.Response, err error) {
	t.Helper()
	events, encErrs := e.audit.take()
	if len(encErrs) > 0 {
		t.Fatalf("audit event does not encode: %v", encErrs[0])
	}
	if err != nil {
		var re *pep.RequestError
		if !errors.As(err, &re) {
			t.Fatalf("error %T %v, want *pep.RequestError", err, err)
		}
		if resp != nil || re.Status < 400 || re.Status > 499 || re.Code == "" || re.Description == "" {
			t.Fatalf("resp %v, request error %+v", resp, re)
		}
		if len(events) != 0 {
			t.Fatalf("%d audit events for a request error", len(events))
		}
		return
	}
	if resp == nil {
		t.Fatal("nil response and nil error")
	}
	if len(events) != 1 || events[0].ID != resp.DecisionID || events[0].Outcome != resp.Outcome {
		t.Fatalf("audit events %+v for decision %s", events, resp.DecisionID)
	}
	if resp.DecisionID == "" || !slices.Contains(outcomes, resp.Outcome) || resp.RequiredScopes == nil || resp.MissingScopes == nil {
		t.Fatalf("malformed response %+v", resp)
	}
	switch resp.HTTPStatus {
	case 200, 400, 401, 403, 503:
	default:
		t.Fatalf("http_status %d", resp.HTTPStatus)
	}
	if resp.Allow {
		if (resp.Outcome != pep.OutcomeAllow && resp.Outcome != pep.OutcomeFiltered) || resp.HTTPStatus != 200 || resp.JSONRPCError != nil || resp.WWWAuthenticate != "" {
			t.Fatalf("inconsistent allow %+v", resp)
		}
	} else if resp.Outcome != pep.OutcomeChallenge && resp.Outcome != pep.OutcomeDeny {
		t.Fatalf("deny with outcome %s", resp.Outcome)
	}
	if resp.Outcome == pep.OutcomeChallenge {
		if _, err := stepup.ParseChallenges(resp.WWWAuthenticate); err != nil {
			t.Fatalf("challenge %q does not parse: %v", resp.WWWAuthenticate, err)
		}
	}
	if resp.Caller != nil && (!resp.Allow || resp.Caller.Scopes == nil || resp.Caller.Issuer == "") {
		t.Fatalf("caller %+v in %+v", resp.Caller, resp)
	}
	if resp.Outcome == pep.OutcomeFiltered && !json.Valid(resp.Result) {
		t.Fatalf("filtered result is not JSON: %q", resp.Result)
	}
	if _, err := json.Marshal(resp); err != nil {
		t.Fatalf("response does not encode: %v", err)
	}
	// A malformed Authorization header never yields an allow.
	if _, perr := token.ParseAuthorization(req.Authorization); perr != nil && resp.Allow {
		t.Fatalf("allowed with a malformed Authorization %q", req.Authorization)
	}
	// No raw token in what leaves the core.
	if raw, perr := token.ParseAuthorization(req.Authorization); perr == nil && len(raw) >= 16 {
		out, _ := json.Marshal(resp)
		ev, _ := json.Marshal(events[0])
		if bytes.Contains(out, []byte(raw)) || bytes.Contains(ev, []byte(raw)) {
			t.Fatal("the token leaks into the answer or the audit event")
		}
	}
}

// FuzzDecide sends random JSON-RPC messages, list results and Authorization
// values through core.Decide with the real default policy and verifier, and
// those that are valid JSON through core.DecideValid too.
func FuzzDecide(f *testing.F) {
	e := newFuzzEnv(f)
	good := "Bearer " + e.iss.Mint(f, devissuer.MintOptions{Subject: "alice", ClientID: "c", Audience: []string{resource}, Scopes: []string{"qr:generate"}})
	list := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	tools := []byte(`{"tools":[{"name":"ping","inputSchema":{"type":"object"}},{"name":"generate_qr_url","inputSchema":{"type":"object"},"_meta":{"a":1}},{"name":"internal_admin"}],"nextCursor":"x"}`)
	seeds := []struct {
		authz   string
		msg     string
		result  []byte
		comment string
	}{
		{"", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product","arguments":{"gtin":"1"}}}`, nil, "public call"},
		{good, `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"generate_qr_url","arguments":{"password":"p","x":{"password":1}}}}`, nil, "allowed call"},
		{"", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"generate_qr_url"}}`, nil, "step-up"},
		{good, string(list), tools, "list with token"},
		{"", string(list), tools, "anonymous list"},
		{good, string(list), nil, "list request phase"},
		{"Bearer a.b.c", string(list), nil, "list request phase, garbage token"},
		{"", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`, nil, "resource read"},
		{"", `{"jsonrpc":"2.0","id":1,"method":"prompts/list"}`, []byte(`{"prompts":[{"name":"p"}]}`), "prompts"},
		{"", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil, "notification"},
		{"Basic YTpi", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil, "basic"},
		{"Bearer a.b.c", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup_product"}}`, nil, "garbage token"},
		{"", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, nil, "batch"},
		{"", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}`, nil, "params array"},
		{"", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}`, nil, "arguments array"},
		{"", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, []byte(`{"tools":[{"name":1}]}`), "bad list"},
		{"", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, nil, "jsonrpc 1.0"},
	}
	for _, s := range seeds {
		f.Add(s.authz, []byte(s.msg), s.result)
	}
	f.Fuzz(func(t *testing.T, authz string, msg, result []byte) {
		req := &pep.Request{Resource: resource, Authorization: authz, Message: msg, Result: result}
		resp, err := e.svc.Decide(context.Background(), req, "fuzz")
		e.checkAnswer(t, req, resp, err)
		// The same caller on a Streamable HTTP GET: authenticated only.
		treq := &pep.Request{Resource: resource, Authorization: authz, HTTPMethod: pep.HTTPMethodGet}
		tresp, terr := e.svc.Decide(context.Background(), treq, "fuzz")
		e.checkAnswer(t, treq, tresp, terr)
		if terr != nil || (tresp.Outcome != pep.OutcomeAllow && tresp.HTTPStatus != 401) {
			t.Fatalf("GET: %+v %v", tresp, terr)
		}
		if !json.Valid(msg) || (len(result) > 0 && !json.Valid(result)) {
			return
		}
		// The trusted entry point, given what it may trust, answers alike.
		vresp, verr := e.svc.DecideValid(context.Background(), req, "fuzz")
		e.checkAnswer(t, req, vresp, verr)
		if fmt.Sprint(verr) != fmt.Sprint(err) || (resp == nil) != (vresp == nil) {
			t.Fatalf("DecideValid: %v %v, Decide: %v %v", vresp, verr, resp, err)
		}
		if resp != nil {
			vresp.DecisionID = resp.DecisionID
			if !reflect.DeepEqual(vresp, resp) {
				t.Fatalf("DecideValid %+v, Decide %+v", vresp, resp)
			}
		}
	})
}

// FuzzScopeClaims mints real tokens whose `scope` (string) and `scp`
// (string or array) claims are fuzzed, and checks the scopes the verifier
// grants and the decision they lead to.
func FuzzScopeClaims(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range []struct {
		scope, scp string
		arr        bool
	}{
		{"qr:generate", "", false},
		{"openid  qr:generate\tprofile", "", false},
		{"", "qr:generate,other", true},
		{"a b a", "b c", false},
		{"qr:generate\u00a0admin", "", false},
		{"qr:generatex", "QR:GENERATE", false},
		{"\x00qr:generate", "", false},
		{"", ",,", true},
	} {
		f.Add(s.scope, s.scp, s.arr)
	}
	f.Fuzz(func(t *testing.T, scope, scp string, arr bool) {
		if len(scope)+len(scp) > 2048 {
			t.Skip("token would exceed the size limit")
		}
		extra := map[string]any{"scope": scope}
		var scpVal any = scp
		if arr {
			scpVal = strings.Split(scp, ",")
		}
		extra["scp"] = scpVal
		raw := e.iss.Mint(t, devissuer.MintOptions{Subject: "alice", Audience: []string{resource}, Extra: extra})
		if len(raw) > token.MaxTokenBytes {
			// JSON escapes (\u0000 is six bytes) and base64 can take 2 KiB
			// of claims past the limit: such a token is refused by design
			// (TestHostileTokens), not what this target checks.
			t.Skip("token exceeds token.MaxTokenBytes")
		}
		claims, err := e.v.Verify(context.Background(), raw)
		if err != nil {
			t.Fatalf("a well-formed token was refused: %v", err)
		}
		// What the verifier saw after JSON (invalid UTF-8 becomes U+FFFD).
		var seen struct {
			Scope string `json:"scope"`
			Scp   any    `json:"scp"`
		}
		b, _ := json.Marshal(extra)
		_ = json.Unmarshal(b, &seen)
		// Scope strings split on the space character only (RFC 6749 §3.3).
		spaces := func(s string) []string {
			var out []string
			for _, f := range strings.Split(s, " ") {
				if f != "" {
					out = append(out, f)
				}
			}
			return out
		}
		var want []string
		want = append(want, spaces(seen.Scope)...)
		switch v := seen.Scp.(type) {
		case string:
			want = append(want, spaces(v)...)
		case []any:
			for _, x := range v {
				want = append(want, spaces(x.(string))...)
			}
		}
		var dedup []string
		for _, s := range want {
			if !slices.Contains(dedup, s) {
				dedup = append(dedup, s)
			}
		}
		if !slices.Equal(claims.Scopes, dedup) && (len(claims.Scopes) > 0 || len(dedup) > 0) {
			t.Fatalf("scopes %q, want %q", claims.Scopes, dedup)
		}
		for _, s := range claims.Scopes {
			if s == "" || strings.Contains(s, " ") {
				t.Fatalf("scope %q", s)
			}
		}
		// End to end: the step-up tool is allowed iff qr:generate is granted:
		// directly or through "qr:admin" (the demo catalog's scope_implies).
		// Wildcards from the token count only when the catalog lists them in
		// wildcard_scopes, which the demo catalog does not (docs/policy.md).
		req := &pep.Request{Resource: resource, Authorization: "Bearer " + raw,
			Message: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"generate_qr_url"}}`)}
		resp, err := e.svc.Decide(context.Background(), req, "fuzz")
		e.checkAnswer(t, req, resp, err)
		granted := slices.ContainsFunc(dedup, func(s string) bool {
			return s == "qr:generate" || s == "qr:admin"
		})
		if resp.Allow != granted {
			t.Fatalf("allow=%v with scopes %q", resp.Allow, claims.Scopes)
		}
	})
}
