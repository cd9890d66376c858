package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"poolbot"
)

// InsertHostSteps writes the restart plan of a request, all hosts pending.
func (tx *Tx) InsertHostSteps(id poolbot.RequestID, hosts []string) error {
	for i, h := range hosts {
		_, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO host_steps (request_id, position, host, state)
			VALUES (?,?,?,?)`, int64(id), i+1, h, string(poolbot.HostPending))
		if err != nil {
			return fmt.Errorf("store: host steps of %s: %w", id, err)
		}
	}
	return nil
}

// UpdateHostStep records a host's new state; StartedAt is set when it
// starts restarting, FinishedAt when it is done or failed.
func (tx *Tx) UpdateHostStep(id poolbot.RequestID, position int, state poolbot.HostState, detail string) error {
	q := qHostStarted // also back to pending on resume
	if state == poolbot.HostDone || state == poolbot.HostFailed {
		q = qHostFinished
	}
	res, err := tx.exec(q, string(state), detail, formatTime(tx.now), int64(id), position)
	if err != nil {
		return fmt.Errorf("store: host %d of %s: %w", position, id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("store: host %d of %s: %w", position, id, ErrNotFound)
	}
	return nil
}

// HostSteps returns a request's restart plan in order.
func (tx *Tx) HostSteps(id poolbot.RequestID) ([]poolbot.HostStep, error) {
	rows, err := tx.query(qHostSteps, int64(id))
	if err != nil {
		return nil, fmt.Errorf("store: host steps of %s: %w", id, err)
	}
	defer rows.Close()
	var out []poolbot.HostStep
	for rows.Next() {
		h := poolbot.HostStep{RequestID: id}
		var state, started, finished, drained, silences string
		if err := rows.Scan(&h.Position, &h.Host, &state, &started, &finished, &h.Detail, &drained, &silences); err != nil {
			return nil, fmt.Errorf("store: host steps of %s: %w", id, err)
		}
		h.State = poolbot.HostState(state)
		if h.StartedAt, err = parseTime(started); err != nil {
			return nil, err
		}
		if h.FinishedAt, err = parseTime(finished); err != nil {
			return nil, err
		}
		if err := decodeJSONColumn(drained, &h.Drained); err != nil {
			return nil, fmt.Errorf("store: host %d of %s: drained: %w", h.Position, id, err)
		}
		if err := decodeJSONColumn(silences, &h.Silences); err != nil {
			return nil, fmt.Errorf("store: host %d of %s: silences: %w", h.Position, id, err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// SetHostDrained records the node objects a host step depooled (or is
// about to), with the values to restore; nil clears them.
func (tx *Tx) SetHostDrained(id poolbot.RequestID, position int, nodes []poolbot.DrainedNode) error {
	return tx.setHostJSON(id, position, "drained", nodes)
}

// SetHostSilences records the silences created for a host step; nil
// clears them.
func (tx *Tx) SetHostSilences(id poolbot.RequestID, position int, silences []poolbot.HostSilence) error {
	return tx.setHostJSON(id, position, "silences", silences)
}

func (tx *Tx) setHostJSON(id poolbot.RequestID, position int, column string, v any) error {
	text := ""
	if rv := reflect.ValueOf(v); rv.Len() > 0 {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("store: host %d of %s: %s: %w", position, id, column, err)
		}
		text = string(b)
	}
	// column is one of two constants above, never user input.
	res, err := tx.tx.ExecContext(tx.ctx, `UPDATE host_steps SET `+column+` = ? WHERE request_id = ? AND position = ?`,
		text, int64(id), position)
	if err != nil {
		return fmt.Errorf("store: host %d of %s: %s: %w", position, id, column, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("store: host %d of %s: %w", position, id, ErrNotFound)
	}
	return nil
}

func decodeJSONColumn(text string, v any) error {
	if text == "" {
		return nil
	}
	return json.Unmarshal([]byte(text), v)
}

// HostSteps returns a request's restart plan in order.
func (s *Store) HostSteps(ctx context.Context, id poolbot.RequestID) ([]poolbot.HostStep, error) {
	var out []poolbot.HostStep
	err := s.Tx(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.HostSteps(id)
		return err
	})
	return out, err
}

// RecentHostDurations returns how long the last n successful host
// restarts of a service took, newest first: the history the procedure's
// time estimate learns from. Dry-run steps (detail starting with
// poolbot.DryRunMark) restarted nothing and are left out.
func (s *Store) RecentHostDurations(ctx context.Context, service string, n int) ([]float64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT (julianday(h.finished_at) - julianday(h.started_at)) * 86400.0
		FROM host_steps h JOIN requests r ON r.id = h.request_id
		WHERE r.service = ? AND h.state = 'done' AND h.started_at != '' AND h.finished_at != ''
		  AND h.detail NOT LIKE ? || '%'
		ORDER BY h.finished_at DESC LIMIT ?`, service, poolbot.DryRunMark, n)
	if err != nil {
		return nil, fmt.Errorf("store: host durations of %s: %w", service, err)
	}
	defer rows.Close()
	var out []float64
	for rows.Next() {
		var secs float64
		if err := rows.Scan(&secs); err != nil {
			return nil, fmt.Errorf("store: host durations of %s: %w", service, err)
		}
		out = append(out, secs)
	}
	return out, rows.Err()
}
