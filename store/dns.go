package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"poolbot"
)

// PutDNSStep writes the DNS step of a request, replacing what was stored.
func (tx *Tx) PutDNSStep(s poolbot.DNSStep) error {
	_, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO dns_steps (request_id, old_ttl_ms, converged_at, moved, flushed)
		VALUES (?,?,?,?,?)
		ON CONFLICT (request_id) DO UPDATE SET old_ttl_ms = excluded.old_ttl_ms,
			converged_at = excluded.converged_at, moved = excluded.moved, flushed = excluded.flushed`,
		int64(s.RequestID), s.OldTTL.Milliseconds(), formatTime(s.ConvergedAt), s.Moved, s.Flushed)
	if err != nil {
		return fmt.Errorf("store: DNS step of %s: %w", s.RequestID, err)
	}
	return nil
}

// DNSStep reads the DNS step of a request; ok is false when none is
// stored.
func (tx *Tx) DNSStep(id poolbot.RequestID) (s poolbot.DNSStep, ok bool, err error) {
	var ttl int64
	var converged string
	err = tx.tx.QueryRowContext(tx.ctx, `SELECT old_ttl_ms, converged_at, moved, flushed FROM dns_steps
		WHERE request_id = ?`, int64(id)).Scan(&ttl, &converged, &s.Moved, &s.Flushed)
	if errors.Is(err, sql.ErrNoRows) {
		return poolbot.DNSStep{RequestID: id}, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("store: DNS step of %s: %w", id, err)
	}
	s.RequestID, s.OldTTL = id, time.Duration(ttl)*time.Millisecond
	if s.ConvergedAt, err = parseTime(converged); err != nil {
		return s, false, fmt.Errorf("store: DNS step of %s: %w", id, err)
	}
	return s, true, nil
}

// DNSStep reads the DNS step of a request outside a transaction.
func (s *Store) DNSStep(ctx context.Context, id poolbot.RequestID) (step poolbot.DNSStep, ok bool, err error) {
	err = s.Tx(ctx, func(tx *Tx) error {
		step, ok, err = tx.DNSStep(id)
		return err
	})
	return step, ok, err
}
