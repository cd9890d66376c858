package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jonboulle/clockwork"
)

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
