package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"poolbot"
)

// OutboxLine is one Server Admin Log line waiting to be delivered.
type OutboxLine struct {
	ID        int64
	RequestID poolbot.RequestID // 0 for lines not about a request
	Line      string            // the message, without "!log "
	Attempts  int
	// Notice is what the line records, as data; for a line queued as
	// text (QueueSAL) only its Request and Text (the line) are set.
	Notice poolbot.Notice
}

// QueueSAL adds a SAL line to the outbox in this transaction, so it is
// stored if and only if the change it reports is. requestID may be 0.
func (tx *Tx) QueueSAL(requestID poolbot.RequestID, line string) error {
	return tx.queueSAL(requestID, line, "")
}

func (tx *Tx) queueSAL(requestID poolbot.RequestID, line, notice string) error {
	if line == "" {
		return fmt.Errorf("store: queue SAL line: empty line")
	}
	var reqID any
	if requestID != 0 {
		reqID = int64(requestID)
	}
	_, err := tx.exec(qQueueSAL, reqID, formatTime(tx.now), line, notice)
	if err != nil {
		return fmt.Errorf("store: queue SAL line: %w", err)
	}
	return nil
}

// QueueSALNotice adds the SAL line n describes (n.SALLine()) to the
// outbox in this transaction, keeping n beside it for readers that show
// request status (the Slack mirror).
func (tx *Tx) QueueSALNotice(n poolbot.Notice) error {
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("store: queue SAL line: %w", err)
	}
	return tx.queueSAL(n.Request, n.SALLine(), string(data))
}

// NextSAL returns the oldest undelivered SAL line; ok is false when the
// outbox is empty. Lines are delivered strictly in order: the sender does
// not move past a line until it is marked sent.
func (s *Store) NextSAL(ctx context.Context) (line OutboxLine, ok bool, err error) {
	var (
		reqID  sql.NullInt64
		notice string
	)
	err = s.queryRow(ctx, qNextSAL).Scan(&line.ID, &reqID, &line.Line, &line.Attempts, &notice)
	if errors.Is(err, sql.ErrNoRows) {
		return line, false, nil
	}
	if err != nil {
		return line, false, fmt.Errorf("store: next SAL line: %w", err)
	}
	line.RequestID = poolbot.RequestID(reqID.Int64)
	line.Notice = poolbot.Notice{Request: line.RequestID, Text: line.Line}
	if notice != "" {
		if err := json.Unmarshal([]byte(notice), &line.Notice); err != nil {
			// The line itself is intact: deliver it; only its data is lost.
			line.Notice = poolbot.Notice{Request: line.RequestID, Text: line.Line}
		}
	}
	return line, true, nil
}

// MarkSALSent records that line id was delivered.
//
// Unlike every other write, the mark does not wait for the disk (see
// txUnsynced): it is in the WAL at once, so it survives poolbot being
// killed, and it reaches the disk with the next write that does wait (the
// next host step, state change or SAL line queued) or the next checkpoint.
// Power lost before then can only make the sender deliver the line again,
// which delivery at least once allows (a crash between sending and marking
// always could), and each SAL line no longer costs an fsync of its own.
func (s *Store) MarkSALSent(ctx context.Context, id int64) error {
	err := s.txUnsynced(ctx, func(tx *Tx) error {
		_, err := tx.exec(qMarkSALSent, formatTime(tx.now), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: mark SAL line %d sent: %w", id, err)
	}
	return nil
}

// MarkSALFailed records a failed delivery attempt; the line stays first in
// the outbox.
func (s *Store) MarkSALFailed(ctx context.Context, id int64, cause error) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sal_outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?`,
		cause.Error(), id)
	if err != nil {
		return fmt.Errorf("store: mark SAL line %d failed: %w", id, err)
	}
	return nil
}

// LastUnsentSAL returns the newest SAL line about requestID that waits to
// be delivered; ok is false when none does.
func (s *Store) LastUnsentSAL(ctx context.Context, requestID poolbot.RequestID) (id int64, ok bool, err error) {
	var last sql.NullInt64
	err = s.queryRow(ctx, qLastUnsentSAL, int64(requestID)).Scan(&last)
	if err != nil {
		return 0, false, fmt.Errorf("store: unsent SAL lines of %s: %w", requestID, err)
	}
	return last.Int64, last.Valid, nil
}

// LastUnsentSAL is Store.LastUnsentSAL in this transaction: the
// request's last undelivered line, including those this transaction
// queued.
func (tx *Tx) LastUnsentSAL(requestID poolbot.RequestID) (id int64, ok bool, err error) {
	var last sql.NullInt64
	if err := tx.queryRow(qLastUnsentSAL, int64(requestID)).Scan(&last); err != nil {
		return 0, false, fmt.Errorf("store: unsent SAL lines of %s: %w", requestID, err)
	}
	return last.Int64, last.Valid, nil
}

// SALBacklog returns how many SAL lines wait to be delivered.
func (s *Store) SALBacklog(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sal_outbox WHERE sent_at = ''`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: SAL backlog: %w", err)
	}
	return n, nil
}

// SALLines returns every SAL line queued about a request, sent or not,
// oldest first.
func (s *Store) SALLines(ctx context.Context, requestID poolbot.RequestID) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT line FROM sal_outbox WHERE request_id = ? ORDER BY id`, int64(requestID))
	if err != nil {
		return nil, fmt.Errorf("store: SAL lines of %s: %w", requestID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, fmt.Errorf("store: SAL lines of %s: %w", requestID, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
