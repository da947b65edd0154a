package authzen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/mcp-pdp/pdp/pep"
)

// entity is a Subject or a Resource: type, id and properties.
type entity struct {
	typ, id    string
	properties map[string]json.RawMessage // nil when absent
}

// action is an Action.
type action struct {
	name       string
	properties map[string]json.RawMessage
}

// evaluation is one (subject, action, resource, context) request, its
// defaults applied.
type evaluation struct {
	subject  *entity
	action   *action
	resource *entity
	context  map[string]json.RawMessage // nil when absent
}

// batch is a parsed Access Evaluations request.
type batch struct {
	single   *evaluation // no evaluations: the request is one evaluation
	evals    []*evaluation
	semantic string
}

func badRequest(code, format string, args ...any) *pep.RequestError {
	return &pep.RequestError{Status: http.StatusBadRequest, Code: code, Description: fmt.Sprintf(format, args...)}
}

// parseRoot checks the body (UTF-8, one JSON value, an object, member names
// unique in every object, nesting at most maxDepth) and returns the
// top-level members.
func (s *Service) parseRoot(body []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("invalid_request", "the body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return nil, badRequest("invalid_json", "the body is not valid UTF-8")
	}
	if err := checkJSON(body, s.maxDepth); err != nil {
		return nil, badRequest("invalid_json", "%v", err)
	}
	root, err := members(body, "the request")
	if err != nil {
		return nil, err
	}
	return root, nil
}

// checkJSON reports whether b is exactly one JSON value whose objects have
// unique member names (I-JSON, RFC 7493 §2.3, which the Authorization API's
// JSON payload considerations ask for) and whose nesting is at most
// maxDepth.
func checkJSON(b []byte, maxDepth int) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		obj     bool
		wantKey bool
		keys    map[string]struct{}
	}
	var stack []*frame
	values := 0 // top-level values started
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(stack) > 0 || values == 0 {
				return errors.New("malformed JSON: unexpected end of input")
			}
			break
		}
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		var top *frame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.obj && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, ok := tok.(string)
			if !ok {
				return errors.New("malformed JSON: expected a member name")
			}
			if _, dup := top.keys[k]; dup {
				return fmt.Errorf("duplicate member name %q: member names must be unique", k)
			}
			top.keys[k] = struct{}{}
			top.wantKey = false
			continue
		}
		if d, ok := tok.(json.Delim); ok && d == ']' {
			stack = stack[:len(stack)-1]
			continue
		}
		// A value: of the object member whose name was read, of the array,
		// or at the top level.
		if top == nil {
			if values++; values > 1 {
				return errors.New("unexpected data after the JSON object")
			}
		} else if top.obj {
			top.wantKey = true
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) >= maxDepth {
				return fmt.Errorf("the JSON nests deeper than %d levels", maxDepth)
			}
			f := &frame{obj: d == '{', wantKey: d == '{'}
			if f.obj {
				f.keys = map[string]struct{}{}
			}
			stack = append(stack, f)
		}
	}
	return nil
}

// members decodes an object into its members (exact, case-sensitive
// names). what names the value in errors.
func members(raw json.RawMessage, what string) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, badRequest("invalid_request", "%s must be a JSON object", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, badRequest("invalid_json", "%s: %v", what, err)
	}
	return m, nil
}

// present returns the member key of m, with null taken as absent (the
// Authorization API asks senders to omit null members).
func present(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	v, ok := m[key]
	if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return nil, false
	}
	return v, true
}

// stringMember reads a required non-empty string member.
func stringMember(m map[string]json.RawMessage, key, what string) (string, error) {
	v, ok := present(m, key)
	if !ok {
		return "", badRequest("invalid_request", "%s.%s is required", what, key)
	}
	s, err := stringValue(v, what+"."+key)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", badRequest("invalid_request", "%s.%s must not be empty", what, key)
	}
	return s, nil
}

func stringValue(v json.RawMessage, what string) (string, error) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", badRequest("invalid_request", "%s must be a string", what)
	}
	return s, nil
}

// objectMember reads an optional object member (nil when absent).
func objectMember(m map[string]json.RawMessage, key, what string) (map[string]json.RawMessage, error) {
	v, ok := present(m, key)
	if !ok {
		return nil, nil
	}
	return members(v, what+"."+key)
}

func parseEntity(raw json.RawMessage, what string) (*entity, error) {
	m, err := members(raw, what)
	if err != nil {
		return nil, err
	}
	e := &entity{}
	if e.typ, err = stringMember(m, "type", what); err != nil {
		return nil, err
	}
	if e.id, err = stringMember(m, "id", what); err != nil {
		return nil, err
	}
	if e.properties, err = objectMember(m, "properties", what); err != nil {
		return nil, err
	}
	return e, nil
}

func parseAction(raw json.RawMessage, what string) (*action, error) {
	m, err := members(raw, what)
	if err != nil {
		return nil, err
	}
	a := &action{}
	if a.name, err = stringMember(m, "name", what); err != nil {
		return nil, err
	}
	if a.properties, err = objectMember(m, "properties", what); err != nil {
		return nil, err
	}
	return a, nil
}

// parseTuple reads the subject, action, resource and context members of m
// that are present (prefix names m in errors, "" at the top level).
func parseTuple(m map[string]json.RawMessage, prefix string) (*evaluation, error) {
	ev := &evaluation{}
	var err error
	if v, ok := present(m, "subject"); ok {
		if ev.subject, err = parseEntity(v, prefix+"subject"); err != nil {
			return nil, err
		}
	}
	if v, ok := present(m, "action"); ok {
		if ev.action, err = parseAction(v, prefix+"action"); err != nil {
			return nil, err
		}
	}
	if v, ok := present(m, "resource"); ok {
		if ev.resource, err = parseEntity(v, prefix+"resource"); err != nil {
			return nil, err
		}
	}
	if v, ok := present(m, "context"); ok {
		if ev.context, err = members(v, prefix+"context"); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// parseEvaluation reads one evaluation: the members of m, each absent one
// taken from defaults (nil: none). A member present in m replaces the
// default as a whole (Authorization API 1.0 §"Default values").
func parseEvaluation(m map[string]json.RawMessage, defaults *evaluation, prefix string) (*evaluation, error) {
	ev, err := parseTuple(m, prefix)
	if err != nil {
		return nil, err
	}
	if defaults != nil {
		if ev.subject == nil {
			ev.subject = defaults.subject
		}
		if ev.action == nil {
			ev.action = defaults.action
		}
		if ev.resource == nil {
			ev.resource = defaults.resource
		}
		if ev.context == nil {
			ev.context = defaults.context
		}
	}
	for _, missing := range []struct {
		name string
		nil  bool
	}{{"subject", ev.subject == nil}, {"action", ev.action == nil}, {"resource", ev.resource == nil}} {
		if missing.nil {
			where := ""
			if defaults != nil {
				where = " (in the evaluation or as a top-level default)"
			}
			return nil, badRequest("invalid_request", "%s%s is required%s", prefix, missing.name, where)
		}
	}
	return ev, nil
}

// parseBatch reads an Access Evaluations request.
func parseBatch(root map[string]json.RawMessage, maxEvals int) (*batch, error) {
	b := &batch{semantic: ExecuteAll}
	opts, err := objectMember(root, "options", "the request")
	if err != nil {
		return nil, err
	}
	if v, ok := present(opts, "evaluations_semantic"); ok {
		s, err := stringValue(v, "options.evaluations_semantic")
		if err != nil {
			return nil, err
		}
		switch s {
		case ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit:
			b.semantic = s
		default:
			return nil, badRequest("invalid_request", "options.evaluations_semantic %q is not one of execute_all, deny_on_first_deny, permit_on_first_permit", s)
		}
	}
	var entries []json.RawMessage
	if v, ok := present(root, "evaluations"); ok {
		if v = bytes.TrimSpace(v); len(v) == 0 || v[0] != '[' {
			return nil, badRequest("invalid_request", "evaluations must be an array")
		}
		if err := json.Unmarshal(v, &entries); err != nil {
			return nil, badRequest("invalid_json", "evaluations: %v", err)
		}
	}
	if len(entries) == 0 {
		// Absent or empty: the request is one Access Evaluation request.
		if b.single, err = parseEvaluation(root, nil, ""); err != nil {
			return nil, err
		}
		return b, nil
	}
	if len(entries) > maxEvals {
		return nil, badRequest("too_many_evaluations", "%d evaluations in one request; at most %d", len(entries), maxEvals)
	}
	defaults, err := parseTuple(root, "")
	if err != nil {
		return nil, err
	}
	b.evals = make([]*evaluation, len(entries))
	for i, raw := range entries {
		prefix := fmt.Sprintf("evaluations[%d].", i)
		m, err := members(raw, fmt.Sprintf("evaluations[%d]", i))
		if err != nil {
			return nil, err
		}
		if b.evals[i], err = parseEvaluation(m, defaults, prefix); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// marshal is json.Marshal, for the encoders of this package.
func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("authzen: encoding: %w", err)
	}
	return b, nil
}
