package decision

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/catalog"
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
	// Remediation is, for a forbidden request, the policy's word on
	// whether the caller can remedy it ("available", "unavailable",
	// "undisclosed"; empty: not said), for structured denials.
	Remediation string
	// Rate and Quota are the limits the policy returned for the target
	// ("limits": {"rate": ..., "quota": ...}, checked like the catalog's):
	// the PDP applies them to an allowed call. nil: none.
	Rate  *catalog.Rate
	Quota *catalog.Quota
	// list is a list method's answer: the visible items and what each
	// needs (listAnswer.find). It is what the decision cache keeps.
	list *listAnswer
	// listed is, for a result Decide returned for a list, the index in
	// list.decs of each of Input.Items' decision, in order; -1: hidden (Item).
	listed []int32
	// Revision of the policy that decided.
	Revision string
}

// ItemDecision is the policy's answer for one visible list item.
type ItemDecision struct {
	Access string
	Scopes []string
}

// forList returns, for a list, a copy of r that knows which of the listed
// names (lt) are visible (Item); r itself may be in the cache and is not
// changed. Other results are returned as they are.
func (r *Result) forList(lt *listTerms) *Result {
	if lt == nil || r.list == nil {
		return r
	}
	out := *r
	out.listed = r.list.align(lt.names)
	return &out
}

// Field names of the decision object, interned once.
var (
	fieldAllow      = ast.StringTerm("allow")
	fieldVisible    = ast.StringTerm("visible")
	fieldForbidden  = ast.StringTerm("forbidden")
	fieldAccess     = ast.StringTerm("access")
	fieldReason     = ast.StringTerm("reason")
	fieldRemedy     = ast.StringTerm("remediation")
	fieldRequired   = ast.StringTerm("required_scopes")
	fieldMissing    = ast.StringTerm("missing_scopes")
	fieldItems      = ast.StringTerm("items")
	fieldItemGroups = ast.StringTerm("item_groups")
	fieldEntry      = ast.StringTerm("entry")
	fieldNames      = ast.StringTerm("names")
	fieldScopes     = ast.StringTerm("scopes")
	fieldLimits     = ast.StringTerm("limits")
)

// parseResult reads the decision object.
func parseResult(v ast.Value) (*Result, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("policy decision is %s, want an object", ast.ValueName(v))
	}
	res := &Result{}
	var err error
	if res.Allow, err = boolField(obj, fieldAllow, true); err != nil {
		return nil, err
	}
	if res.Visible, err = boolField(obj, fieldVisible, false); err != nil {
		return nil, err
	}
	if obj.Get(fieldVisible) == nil {
		res.Visible = res.Allow
	}
	if res.Forbidden, err = boolField(obj, fieldForbidden, false); err != nil {
		return nil, err
	}
	res.Access = stringField(obj, fieldAccess)
	res.Reason = stringField(obj, fieldReason)
	if t := obj.Get(fieldRemedy); t != nil {
		s, ok := t.Value.(ast.String)
		switch {
		case !ok:
			return nil, fmt.Errorf("policy decision field remediation is %s, want a string", ast.ValueName(t.Value))
		case s == "available" || s == "unavailable" || s == "undisclosed":
			res.Remediation = string(s)
		default:
			return nil, fmt.Errorf("policy decision field remediation is %q, want available, unavailable or undisclosed", string(s))
		}
	}
	if res.RequiredScopes, err = stringsField(obj, fieldRequired); err != nil {
		return nil, err
	}
	if res.MissingScopes, err = stringsField(obj, fieldMissing); err != nil {
		return nil, err
	}
	if t := obj.Get(fieldLimits); t != nil {
		if err := parseLimits(res, t.Value); err != nil {
			return nil, err
		}
	}
	items, groups := obj.Get(fieldItems), obj.Get(fieldItemGroups)
	if items != nil || groups != nil {
		la := &listAnswer{}
		if items != nil {
			if err := parseItems(la, items.Value); err != nil {
				return nil, err
			}
		}
		if groups != nil {
			if err := parseItemGroups(la, groups.Value); err != nil {
				return nil, err
			}
		}
		la.entries = nil
		res.list = la
	}
	return res, nil
}

// parseLimits reads the decision's "limits": {"rate": {...}, "quota":
// {...}}, either or both, checked as `pdp check` checks a catalog's (a
// policy that computes a bad limit fails the decision: it is denied).
func parseLimits(res *Result, v ast.Value) error {
	obj, ok := v.(ast.Object)
	if !ok {
		return fmt.Errorf("policy decision field limits is %s, want an object {rate: ..., quota: ...}", ast.ValueName(v))
	}
	var err error
	obj.Foreach(func(k, val *ast.Term) {
		if err != nil {
			return
		}
		ks, _ := k.Value.(ast.String)
		key := string(ks)
		var raw any
		if raw, err = ast.JSON(val.Value); err != nil {
			err = fmt.Errorf("policy decision field limits.%s: %w", key, err)
			return
		}
		switch key {
		case "rate":
			var r catalog.Rate
			if r, err = catalog.ParseRate(raw); err == nil {
				res.Rate = &r
			}
		case "quota":
			var q catalog.Quota
			if q, err = catalog.ParseQuota(raw); err == nil {
				res.Quota = &q
			}
		default:
			err = fmt.Errorf("unknown key, want rate or quota")
		}
		if err != nil {
			err = fmt.Errorf("policy decision field limits.%s: %w", key, err)
		}
	})
	return err
}

// parseItems reads the visible items of a list decision: an object of
// name -> {access, scopes}, or an array of such objects (a name in two of
// them gets the later one's entry).
func parseItems(la *listAnswer, v ast.Value) error {
	var parts []ast.Object
	n := 0
	switch x := v.(type) {
	case ast.Object:
		parts, n = []ast.Object{x}, x.Len()
	case *ast.Array:
		for i := range x.Len() {
			o, ok := x.Elem(i).Value.(ast.Object)
			if !ok {
				return fmt.Errorf("policy decision items[%d] is %s, want an object of name -> {access, scopes}", i, ast.ValueName(x.Elem(i).Value))
			}
			parts = append(parts, o)
			n += o.Len()
		}
	default:
		return fmt.Errorf("policy decision field items is %s, want an object of name -> {access, scopes}", ast.ValueName(v))
	}
	if n == 0 {
		return nil
	}
	la.byName = make(map[string]int32, n)
	for _, items := range parts {
		err := items.Iter(func(k, iv *ast.Term) error {
			name, ok := k.Value.(ast.String)
			if !ok {
				return fmt.Errorf("policy decision items has a key %v, want strings", k)
			}
			io, ok := iv.Value.(ast.Object)
			if !ok {
				return fmt.Errorf("policy decision items[%q] is %s, want an object", string(name), ast.ValueName(iv.Value))
			}
			d, err := la.decisionOf(io)
			if err != nil {
				return fmt.Errorf("items[%q]: %w", string(name), err)
			}
			la.byName[string(name)] = d
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// parseItemGroups reads the visible items of a list decision given as
// groups of names that share an entry: [{"entry": {access, scopes},
// "names": [...] or a set}]. The sets are kept as they are: Lookup looks
// names up in them (OPA iterates a set only in sorted order, and sorting a
// thousand names costs more than the lookups). A value in names that is
// not a string matches no listed name.
func parseItemGroups(la *listAnswer, v ast.Value) error {
	arr, ok := v.(*ast.Array)
	if !ok {
		return fmt.Errorf("policy decision field item_groups is %s, want an array of {entry, names}", ast.ValueName(v))
	}
	for i := range arr.Len() {
		g, ok := arr.Elem(i).Value.(ast.Object)
		if !ok {
			return fmt.Errorf("policy decision item_groups[%d] is %s, want an object {entry, names}", i, ast.ValueName(arr.Elem(i).Value))
		}
		et := g.Get(fieldEntry)
		if et == nil {
			return fmt.Errorf("policy decision item_groups[%d] has no entry", i)
		}
		eo, ok := et.Value.(ast.Object)
		if !ok {
			return fmt.Errorf("policy decision item_groups[%d].entry is %s, want an object", i, ast.ValueName(et.Value))
		}
		nt := g.Get(fieldNames)
		if nt == nil {
			return fmt.Errorf("policy decision item_groups[%d] has no names", i)
		}
		var names ast.Set
		switch x := nt.Value.(type) {
		case ast.Set:
			names = x
		case *ast.Array:
			names = ast.NewSetWithCapacity(x.Len())
			for j := range x.Len() {
				names.Add(x.Elem(j))
			}
		case ast.Null:
			continue
		default:
			return fmt.Errorf("policy decision item_groups[%d].names is %s, want an array or a set of strings", i, ast.ValueName(nt.Value))
		}
		if names.Len() == 0 {
			continue
		}
		d, err := la.decisionOf(eo)
		if err != nil {
			return fmt.Errorf("item_groups[%d].entry: %w", i, err)
		}
		la.groups = append(la.groups, nameGroup{names: names, dec: d})
	}
	return nil
}

// listAnswer is what a list decision shows: the visible items, each with
// the index of its decision in decs. A name in several places gets the
// decision of the last item group that holds it, else its entry in items.
type listAnswer struct {
	decs    []ItemDecision
	groups  []nameGroup         // from item_groups
	byName  map[string]int32    // from items
	entries map[ast.Value]int32 // decs index by entry object, while parsing
}

type nameGroup struct {
	names ast.Set
	dec   int32
}

// decisionOf returns the index in decs of the decision an entry object
// gives, reading each distinct entry object once.
func (la *listAnswer) decisionOf(e ast.Object) (int32, error) {
	if i, ok := la.entries[e]; ok {
		return i, nil
	}
	d, err := itemDecision(e)
	if err != nil {
		return 0, err
	}
	la.decs = append(la.decs, d)
	i := int32(len(la.decs) - 1)
	if la.entries == nil {
		la.entries = map[ast.Value]int32{}
	}
	la.entries[e] = i
	return i, nil
}

// find returns the index in decs of the decision for a listed name given
// as a term (t) and as a string, or -1 when it is not visible.
func (la *listAnswer) find(t *ast.Term, name string) int32 {
	for i := len(la.groups) - 1; i >= 0; i-- {
		if la.groups[i].names.Contains(t) {
			return la.groups[i].dec
		}
	}
	if i, ok := la.byName[name]; ok {
		return i
	}
	return -1
}

// align returns, for each listed name in order, the index of its decision
// in decs (-1: hidden).
func (la *listAnswer) align(names []*ast.Term) []int32 {
	out := make([]int32, len(names))
	for i, t := range names {
		out[i] = la.find(t, string(t.Value.(ast.String)))
	}
	return out
}

// Item returns the decision for the i-th item of the Input a list result
// was returned for by Decide; ok is false when the caller may not see it.
func (r *Result) Item(i int) (d ItemDecision, ok bool) {
	if r.list == nil || i < 0 || i >= len(r.listed) || r.listed[i] < 0 {
		return ItemDecision{}, false
	}
	return r.list.decs[r.listed[i]], true
}

// itemDecision reads what a list item needs from its catalog entry (or the
// policy's own {access, scopes} object).
func itemDecision(e ast.Object) (ItemDecision, error) {
	scopes, err := stringsField(e, fieldScopes)
	if err != nil {
		return ItemDecision{}, err
	}
	return ItemDecision{Access: stringField(e, fieldAccess), Scopes: scopes}, nil
}

func boolField(obj ast.Object, key *ast.Term, required bool) (bool, error) {
	raw := obj.Get(key)
	if raw == nil {
		if required {
			return false, fmt.Errorf("policy decision has no %v field", key)
		}
		return false, nil
	}
	b, ok := raw.Value.(ast.Boolean)
	if !ok {
		return false, fmt.Errorf("policy decision field %v is %s, want a boolean", key, ast.ValueName(raw.Value))
	}
	return bool(b), nil
}

func stringField(obj ast.Object, key *ast.Term) string {
	if raw := obj.Get(key); raw != nil {
		if s, ok := raw.Value.(ast.String); ok {
			return string(s)
		}
	}
	return ""
}

// stringsField reads an array (or set) of strings; absent or null is nil.
func stringsField(obj ast.Object, key *ast.Term) ([]string, error) {
	raw := obj.Get(key)
	if raw == nil {
		return nil, nil
	}
	var out []string
	add := func(t *ast.Term) error {
		s, ok := t.Value.(ast.String)
		if !ok {
			return fmt.Errorf("policy decision field %v holds %s, want strings", key, ast.ValueName(t.Value))
		}
		out = append(out, string(s))
		return nil
	}
	switch x := raw.Value.(type) {
	case ast.Null:
		return nil, nil
	case *ast.Array:
		out = make([]string, 0, x.Len())
		for i := range x.Len() {
			if err := add(x.Elem(i)); err != nil {
				return nil, err
			}
		}
	case ast.Set:
		out = make([]string, 0, x.Len())
		if err := x.Iter(add); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("policy decision field %v is %s, want an array of strings", key, ast.ValueName(raw.Value))
	}
	return out, nil
}
