package store

import (
	"context"
	"fmt"
	"strings"
	"time"

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
