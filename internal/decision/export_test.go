package decision

// This file exposes internals to the tests of package decision_test, as
// net/http's export_test.go does: the results of the static analyses and
// the list answer by name. None of it is API.

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// PrepareWithoutCatalogIndex is Prepare without data.pdp.catalog_index:
// the default policy then decides list items one by one, as under pdp test.
func PrepareWithoutCatalogIndex(ctx context.Context, b *bundle.Bundle, source string, o Options) (*Policy, error) {
	return prepare(ctx, b, source, o, false)
}

// CacheKey returns the input value the result cache keys in on, as Decide
// builds it.
func (p *Policy) CacheKey(in *Input) (ast.Value, error) {
	_, keyTok := p.tokenTerms(in)
	return in.value(p.readsArgs, p.readsItems, keyTok, in.listTerms(p.nameTerms))
}

// ReadsArguments reports whether a rule may read call arguments
// (input.tool.arguments, input.target.arguments, or input as a whole).
func (p *Policy) ReadsArguments() bool { return p.readsArgs }

// ReadClaims reports which token claims the policy's rules can read: all
// (true, nil) or only the named ones (false, names). Unread claims are left
// out of input.token.claims.
func (p *Policy) ReadClaims() (all bool, names []string) {
	if p.claimKeys == nil {
		return true, nil
	}
	for _, k := range p.claimKeys.names {
		names = append(names, string(k.Value.(ast.String)))
	}
	return false, names
}

// SubjectKeyed reports whether the policy reads the token's subject only
// as a key into data, so that its cached decisions are shared among
// subjects the lookups treat alike (see subjectLookups).
func (p *Policy) SubjectKeyed() bool { return p.subjects != nil }

// Lookup returns the decision for a listed item by name; ok is false when
// the caller may not see it (or it was not listed).
func (r *Result) Lookup(name string) (d ItemDecision, ok bool) {
	if r.list == nil {
		return ItemDecision{}, false
	}
	i := r.list.find(ast.StringTerm(name), name)
	if i < 0 {
		return ItemDecision{}, false
	}
	return r.list.decs[i], true
}

// VisibleItems returns name -> decision for the given names the caller may
// see (Item is how the list filter reads a result).
func (r *Result) VisibleItems(names ...string) map[string]ItemDecision {
	out := map[string]ItemDecision{}
	for _, n := range names {
		if d, ok := r.Lookup(n); ok {
			out[n] = d
		}
	}
	return out
}

// Deterministic reports whether results may be memoized: no rule calls a
// non-deterministic built-in (see nondeterministicCall).
func (p *Policy) Deterministic() bool { return p.nondeterministic == "" }
