package authzen_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/mcp-pdp/pdp/internal/authzen"
	"github.com/mcp-pdp/pdp/internal/testkit/coretest"
	"github.com/mcp-pdp/pdp/pep"
)

// FuzzEvaluate: any body sent to the evaluation and evaluations endpoints
// is either refused with a *pep.RequestError (a 4xx the API answers) or
// decided by the real core; it never panics, and every answer encodes to
// JSON (a decision with its context).
func FuzzEvaluate(f *testing.F) {
	for _, seed := range []string{
		`{"subject":{"type":"identity","id":"alice","properties":{"scopes":["qr:generate"]}},"action":{"name":"tools/call"},"resource":{"type":"tool","id":"generate_qr_url"},"context":{"agent":"app"}}`,
		`{"subject":{"type":"identity","id":"alice"},"action":{"name":"tools/list"},"resource":{"type":"mcp_server","id":"` + coretest.Resource + `"}}`,
		`{"subject":{"type":"anonymous","id":"x"},"action":{"name":"resources/read"},"resource":{"type":"resource","id":"file:///a"}}`,
		`{"subject":{"type":"identity","id":"alice"},"evaluations":[{"action":{"name":"tools/call"},"resource":{"type":"tool","id":"lookup_product"}},{"action":{"name":"prompts/get"},"resource":{"type":"prompt","id":"p"}}],"options":{"evaluations_semantic":"deny_on_first_deny"}}`,
		`{"subject":{"type":"identity","id":"alice"},"action":{"name":"completion/complete"},"resource":{"type":"prompt","id":"p"}}`,
		`{"subject":{"id":1},"action":[],"resource":null}`,
		`{"subject":{"type":"identity","id":"alice","properties":{"scopes":"a b c"}},"action":{"name":"tasks/get"},"resource":{"type":"task","id":"t1"}}`,
		`[]`, `{`, `{"a":1,"a":2}`,
	} {
		f.Add([]byte(seed))
	}
	rec := &recording{svc: coretest.New(f, coretest.Options{}).Service}
	s, err := authzen.New(authzen.Options{Core: rec, Resources: []string{coretest.Resource}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(d *authzen.Decision) {
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatalf("decision does not encode: %v", err)
			}
			var back struct {
				Decision bool           `json:"decision"`
				Context  map[string]any `json:"context"`
			}
			if err := json.Unmarshal(b, &back); err != nil || back.Context == nil {
				t.Fatalf("decision %s: %v", b, err)
			}
		}
		refused := func(err error) {
			var re *pep.RequestError
			if !errors.As(err, &re) || re.Status < 400 || re.Status >= 500 {
				t.Fatalf("%q: %T %v, want a 4xx *pep.RequestError", body, err, err)
			}
		}
		if d, err := s.Evaluate(context.Background(), body, "fuzz"); err != nil {
			refused(err)
		} else {
			check(d)
		}
		if r, err := s.Evaluations(context.Background(), body, "fuzz"); err != nil {
			refused(err)
		} else if _, err := json.Marshal(r); err != nil {
			t.Fatalf("evaluations answer does not encode: %v", err)
		}
		rec.take()
	})
}
