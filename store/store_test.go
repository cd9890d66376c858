package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
)

func openTest(t *testing.T) (*Store, *clockwork.FakeClock, string) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "poolbot.db")
	s, err := Open(context.Background(), path, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clock, path
}

func newRequest(op string) poolbot.Request {
	return poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: "codfw",
		Reason: "T422166 maintenance", Task: "T422166", Operator: op,
		Origin: poolbot.Origin{Network: "irc", Account: op, Nick: op, Channel: "#ops"}}
}

func insert(t *testing.T, s *Store, r poolbot.Request) poolbot.Request {
	t.Helper()
	err := s.Tx(context.Background(), func(tx *Tx) error {
		var err error
		r, err = tx.InsertRequest(r)
		if err != nil {
			return err
		}
		return tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: r.Operator, Kind: "created", ToState: r.State})
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMigrationsAndPragmas(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	v, err := s.SchemaVersion(ctx)
	if err != nil || v < 1 {
		t.Fatalf("schema version = %d, %v", v, err)
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "2", "busy_timeout": "10000"} {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	// Foreign keys are enforced: an event for a request that does not exist.
	err = s.Tx(ctx, func(tx *Tx) error {
		return tx.AddEvent(poolbot.Event{RequestID: 999, Actor: "x", Kind: "y"})
	})
	if err == nil {
		t.Fatal("event for a missing request was stored")
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestRequestLifecycleAndConflict(t *testing.T) {
	s, clock, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	if r.ID == 0 || r.State != poolbot.StateQueued || !r.CreatedAt.Equal(clock.Now()) {
		t.Fatalf("inserted %+v", r)
	}
	clock.Advance(time.Minute)
	err := s.Tx(ctx, func(tx *Tx) error {
		r.State = poolbot.StateSwitching
		var err error
		r, err = tx.UpdateRequest(r, poolbot.StateQueued)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Request(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != poolbot.StateSwitching || !got.StartedAt.Equal(clock.Now()) || got.Reason != r.Reason || got.Origin != r.Origin {
		t.Fatalf("stored %+v", got)
	}
	// A transition from a state the request is no longer in is a conflict
	// and writes nothing.
	err = s.Tx(ctx, func(tx *Tx) error {
		got.State = poolbot.StateCancelled
		_, err := tx.UpdateRequest(got, poolbot.StateQueued)
		return err
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v, want ErrConflict", err)
	}
	if again, _ := s.Request(ctx, r.ID); again.State != poolbot.StateSwitching {
		t.Fatalf("state after conflict = %s", again.State)
	}
	if _, err := s.Request(ctx, 4242); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing request: %v", err)
	}
	clock.Advance(2 * time.Minute)
	err = s.Tx(ctx, func(tx *Tx) error {
		got.State = poolbot.StateDone
		_, err := tx.UpdateRequest(got, poolbot.StateSwitching)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done, _ := s.Request(ctx, r.ID)
	if done.FinishedAt.Sub(done.StartedAt) != 2*time.Minute {
		t.Fatalf("duration %s", done.FinishedAt.Sub(done.StartedAt))
	}
	ev, err := s.Events(ctx, r.ID)
	if err != nil || len(ev) != 1 || ev[0].Kind != "created" {
		t.Fatalf("events = %+v, %v", ev, err)
	}
}

// A failed transaction stores nothing: a state change and its SAL line go
// together or not at all.
func TestTxAtomic(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	boom := errors.New("boom")
	err := s.Tx(ctx, func(tx *Tx) error {
		r.State = poolbot.StateWaiting
		if _, err := tx.UpdateRequest(r, poolbot.StateQueued); err != nil {
			return err
		}
		if err := tx.QueueSAL(r.ID, "poolbot #1 alice: START"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	got, _ := s.Request(ctx, r.ID)
	n, _ := s.SALBacklog(ctx)
	if got.State != poolbot.StateQueued || n != 0 {
		t.Fatalf("after rollback: state %s, backlog %d", got.State, n)
	}
}

func TestOutboxOrderAndDurability(t *testing.T) {
	s, _, path := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	for _, l := range []string{"one", "two", "three"} {
		if err := s.Tx(ctx, func(tx *Tx) error { return tx.QueueSAL(r.ID, l) }); err != nil {
			t.Fatal(err)
		}
	}
	line, ok, err := s.NextSAL(ctx)
	if err != nil || !ok || line.Line != "one" {
		t.Fatalf("next = %+v %v %v", line, ok, err)
	}
	if err := s.MarkSALFailed(ctx, line.ID, errors.New("disconnected")); err != nil {
		t.Fatal(err)
	}
	// A failed line stays first.
	again, _, _ := s.NextSAL(ctx)
	if again.ID != line.ID || again.Attempts != 1 {
		t.Fatalf("after failure next = %+v", again)
	}
	if err := s.MarkSALSent(ctx, line.ID); err != nil {
		t.Fatal(err)
	}
	// Reopen the file: what was not sent is still there, in order.
	s.Close()
	s2, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var got []string
	for {
		l, ok, err := s2.NextSAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, l.Line)
		if err := s2.MarkSALSent(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "two" || got[1] != "three" {
		t.Fatalf("after reopen delivered %v", got)
	}
	sent, _ := s2.SALLines(ctx, r.ID)
	if len(sent) != 3 {
		t.Fatalf("sent = %v", sent)
	}
}

// Concurrent read-then-write transactions must not fail with SQLITE_BUSY
// (the trap of deferred transactions with a connection pool).
func TestConcurrentTransactions(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				errs <- s.Tx(ctx, func(tx *Tx) error {
					cur, err := tx.Request(r.ID)
					if err != nil {
						return err
					}
					cur.Step = cur.Step + "x"
					if _, err := tx.UpdateRequest(cur, cur.State); err != nil {
						return err
					}
					return tx.QueueSAL(r.ID, "line")
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Request(ctx, r.ID)
	n, _ := s.SALBacklog(ctx)
	if len(got.Step) != 200 || n != 200 {
		t.Fatalf("step len %d, backlog %d; want 200, 200", len(got.Step), n)
	}
}

func TestListAndUnfinished(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	a := insert(t, s, newRequest("alice"))
	b := newRequest("bob")
	b.Action = poolbot.ActionRestart
	b.Datacenter = ""
	b = insert(t, s, b)
	_ = s.Tx(ctx, func(tx *Tx) error {
		a.State = poolbot.StateCancelled
		_, err := tx.UpdateRequest(a, poolbot.StateQueued)
		return err
	})
	open, err := s.Unfinished(ctx, "apus")
	if err != nil || len(open) != 1 || open[0].ID != b.ID {
		t.Fatalf("unfinished = %+v, %v", open, err)
	}
	all, _ := s.List(ctx, Filter{Newest: true, Limit: 10})
	if len(all) != 2 || all[0].ID != b.ID {
		t.Fatalf("newest first = %+v", all)
	}
}

func BenchmarkTransition(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := Open(context.Background(), path, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var r poolbot.Request
	_ = s.Tx(ctx, func(tx *Tx) error {
		r, err = tx.InsertRequest(newRequest("alice"))
		return err
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := s.Tx(ctx, func(tx *Tx) error {
			cur, err := tx.Request(r.ID)
			if err != nil {
				return err
			}
			cur.Step = "host"
			if _, err := tx.UpdateRequest(cur, cur.State); err != nil {
				return err
			}
			if err := tx.AddEvent(poolbot.Event{RequestID: r.ID, Actor: "poolbot", Kind: "host"}); err != nil {
				return err
			}
			return tx.QueueSAL(r.ID, "poolbot #1 alice: host 1/4")
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
