package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// The statements every host step and every SAL line run are prepared once,
// when the store opens, and reused: SQLite then compiles each of them once
// instead of on every call (re-preparing was about a sixth of the CPU the
// engine spent per host). They are prepared at Open, not on first use: a
// statement prepared on the database needs its one connection, which an
// open transaction holds.
//
// Every other statement runs unprepared, as before; so does everything
// when the store was opened read-only.
const (
	qRequest = `SELECT ` + requestColumns + ` FROM requests WHERE id = ?`

	qUpdateRequest = `UPDATE requests SET state = ?, step = ?, forced = ?,
		forced_by = ?, force_reason = ?, confirmed_by = ?, cancel_requested = ?, cancelled_by = ?,
		error = ?, updated_at = ?, started_at = ?, finished_at = ?, parked = ?
		WHERE id = ? AND state = ?`

	qAddEvent = `INSERT INTO events (request_id, at, actor, origin_network,
		origin_account, origin_nick, origin_channel, kind, from_state, to_state, detail)
		VALUES (?,?,?,?,?,?,?,?,?,?,?)`

	qHostStarted  = `UPDATE host_steps SET state = ?, detail = ?, started_at = ?, finished_at = '' WHERE request_id = ? AND position = ?`
	qHostFinished = `UPDATE host_steps SET state = ?, detail = ?, finished_at = ? WHERE request_id = ? AND position = ?`

	qHostSteps = `SELECT position, host, state, started_at, finished_at, detail, drained, silences
		FROM host_steps WHERE request_id = ? ORDER BY position`

	qQueueSAL = `INSERT INTO sal_outbox (request_id, created_at, line, notice) VALUES (?,?,?,?)`

	qNextSAL = `SELECT id, request_id, line, attempts, notice FROM sal_outbox
		WHERE sent_at = '' ORDER BY id LIMIT 1`

	qMarkSALSent = `UPDATE sal_outbox SET sent_at = ?, attempts = attempts + 1, last_error = '' WHERE id = ?`

	qLastUnsentSAL = `SELECT MAX(id) FROM sal_outbox WHERE request_id = ? AND sent_at = ''`
)

var hotQueries = []string{qRequest, qUpdateRequest, qAddEvent, qHostStarted, qHostFinished,
	qHostSteps, qQueueSAL, qNextSAL, qMarkSALSent, qLastUnsentSAL}

// prepare prepares the hot queries on the store's connection.
func (s *Store) prepare(ctx context.Context) error {
	s.stmts = make(map[string]*sql.Stmt, len(hotQueries))
	for _, q := range hotQueries {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			s.closeStmts()
			return fmt.Errorf("store: prepare %q: %w", strings.Join(strings.Fields(q), " "), err)
		}
		s.stmts[q] = st
	}
	return nil
}

func (s *Store) closeStmts() {
	for _, st := range s.stmts {
		_ = st.Close()
	}
	s.stmts = nil
}

// exec runs query in the transaction, prepared if it is a hot one.
func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	if st := tx.stmts[query]; st != nil {
		return tx.tx.StmtContext(tx.ctx, st).ExecContext(tx.ctx, args...)
	}
	return tx.tx.ExecContext(tx.ctx, query, args...)
}

// query runs query in the transaction, prepared if it is a hot one.
func (tx *Tx) query(query string, args ...any) (*sql.Rows, error) {
	if st := tx.stmts[query]; st != nil {
		return tx.tx.StmtContext(tx.ctx, st).QueryContext(tx.ctx, args...)
	}
	return tx.tx.QueryContext(tx.ctx, query, args...)
}

// queryRow runs query in the transaction, prepared if it is a hot one.
func (tx *Tx) queryRow(query string, args ...any) *sql.Row {
	if st := tx.stmts[query]; st != nil {
		return tx.tx.StmtContext(tx.ctx, st).QueryRowContext(tx.ctx, args...)
	}
	return tx.tx.QueryRowContext(tx.ctx, query, args...)
}

// queryRow runs query on the store's connection, prepared if it is a hot
// one.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.stmts[query]; st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}
