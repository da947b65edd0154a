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
	// session share one cache entry. The same holds for claims it cannot
	// read, and for a subject it only looks up in data (keyTermFor).
	tok, keyTok := p.tokenTerms(in)
	var ck callKey
	useCalls := false
	if p.calls != nil {
		if ck, useCalls = p.callKeyFor(in, keyTok); useCalls {
			if r := p.calls.get(ck); r != nil {
				p.cache.hits.Add(1)
				return r, nil
			}
		}
	}
	lt := in.listTerms(p.nameTerms)
	key, err := in.value(p.readsArgs, p.readsItems, keyTok, lt)
	if err != nil {
		return nil, err
	}
	var h uint64
	if p.cache != nil {
		h = uint64(key.Hash())
		if r := p.cache.get(h, key); r != nil {
			if useCalls {
				p.calls.put(ck, r)
			}
			return r.forList(lt), nil
		}
	}
	v := key
	if keyTok != tok {
		if v, err = in.value(p.readsArgs, p.readsItems, tok, lt); err != nil {
			return nil, err
		}
	}
	res, err := p.Eval(ctx, v)
	if err != nil {
		return nil, err
	}
	if p.record != nil {
		p.record.add(v)
	}
	if p.cache != nil {
		// Weight: one unit, one per list item, and tokenWeight for the
		// token's claims (projectedTokenWeight when only some claims are
		// in the input), so that a stream of one-off tokens cannot fill
		// memory with entries that will never be hit again.
		w := 1 + len(in.Items)
		switch {
		case in.Token != nil && p.claimKeys == nil:
			w += tokenWeight
		case in.Token != nil:
			w += projectedTokenWeight
		}
		p.cache.put(h, key, res, w)
		if useCalls {
			p.calls.put(ck, res)
		}
	}
	return res.forList(lt), nil
}

// tokenTerms returns input.token as this policy reads it (tok) and as its
// decision cache keys it (keyTok, the subject replaced by what the
// policy's subject lookups find; tok when there are none).
func (p *Policy) tokenTerms(in *Input) (tok, keyTok *ast.Term) {
	tok = in.tokenTerm(p.claimKeys)
	if p.cache != nil && p.subjects != nil && in.Token != nil {
		return tok, in.Token.keyTermFor(p.claimKeys, p.subjects)
	}
	return tok, tok
}

// Eval evaluates an input document, bypassing the decision cache. opts may
// add tracers (pdp eval --explain).
func (p *Policy) Eval(ctx context.Context, input ast.Value, opts ...rego.EvalOption) (*Result, error) {
	// The result is read from OPA's own value (keepTerm), not from a
	// conversion to map[string]any: a list result with a thousand items
	// would otherwise be converted twice.
	opts = append(opts, rego.EvalParsedInput(input), rego.EvalGenerateJSON(keepTerm))
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
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("policy decision is %T, want a Rego value", rs[0].Expressions[0].Value)
	}
	res, err := parseResult(t.Value)
	if err != nil {
		return nil, err
	}
	res.Revision = p.revision
	return res, nil
}

func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }
