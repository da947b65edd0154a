package auditstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// copyColumns are eventColumns as COPY names them (pgx quotes each).
var copyColumns = func() []string {
	var cs []string
	for _, c := range strings.Split(eventColumns, ",") {
		cs = append(cs, strings.Trim(strings.TrimSpace(c), `"`))
	}
	return cs
}()

// errDuplicate says that a batch holds an event whose id is stored
// already: COPY cannot skip it, the INSERT path does.
var errDuplicate = errors.New("auditstore: an event of the batch is stored already")

// copyInsert writes items into PostgreSQL in one transaction with COPY
// (binary, streamed: several times the rows/s of multi-row INSERTs, the
// server parsing while the client still encodes). COPY has no ON
// CONFLICT: a batch with an id that is there already (a redelivery after
// a crash between commit and ack, or a batch two stores got) fails as a
// whole with errDuplicate, and insert writes it again with INSERT ... ON
// CONFLICT DO NOTHING.
func (s *Store) copyInsert(ctx context.Context, items []item) (rows, cps uint64, err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("auditstore: postgres connection is a %T, not pgx's", dc)
		}
		c := sc.Conn()
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		vals := make([][]any, 0, len(items))
		for _, it := range items {
			if it.cp != nil {
				continue
			}
			r := appendEventColumns(make([]any, 0, nEventColumns), it.ev)
			vals = append(vals, append(r, int64(it.streamSeq), it.raw))
		}
		if len(vals) > 0 {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, copyColumns, pgx.CopyFromRows(vals))
			if err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
					return errDuplicate
				}
				return err
			}
			rows = uint64(n)
		}
		cpSQL := s.insertSQL("audit_checkpoints", "id, chain, seq, time_us, stream_seq, raw", 6, 1)
		for _, it := range items {
			if it.cp == nil {
				continue
			}
			tag, err := tx.Exec(ctx, cpSQL, it.cp.ID, it.cp.Chain, int64(it.cp.Seq), it.cp.Time.UnixMicro(), int64(it.streamSeq), it.raw)
			if err != nil {
				return err
			}
			cps += uint64(tag.RowsAffected())
		}
		return tx.Commit(ctx)
	})
	return rows, cps, err
}
