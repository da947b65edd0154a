package decision

import (
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The decision caches (see "Caching" in the package documentation) are
// right only because of what the static analyses below prove about a
// policy's modules. Each one is conservative: when it cannot prove that a
// rule does not read something, it says the rule reads it.

// nondeterministicCall returns the first non-deterministic built-in the
// modules call, or "".
func nondeterministicCall(modules []*ast.Module) string {
	found := ""
	check := func(ref ast.Ref) {
		if found != "" {
			return
		}
		if bi, ok := ast.BuiltinMap[ref.String()]; ok && bi.Nondeterministic {
			found = ref.String()
		}
	}
	for _, m := range modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				check(e.Operator())
			}
			return found != ""
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
				if r, ok := c[0].Value.(ast.Ref); ok {
					check(r)
				}
			}
			return found != ""
		})
	}
	return found
}

// readsArguments is a conservative static check over the modules: it is
// false only when every reference to input names a path that cannot reach
// the call arguments. Imports of input, input as a whole, dynamic keys
// (input[x], input.tool[x]) and input.tool / input.target as values all
// count as reading them.
func readsArguments(modules []*ast.Module) bool { return anyInputRef(modules, refReadsArguments) }

// readsItems is readsArguments for input.items (list methods): false only
// when no rule can read it (the default policy reads input.names).
func readsItems(modules []*ast.Module) bool {
	return anyInputRef(modules, func(r ast.Ref) bool {
		if len(r) < 2 {
			return true
		}
		k, ok := r[1].Value.(ast.String)
		return !ok || k == "items"
	})
}

// readsBudget is readsItems for input.budget: false only when no rule
// can read it (the default policy does not), and then the PDP does not
// look the budget up.
func readsBudget(modules []*ast.Module) bool {
	return anyInputRef(modules, func(r ast.Ref) bool {
		if len(r) < 2 {
			return true
		}
		k, ok := r[1].Value.(ast.String)
		return !ok || k == "budget"
	})
}

// anyInputRef reports whether reads holds for a reference into input in
// the modules. An import of input, or input used as a value (a bare Var:
// x := input, walk(input)), counts as every read.
func anyInputRef(modules []*ast.Module, reads func(ast.Ref) bool) bool {
	found := false
	for _, m := range modules {
		for _, imp := range m.Imports {
			if r, ok := imp.Path.Value.(ast.Ref); ok && r.HasPrefix(ast.InputRootRef) {
				return true
			}
		}
		ast.NewGenericVisitor(func(x any) bool {
			if found {
				return true
			}
			switch x := x.(type) {
			case ast.Ref:
				if x.HasPrefix(ast.InputRootRef) {
					found = reads(x)
					return true // the head var is not a bare input
				}
			case ast.Var:
				found = x.Equal(ast.InputRootDocument.Value)
			}
			return found
		}).Walk(m)
		if found {
			return true
		}
	}
	return false
}

// refReadsArguments reports whether a reference into input may reach the
// call arguments: input, input[x], input.tool, input.target, their
// arguments or a dynamic key below them.
func refReadsArguments(r ast.Ref) bool {
	if len(r) < 2 {
		return true
	}
	k, ok := r[1].Value.(ast.String)
	if !ok {
		return true
	}
	if k != "tool" && k != "target" {
		return false
	}
	if len(r) < 3 {
		return true
	}
	f, ok := r[2].Value.(ast.String)
	return !ok || f == "arguments"
}

// claimKeys is the set of claim names a policy reads, as Rego string terms.
type claimKeys struct {
	names []*ast.Term
}

// claimsRead is a conservative static check over the modules: it returns
// the claims a rule can read through input.token.claims.<name>, or nil when
// a rule may read any claim: an import of input, input, input.token or
// input.token.claims as a value (passed to a function, iterated, walked),
// or a dynamic key at any of those levels.
func claimsRead(modules []*ast.Module) *claimKeys {
	names := map[string]bool{}
	all := anyInputRef(modules, func(r ast.Ref) bool {
		name, ok := refClaim(r)
		if ok && name != "" {
			names[name] = true
		}
		return !ok
	})
	if all {
		return nil
	}
	keys := &claimKeys{}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		keys.names = append(keys.names, ast.StringTerm(n))
	}
	return keys
}

// refClaim classifies a reference into input: ok with name "" when it
// cannot reach a claim, ok with a name when it reads that one claim, not ok
// when it may read any.
func refClaim(r ast.Ref) (name string, ok bool) {
	key := func(i int) (string, bool) {
		if len(r) <= i {
			return "", false
		}
		s, ok := r[i].Value.(ast.String)
		return string(s), ok
	}
	k, ok := key(1)
	if !ok {
		return "", false // input or input[x]
	}
	if k != "token" {
		return "", true
	}
	if k, ok = key(2); !ok {
		return "", false // input.token or input.token[x]
	}
	if k != "claims" {
		return "", true
	}
	if k, ok = key(3); !ok {
		return "", false // input.token.claims or input.token.claims[x]
	}
	return k, true
}

// A policy often reads the token's subject only to look it up in data: the
// default policy's revocation list, data.mcp.revoked.subjects[input.token.sub].
// Its decision then depends on the subject only through what that lookup
// finds. subjectLookups finds such policies; the decision cache then keys
// the decision on the lookups' results instead of the subject, so that the
// tokens of many users with the same scopes, roles and client share one
// entry (and a revoked subject never shares one with a subject that is not).

// subjectLookups returns the data paths under which every use of
// input.token.sub in the modules is a lookup key (data.a.b[input.token.sub],
// nothing after it), or ok false when the subject is used in any other way,
// or a path may hold rules (its values would not be plain data).
func subjectLookups(modules []*ast.Module) (paths []ast.Ref, ok bool) {
	keyUses := map[*ast.Term]bool{}
	seen := map[string]bool{}
	// First the lookups: data refs whose last term is input.token.sub.
	for _, m := range modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r.HasPrefix(ast.DefaultRootRef) || len(r) < 3 {
				return false
			}
			last := r[len(r)-1]
			if !isSubjectRef(last) {
				return false
			}
			prefix := r[:len(r)-1]
			if !prefix.IsGround() {
				return false
			}
			keyUses[last] = true
			if k := prefix.String(); !seen[k] {
				seen[k] = true
				paths = append(paths, prefix.Copy())
			}
			return false
		})
	}
	// Then every reference to input: any other read of the subject (or of
	// input, input.token as a whole, a dynamic key) is a plain read.
	plain := false
	for _, m := range modules {
		for _, imp := range m.Imports {
			if r, isRef := imp.Path.Value.(ast.Ref); isRef && r.HasPrefix(ast.InputRootRef) {
				return nil, false
			}
		}
		ast.NewGenericVisitor(func(x any) bool {
			if plain {
				return true
			}
			switch x := x.(type) {
			case *ast.Term:
				if keyUses[x] {
					return true // a lookup key: do not look inside
				}
			case ast.Ref:
				if x.HasPrefix(ast.InputRootRef) {
					plain = refReadsSubject(x)
					return true
				}
			case ast.Var:
				plain = x.Equal(ast.InputRootDocument.Value)
			}
			return plain
		}).Walk(m)
	}
	if plain {
		return nil, false
	}
	// The looked-up paths must be plain data: no package of the policy may
	// define rules at, above or below them.
	for _, p := range paths {
		for _, m := range modules {
			pkg := m.Package.Path
			if p.HasPrefix(pkg) || pkg.HasPrefix(p) {
				return nil, false
			}
		}
	}
	return paths, true
}

var subjectRef = ast.MustParseRef("input.token.sub")

func isSubjectRef(t *ast.Term) bool {
	r, ok := t.Value.(ast.Ref)
	return ok && r.Equal(subjectRef)
}

// refReadsSubject reports whether a reference into input may read the
// subject: input, input[x], input.token, input.token[x], input.token.sub...
func refReadsSubject(r ast.Ref) bool {
	for i, want := range []string{"token", "sub"} {
		if len(r) < i+2 {
			return true // input or input.token as a value
		}
		k, ok := r[i+1].Value.(ast.String)
		if !ok {
			return true
		}
		if string(k) != want {
			return false
		}
	}
	return true
}
