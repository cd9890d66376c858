package store

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"
)

// Ping is a real write: it upserts the heartbeat row with the store's
// clock, and fails when the database file cannot be written. Tests run as
// root, for whom chmod 0444 changes nothing, so "read-only" is made the
// way SQLite itself sees it: the store's connection switched to
// query_only, and a second handle on the file opened with mode=ro.
func TestPingWritesHeartbeat(t *testing.T) {
	s, clock, path := openTest(t)
	ctx := context.Background()
	heartbeat := func() (string, int) {
		t.Helper()
		var at string
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(at), ''), COUNT(*) FROM heartbeat`).Scan(&at, &n); err != nil {
			t.Fatal(err)
		}
		return at, n
	}
	if at, n := heartbeat(); n != 0 {
		t.Fatalf("heartbeat before the first ping: %q (%d rows)", at, n)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	clock.Advance(90 * time.Second)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("second ping: %v", err)
	}
	if at, n := heartbeat(); n != 1 || at != formatTime(clock.Now()) {
		t.Fatalf("heartbeat %q (%d rows), want one row at %s", at, n, formatTime(clock.Now()))
	}

	// The store's own connection can no longer write.
	if _, err := s.db.ExecContext(ctx, `PRAGMA query_only = 1`); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping succeeded on a read-only database")
	} else {
		t.Logf("read-only: %v", err)
	}
	if _, err := s.db.ExecContext(ctx, `PRAGMA query_only = 0`); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping once writable again: %v", err)
	}

	// The file opened read-only, as SQLite opens a file its process may
	// not write (mode=ro, the store's other settings unchanged): TEMP
	// tables still work there, so the old check (a TEMP table) passed;
	// the heartbeat row cannot be written.
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_txlock", "immediate")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	ro := &Store{db: db, clock: clock, path: path}
	defer ro.Close()
	if err := ro.Ping(ctx); err == nil {
		t.Fatal("ping succeeded through a mode=ro handle")
	} else {
		t.Logf("mode=ro: %v", err)
	}
	// So does OpenReadOnly's handle (query_only as well).
	ro2, err := OpenReadOnly(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro2.Close()
	if err := ro2.Ping(ctx); err == nil {
		t.Fatal("ping succeeded through OpenReadOnly")
	}
	if at, n := heartbeat(); n != 1 || at != formatTime(clock.Now()) {
		t.Fatalf("heartbeat %q (%d rows) after the failed pings", at, n)
	}
}
