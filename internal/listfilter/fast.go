package listfilter

import (
	"bytes"
	"encoding/json"

	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/jsonfast"
)

// headKeys are the item keys the filter reads, in head's field order.
var headKeys = []string{"name", "uri", "uriTemplate", "annotations", "securitySchemes", "_meta"}

// parseFast reads the common shape of a list result with one validation
// and one walk over the bytes: an object whose list field (once) is an
// array of objects; in each item, the keys head reads spelled exactly (a
// key that matches one only up to case, which encoding/json would also
// take, sends the result to the slow path), the name key a string. It
// reports false for anything else, and Parse then reads the result with
// encoding/json, which gives the same List for every result parseFast
// accepts (FuzzParseFast checks this) and the precise error for the rest.
// Nothing is copied: raws and heads alias result. valid says that result
// is known to be valid JSON (checked by the caller), else it is checked.
func parseFast(class decision.Method, result []byte, valid bool) (*List, bool) {
	if !valid && !json.Valid(result) {
		return nil, false
	}
	l := &List{fields: map[string]json.RawMessage{}}
	// Room for the items at once (an MCP list item is rarely under ~100
	// bytes): growing three slices item by item was a tenth of a list's
	// garbage.
	if n := min(len(result)/96+1, 1<<14); n > 1 {
		l.raws, l.heads, l.Items = make([]json.RawMessage, 0, n), make([]head, 0, n), make([]decision.Item, 0, n)
	}
	found := false
	end, ok := jsonfast.Members(result, jsonfast.SkipSpace(result, 0), func(k, v []byte) bool {
		key, ok := jsonfast.String(k)
		if !ok {
			return false
		}
		if key != class.ListKey {
			l.fields[key] = v
			return true
		}
		if found {
			return false // encoding/json's path reports it
		}
		found = true
		l.fields[key] = nil
		_, ok = jsonfast.ElementsAt(v, 0, func(start int) (int, bool) {
			h, end, ok := readHead(v, start)
			if !ok {
				return 0, false
			}
			item := v[start:end]
			if !l.add(class, item, h) {
				return 0, false
			}
			return end, true
		})
		return ok
	})
	if !ok || !found || jsonfast.SkipSpace(result, end) != len(result) {
		return nil, false
	}
	if len(l.Items) == 0 {
		// An empty list keeps none of the room made for its items, and is
		// then the List encoding/json's path gives (nil slices).
		l.raws, l.heads, l.Items = nil, nil, nil
	}
	return l, true
}

// readHead reads the keys head has from the item object starting at
// b[i], as encoding/json would decode it into head (the last of repeated
// keys wins), and returns the index after the item.
func readHead(b []byte, i int) (head, int, bool) {
	var h head
	end, ok := jsonfast.Members(b, i, func(k, v []byte) bool {
		i := jsonfast.Field(k, headKeys...)
		switch i {
		case -1:
			return true
		case -2:
			return false
		}
		if i < 3 { // name, uri, uriTemplate: strings
			if bytes.Equal(v, []byte("null")) {
				return false // encoding/json sets the pointer to nil: leave it that path
			}
			s, ok := jsonfast.String(v)
			if !ok {
				return false
			}
			switch i {
			case 0:
				h.Name = &s
			case 1:
				h.URI = &s
			default:
				h.URITemplate = &s
			}
			return true
		}
		switch i {
		case 3:
			h.Annotations = v
		case 4:
			h.SecuritySchemes = v
		default:
			h.Meta = v
		}
		return true
	})
	return h, end, ok
}
