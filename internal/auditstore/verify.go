package auditstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/mcp-pdp/pdp/internal/auditsink"
)

// Verify feeds the exact bytes of every stored event (ordered by chain
// and seq) and then of every checkpoint to v, the chain check of
// auditsink; and it checks that the columns that queries read still say
// what those bytes say. A row deleted or whose raw bytes were changed
// shows in v's report (a gap, a modified event); a row whose column was
// changed (UPDATE audit_events SET outcome = 'allow' ...) is returned here
// as a "modified" finding with its id, since the chain cannot see it.
func (s *Store) Verify(ctx context.Context, v *auditsink.Verifier) ([]auditsink.Finding, error) {
	cols := strings.ReplaceAll(eventColumns, "\n", "")
	cols = strings.TrimSuffix(strings.TrimSpace(cols), ", raw")
	cols = strings.TrimSuffix(cols, ", stream_seq")
	names := strings.Split(strings.ReplaceAll(cols, " ", ""), ",")
	rows, err := s.db.QueryContext(ctx, `SELECT `+cols+`, raw FROM audit_events ORDER BY chain, seq, id`)
	if err != nil {
		return nil, fmt.Errorf("auditstore: verify: %w", err)
	}
	defer rows.Close()
	var findings []auditsink.Finding
	vals := make([]any, len(names)+1)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	want := make([]any, 0, len(names))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("auditstore: verify: %w", err)
		}
		raw, _ := vals[len(names)].([]byte)
		if str, ok := vals[len(names)].(string); ok {
			raw = []byte(str)
		}
		id := Cell(vals[0])
		v.Add(raw, "row "+id)
		var ev auditsink.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			continue // the verifier reports it as malformed
		}
		want = appendEventColumns(want[:0], &ev)
		var changed []string
		for i, n := range names {
			if Cell(vals[i]) != Cell(want[i]) {
				changed = append(changed, fmt.Sprintf("%s is %q, the event says %q", strings.Trim(n, `"`), Cell(vals[i]), Cell(want[i])))
			}
		}
		if len(changed) > 0 {
			findings = append(findings, auditsink.Finding{Kind: "modified", Chain: ev.Chain, Seq: ev.Seq, IDs: []string{id},
				Detail: fmt.Sprintf("row %s (seq %d): its columns differ from its event's bytes: %s", id, ev.Seq, strings.Join(changed, "; "))})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auditstore: verify: %w", err)
	}
	cps, err := s.db.QueryContext(ctx, `SELECT id, raw FROM audit_checkpoints ORDER BY chain, seq, id`)
	if err != nil {
		return nil, fmt.Errorf("auditstore: verify: %w", err)
	}
	defer cps.Close()
	for cps.Next() {
		var id string
		var raw []byte
		if err := cps.Scan(&id, &raw); err != nil {
			return nil, fmt.Errorf("auditstore: verify: %w", err)
		}
		v.Add(raw, "checkpoint row "+id)
	}
	if err := cps.Err(); err != nil {
		return nil, fmt.Errorf("auditstore: verify: %w", err)
	}
	return findings, nil
}

// Cell is a column value as text, for comparisons and output: NULL is "".
func Cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	default:
		return fmt.Sprint(x)
	}
}
