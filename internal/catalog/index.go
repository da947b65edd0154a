package catalog

import (
	"encoding/json"
	"maps"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// IndexRoot is where WithIndex puts the catalog index in data:
// data.pdp.catalog_index[<catalog>][<section>] is {"groups": [{"entry":
// <entry>, "members": {<name>: true, ...}, "names": <set of the same
// names>}, ...], "prefixes": [...], "names": <set of all exact names>}:
// one group per distinct entry of the section, the section's "prefix*"
// keys without the star, and all its exact names. The default policy
// decides a list once per group, with set built-ins, instead of one rule
// evaluation per item.
const IndexRoot = "pdp"

// indexedSections are the catalog sections that list methods list; the
// methods section is decided one method at a time and is not indexed.
var indexedSections = []string{"tools", "prompts", "resources", "resource_templates"}

// maxIndexGroups bounds the groups of one section that are indexed: the
// default policy uses the index only up to this many distinct entries and
// decides item by item above it.
const maxIndexGroups = 64

// WithIndex returns data with data.pdp.catalog_index built from
// data.mcp.catalogs, or data unchanged when there are no catalogs. data
// itself is not modified: the maps on the way to the index are copied. The
// index holds Rego sets (ast.Set), so the result is meant for a store that
// keeps Rego values as they are (rego.StoreReadAST), not for JSON.
//
// It also returns the index's name terms by name (read-only): a listed name
// that is in the catalog can be given to the policy as the very term the
// index holds, so the input costs no allocation for it and set lookups match
// on pointers.
func WithIndex(data map[string]any) (map[string]any, map[string]*ast.Term) {
	mcp, _ := data["mcp"].(map[string]any)
	catalogs, _ := mcp["catalogs"].(map[string]any)
	if len(catalogs) == 0 {
		return data, nil
	}
	index := map[string]any{}
	terms := map[string]*ast.Term{}
	for cname, c := range catalogs {
		cat, ok := c.(map[string]any)
		if !ok {
			continue
		}
		sections := map[string]any{}
		for _, sname := range indexedSections {
			if groups, ok := groupEntries(cat[sname], terms); ok {
				sections[sname] = groups
			}
		}
		index[cname] = sections
	}
	out := maps.Clone(data)
	pdp, _ := out[IndexRoot].(map[string]any)
	pdp = maps.Clone(pdp)
	if pdp == nil {
		pdp = map[string]any{}
	}
	pdp["catalog_index"] = index
	out[IndexRoot] = pdp
	return out, terms
}

// groupEntries groups the exact-name entries of a section by value
// (canonical JSON): {"groups": [{"entry", "members": {name: true}, "names"}],
// "prefixes": ["<prefix>", ...], "names"} where prefixes are the section's
// "name*" keys without the star and names (a set) are all its exact names.
// Not ok when the section is not an object or has more than maxIndexGroups
// distinct entries. The name terms are added to
// terms (the first one made for a name is kept).
func groupEntries(section any, terms map[string]*ast.Term) (map[string]any, bool) {
	sec, ok := section.(map[string]any)
	if !ok {
		return nil, false
	}
	groups := []any{}
	prefixes := []any{}
	byKey := map[string]map[string]any{}
	for name, e := range sec {
		if strings.HasSuffix(name, "*") {
			prefixes = append(prefixes, strings.TrimSuffix(name, "*"))
			continue
		}
		raw, err := json.Marshal(e) // map keys sorted: equal entries, equal keys
		if err != nil {
			return nil, false
		}
		members, ok := byKey[string(raw)]
		if !ok {
			if len(byKey) == maxIndexGroups {
				return nil, false
			}
			members = map[string]any{}
			byKey[string(raw)] = members
			groups = append(groups, map[string]any{"entry": e, "members": members})
		}
		members[name] = true
	}
	// Each group's names as a Rego set as well: data cannot be a set in
	// JSON, but the PDP writes this value to the store as it is, so the
	// policy intersects sets without building one per evaluation.
	for _, g := range groups {
		g := g.(map[string]any)
		members := g["members"].(map[string]any)
		names := make([]*ast.Term, 0, len(members))
		for n := range members {
			t, ok := terms[n]
			if !ok {
				t = ast.StringTerm(n)
				terms[n] = t
			}
			names = append(names, t)
		}
		g["names"] = ast.NewSet(names...)
	}
	all := make([]*ast.Term, 0, len(sec))
	for name := range sec {
		if t, ok := terms[name]; ok && !strings.HasSuffix(name, "*") {
			all = append(all, t)
		}
	}
	return map[string]any{"groups": groups, "prefixes": prefixes, "names": ast.NewSet(all...)}, true
}
