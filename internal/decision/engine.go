package decision

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Result is the policy's answer for one request.
type Result struct {
	Allow   bool
	Visible bool
	// Access is the access class of the target: public, step_up, restricted, deny.
	Access         string
	RequiredScopes []string
	MissingScopes  []string
	Reason         string
	// Forbidden is set when an explicit deny rule refused the request:
	// new scopes would not help, so no step-up challenge is due.
	Forbidden bool
	// Items holds, for list methods, the visible items and what each needs.
	Items map[string]ItemDecision
	// Revision of the policy that decided.
	Revision string
}

// ItemDecision is the policy's answer for one visible list item.
type ItemDecision struct {
	Access string
	Scopes []string
}

// Engine evaluates requests against the active policy. The zero value has no
// policy and denies everything with ErrNotReady.
type Engine struct {
	active atomic.Pointer[Policy]
}

// ErrNotReady is returned by Decide before a policy is loaded.
var ErrNotReady = errors.New("no policy loaded")

// NewEngine returns an engine serving p (which may be nil).
func NewEngine(p *Policy) *Engine {
	e := &Engine{}
	if p != nil {
		e.active.Store(p)
	}
	return e
}

// Swap makes p the active policy and returns the previous one. Decisions
// under way finish on the policy they started with.
func (e *Engine) Swap(p *Policy) *Policy { return e.active.Swap(p) }

// Policy returns the active policy, or nil.
func (e *Engine) Policy() *Policy { return e.active.Load() }

// Decide evaluates in against the active policy. Any error means deny: the
// caller must not treat a nil Result as anything else.
func (e *Engine) Decide(ctx context.Context, in *Input) (*Result, error) {
	p := e.active.Load()
	if p == nil {
		return nil, ErrNotReady
	}
	return p.Decide(ctx, in)
}

// Decide evaluates in against this policy. The Result may be shared with
// other callers (decision cache): treat it as read-only.
func (p *Policy) Decide(ctx context.Context, in *Input) (*Result, error) {
	// A policy that never reads call arguments decides the same for any
	// arguments: leaving them out of the input makes the calls of one
	// session share one cache entry.
	v := in.value(p.readsArgs)
	var h uint64
	if p.cache != nil {
		h = uint64(v.Hash())
		if r := p.cache.get(h, v); r != nil {
			return r, nil
		}
	}
	res, err := p.Eval(ctx, v)
	if err != nil {
		return nil, err
	}
	if p.cache != nil {
		// Weight: one unit, one per list item, and tokenWeight for the
		// token's claims, so that a stream of one-off tokens cannot fill
		// memory with entries that will never be hit again.
		w := 1 + len(in.Items)
		if in.Token != nil {
			w += tokenWeight
		}
		p.cache.put(h, v, res, w)
	}
	return res, nil
}

// Eval evaluates an input document, bypassing the decision cache. opts may
// add tracers (pdp eval --explain).
func (p *Policy) Eval(ctx context.Context, input ast.Value, opts ...rego.EvalOption) (*Result, error) {
	opts = append(opts, rego.EvalParsedInput(input))
	rs, err := p.query.Eval(ctx, opts...)
	if err != nil {
		if topdown.IsCancel(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("policy evaluation stopped: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("policy evaluation failed: %w", err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, ErrNoDecision
	}
	res, err := parseResult(rs[0].Expressions[0].Value)
	if err != nil {
		return nil, err
	}
	res.Revision = p.revision
	return res, nil
}

func parseResult(v any) (*Result, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("policy decision is %T, want an object", v)
	}
	res := &Result{}
	var err error
	if res.Allow, err = boolField(obj, "allow", true); err != nil {
		return nil, err
	}
	if res.Visible, err = boolField(obj, "visible", false); err != nil {
		return nil, err
	}
	if _, present := obj["visible"]; !present {
		res.Visible = res.Allow
	}
	if res.Forbidden, err = boolField(obj, "forbidden", false); err != nil {
		return nil, err
	}
	res.Access, _ = obj["access"].(string)
	res.Reason, _ = obj["reason"].(string)
	if res.RequiredScopes, err = stringsField(obj, "required_scopes"); err != nil {
		return nil, err
	}
	if res.MissingScopes, err = stringsField(obj, "missing_scopes"); err != nil {
		return nil, err
	}
	if raw, ok := obj["items"]; ok {
		items, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("policy decision field items is %T, want an object of name -> {access, scopes}", raw)
		}
		res.Items = make(map[string]ItemDecision, len(items))
		for name, iv := range items {
			io, ok := iv.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("policy decision items[%q] is %T, want an object", name, iv)
			}
			var d ItemDecision
			d.Access, _ = io["access"].(string)
			if d.Scopes, err = stringsField(io, "scopes"); err != nil {
				return nil, fmt.Errorf("items[%q]: %w", name, err)
			}
			res.Items[name] = d
		}
	}
	return res, nil
}

func boolField(obj map[string]any, key string, required bool) (bool, error) {
	raw, ok := obj[key]
	if !ok {
		if required {
			return false, fmt.Errorf("policy decision has no %q field", key)
		}
		return false, nil
	}
	b, ok := raw.(bool)
	if !ok {
		return false, fmt.Errorf("policy decision field %q is %T, want a boolean", key, raw)
	}
	return b, nil
}

func stringsField(obj map[string]any, key string) ([]string, error) {
	raw, ok := obj[key]
	if !ok || raw == nil {
		return nil, nil
	}
	arr, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("policy decision field %q is %T, want an array of strings", key, raw)
	}
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("policy decision field %q holds %T, want strings", key, x)
		}
		out = append(out, s)
	}
	return out, nil
}
