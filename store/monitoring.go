package store

import (
	"context"
	"fmt"

	"poolbot"
)

// CountByState returns how many requests are in each state (every state,
// zero included): the requests gauge of /metrics.
func (s *Store) CountByState(ctx context.Context) (map[poolbot.State]int, error) {
	counts := map[poolbot.State]int{}
	for _, st := range poolbot.AllStates() {
		counts[st] = 0
	}
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM requests GROUP BY state`)
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
