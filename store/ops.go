package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
)

// CountByState returns how many requests are in each state (every state,
// zero included): the requests gauge of /metrics. Open requests are all
// counted; those in a terminal state only when they finished at or after
// finishedSince (to the second), so the gauge stays bounded as history
// grows.
func (s *Store) CountByState(ctx context.Context, finishedSince time.Time) (map[poolbot.State]int, error) {
	counts := map[poolbot.State]int{}
	var terminal []any
	for _, st := range poolbot.AllStates() {
		counts[st] = 0
		if st.Terminal() {
			terminal = append(terminal, string(st))
		}
	}
	// finished_at is RFC 3339 in UTC; its first 19 characters compare as
	// times to the second.
	args := append(terminal, finishedSince.UTC().Format("2006-01-02T15:04:05"))
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM requests
		WHERE state NOT IN (?`+strings.Repeat(", ?", len(terminal)-1)+`) OR substr(finished_at, 1, 19) >= ?
		GROUP BY state`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: count requests: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("store: count requests: %w", err)
		}
		counts[poolbot.State(st)] = n
	}
	return counts, rows.Err()
}

// OpenReadOnly opens an existing SQLite file for reading only: no
// migrations, no writes (Tx fails). `poolbot dry-run` reads the queue and
// the restart history through it without changing the file a running
// poolbot uses.
func OpenReadOnly(ctx context.Context, path string, clock clockwork.Clock) (*Store, error) {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: path %q: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", abs, err)
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s read-only: %w", abs, err)
	}
	s := &Store{db: db, clock: clock, path: abs}
	if _, err := s.SchemaVersion(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s is not a poolbot database: %w", abs, err)
	}
	return s, nil
}
