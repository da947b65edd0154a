package core

import (
	"bytes"
	"sync"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// maxToolMetas bounds the tools whose metadata a resource keeps.
const maxToolMetas = 10_000

// toolMetas are what a resource's server said of its tools in its
// tools/list answers, their MCP annotations (readOnlyHint,
// destructiveHint, ...) and their _meta, for the policy to read on
// tools/call (input.target.annotations, input.target._meta): refreshed by
// every list the PDP filters (a page adds to and replaces what earlier
// pages said), bounded (when full, it starts over). A tool keeps its
// *decision.ToolMeta while lists say the same of it, so that the call
// cache, which keys on its identity, keeps its entries. Safe for
// concurrent use.
type toolMetas struct {
	mu sync.RWMutex
	m  map[string]*decision.ToolMeta
}

func newToolMetas() *toolMetas {
	return &toolMetas{m: map[string]*decision.ToolMeta{}}
}

// remember records the annotations and _meta of the listed tools; a tool
// listed without either forgets what it had.
func (t *toolMetas) remember(items []decision.Item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range items {
		ann, meta := jsonObject(it.RawAnnotations), jsonObject(it.RawMeta)
		if ann == nil && meta == nil {
			delete(t.m, it.Name)
			continue
		}
		if old, ok := t.m[it.Name]; ok && bytes.Equal(old.Annotations, ann) && bytes.Equal(old.Meta, meta) {
			continue
		}
		if len(t.m) >= maxToolMetas {
			clear(t.m)
		}
		t.m[it.Name] = &decision.ToolMeta{Annotations: bytes.Clone(ann), Meta: bytes.Clone(meta)}
	}
}

// get returns what the lists said of tool name, nil when unknown.
func (t *toolMetas) get(name string) *decision.ToolMeta {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[name]
}

// jsonObject returns raw trimmed when it is a JSON object, else nil.
func jsonObject(raw []byte) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	return raw
}
