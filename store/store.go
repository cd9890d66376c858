// Package store keeps poolbot's state in one SQLite file: the requests
// operators made, their audit trail (events), and the outbox of Server
// Admin Log lines not yet delivered.
//
// Every state change and the SAL lines that report it are written in one
// transaction (see Tx), so a restart at any moment loses neither. SQLite
// allows one writer at a time; the store uses a single connection with
// immediate transactions, which avoids the read-lock to write-lock upgrade
// that fails with SQLITE_BUSY under concurrent read-then-write
// transactions, whatever busy_timeout says.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrNotFound is returned when a request does not exist.
var ErrNotFound = errors.New("no such request")

// ErrConflict is returned when a request is not in the state a transition
// expected: someone else changed it first.
var ErrConflict = errors.New("request changed concurrently")

// Store is the SQLite-backed state of one poolbot.
type Store struct {
	db    *sql.DB
	clock clockwork.Clock
	path  string
	// stmts are the hot queries, prepared at Open (see prepared.go);
	// read-only after Open.
	stmts map[string]*sql.Stmt
}

// Open opens (creating if needed) the SQLite file at path and brings its
// schema up to date. A nil clock means the real clock.
func Open(ctx context.Context, path string, clock clockwork.Clock) (*Store, error) {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: path %q: %w", path, err)
	}
	q := url.Values{}
	for _, p := range []string{
		"journal_mode(WAL)",
		"busy_timeout(10000)",
		"foreign_keys(1)",
		// FULL rather than NORMAL: in WAL mode NORMAL can lose the last
		// transactions on power loss, and a lost SAL line or step is what
		// this store exists to prevent. Only marking a SAL line sent,
		// whose loss merely repeats the line, commits without waiting
		// for the disk (txUnsynced).
		"synchronous(FULL)",
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	// One connection: every transaction is serialised in the process, and
	// the busy timeout covers other processes (the sqlite3 shell, backups).
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	s := &Store{db: db, clock: clock, path: abs}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, sub)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("store: migrate %s: %w", s.path, err)
	}
	return nil
}

// SchemaVersion returns the newest migration applied.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

// Path is the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error {
	s.closeStmts()
	return s.db.Close()
}

// Ping checks that the database is writable, what /healthz calls
// "writable": in one immediate transaction it upserts the single row of the
// heartbeat table with the current time and commits. A real row in the
// database file, not a TEMP table: a read-only file or directory, a full
// disk or a failing WAL makes Ping fail, not just a lock that cannot be
// taken.
func (s *Store) Ping(ctx context.Context) error {
	return s.Tx(ctx, func(tx *Tx) error {
		_, err := tx.tx.ExecContext(ctx,
			`INSERT INTO heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at`,
			formatTime(tx.now))
		if err != nil {
			return fmt.Errorf("store: heartbeat write: %w", err)
		}
		return nil
	})
}

// Tx runs fn in one immediate transaction: everything fn writes is stored
// together or not at all. fn must not call other Store methods (the store
// has one connection; they would wait for this transaction forever).
func (s *Store) Tx(ctx context.Context, fn func(*Tx) error) error {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	return s.run(ctx, sqlTx, fn)
}

// txUnsynced is Tx for a write whose loss on a power failure is harmless:
// it is committed without waiting for the disk (synchronous=NORMAL for
// this one commit; the store's connection stays at FULL). In WAL mode
// such a commit survives poolbot crashing or being killed: it is in the
// WAL file, which the next commit that does wait for the disk syncs with
// it, as does every checkpoint. Only an operating system crash or a power
// loss before then undoes it, never partially and never a write committed
// before it.
func (s *Store) txUnsynced(ctx context.Context, fn func(*Tx) error) (err error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		return fmt.Errorf("store: begin unsynced: %w", err)
	}
	defer func() {
		// Back to FULL whatever happened, even if ctx ended; a connection
		// that cannot be put back is discarded, never reused as it is.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = FULL`); rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("store: back to synchronous=FULL: %w", rerr))
		}
	}()
	sqlTx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	return s.run(ctx, sqlTx, fn)
}

// run runs fn in sqlTx, then commits it, or rolls it back when fn fails.
func (s *Store) run(ctx context.Context, sqlTx *sql.Tx, fn func(*Tx) error) error {
	tx := &Tx{tx: sqlTx, ctx: ctx, now: s.clock.Now().UTC(), stmts: s.stmts}
	if err := fn(tx); err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// formatTime stores times as RFC 3339 in UTC; the zero time as "".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: bad time %q: %w", s, err)
	}
	return t, nil
}
