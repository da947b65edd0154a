package decision

import (
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Actor is one link of an RFC 8693 delegation chain.
type Actor struct {
	Subject  string
	ClientID string
}

// Token is the verified caller as the policy sees it. Build it once per
// verified token with NewToken and reuse it: its Rego value is computed once
// (and once more per policy that reads only some claims, see claimsRead),
// and the call cache recognizes it by that value's identity (see "Caching"
// in the package documentation).
type Token struct {
	Subject, ClientID, Issuer, Grant string
	Scopes                           []string
	Act                              []Actor
	fields                           []*ast.Term // the token object's items but claims, as key, value pairs
	claims                           map[string]any
	// full is the token object with every claim, built on first use: most
	// policies read a few claims by name and never need it (termFor).
	full      atomic.Pointer[ast.Term]
	projected atomic.Pointer[projectedToken]
	keyed     atomic.Pointer[keyedToken]
}

// projectedToken is a token's Rego value with only the claims one policy reads.
type projectedToken struct {
	keys *claimKeys
	term *ast.Term
}

// NewToken builds the policy view of a verified token. claims are all of the
// token's claims as JSON-compatible values (input.token.claims); they are
// converted to Rego values when a policy reads them, and must not be
// modified afterwards.
func NewToken(sub, clientID, issuer, grant string, scopes []string, act []Actor, claims map[string]any) (*Token, error) {
	t := &Token{Subject: sub, ClientID: clientID, Issuer: issuer, Grant: grant, Scopes: scopes, Act: act, claims: claims}
	scopeTerms := make([]*ast.Term, len(scopes))
	for i, s := range scopes {
		scopeTerms[i] = ast.StringTerm(s)
	}
	actTerms := make([]*ast.Term, len(act))
	for i, a := range act {
		actTerms[i] = ast.ObjectTerm(
			ast.Item(ast.InternedTerm("sub"), ast.StringTerm(a.Subject)),
			ast.Item(ast.InternedTerm("client_id"), ast.StringTerm(a.ClientID)),
		)
	}
	t.fields = []*ast.Term{
		ast.InternedTerm("present"), ast.InternedTerm(true),
		ast.InternedTerm("valid"), ast.InternedTerm(true),
		ast.InternedTerm("sub"), ast.StringTerm(sub),
		ast.InternedTerm("client_id"), ast.StringTerm(clientID),
		ast.InternedTerm("iss"), ast.StringTerm(issuer),
		ast.InternedTerm("grant"), ast.StringTerm(grant),
		ast.InternedTerm("scopes"), ast.ArrayTerm(scopeTerms...),
		ast.InternedTerm("act"), ast.ArrayTerm(actTerms...),
	}
	// Fail now, not at a decision, on a claim Rego cannot hold: a claim
	// silently left out could turn a "not input.token.claims.x" into an allow.
	for k, v := range claims {
		if !jsonValue(v) {
			return nil, fmt.Errorf("claim %q holds a %T, not a JSON value", k, v)
		}
	}
	return t, nil
}

// jsonValue reports whether v is made of the types encoding/json decodes
// to (and ast.InterfaceToValue converts), without converting it.
func jsonValue(v any) bool {
	switch x := v.(type) {
	case nil, bool, string, float64, int, int64, json.Number:
		return true
	case []any:
		for _, e := range x {
			if !jsonValue(e) {
				return false
			}
		}
		return true
	case []string:
		return true
	case map[string]any:
		for _, e := range x {
			if !jsonValue(e) {
				return false
			}
		}
		return true
	}
	return false
}

// build returns the token object with the given claims object.
func (t *Token) build(claims ast.Object) *ast.Term { return t.buildWithSubject(claims, nil) }

// buildWithSubject is build with sub replaced by subject (when not nil).
func (t *Token) buildWithSubject(claims ast.Object, subject *ast.Term) *ast.Term {
	o := ast.NewObjectWithCapacity(len(t.fields)/2 + 1)
	for i := 0; i < len(t.fields); i += 2 {
		v := t.fields[i+1]
		if subject != nil && t.fields[i].Value.Compare(ast.String("sub")) == 0 {
			v = subject
		}
		o.Insert(t.fields[i], v)
	}
	o.Insert(ast.InternedTerm("claims"), ast.NewTerm(claims))
	return ast.NewTerm(o)
}

// keyTermFor is the token as the decision cache keys it for a policy whose
// subject lookups are sk (see subjectLookups): termFor(keys) with the
// subject replaced by what the lookups find.
func (t *Token) keyTermFor(keys *claimKeys, sk *subjectKeying) *ast.Term {
	if k := t.keyed.Load(); k != nil && k.sk == sk {
		return k.term
	}
	tok := t.termFor(keys)
	claims, _ := tok.Value.(ast.Object).Get(ast.InternedTerm("claims")).Value.(ast.Object)
	term := t.buildWithSubject(claims, subjectKey(sk.data, sk.paths, t.Subject))
	t.keyed.Store(&keyedToken{sk: sk, term: term})
	return term
}

// keyedToken is a token's cache key term for one policy.
type keyedToken struct {
	sk   *subjectKeying
	term *ast.Term
}

// subjectKeying is a policy's subject lookups and the data they read.
type subjectKeying struct {
	paths []ast.Ref
	data  map[string]any
}

// subjectKey is what the decision cache keys a token's subject on: the
// values the policy's subject lookups find in data (null when absent).
func subjectKey(data map[string]any, paths []ast.Ref, sub string) *ast.Term {
	vals := make([]*ast.Term, len(paths))
	for i, p := range paths {
		vals[i] = ast.InternedNullTerm
		cur := any(data)
		found := true
		for _, t := range p[1:] {
			m, ok := cur.(map[string]any)
			s, isStr := t.Value.(ast.String)
			if !ok || !isStr {
				found = false
				break
			}
			if cur, ok = m[string(s)]; !ok {
				found = false
				break
			}
		}
		if !found {
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			continue
		}
		if v, ok := m[sub]; ok {
			if av, err := ast.InterfaceToValue(v); err == nil {
				vals[i] = ast.NewTerm(ast.NewObject(ast.Item(ast.InternedTerm("found"), ast.NewTerm(av))))
			} else {
				vals[i] = ast.StringTerm("unconvertible:" + sub) // never shared
			}
		}
	}
	return ast.ArrayTerm(vals...)
}

// claimValue converts one claim; ok is false when the token lacks it.
func (t *Token) claimValue(name string) (*ast.Term, bool) {
	raw, ok := t.claims[name]
	if !ok {
		return nil, false
	}
	v, err := ast.InterfaceToValue(raw)
	if err != nil {
		// NewToken checked every claim (jsonValue): not reached.
		panic(fmt.Sprintf("claim %q: %v", name, err))
	}
	return ast.NewTerm(v), true
}

// termFor returns the token's Rego value as a policy reading keys sees it:
// all claims when keys is nil, else only the claims it names. A policy
// that reads no claim then decides the same for two tokens that differ only
// in claims it never looks at (jti, iat, exp, ...), and the decision cache
// does not keep claims nobody reads.
func (t *Token) termFor(keys *claimKeys) *ast.Term {
	if keys == nil {
		if full := t.full.Load(); full != nil {
			return full
		}
		claims := ast.NewObjectWithCapacity(len(t.claims))
		for k := range t.claims {
			if v, ok := t.claimValue(k); ok {
				claims.Insert(ast.StringTerm(k), v)
			}
		}
		full := t.build(claims)
		t.full.Store(full)
		return full
	}
	if p := t.projected.Load(); p != nil && p.keys == keys {
		return p.term
	}
	claims := ast.NewObjectWithCapacity(len(keys.names))
	for _, k := range keys.names {
		if v, ok := t.claimValue(string(k.Value.(ast.String))); ok {
			claims.Insert(k, v)
		}
	}
	term := t.build(claims)
	t.projected.Store(&projectedToken{keys: keys, term: term})
	return term
}

// anonymous is the token object of a caller without a token.
var anonymous = ast.ObjectTerm(
	ast.Item(ast.InternedTerm("present"), ast.InternedTerm(false)),
	ast.Item(ast.InternedTerm("valid"), ast.InternedTerm(false)),
	ast.Item(ast.InternedTerm("scopes"), ast.ArrayTerm()),
	ast.Item(ast.InternedTerm("claims"), ast.ObjectTerm()),
)
