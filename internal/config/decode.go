package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration: the YAML key that holds
// it, the line it is on (0 when not known, e.g. for a configuration built in
// code) and what to do.
type Problem struct {
	// Key is the YAML path, e.g. "resources[0].issuer".
	Key string
	// Line is the 1-based line of the key in the file, or 0.
	Line int
	// Message says what is wrong and how to fix it.
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Key, p.Message)
	}
	return p.Key + ": " + p.Message
}

// Problems is every problem of one configuration; it is the error that
// Load, Parse and Validate return.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// ProblemsOf returns the problems an error of this package carries.
func ProblemsOf(err error) Problems {
	var ps Problems
	if errors.As(err, &ps) {
		return ps
	}
	return nil
}

// decoder decodes a YAML document into a value, field by field, so that it
// can report every problem of the file at once with its YAML path and line:
// unknown keys (with the nearest known key), values of the wrong type, and
// the lines of the keys it saw, for the problems validation finds later.
type decoder struct {
	problems Problems
	lines    map[string]int
}

func (d *decoder) bad(key string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{Key: key, Line: line, Message: fmt.Sprintf(format, args...)})
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode fills v (addressable) from n; path is n's YAML path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return // "key:" with no value: the key's default
	}
	if v.Kind() == reflect.Pointer && !v.Type().Implements(unmarshalerType) {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		d.leaf(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if v.Type().Elem().Kind() == reflect.Struct {
				d.bad(path, n.Line, "want a list (each entry starting with \"- \")")
				return
			}
			d.leaf(n, v, path) // yaml reports the type mismatch
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	default:
		d.leaf(n, v, path)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.bad(orRoot(path), n.Line, "want a mapping of keys (key: value), not %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		if seen[k.Value] {
			d.bad(key, k.Line, "given twice; keep one")
			continue
		}
		seen[k.Value] = true
		idx, ok := fields[k.Value]
		if !ok {
			d.bad(key, k.Line, "%s", unknownKey(k.Value, fields))
			continue
		}
		d.lines[key] = k.Line
		d.decode(val, v.FieldByIndex(idx), key)
	}
}

// leaf decodes a scalar (or a value with its own UnmarshalYAML) through yaml.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, path string) {
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.bad(orRoot(path), n.Line, "%s", cleanYAMLError(err))
	}
}

var yamlLinePrefix = regexp.MustCompile(`^(yaml: )?(unmarshal errors:\s*)?(line \d+: )?`)

// cleanYAMLError drops yaml.v3's "line N:" and Go type names: the problem
// carries the line and the key already.
func cleanYAMLError(err error) string {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = yamlLinePrefix.ReplaceAllString(strings.TrimSpace(msg), "")
	// "cannot unmarshal !!str `abc` into int64" -> "want a number, not `abc`"
	if m := regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$").FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("want %s, not %s `%s`", goTypeWord(m[3]), yamlTagWord(m[1]), m[2])
	}
	if m := regexp.MustCompile(`^cannot unmarshal !!(\w+) into (\S+)$`).FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("want %s, not %s", goTypeWord(m[2]), yamlTagWord(m[1]))
	}
	return msg
}

func goTypeWord(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return "a value of another kind"
}

func yamlTagWord(tag string) string {
	switch tag {
	case "str":
		return "the string"
	case "int", "float":
		return "the number"
	case "bool":
		return "the boolean"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	}
	return tag
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "this"
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of a struct type to field indexes.
func yamlFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Index
	}
	return out
}

// unknownKey says that key is not one of known, naming the nearest known
// key when one is close, else all of them.
func unknownKey(key string, known map[string][]int) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", 1<<30
	for _, k := range names {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" && (bestD <= 2 || bestD <= len(key)/3) {
		return fmt.Sprintf("not a known key; did you mean %q? (see docs/configuration.md)", best)
	}
	if len(names) > 12 {
		names = slices.Concat(names[:12], []string{"..."})
	}
	return fmt.Sprintf("not a known key here; known keys: %s (see docs/configuration.md)", strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// lineOf finds the line of key, or of the nearest enclosing key that has one.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}
