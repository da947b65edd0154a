package core

import (
	"bytes"
	"sync"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// maxToolAnnotations bounds the tools whose annotations a resource keeps.
const maxToolAnnotations = 10_000

// toolAnnotations are the MCP annotations (readOnlyHint, destructiveHint,
// ...) of a resource's tools as its server's tools/list answers said, for
// the policy to read on tools/call (input.target.annotations): refreshed
// by every list the PDP filters (a page adds to and replaces what earlier
// pages said), bounded (when full, it starts over). Safe for concurrent
// use.
type toolAnnotations struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func newToolAnnotations() *toolAnnotations {
	return &toolAnnotations{m: map[string][]byte{}}
}

// remember records the annotations of the listed tools; a tool listed
// without annotations forgets what it had.
func (t *toolAnnotations) remember(items []decision.Item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range items {
		ann := bytes.TrimSpace(it.RawAnnotations)
		if len(ann) == 0 || ann[0] != '{' {
			delete(t.m, it.Name)
			continue
		}
		if old, ok := t.m[it.Name]; ok && bytes.Equal(old, ann) {
			continue
		}
		if len(t.m) >= maxToolAnnotations {
			clear(t.m)
		}
		t.m[it.Name] = bytes.Clone(ann)
	}
}

// get returns the annotations of tool name, nil when unknown.
func (t *toolAnnotations) get(name string) []byte {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[name]
}
