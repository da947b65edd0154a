// Package listfilter filters MCP list results (tools/list, prompts/list,
// resources/list, resources/templates/list) for one caller with ONE policy
// evaluation over the whole list, and annotates the tools it keeps with the
// security schemes they need (OpenAI Apps SDK securitySchemes, top level and
// _meta).
//
// Items are passed through byte for byte except for the added schemes; the
// JSON of a list is scanned a bounded number of times and never rebuilt
// through maps, so a list of 1000 tools costs little beyond the evaluation.
package listfilter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// Decider evaluates one request; *decision.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in *decision.Input) (*decision.Result, error)
}

// Filtered is a filtered list result. One that the list memo answered is
// shared with other callers: treat it, and its Result, as read-only.
type Filtered struct {
	// Result is the list result with hidden items removed and the kept
	// tools annotated; every other field is kept as it was.
	Result json.RawMessage
	// Visible and Hidden name the items, in list order.
	Visible, Hidden []string
	// Decision is the policy's result for the whole list (read-only).
	Decision *decision.Result
}

// ErrInvalidResult reports a result that is not a list result of the method.
var ErrInvalidResult = errors.New("invalid list result")

// head is what the filter reads of an item; everything else is skipped.
type head struct {
	Name            *string         `json:"name"`
	URI             *string         `json:"uri"`
	URITemplate     *string         `json:"uriTemplate"`
	Annotations     json.RawMessage `json:"annotations"`
	SecuritySchemes json.RawMessage `json:"securitySchemes"`
	Meta            json.RawMessage `json:"_meta"`
}

func (h *head) name(key string) *string {
	switch key {
	case "uri":
		return h.URI
	case "uriTemplate":
		return h.URITemplate
	default:
		return h.Name
	}
}

// List is a parsed list result.
type List struct {
	fields map[string]json.RawMessage
	raws   []json.RawMessage
	heads  []head
	// Items are the items as the policy sees them.
	Items []decision.Item
}

// Parse extracts the items of a list result. It fails on a result that is
// not an object, whose list field is missing or not an array, or whose items
// lack their name field. The common shape is read by parseFast (one
// validation, one walk); anything else by one streaming pass of
// encoding/json, each item scanned once more to read its head.
func Parse(class decision.Method, result json.RawMessage) (*List, error) {
	return parse(class, result, false)
}

func parse(class decision.Method, result json.RawMessage, valid bool) (*List, error) {
	if l, ok := parseFast(class, result, valid); ok {
		return l, nil
	}
	return parseStd(class, result)
}

// parseStd is Parse with encoding/json.
func parseStd(class decision.Method, result json.RawMessage) (*List, error) {
	l := &List{fields: map[string]json.RawMessage{}}
	dec := json.NewDecoder(bytes.NewReader(result))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("%w: result must be a JSON object", ErrInvalidResult)
	}
	found := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidResult, err)
		}
		key, _ := t.(string)
		if key != class.ListKey {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("%w: result.%s: %v", ErrInvalidResult, key, err)
			}
			l.fields[key] = raw
			continue
		}
		if found {
			return nil, fmt.Errorf("%w: result has %q twice", ErrInvalidResult, key)
		}
		found = true
		l.fields[key] = nil
		if err := l.parseItems(dec, result, class); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidResult, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: result has no %q array", ErrInvalidResult, class.ListKey)
	}
	return l, nil
}

func (l *List) parseItems(dec *json.Decoder, result []byte, class decision.Method) error {
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return fmt.Errorf("%w: result.%s must be an array", ErrInvalidResult, class.ListKey)
	}
	for i := 0; dec.More(); i++ {
		start := skipSpaceComma(result, int(dec.InputOffset()))
		if start >= len(result) || result[start] != '{' {
			return fmt.Errorf("%w: result.%s[%d] must be an object", ErrInvalidResult, class.ListKey, i)
		}
		var h head
		if err := dec.Decode(&h); err != nil {
			return fmt.Errorf("%w: result.%s[%d]: %v", ErrInvalidResult, class.ListKey, i, err)
		}
		if !l.add(class, result[start:dec.InputOffset()], h) {
			return fmt.Errorf("%w: result.%s[%d].%s must be a non-empty string", ErrInvalidResult, class.ListKey, i, class.NameKey)
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return fmt.Errorf("%w: result.%s: %v", ErrInvalidResult, class.ListKey, err)
	}
	return nil
}

// given is raw, or nil when the member is absent or null.
func given(raw json.RawMessage) []byte {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	return raw
}

// add appends an item (its raw JSON and its head); false when the item has
// no name (its name key missing, not a string, or empty).
func (l *List) add(class decision.Method, raw json.RawMessage, h head) bool {
	name := h.name(class.NameKey)
	if name == nil || *name == "" {
		return false
	}
	// Valid JSON (checked by the caller); Rego values only for a policy
	// that reads input.items (decision.Input.value).
	it := decision.Item{Name: *name, RawAnnotations: given(h.Annotations), RawMeta: given(h.Meta)}
	l.raws = append(l.raws, raw)
	l.heads = append(l.heads, h)
	l.Items = append(l.Items, it)
	return true
}

func skipSpaceComma(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == ',') {
		i++
	}
	return i
}

// Filter decides every item of result in one evaluation of in (whose Items
// it fills) and returns the filtered result.
func Filter(ctx context.Context, d Decider, in *decision.Input, result json.RawMessage) (*Filtered, error) {
	return filter(ctx, d, in, result, false)
}

// FilterValid is Filter for a result the caller has already checked to be
// valid JSON (json.Valid, or read by a decoder that checks every value): it
// is not checked again. It is the trusted entry point, used by
// core.Service.DecideValid; when that does not hold, call Filter.
func FilterValid(ctx context.Context, d Decider, in *decision.Input, result json.RawMessage) (*Filtered, error) {
	return filter(ctx, d, in, result, true)
}

// Memoizer is a Decider whose policy remembers filtered lists
// (*decision.Engine): a list it has filtered for the same caller, resource
// and method, byte for byte, is answered without reading it again.
type Memoizer interface {
	Policy() *decision.Policy
}

func filter(ctx context.Context, d Decider, in *decision.Input, result json.RawMessage, valid bool) (*Filtered, error) {
	var pol *decision.Policy
	var key decision.ListMemoKey
	memo := false
	if m, ok := d.(Memoizer); ok {
		if pol = m.Policy(); pol != nil {
			key, memo = pol.ListMemoKeyFor(in)
		}
	}
	if memo {
		if v, ok := pol.ListMemo(key, result); ok {
			return v.(*Filtered), nil // shared: read-only, as every cached answer
		}
	}
	f, err := filterOnce(ctx, d, in, result, valid)
	if err == nil && memo {
		pol.ListMemoPut(key, result, f)
	}
	return f, err
}

func filterOnce(ctx context.Context, d Decider, in *decision.Input, result json.RawMessage, valid bool) (*Filtered, error) {
	l, err := parse(in.Class, result, valid)
	if err != nil {
		return nil, err
	}
	in.Items = l.Items
	res, err := d.Decide(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &Filtered{Decision: res, Visible: make([]string, 0, len(l.Items))}
	var buf bytes.Buffer
	// Each kept item gains its securitySchemes twice (~80 bytes for
	// noauth, more with scopes).
	buf.Grow(len(result) + 160*len(l.Items))
	// A filtered list varies per caller: no cache may share it across
	// authorization contexts (MCP 2026-07-28 cacheScope), whatever the
	// server said. First, so that a PEP sees it at once.
	buf.WriteString(`{"cacheScope":"private"`)
	keys := make([]string, 0, len(l.fields))
	for k := range l.fields {
		if k != "cacheScope" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		buf.WriteByte(',')
		writeKey(&buf, k)
		if k != in.Class.ListKey {
			buf.Write(l.fields[k])
			continue
		}
		buf.WriteByte('[')
		n := 0
		for j, it := range l.Items {
			dec, ok := res.Item(j)
			if !ok {
				out.Hidden = append(out.Hidden, it.Name)
				continue
			}
			out.Visible = append(out.Visible, it.Name)
			if n > 0 {
				buf.WriteByte(',')
			}
			n++
			if in.Class.Kind != decision.KindTool {
				buf.Write(l.raws[j])
				continue
			}
			if err := annotate(&buf, l.raws[j], &l.heads[j], dec); err != nil {
				return nil, err
			}
		}
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	out.Result = buf.Bytes()
	return out, nil
}

func writeKey(buf *bytes.Buffer, k string) {
	b, _ := json.Marshal(k) // a string always marshals
	buf.Write(b)
	buf.WriteByte(':')
}

// Scheme is one entry of a tool's securitySchemes.
type Scheme struct {
	Type   string   `json:"type"`
	Scopes []string `json:"scopes,omitempty"`
}

// Schemes returns the security schemes of a visible item: noauth for public
// items, oauth2 with its scopes for protected ones, both for public items
// that have optional scopes ("mixed").
func Schemes(d decision.ItemDecision) []Scheme {
	switch {
	case d.Access == "public" && len(d.Scopes) == 0:
		return []Scheme{{Type: "noauth"}}
	case d.Access == "public":
		return []Scheme{{Type: "noauth"}, {Type: "oauth2", Scopes: d.Scopes}}
	default:
		scopes := d.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		return []Scheme{{Type: "oauth2", Scopes: scopes}}
	}
}

var noauth = []byte(`[{"type":"noauth"}]`)

// annotate writes the tool with securitySchemes set at the top level and in
// _meta. A tool without either field is spliced (its bytes kept as they
// are); otherwise it is rebuilt with those two fields replaced.
func annotate(buf *bytes.Buffer, raw json.RawMessage, h *head, d decision.ItemDecision) error {
	schemes := noauth
	if d.Access != "public" || len(d.Scopes) > 0 {
		var err error
		if schemes, err = json.Marshal(Schemes(d)); err != nil {
			return err
		}
	}
	if h.SecuritySchemes == nil && h.Meta == nil {
		rest := bytes.TrimLeft(raw[1:], " \t\r\n")
		buf.WriteString(`{"securitySchemes":`)
		buf.Write(schemes)
		buf.WriteString(`,"_meta":{"securitySchemes":`)
		buf.Write(schemes)
		buf.WriteByte('}')
		if len(rest) > 0 && rest[0] != '}' {
			buf.WriteByte(',')
		}
		buf.Write(rest)
		return nil
	}
	var tool map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tool); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidResult, err)
	}
	tool["securitySchemes"] = schemes
	meta := map[string]json.RawMessage{}
	if len(h.Meta) > 0 && !bytes.Equal(h.Meta, []byte("null")) {
		if err := json.Unmarshal(h.Meta, &meta); err != nil {
			return fmt.Errorf("%w: tool %s: _meta must be an object", ErrInvalidResult, *h.Name)
		}
	}
	meta["securitySchemes"] = schemes
	var err error
	if tool["_meta"], err = json.Marshal(meta); err != nil {
		return err
	}
	b, err := json.Marshal(tool)
	if err != nil {
		return err
	}
	buf.Write(b)
	return nil
}
