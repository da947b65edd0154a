package decision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Operation classifies an MCP method for the policy.
type Operation string

const (
	// OpCall acts on one named target: tools/call, prompts/get, resources/read, ...
	OpCall Operation = "call"
	// OpList lists targets: tools/list, prompts/list, resources/list, ...
	OpList Operation = "list"
	// OpLifecycle is initialize, server/discover (MCP 2026-07-28), ping and
	// notifications/*: always allowed by the default policy.
	OpLifecycle Operation = "lifecycle"
	// OpOther is every other method (completion/complete, logging/setLevel,
	// tasks/*, subscriptions/listen, ...): the default policy looks it up
	// in the catalog's methods section; a method not listed there is
	// unknown (-32601).
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
	"server/discover":          {OpLifecycle, KindNone, "", ""}, // MCP 2026-07-28: replaces initialize
	"ping":                     {OpLifecycle, KindNone, "", ""},
}

// methodNames holds each method of the table as its own string, so that
// MethodString can return it without an allocation. Read-only.
var methodNames = func() map[string]string {
	names := make(map[string]string, len(methods))
	for m := range methods {
		names[m] = m
	}
	return names
}()

// MethodString is string(b), without an allocation for the methods the
// table knows.
func MethodString(b []byte) string {
	if s, ok := methodNames[string(b)]; ok {
		return s
	}
	return string(b)
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

// Item is one entry of a list result, as the policy sees it.
type Item struct {
	Name string
	// RawAnnotations are the item's MCP annotations (e.g. readOnlyHint) as
	// JSON text, or nil; converted only for a policy that reads input.items.
	RawAnnotations []byte
	// RawMeta is the item's _meta as JSON text, or nil; likewise.
	RawMeta []byte
}

// ToolMeta is what a server's tools/list said of one tool besides its name
// and schemas: its MCP annotations and its _meta, each as JSON text (an
// object) or nil. Its identity stands for its content in the call cache:
// whoever keeps ToolMetas (the core) keeps one value while a list says the
// same and makes a new one when the list changes it.
type ToolMeta struct {
	Annotations []byte
	Meta        []byte
}

// Input is one request to decide.
type Input struct {
	Resource string
	Method   string
	// Class is ClassifyMethod(Method); the decision caches rely on it.
	Class     Method
	Target    string    // tool or prompt name, resource URI (calls)
	Arguments ast.Value // call arguments, or nil
	// RawArguments are the call arguments as JSON text (an object), parsed
	// only for a policy that can read them; Arguments, when set, wins.
	RawArguments []byte
	// TargetMeta is what the server's last tools/list said of the called
	// tool: its MCP annotations (readOnlyHint, destructiveHint, ...) and
	// its _meta; nil when unknown. The policy sees them as
	// input.target.annotations and input.target._meta ({} when unknown).
	TargetMeta *ToolMeta
	Token      *Token // nil: anonymous
	Items      []Item // list methods
	// Revoked are the revocations (pdp revoke) that apply to the caller,
	// nil when none do (the common case, which costs nothing). The policy
	// sees them as input.revoked; the call cache and the list memo are
	// bypassed for a revoked caller, and the result cache keys on them.
	Revoked *Revoked
	// Budget is what is left of the call's limits, for a policy that
	// reads input.budget (Policy.ReadsBudget); nil: not known, or not
	// asked for. The call cache is bypassed when it is set, and the
	// result cache keys on it.
	Budget *Budget
}

// Budget is what a call has left of its limits: input.budget =
// {"quota": {"limit", "used", "remaining", "per", "by", "resets",
// "exact"}}.
type Budget struct {
	Quota *QuotaBudget
}

// QuotaBudget is the quota the policy gave the call and what its window
// has used: exactly (a read of the counters) or as this replica last saw
// it (Exact false: other replicas may have taken more since).
type QuotaBudget struct {
	Limit   int
	Used    int64
	Per, By string
	Resets  time.Time
	Exact   bool
}

func (b *Budget) term() *ast.Term {
	obj := ast.NewObjectWithCapacity(1)
	if q := b.Quota; q != nil {
		o := ast.NewObjectWithCapacity(7)
		o.Insert(ast.InternedTerm("limit"), ast.IntNumberTerm(q.Limit))
		o.Insert(ast.InternedTerm("used"), ast.NumberTerm(json.Number(strconv.FormatInt(q.Used, 10))))
		o.Insert(ast.InternedTerm("remaining"), ast.NumberTerm(json.Number(strconv.FormatInt(max(int64(q.Limit)-q.Used, 0), 10))))
		o.Insert(ast.InternedTerm("per"), ast.StringTerm(q.Per))
		o.Insert(ast.InternedTerm("by"), ast.StringTerm(q.By))
		if !q.Resets.IsZero() {
			o.Insert(ast.InternedTerm("resets"), ast.StringTerm(q.Resets.UTC().Format(time.RFC3339)))
		}
		o.Insert(ast.InternedTerm("exact"), ast.BooleanTerm(q.Exact))
		obj.Insert(ast.InternedTerm("quota"), ast.NewTerm(o))
	}
	return ast.NewTerm(obj)
}

// Revoked are the revocations that apply to a caller: of its client_id,
// of its subject, of its token; nil where none does.
type Revoked struct {
	Client, Subject, Token *Revocation
}

// Revocation is one revocation as the policy sees it:
// input.revoked.<client|subject|token> = {"id", "reason", "by", "created",
// "expires"} (empty fields left out).
type Revocation struct {
	ID, Reason, By   string
	Created, Expires time.Time
}

// term is the revocations as a Rego object.
func (r *Revoked) term() *ast.Term {
	obj := ast.NewObjectWithCapacity(3)
	for _, e := range [...]struct {
		key string
		rev *Revocation
	}{{"client", r.Client}, {"subject", r.Subject}, {"token", r.Token}} {
		if e.rev == nil {
			continue
		}
		o := ast.NewObjectWithCapacity(5)
		o.Insert(ast.InternedTerm("id"), ast.StringTerm(e.rev.ID))
		if e.rev.Reason != "" {
			o.Insert(ast.InternedTerm("reason"), ast.StringTerm(e.rev.Reason))
		}
		if e.rev.By != "" {
			o.Insert(ast.InternedTerm("by"), ast.StringTerm(e.rev.By))
		}
		if !e.rev.Created.IsZero() {
			o.Insert(ast.InternedTerm("created"), ast.StringTerm(e.rev.Created.UTC().Format(time.RFC3339)))
		}
		if !e.rev.Expires.IsZero() {
			o.Insert(ast.InternedTerm("expires"), ast.StringTerm(e.rev.Expires.UTC().Format(time.RFC3339)))
		}
		obj.Insert(ast.InternedTerm(e.key), ast.NewTerm(o))
	}
	return ast.NewTerm(obj)
}

// Value builds the Rego input document:
//
//	{"resource", "method", "operation", "kind",
//	 "target": {"kind", "name", "arguments", "annotations", "_meta"}, "tool": <target, tools only>,
//	 "token": {...}, "items": [{"name", "annotations", "_meta"}], "names": {<item names>},
//	 "revoked": {"client", "subject", "token"} <only when a revocation applies>,
//	 "budget": {"quota": {...}} <only when known and the policy reads it>}
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
	if in.Revoked != nil {
		obj.Insert(ast.InternedTerm("revoked"), in.Revoked.term())
	}
	if in.Budget != nil {
		obj.Insert(ast.InternedTerm("budget"), in.Budget.term())
	}
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
		var ann, meta []byte
		if in.TargetMeta != nil {
			ann, meta = in.TargetMeta.Annotations, in.TargetMeta.Meta
		}
		target := ast.ObjectTerm(
			ast.Item(ast.InternedTerm("kind"), ast.StringTerm(string(in.Class.Kind))),
			ast.Item(ast.InternedTerm("name"), ast.StringTerm(in.Target)),
			ast.Item(ast.InternedTerm("arguments"), argsTerm),
			ast.Item(ast.InternedTerm("annotations"), objectTerm(ann)),
			ast.Item(ast.InternedTerm("_meta"), objectTerm(meta)),
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
			for _, f := range [...]struct {
				key string
				raw []byte
			}{{"annotations", it.RawAnnotations}, {"_meta", it.RawMeta}} {
				if len(f.raw) == 0 {
					continue
				}
				v, err := ast.ValueFromReader(bytes.NewReader(f.raw))
				if err != nil {
					return nil, fmt.Errorf("%s of %q: %w", f.key, it.Name, err)
				}
				o.Insert(ast.InternedTerm(f.key), ast.NewTerm(v))
			}
			objs[i] = ast.NewTerm(o)
		}
		obj.Insert(ast.InternedTerm("items"), ast.ArrayTerm(objs...))
	}
	return obj, nil
}

// objectTerm is the JSON object raw as a Rego term; {} when raw is empty
// or not an object.
func objectTerm(raw []byte) *ast.Term {
	if len(raw) > 0 {
		if v, err := ast.ValueFromReader(bytes.NewReader(raw)); err == nil {
			if _, ok := v.(ast.Object); ok {
				return ast.NewTerm(v)
			}
		}
	}
	return ast.NewTerm(ast.NewObject())
}
