package decision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Operation classifies an MCP method for the policy.
type Operation string

const (
	// OpCall acts on one named target: tools/call, prompts/get, resources/read, ...
	OpCall Operation = "call"
	// OpList lists targets: tools/list, prompts/list, resources/list, ...
	OpList Operation = "list"
	// OpLifecycle is initialize, ping and notifications/*.
	OpLifecycle Operation = "lifecycle"
	// OpOther is every other method (completion/complete, logging/setLevel, ...).
	OpOther Operation = "other"
)

// Kind is what a call or list is about.
type Kind string

const (
	KindNone             Kind = ""
	KindTool             Kind = "tool"
	KindPrompt           Kind = "prompt"
	KindResource         Kind = "resource"
	KindResourceTemplate Kind = "resource_template"
)

// Method describes how an MCP method maps onto the policy input.
type Method struct {
	Operation Operation
	Kind      Kind
	// ListKey is the result field holding the items of a list method
	// ("tools", "prompts", "resources", "resourceTemplates").
	ListKey string
	// NameKey is the field naming an item or target ("name", "uri", "uriTemplate").
	NameKey string
}

var methods = map[string]Method{
	"tools/call":               {OpCall, KindTool, "", "name"},
	"prompts/get":              {OpCall, KindPrompt, "", "name"},
	"resources/read":           {OpCall, KindResource, "", "uri"},
	"resources/subscribe":      {OpCall, KindResource, "", "uri"},
	"resources/unsubscribe":    {OpCall, KindResource, "", "uri"},
	"tools/list":               {OpList, KindTool, "tools", "name"},
	"prompts/list":             {OpList, KindPrompt, "prompts", "name"},
	"resources/list":           {OpList, KindResource, "resources", "uri"},
	"resources/templates/list": {OpList, KindResourceTemplate, "resourceTemplates", "uriTemplate"},
	"initialize":               {OpLifecycle, KindNone, "", ""},
	"ping":                     {OpLifecycle, KindNone, "", ""},
}

// ClassifyMethod tells how method is decided. Notifications are lifecycle;
// methods the table does not know are OpOther.
func ClassifyMethod(method string) Method {
	if m, ok := methods[method]; ok {
		return m
	}
	if len(method) > len("notifications/") && method[:len("notifications/")] == "notifications/" {
		return Method{Operation: OpLifecycle}
	}
	return Method{Operation: OpOther}
}

// Actor is one link of an RFC 8693 delegation chain.
type Actor struct {
	Subject  string
	ClientID string
}

// Token is the verified caller as the policy sees it. Build it once per
// verified token with NewToken and reuse it: its Rego value is computed once
// (and once more per policy that reads only some claims, see claimsRead).
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

// Item is one entry of a list result, as the policy sees it.
type Item struct {
	Name string
	// Annotations are the item's MCP annotations (e.g. readOnlyHint), or nil.
	Annotations ast.Value
	// RawAnnotations are the annotations as JSON text, converted only for
	// a policy that reads input.items; Annotations, when set, wins.
	RawAnnotations []byte
}

// Input is one request to decide.
type Input struct {
	Resource  string
	Method    string
	Class     Method
	Target    string    // tool or prompt name, resource URI (calls)
	Arguments ast.Value // call arguments, or nil
	// RawArguments are the call arguments as JSON text (an object), parsed
	// only for a policy that can read them; Arguments, when set, wins.
	RawArguments []byte
	Token        *Token // nil: anonymous
	Items        []Item // list methods
}

// Value builds the Rego input document:
//
//	{"resource", "method", "operation", "kind",
//	 "target": {"kind", "name", "arguments"}, "tool": <target, tools only>,
//	 "token": {...}, "items": [{"name", "annotations"}], "names": {<item names>}}
func (in *Input) Value() ast.Value {
	lt := in.listTerms(nil)
	v, err := in.value(true, true, in.tokenTerm(nil), lt)
	if err != nil {
		in2 := *in
		in2.RawArguments = nil
		v, _ = in2.value(true, true, in.tokenTerm(nil), lt) // arguments left as {}: the error is Decide's to report
	}
	return v
}

// listTerms are a list's names as Rego terms, in the order of Items, and
// as the set given as input.names.
type listTerms struct {
	names []*ast.Term
	set   *ast.Term
}

// listTerms builds the name terms of a list (nil for other methods). A
// name found in intern (the catalog index's terms, Policy.nameTerms) is
// given as that term; the others are made in one block.
func (in *Input) listTerms(intern map[string]*ast.Term) *listTerms {
	if in.Class.Operation != OpList {
		return nil
	}
	names := make([]*ast.Term, len(in.Items))
	set := ast.NewSetWithCapacity(len(in.Items))
	var made []ast.Term
	for i, it := range in.Items {
		t := intern[it.Name]
		if t == nil {
			if len(made) == 0 {
				made = make([]ast.Term, len(in.Items)-i)
			}
			t = &made[0]
			t.Value = ast.String(it.Name)
			made = made[1:]
		}
		names[i] = t
		set.Add(t)
	}
	return &listTerms{names: names, set: ast.NewTerm(set)}
}

// tokenTerm is input.token with the claims keys names (all when nil).
func (in *Input) tokenTerm(keys *claimKeys) *ast.Term {
	if in.Token == nil {
		return anonymous
	}
	return in.Token.termFor(keys)
}

// arguments returns the call arguments as a Rego value, or nil.
func (in *Input) arguments() (ast.Value, error) {
	if in.Arguments != nil || len(in.RawArguments) == 0 {
		return in.Arguments, nil
	}
	v, err := ast.ValueFromReader(bytes.NewReader(in.RawArguments))
	if err != nil {
		return nil, fmt.Errorf("call arguments: %w", err)
	}
	if _, ok := v.(ast.Object); !ok {
		return nil, fmt.Errorf("call arguments are %s, want an object", ast.ValueName(v))
	}
	return v, nil
}

// value builds the input document; without args, call arguments are left
// out (for policies that never read them, see readsArguments); without
// items, lists are given as names only (readsItems); with claim keys, only
// those claims are in input.token.claims (see claimsRead). lt are the
// list's names (listTerms), nil for other methods.
func (in *Input) value(args, items bool, tok *ast.Term, lt *listTerms) (ast.Value, error) {
	obj := ast.NewObjectWithCapacity(8)
	obj.Insert(ast.InternedTerm("resource"), ast.StringTerm(in.Resource))
	obj.Insert(ast.InternedTerm("method"), ast.StringTerm(in.Method))
	obj.Insert(ast.InternedTerm("operation"), ast.StringTerm(string(in.Class.Operation)))
	obj.Insert(ast.InternedTerm("kind"), ast.StringTerm(string(in.Class.Kind)))
	obj.Insert(ast.InternedTerm("token"), tok)
	switch in.Class.Operation {
	case OpCall:
		argsTerm := ast.NewTerm(ast.NewObject())
		if args {
			a, err := in.arguments()
			if err != nil {
				return nil, err
			}
			if a != nil {
				argsTerm = ast.NewTerm(a)
			}
		}
		target := ast.ObjectTerm(
			ast.Item(ast.InternedTerm("kind"), ast.StringTerm(string(in.Class.Kind))),
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(in.Target)),
			ast.Item(ast.InternedTerm("arguments"), argsTerm),
		)
		obj.Insert(ast.InternedTerm("target"), target)
		if in.Class.Kind == KindTool {
			obj.Insert(ast.InternedTerm("tool"), target)
		}
	case OpList:
		// names is a set: built-ins such as object.filter take it as it
		// is, where an array would be turned into a set on every call.
		if lt == nil {
			lt = in.listTerms(nil)
		}
		names := lt.names
		obj.Insert(ast.InternedTerm("names"), lt.set)
		if !items {
			break
		}
		objs := make([]*ast.Term, len(in.Items))
		for i, it := range in.Items {
			o := ast.NewObjectWithCapacity(2)
			o.Insert(ast.InternedTerm("name"), names[i])
			ann := it.Annotations
			if ann == nil && len(it.RawAnnotations) > 0 {
				v, err := ast.ValueFromReader(bytes.NewReader(it.RawAnnotations))
				if err != nil {
					return nil, fmt.Errorf("annotations of %q: %w", it.Name, err)
				}
				ann = v
			}
			if ann != nil {
				o.Insert(ast.InternedTerm("annotations"), ast.NewTerm(ann))
			}
			objs[i] = ast.NewTerm(o)
		}
		obj.Insert(ast.InternedTerm("items"), ast.ArrayTerm(objs...))
	}
	return obj, nil
}
