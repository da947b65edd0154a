package auditstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Query selects events; every set field must match (values are bound as
// parameters, never spliced into the SQL).
type Query struct {
	Tool, Subject, Client, Resource, Method, DecisionID string
	Outcomes                                            []string
	// Denied selects the refusals: deny, challenge and limited outcomes.
	Denied       bool
	Since, Until time.Time
	// By groups by these columns (see GroupColumns) and counts.
	By    []string
	Limit int
}

// GroupColumns are the columns Query.By may name.
var groupColumns = map[string]string{
	"tool": "target", "target": "target", "outcome": "outcome", "subject": "sub", "sub": "sub",
	"client": "client_id", "client_id": "client_id", "resource": "resource", "method": "method",
	"pdp": "pdp", "pep": "pep", "reason": "reason", "issuer": "issuer", "grant": `"grant"`,
}

// RowColumns are the columns Query returns without By.
var RowColumns = []string{"id", "time", "pdp", "pep", "resource", "method", "target", "outcome", "http_status", "reason", "sub", "client_id", "unverified_sub", "unverified_client_id", "retry_of"}

// Result is a table: column names and rows of values.
type Result struct {
	Columns []string
	Rows    [][]any
}

// Query runs q.
func (s *Store) Query(ctx context.Context, q Query) (*Result, error) {
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("target", q.Tool)
	eq("sub", q.Subject)
	eq("client_id", q.Client)
	eq("resource", q.Resource)
	eq("method", q.Method)
	eq("id", q.DecisionID)
	outs := q.Outcomes
	if q.Denied {
		outs = append(outs, "deny", "challenge", "limited")
	}
	if len(outs) > 0 {
		where = append(where, "outcome IN (?"+strings.Repeat(",?", len(outs)-1)+")")
		for _, o := range outs {
			args = append(args, o)
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "time_us >= ?")
		args = append(args, q.Since.UnixMicro())
	}
	if !q.Until.IsZero() {
		where = append(where, "time_us < ?")
		args = append(args, q.Until.UnixMicro())
	}
	w := ""
	if len(where) > 0 {
		w = " WHERE " + strings.Join(where, " AND ")
	}
	var stmt string
	var cols []string
	if len(q.By) > 0 {
		var gs []string
		for _, b := range q.By {
			c, ok := groupColumns[strings.ToLower(strings.TrimSpace(b))]
			if !ok {
				return nil, fmt.Errorf("auditstore: --by %q: not a group column (tool, outcome, subject, client, resource, method, pdp, pep, reason, issuer, grant)", b)
			}
			gs = append(gs, c)
			cols = append(cols, strings.Trim(c, `"`))
		}
		g := strings.Join(gs, ", ")
		stmt = "SELECT " + g + ", COUNT(*) AS count FROM audit_events" + w + " GROUP BY " + g + " ORDER BY count DESC, " + g
		cols = append(cols, "count")
	} else {
		stmt = "SELECT " + strings.Join(RowColumns, ", ") + " FROM audit_events" + w + " ORDER BY time_us, id"
		cols = RowColumns
	}
	if q.Limit > 0 {
		stmt += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.d.rebind(stmt), args...)
	if err != nil {
		return nil, fmt.Errorf("auditstore: query: %w", err)
	}
	res, err := collect(rows)
	if err != nil {
		return nil, err
	}
	res.Columns = cols
	return res, nil
}

func collect(rows *sql.Rows) (*Result, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: cols}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("auditstore: scan: %w", err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		res.Rows = append(res.Rows, vals)
	}
	return res, rows.Err()
}

// ReadOnlySQL runs one SELECT (or WITH) statement that cannot write and
// returns its result; anything else is refused. SQLite: a connection
// opened mode=ro with PRAGMA query_only. PostgreSQL: a READ ONLY
// transaction with a statement timeout, rolled back (give `pdp audit sql`
// a role with SELECT only for a second wall).
func (s *Store) ReadOnlySQL(ctx context.Context, query string) (*Result, error) {
	q := strings.TrimSpace(query)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	if strings.Contains(q, ";") {
		return nil, errors.New("auditstore: sql: one statement only (no ';' inside)")
	}
	f := strings.ToUpper(strings.Fields(q + " x")[0])
	if f != "SELECT" && f != "WITH" {
		return nil, errors.New("auditstore: sql: only SELECT or WITH statements")
	}
	if s.d.name == "postgres" {
		tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("auditstore: sql: %w", err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, "SET LOCAL statement_timeout = '60s'"); err != nil {
			return nil, fmt.Errorf("auditstore: sql: %w", err)
		}
		rows, err := tx.QueryContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("auditstore: sql: %w", err)
		}
		return collect(rows)
	}
	db, err := sql.Open(s.d.driver, s.d.dsn(s.target, true))
	if err != nil {
		return nil, fmt.Errorf("auditstore: sql: open %s read-only: %w", s.target, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("auditstore: sql: %w", err)
	}
	return collect(rows)
}
