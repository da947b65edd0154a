// Package listfilter filters MCP list results (tools/list, prompts/list,
// resources/list, resources/templates/list) for one caller with ONE policy
// evaluation over the whole list, and annotates the tools it keeps with the
// security schemes they need (OpenAI Apps SDK securitySchemes, top level and
// _meta).
package listfilter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// Decider evaluates one request; *decision.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in *decision.Input) (*decision.Result, error)
}

// Filtered is a filtered list result.
type Filtered struct {
	// Result is the list result with hidden items removed and the kept
	// tools annotated; every other field is kept as it was.
	Result json.RawMessage
	// Visible and Hidden name the items, in list order.
	Visible, Hidden []string
	// Decision is the policy's result for the whole list.
	Decision *decision.Result
}

// ErrInvalidResult reports a result that is not a list result of the method.
var ErrInvalidResult = errors.New("invalid list result")

// Parse extracts the items of a list result. It fails on a result that is
// not an object, whose list field is missing or not an array, or whose items
// lack their name field.
func Parse(class decision.Method, result json.RawMessage) (fields map[string]json.RawMessage, items []decision.Item, objs []map[string]json.RawMessage, err error) {
	if err := json.Unmarshal(result, &fields); err != nil || fields == nil {
		return nil, nil, nil, fmt.Errorf("%w: result must be a JSON object", ErrInvalidResult)
	}
	list, ok := fields[class.ListKey]
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: result has no %q array", ErrInvalidResult, class.ListKey)
	}
	if err := json.Unmarshal(list, &objs); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: result.%s must be an array of objects", ErrInvalidResult, class.ListKey)
	}
	items = make([]decision.Item, len(objs))
	for i, obj := range objs {
		if obj == nil {
			return nil, nil, nil, fmt.Errorf("%w: result.%s[%d] must be an object", ErrInvalidResult, class.ListKey, i)
		}
		var name string
		if err := json.Unmarshal(obj[class.NameKey], &name); err != nil || name == "" {
			return nil, nil, nil, fmt.Errorf("%w: result.%s[%d].%s must be a non-empty string", ErrInvalidResult, class.ListKey, i, class.NameKey)
		}
		items[i].Name = name
		if ann, ok := obj["annotations"]; ok && !bytes.Equal(ann, []byte("null")) {
			v, err := ast.ValueFromReader(bytes.NewReader(ann))
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%w: result.%s[%d].annotations: %v", ErrInvalidResult, class.ListKey, i, err)
			}
			items[i].Annotations = v
		}
	}
	return fields, items, objs, nil
}

// Filter decides every item of result in one evaluation of in (whose Items
// it fills) and returns the filtered result.
func Filter(ctx context.Context, d Decider, in *decision.Input, result json.RawMessage) (*Filtered, error) {
	fields, items, objs, err := Parse(in.Class, result)
	if err != nil {
		return nil, err
	}
	in.Items = items
	res, err := d.Decide(ctx, in)
	if err != nil {
		return nil, err
	}
	out := &Filtered{Decision: res}
	kept := make([]map[string]json.RawMessage, 0, len(objs))
	for i, it := range items {
		dec, ok := res.Items[it.Name]
		if !ok {
			out.Hidden = append(out.Hidden, it.Name)
			continue
		}
		out.Visible = append(out.Visible, it.Name)
		if in.Class.Kind == decision.KindTool {
			if err := annotate(objs[i], dec); err != nil {
				return nil, err
			}
		}
		kept = append(kept, objs[i])
	}
	list, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	fields[in.Class.ListKey] = list
	if out.Result, err = json.Marshal(fields); err != nil {
		return nil, err
	}
	return out, nil
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

// annotate sets securitySchemes at the top level of a tool and in its _meta.
func annotate(tool map[string]json.RawMessage, d decision.ItemDecision) error {
	schemes, err := json.Marshal(Schemes(d))
	if err != nil {
		return err
	}
	tool["securitySchemes"] = schemes
	meta := map[string]json.RawMessage{}
	if m, ok := tool["_meta"]; ok && !bytes.Equal(m, []byte("null")) {
		if err := json.Unmarshal(m, &meta); err != nil {
			return fmt.Errorf("%w: tool %s: _meta must be an object", ErrInvalidResult, tool["name"])
		}
	}
	meta["securitySchemes"] = schemes
	tool["_meta"], err = json.Marshal(meta)
	return err
}
