package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// The catalog format (data.mcp, docs/policy.md), which Validate checks:
//
//	mcp:
//	  default_catalog: <name>
//	  resources: {<resource URI>: {catalog: <name>, ...}}
//	  revoked: {clients: {<client_id>: <note>}, subjects: {<sub>: <note>}}
//	  hidden: [<name>, ...]
//	  catalogs:
//	    <name>:
//	      unknown: <entry>
//	      scope_implies: {<scope>: [<scope>, ...]}
//	      tools | prompts | resources | resource_templates | methods: {<name>: <entry>}
//
//	      default_limits: {rate: <rate>, quota: <quota>}
//
//	<entry> = {access: public|step_up|restricted|deny, scopes: [..], roles: [..], clients: [..],
//	           rate: <rate>, quota: <quota>}
//	<rate>  = {limit: N, per: <duration>, burst: N, by: sub|client|sub+client|resource}
//	<quota> = {limit: N, per: hour|day|month, by: ..., time_zone: <IANA name>}
//
// Keys the format does not know are allowed (policies may read their own
// data) unless they look like a misspelling of a known key.

// accessClasses are the values of a catalog entry's "access".
var accessClasses = []string{"public", "step_up", "restricted", "deny"}

var (
	mcpKeys     = []string{"default_catalog", "resources", "revoked", "hidden", "catalogs", "scope_ceilings"}
	catalogKeys = []string{"unknown", "scope_implies", "wildcard_scopes", "tools", "prompts", "resources", "resource_templates", "methods", "destructive_scope", "default_limits"}
	entryKeys   = []string{"access", "scopes", "roles", "clients", "annotations", "_meta", "rate", "quota"}
	sectionKeys = []string{"tools", "prompts", "resources", "resource_templates", "methods"}
)

// Validate checks a policy's data (the whole data document) against the
// catalog format and returns its problems, errors and warnings, ordered by
// data path. Each carries its data path; Locations.LocateProblems adds
// files and lines. Data without data.mcp has no problems, except data under
// IndexRoot, which is reserved for WithIndex.
func Validate(data map[string]any) []Problem {
	v := &validator{}
	if _, ok := data[IndexRoot]; ok {
		v.errorf([]string{IndexRoot}, "is reserved: the PDP puts its catalog index there (data.%s.catalog_index)", IndexRoot)
	}
	raw, ok := data["mcp"]
	if !ok {
		return v.problems
	}
	mcp, ok := raw.(map[string]any)
	if !ok {
		v.errorf([]string{"mcp"}, "must be an object (the policy data), not %s", kindOf(raw))
		return v.problems
	}
	v.mcp(mcp)
	sort.SliceStable(v.problems, func(i, j int) bool { return v.problems[i].Path < v.problems[j].Path })
	return v.problems
}

type validator struct {
	problems []Problem
}

func (v *validator) add(path []string, warning bool, hint, format string, args ...any) {
	segs := append([]string(nil), path...)
	v.problems = append(v.problems, Problem{
		Path: FormatDataPath(segs), Code: CodeCatalog, Message: fmt.Sprintf(format, args...),
		Hint: hint, Warning: warning, segs: segs,
	})
}

func (v *validator) errorf(path []string, format string, args ...any) {
	v.add(path, false, "", format, args...)
}

func (v *validator) warnf(path []string, format string, args ...any) {
	v.add(path, true, "", format, args...)
}

func join(path []string, more ...string) []string {
	out := make([]string, 0, len(path)+len(more))
	return append(append(out, path...), more...)
}

// misspelt reports keys of obj that look like a misspelling of a known key.
func (v *validator) misspelt(path []string, obj map[string]any, known []string) {
	for _, k := range sortedKeys(obj) {
		if s := Suggest(k, known); s != "" {
			v.add(join(path, k), false, "", "unknown key %q: did you mean %q?", k, s)
		}
	}
}

func (v *validator) mcp(mcp map[string]any) {
	root := []string{"mcp"}
	v.misspelt(root, mcp, mcpKeys)
	var catalogs map[string]any
	if raw, ok := mcp["catalogs"]; ok {
		if catalogs, ok = raw.(map[string]any); !ok {
			v.errorf(join(root, "catalogs"), "must be an object mapping catalog names to catalogs, not %s", kindOf(raw))
		}
		for _, name := range sortedKeys(catalogs) {
			v.catalog(join(root, "catalogs", name), catalogs[name])
		}
	}
	hasCatalog := func(name string) bool { _, ok := catalogs[name]; return ok }
	if raw, ok := mcp["default_catalog"]; ok {
		p := join(root, "default_catalog")
		if name, ok := raw.(string); !ok {
			v.errorf(p, "must be the name of a catalog (a string), not %s", kindOf(raw))
		} else if !hasCatalog(name) {
			v.add(p, false, "resources without their own catalog would have none, and every request to them would be denied",
				"names catalog %q, which data.mcp.catalogs does not define%s", name, didYouMean(name, sortedKeys(catalogs)))
		}
	} else if len(catalogs) > 0 {
		v.add(join(root, "default_catalog"), true, "requests for resources not listed in data.mcp.resources are denied",
			"is not set")
	}
	if raw, ok := mcp["resources"]; ok {
		p := join(root, "resources")
		res, ok := raw.(map[string]any)
		if !ok {
			v.errorf(p, "must be an object mapping resource URIs to {catalog: <name>}, not %s", kindOf(raw))
		}
		for _, uri := range sortedKeys(res) {
			rp := join(p, uri)
			r, ok := res[uri].(map[string]any)
			if !ok {
				v.errorf(rp, "must be an object such as {catalog: <name>}, not %s", kindOf(res[uri]))
				continue
			}
			v.misspelt(rp, r, []string{"catalog", "listing", "acquirable_scopes"})
			if l, ok := r["listing"]; ok && l != "all" && l != "acquirable" {
				v.errorf(join(rp, "listing"), `must be "all" (the default) or "acquirable", not %v`, l)
			}
			if a, ok := r["acquirable_scopes"]; ok {
				v.scopeList(join(rp, "acquirable_scopes"), a, "scopes")
			}
			if c, ok := r["catalog"]; ok {
				if name, ok := c.(string); !ok {
					v.errorf(join(rp, "catalog"), "must be the name of a catalog (a string), not %s", kindOf(c))
				} else if !hasCatalog(name) {
					v.errorf(join(rp, "catalog"), "names catalog %q, which data.mcp.catalogs does not define%s", name, didYouMean(name, sortedKeys(catalogs)))
				}
			}
		}
	}
	if raw, ok := mcp["revoked"]; ok {
		p := join(root, "revoked")
		rev, ok := raw.(map[string]any)
		if !ok {
			v.errorf(p, "must be an object {clients: {...}, subjects: {...}}, not %s", kindOf(raw))
		}
		v.misspelt(p, rev, []string{"clients", "subjects"})
		for _, k := range []string{"clients", "subjects"} {
			x, ok := rev[k]
			if !ok {
				continue
			}
			if _, isObj := x.(map[string]any); !isObj {
				v.add(join(p, k), false, `write {"some-id": "why it is revoked"}: the policy looks ids up as keys, so a list would revoke nobody`,
					"must be an object mapping each revoked id to a note, not %s", kindOf(x))
			}
		}
	}
	if raw, ok := mcp["scope_ceilings"]; ok {
		p := join(root, "scope_ceilings")
		sc, ok := raw.(map[string]any)
		if !ok {
			v.errorf(p, "must be an object {grants: {...}, clients: {...}}, not %s", kindOf(raw))
		}
		v.misspelt(p, sc, []string{"grants", "clients"})
		for _, k := range []string{"grants", "clients"} {
			x, ok := sc[k]
			if !ok {
				continue
			}
			m, isObj := x.(map[string]any)
			if !isObj {
				v.errorf(join(p, k), "must be an object mapping each %s to the scopes it can ever be granted, not %s", strings.TrimSuffix(k, "s"), kindOf(x))
				continue
			}
			for _, id := range sortedKeys(m) {
				v.scopeList(join(p, k, id), m[id], "scopes")
			}
		}
	}
	if raw, ok := mcp["hidden"]; ok {
		p := join(root, "hidden")
		if arr, ok := raw.([]any); !ok {
			v.errorf(p, "must be a list of names, not %s", kindOf(raw))
		} else {
			for i, x := range arr {
				if _, ok := x.(string); !ok {
					v.errorf(join(p, fmt.Sprint(i)), "must be a name (a string), not %s", kindOf(x))
				}
			}
		}
	}
}

func (v *validator) catalog(path []string, raw any) {
	cat, ok := raw.(map[string]any)
	if !ok {
		v.errorf(path, "must be an object with tools, prompts, resources, ... sections, not %s", kindOf(raw))
		return
	}
	v.misspelt(path, cat, catalogKeys)
	if _, ok := cat["resourceTemplates"]; ok {
		v.errorf(join(path, "resourceTemplates"), `unknown key: the section is called "resource_templates"`)
	}
	if raw, ok := cat["unknown"]; ok {
		v.entry(join(path, "unknown"), raw)
	}
	if raw, ok := cat["default_limits"]; ok {
		p := join(path, "default_limits")
		if dl, isObj := raw.(map[string]any); !isObj {
			v.errorf(p, "must be an object {rate: {...}, quota: {...}}: the limits of entries without their own, not %s", kindOf(raw))
		} else {
			v.misspelt(p, dl, []string{"rate", "quota"})
			v.limits(p, dl)
		}
	}
	if raw, ok := cat["destructive_scope"]; ok {
		if s, isStr := raw.(string); !isStr || s == "" {
			v.errorf(join(path, "destructive_scope"), "must be the scope destructive tools need (a non-empty string), not %s", kindOf(raw))
		}
	}
	if raw, ok := cat["scope_implies"]; ok {
		p := join(path, "scope_implies")
		imp, ok := raw.(map[string]any)
		if !ok {
			v.errorf(p, `must be an object mapping a scope to the scopes it implies, e.g. {"files:write": ["files:read"]}, not %s`, kindOf(raw))
		}
		for _, s := range sortedKeys(imp) {
			v.scopeList(join(p, s), imp[s], "scopes")
		}
	}
	for _, sec := range sectionKeys {
		raw, ok := cat[sec]
		if !ok {
			continue
		}
		p := join(path, sec)
		entries, ok := raw.(map[string]any)
		if !ok {
			v.errorf(p, "must be an object mapping names to entries such as {access: public}, not %s", kindOf(raw))
			continue
		}
		for _, name := range sortedKeys(entries) {
			if i := strings.IndexByte(name, '*'); i >= 0 && i != len(name)-1 {
				v.warnf(join(p, name), "only a trailing * is a wildcard (a prefix match); this name matches only itself")
			}
			v.entry(join(p, name), entries[name])
		}
	}
}

func (v *validator) entry(path []string, raw any) {
	e, ok := raw.(map[string]any)
	if !ok {
		v.errorf(path, "must be an object such as {access: step_up, scopes: [\"files:read\"]}, not %s", kindOf(raw))
		return
	}
	v.misspelt(path, e, entryKeys)
	if a, ok := e["annotations"]; ok {
		if _, isObj := a.(map[string]any); !isObj {
			v.errorf(join(path, "annotations"), "must be an object of MCP tool annotations such as {destructiveHint: true}, not %s", kindOf(a))
		}
	}
	if m, ok := e["_meta"]; ok {
		if _, isObj := m.(map[string]any); !isObj {
			v.errorf(join(path, "_meta"), "must be an object of _meta keys such as {\"com.example/classification\": \"internal\"}, not %s", kindOf(m))
		}
	}
	access, hasAccess := e["access"]
	switch a, isStr := access.(string); {
	case !hasAccess:
		v.add(join(path, "access"), false, "without it the entry is hidden and denied",
			"is required: one of %s", strings.Join(accessClasses, ", "))
	case !isStr:
		v.errorf(join(path, "access"), "must be one of %s, not %s", strings.Join(accessClasses, ", "), kindOf(access))
	case !contains(accessClasses, a):
		v.errorf(join(path, "access"), "%q is not an access class; use one of %s%s", a, strings.Join(accessClasses, ", "), didYouMean(a, accessClasses))
	}
	for _, k := range []string{"scopes", "roles", "clients"} {
		if x, ok := e[k]; ok {
			v.scopeList(join(path, k), x, k)
		}
	}
	v.limits(path, e)
	if a, _ := access.(string); a == "deny" && (e["rate"] != nil || e["quota"] != nil) {
		v.warnf(path, "has a rate or quota but access deny: no call is allowed, so none is counted")
	}
	if a, _ := access.(string); a == "public" {
		if _, ok := e["roles"]; ok {
			v.warnf(join(path, "roles"), "has no effect on a public entry: anyone may call it; use step_up or restricted to require roles")
		}
	}
}

// limits checks the rate and quota of obj (an entry or default_limits).
func (v *validator) limits(path []string, obj map[string]any) {
	check := func(key string, err error) {
		var le *LimitError
		if err == nil {
			return
		}
		if errors.As(err, &le) && le.Field != "" {
			v.errorf(join(path, key, le.Field), "%s", le.Message)
			return
		}
		v.errorf(join(path, key), "%s", err)
	}
	if raw, ok := obj["rate"]; ok {
		_, err := ParseRate(raw)
		check("rate", err)
	}
	if raw, ok := obj["quota"]; ok {
		_, err := ParseQuota(raw)
		check("quota", err)
	}
}

// scopeList checks a list of scopes, roles or client ids.
func (v *validator) scopeList(path []string, raw any, what string) {
	arr, ok := raw.([]any)
	if !ok {
		if s, isStr := raw.(string); isStr {
			v.errorf(path, "must be a list, not a string: write [%q]", s)
			return
		}
		v.errorf(path, "must be a list of strings, not %s", kindOf(raw))
		return
	}
	if len(arr) == 0 && (what == "roles" || what == "clients") {
		v.add(path, false, "remove the key to allow any "+strings.TrimSuffix(what, "s")+", or list at least one",
			"is empty: no caller could ever match it")
	}
	for i, x := range arr {
		s, ok := x.(string)
		switch {
		case !ok:
			v.errorf(join(path, fmt.Sprint(i)), "must be a string, not %s", kindOf(x))
		case s == "":
			v.errorf(join(path, fmt.Sprint(i)), "must not be empty")
		case what != "clients" && strings.ContainsFunc(s, unicode.IsSpace):
			v.errorf(join(path, fmt.Sprint(i)), "%q contains white space: a token's scopes are split on spaces, so it could never be granted; list each one separately", s)
		}
	}
}

// FormatDataPath writes a data path, given as its segments, the way Rego
// refers to it: mcp.resources["https://mcp.example.com/mcp"].catalog.
func FormatDataPath(segs []string) string {
	var b strings.Builder
	for i, s := range segs {
		if _, err := strconv.Atoi(s); err == nil && i > 0 {
			fmt.Fprintf(&b, "[%s]", s)
		} else if isIdent(s) {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		} else {
			fmt.Fprintf(&b, "[%q]", s)
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && !unicode.IsLetter(r) && (i == 0 || !unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

func kindOf(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Suggest returns the known name that k looks like a misspelling of:
// equal but for case, one edit away (a swap of two neighbours is one
// edit) for names of four characters and more, or two for names of eight
// and more (scope_implys). It returns "" for known names and when none is
// near. `pdp check` names catalog keys with it, the CLI its flags.
func Suggest(k string, known []string) string {
	if contains(known, k) {
		return ""
	}
	maxD := 0
	switch {
	case len(k) >= 8:
		maxD = 2
	case len(k) >= 4:
		maxD = 1
	}
	return Nearest(k, known, maxD)
}

// Nearest returns the name of known equal to k but for case, else the
// nearest at most maxEdits edits away (a swap of two neighbours is one
// edit), else "".
func Nearest(k string, known []string, maxEdits int) string {
	for _, c := range known {
		if strings.EqualFold(k, c) {
			return c
		}
	}
	best, bestD := "", maxEdits+1
	for _, c := range known {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func didYouMean(s string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the edit distance of a and b where a swap of two
// neighbouring characters counts as one edit (the optimal string alignment
// distance): "unknwon" is one edit from "unknown".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// three rows: i-2, i-1, i
	pp := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
		pp, prev, cur = prev, cur, pp
	}
	return prev[len(rb)]
}
