package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"poolbot"
)

// Tx is one transaction. Its methods compose: a state change, its audit
// event and its SAL lines go through one Tx so they are stored together.
type Tx struct {
	tx    *sql.Tx
	ctx   context.Context
	stmts map[string]*sql.Stmt // the store's prepared hot queries
	// now is taken once from the store's clock so every row a
	// transaction writes carries the same time.
	now time.Time
}

// Now is the time this transaction stamps on what it writes.
func (tx *Tx) Now() time.Time { return tx.now }

const requestColumns = `id, action, service, datacenter, reason, task, operator,
	origin_network, origin_account, origin_nick, origin_channel, state, step,
	forced, forced_by, force_reason, confirmed_by, cancel_requested, cancelled_by,
	error, created_at, updated_at, started_at, finished_at, parked`

type rowScanner interface{ Scan(dest ...any) error }

func scanRequest(row rowScanner) (poolbot.Request, error) {
	var (
		r                                   poolbot.Request
		action, state                       string
		forced, cancelReq, parked           bool
		created, updated, started, finished string
	)
	err := row.Scan(&r.ID, &action, &r.Service, &r.Datacenter, &r.Reason, &r.Task, &r.Operator,
		&r.Origin.Network, &r.Origin.Account, &r.Origin.Nick, &r.Origin.Channel, &state, &r.Step,
		&forced, &r.ForcedBy, &r.ForceReason, &r.ConfirmedBy, &cancelReq, &r.CancelledBy,
		&r.Error, &created, &updated, &started, &finished, &parked)
	if err != nil {
		return r, err
	}
	r.Action, r.State, r.Forced, r.CancelRequested, r.Parked = poolbot.Action(action), poolbot.State(state), forced, cancelReq, parked
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&r.CreatedAt, created}, {&r.UpdatedAt, updated}, {&r.StartedAt, started}, {&r.FinishedAt, finished}} {
		t, err := parseTime(f.src)
		if err != nil {
			return r, fmt.Errorf("request %d: %w", r.ID, err)
		}
		*f.dst = t
	}
	return r, nil
}

// InsertRequest stores a new request and returns it with its id and
// timestamps set. The caller records the "created" event in the same Tx.
func (tx *Tx) InsertRequest(r poolbot.Request) (poolbot.Request, error) {
	if !r.Action.Valid() {
		return r, fmt.Errorf("store: insert request: invalid action %q", r.Action)
	}
	if r.State == "" {
		r.State = poolbot.StateQueued
	}
	if !r.State.Valid() {
		return r, fmt.Errorf("store: insert request: invalid state %q", r.State)
	}
	r.CreatedAt, r.UpdatedAt = tx.now, tx.now
	res, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO requests (action, service, datacenter, reason, task,
		operator, origin_network, origin_account, origin_nick, origin_channel, state, step,
		forced, forced_by, force_reason, confirmed_by, cancel_requested, cancelled_by, error,
		created_at, updated_at, started_at, finished_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		string(r.Action), r.Service, r.Datacenter, r.Reason, r.Task, r.Operator,
		r.Origin.Network, r.Origin.Account, r.Origin.Nick, r.Origin.Channel, string(r.State), r.Step,
		r.Forced, r.ForcedBy, r.ForceReason, r.ConfirmedBy, r.CancelRequested, r.CancelledBy, r.Error,
		formatTime(r.CreatedAt), formatTime(r.UpdatedAt), formatTime(r.StartedAt), formatTime(r.FinishedAt))
	if err != nil {
		return r, fmt.Errorf("store: insert request: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return r, fmt.Errorf("store: insert request: %w", err)
	}
	r.ID = poolbot.RequestID(id)
	return r, nil
}

// Request reads one request inside the transaction.
func (tx *Tx) Request(id poolbot.RequestID) (poolbot.Request, error) {
	r, err := scanRequest(tx.queryRow(qRequest, int64(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("store: request %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("store: request %s: %w", id, err)
	}
	return r, nil
}

// UpdateRequest writes every mutable field of r, provided the stored
// request is still in state expect (optimistic concurrency: ErrConflict
// otherwise). UpdatedAt is set to the transaction's time; StartedAt and
// FinishedAt are set when r leaves the queue or becomes terminal.
func (tx *Tx) UpdateRequest(r poolbot.Request, expect poolbot.State) (poolbot.Request, error) {
	if !r.State.Valid() {
		return r, fmt.Errorf("store: update request %s: invalid state %q", r.ID, r.State)
	}
	r.UpdatedAt = tx.now
	if r.StartedAt.IsZero() && r.State.Running() {
		r.StartedAt = tx.now
	}
	if r.FinishedAt.IsZero() && r.State.Terminal() {
		r.FinishedAt = tx.now
	}
	res, err := tx.exec(qUpdateRequest,
		string(r.State), r.Step, r.Forced, r.ForcedBy, r.ForceReason, r.ConfirmedBy,
		r.CancelRequested, r.CancelledBy, r.Error, formatTime(r.UpdatedAt),
		formatTime(r.StartedAt), formatTime(r.FinishedAt), r.Parked, int64(r.ID), string(expect))
	if err != nil {
		return r, fmt.Errorf("store: update request %s: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return r, fmt.Errorf("store: update request %s: %w", r.ID, err)
	}
	if n == 0 {
		if _, err := tx.Request(r.ID); err != nil {
			return r, err
		}
		return r, fmt.Errorf("store: update request %s: not in state %s: %w", r.ID, expect, ErrConflict)
	}
	return r, nil
}

// OpenRequests returns the service's requests that are not finished,
// oldest first, inside the transaction (for duplicate checks that must not
// race with another insert).
func (tx *Tx) OpenRequests(service string) ([]poolbot.Request, error) {
	rows, err := tx.tx.QueryContext(tx.ctx, `SELECT `+requestColumns+` FROM requests
		WHERE service = ? AND state NOT IN (?,?,?,?) ORDER BY id`, service,
		string(poolbot.StateDone), string(poolbot.StateFailed), string(poolbot.StateCancelled), string(poolbot.StateExpired))
	if err != nil {
		return nil, fmt.Errorf("store: open requests of %s: %w", service, err)
	}
	defer rows.Close()
	var out []poolbot.Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open requests of %s: %w", service, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// AddEvent appends an event to the audit trail. At defaults to the
// transaction's time.
func (tx *Tx) AddEvent(e poolbot.Event) error {
	if e.At.IsZero() {
		e.At = tx.now
	}
	if e.Actor == "" || e.Kind == "" {
		return fmt.Errorf("store: add event: actor and kind are required")
	}
	var reqID any
	if e.RequestID != 0 {
		reqID = int64(e.RequestID)
	}
	_, err := tx.exec(qAddEvent,
		reqID, formatTime(e.At), e.Actor, e.Origin.Network, e.Origin.Account, e.Origin.Nick,
		e.Origin.Channel, e.Kind, string(e.FromState), string(e.ToState), e.Detail)
	if err != nil {
		return fmt.Errorf("store: add event: %w", err)
	}
	return nil
}

// Request reads one request.
func (s *Store) Request(ctx context.Context, id poolbot.RequestID) (poolbot.Request, error) {
	var r poolbot.Request
	err := s.Tx(ctx, func(tx *Tx) error {
		var err error
		r, err = tx.Request(id)
		return err
	})
	return r, err
}

// Filter selects requests for List. Zero fields match everything.
type Filter struct {
	States  []poolbot.State
	Service string
	// Newest orders newest first (for history); otherwise oldest first
	// (queue order).
	Newest bool
	Limit  int
}

// List returns the requests matching f.
func (s *Store) List(ctx context.Context, f Filter) ([]poolbot.Request, error) {
	var (
		where []string
		args  []any
	)
	if len(f.States) > 0 {
		ph := make([]string, len(f.States))
		for i, st := range f.States {
			ph[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "state IN ("+strings.Join(ph, ",")+")")
	}
	if f.Service != "" {
		where = append(where, "service = ?")
		args = append(args, f.Service)
	}
	q := `SELECT ` + requestColumns + ` FROM requests`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Newest {
		q += " ORDER BY id DESC"
	} else {
		q += " ORDER BY id ASC"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list requests: %w", err)
	}
	defer rows.Close()
	var out []poolbot.Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list requests: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list requests: %w", err)
	}
	return out, nil
}

// Unfinished returns the requests that are not finished, oldest first: the
// queue, including any running request.
func (s *Store) Unfinished(ctx context.Context, service string) ([]poolbot.Request, error) {
	var open []poolbot.State
	for _, st := range poolbot.AllStates() {
		if !st.Terminal() {
			open = append(open, st)
		}
	}
	return s.List(ctx, Filter{States: open, Service: service})
}

// Events returns a request's audit trail, oldest first.
func (s *Store) Events(ctx context.Context, id poolbot.RequestID) ([]poolbot.Event, error) {
	return s.queryEvents(ctx, `WHERE request_id = ? ORDER BY id`, int64(id))
}

// RecentEvents returns the newest limit events of the whole audit trail,
// newest first, including those about no request (refused commands).
func (s *Store) RecentEvents(ctx context.Context, limit int) ([]poolbot.Event, error) {
	return s.queryEvents(ctx, `ORDER BY id DESC LIMIT ?`, limit)
}

func (s *Store) queryEvents(ctx context.Context, where string, args ...any) ([]poolbot.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, COALESCE(request_id, 0), at, actor, origin_network,
		origin_account, origin_nick, origin_channel, kind, from_state, to_state, detail
		FROM events `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []poolbot.Event
	for rows.Next() {
		var (
			e        poolbot.Event
			at       string
			from, to string
		)
		if err := rows.Scan(&e.ID, &e.RequestID, &at, &e.Actor, &e.Origin.Network, &e.Origin.Account,
			&e.Origin.Nick, &e.Origin.Channel, &e.Kind, &from, &to, &e.Detail); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		e.FromState, e.ToState = poolbot.State(from), poolbot.State(to)
		if e.At, err = parseTime(at); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return out, nil
}
