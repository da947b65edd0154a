package decision

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

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
