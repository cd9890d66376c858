package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"poolbot"
)

// ProbeState is the latest periodic write-then-read probe of one registry
// instance, as the watch keeps it (table probe_results).
type ProbeState struct {
	Service  string
	Host     string
	Instance string
	// At is when the latest probe ran.
	At       time.Time
	OK       bool
	Code     string // registry.CodeOK, a registry error code, or one of ours
	Step     string // the failing step, "" when OK
	Status   int    // HTTP status of the failing request, 0 if none
	Error    string // the failure, for !status and logs
	Duration time.Duration
	// ConsecutiveFailures counts failed probes in a row (0 after a pass).
	ConsecutiveFailures int
	// FailingSince is when the current failure streak began (zero if OK).
	FailingSince time.Time
	// LastOK is when a probe last passed (zero if never).
	LastOK time.Time
	// Notified is set while a failure notice is out and its recovery
	// notice is not.
	Notified bool
}

const probeColumns = `service, host, instance, at, ok, code, step, status, error, duration_ms,
	consecutive_failures, failing_since, last_ok_at, notified`

func scanProbe(row rowScanner) (ProbeState, error) {
	var (
		p                   ProbeState
		at, failing, lastOK string
		ms                  int64
	)
	err := row.Scan(&p.Service, &p.Host, &p.Instance, &at, &p.OK, &p.Code, &p.Step, &p.Status, &p.Error, &ms,
		&p.ConsecutiveFailures, &failing, &lastOK, &p.Notified)
	if err != nil {
		return p, err
	}
	p.Duration = time.Duration(ms) * time.Millisecond
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&p.At, at}, {&p.FailingSince, failing}, {&p.LastOK, lastOK}} {
		if *f.dst, err = parseTime(f.src); err != nil {
			return p, err
		}
	}
	return p, nil
}

// ProbeState reads the latest probe of one instance inside the
// transaction; ok is false when it was never probed.
func (tx *Tx) ProbeState(service, host, instance string) (p ProbeState, ok bool, err error) {
	p, err = scanProbe(tx.tx.QueryRowContext(tx.ctx, `SELECT `+probeColumns+` FROM probe_results
		WHERE service = ? AND host = ? AND instance = ?`, service, host, instance))
	if errors.Is(err, sql.ErrNoRows) {
		return ProbeState{}, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("store: probe state %s/%s/%s: %w", service, host, instance, err)
	}
	return p, true, nil
}

// PutProbeState stores p as the latest probe of its instance.
func (tx *Tx) PutProbeState(p ProbeState) error {
	_, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO probe_results (`+probeColumns+`)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (service, host, instance) DO UPDATE SET at = excluded.at, ok = excluded.ok,
		code = excluded.code, step = excluded.step, status = excluded.status, error = excluded.error,
		duration_ms = excluded.duration_ms, consecutive_failures = excluded.consecutive_failures,
		failing_since = excluded.failing_since, last_ok_at = excluded.last_ok_at, notified = excluded.notified`,
		p.Service, p.Host, p.Instance, formatTime(p.At), p.OK, p.Code, p.Step, p.Status, p.Error,
		p.Duration.Milliseconds(), p.ConsecutiveFailures, formatTime(p.FailingSince), formatTime(p.LastOK), p.Notified)
	if err != nil {
		return fmt.Errorf("store: put probe state %s/%s/%s: %w", p.Service, p.Host, p.Instance, err)
	}
	return nil
}

// ProbeStates returns the latest probe of every instance of service, by
// host then instance.
func (s *Store) ProbeStates(ctx context.Context, service string) ([]ProbeState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+probeColumns+` FROM probe_results
		WHERE service = ? ORDER BY host, instance`, service)
	if err != nil {
		return nil, fmt.Errorf("store: probe states of %s: %w", service, err)
	}
	defer rows.Close()
	var out []ProbeState
	for rows.Next() {
		p, err := scanProbe(rows)
		if err != nil {
			return nil, fmt.Errorf("store: probe states of %s: %w", service, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Drift is one pooled-state change of a service made outside poolbot
// (table drifts).
type Drift struct {
	ID         int64
	Service    string
	Datacenter string
	// At is when the watch acted on it.
	At time.Time
	// PooledFrom and PooledTo are the state before the first and after the
	// last change the watch grouped into this drift.
	PooledFrom, PooledTo bool
	// Deleted: the discovery object disappeared.
	Deleted bool
	// Changes is how many changes were grouped (a flip and a flip back are 2).
	Changes int
	// Who made it, "user@host" from conftool's or a cookbook's !log line;
	// "" when unknown.
	Who string
	// Mode is "auto", "propose" or "dry-run".
	Mode string
	// RequestID is the restart request queued or joined, 0 if none.
	RequestID poolbot.RequestID
	Detail    string
}

// AddDrift records a drift in the transaction and returns its id.
func (tx *Tx) AddDrift(d Drift) (int64, error) {
	if d.At.IsZero() {
		d.At = tx.now
	}
	var reqID any
	if d.RequestID != 0 {
		reqID = int64(d.RequestID)
	}
	res, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO drifts (service, datacenter, at, pooled_from, pooled_to,
		deleted, changes, who, mode, request_id, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		d.Service, d.Datacenter, formatTime(d.At), d.PooledFrom, d.PooledTo, d.Deleted, max(d.Changes, 1),
		d.Who, d.Mode, reqID, d.Detail)
	if err != nil {
		return 0, fmt.Errorf("store: add drift %s/%s: %w", d.Service, d.Datacenter, err)
	}
	return res.LastInsertId()
}

// RecentDrifts returns the newest limit drifts of service at or after
// since, newest first. (Times are compared in Go: RFC 3339 text with a
// trimmed fraction does not sort as text.)
func (s *Store) RecentDrifts(ctx context.Context, service string, since time.Time, limit int) ([]Drift, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, service, datacenter, at, pooled_from, pooled_to, deleted,
		changes, who, mode, COALESCE(request_id, 0), detail FROM drifts
		WHERE service = ? ORDER BY id DESC LIMIT ?`, service, limit)
	if err != nil {
		return nil, fmt.Errorf("store: drifts of %s: %w", service, err)
	}
	defer rows.Close()
	var out []Drift
	for rows.Next() {
		var (
			d  Drift
			at string
		)
		if err := rows.Scan(&d.ID, &d.Service, &d.Datacenter, &at, &d.PooledFrom, &d.PooledTo, &d.Deleted,
			&d.Changes, &d.Who, &d.Mode, &d.RequestID, &d.Detail); err != nil {
			return nil, fmt.Errorf("store: drifts of %s: %w", service, err)
		}
		if d.At, err = parseTime(at); err != nil {
			return nil, err
		}
		if d.At.Before(since) {
			break
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// HostRestartedSince reports whether a request of service started or
// finished restarting host at or after since. The periodic probe asks it
// after a failure: a host restarted while it was being probed failed for
// a reason poolbot caused, not one to report.
func (s *Store) HostRestartedSince(ctx context.Context, service, host string, since time.Time) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM host_steps h JOIN requests r ON r.id = h.request_id
		WHERE r.service = ? AND h.host = ? AND (
			(h.started_at != '' AND julianday(h.started_at) >= julianday(?)) OR
			(h.finished_at != '' AND julianday(h.finished_at) >= julianday(?)))`,
		service, host, formatTime(since), formatTime(since)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("store: host %s restarted since %s: %w", host, formatTime(since), err)
	}
	return n > 0, nil
}
