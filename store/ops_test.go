package store

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"poolbot"
)

func TestCountByStateAndReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "poolbot.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	queueDepools(t, s)
	counts, err := s.CountByState(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if counts[poolbot.StateQueued] != 2 || counts[poolbot.StateDone] != 0 || len(counts) != len(poolbot.AllStates()) {
		t.Fatalf("counts %v", counts)
	}
	s.Close()

	sum := func() [32]byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	before := sum()
	ro, err := OpenReadOnly(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	open, err := ro.Unfinished(ctx, "apus")
	if err != nil || len(open) != 2 {
		t.Fatalf("unfinished %v, %v", open, err)
	}
	if err := ro.Tx(ctx, func(tx *Tx) error {
		_, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionPool, Service: "apus", Datacenter: "codfw",
			Reason: "test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
		return err
	}); err == nil {
		t.Fatal("read-only store accepted a write")
	}
	if sum() != before {
		t.Fatal("the database file changed")
	}
	if _, err := OpenReadOnly(ctx, filepath.Join(t.TempDir(), "missing.db"), nil); err == nil {
		t.Fatal("opened a missing file")
	}
}

// A finished request counts while it is recent, an open one always: the
// requests gauge does not grow with history.
func TestCountByStateBoundsFinished(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "poolbot.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	queueDepools(t, s)
	// A finished request counts while it is recent, an open one always.
	r, err := s.Request(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Date(2026, 12, 1, 10, 0, 0, 500_000_000, time.UTC)
	r.State, r.FinishedAt = poolbot.StateDone, finished
	if err := s.Tx(ctx, func(tx *Tx) error { _, err := tx.UpdateRequest(r, poolbot.StateQueued); return err }); err != nil {
		t.Fatal(err)
	}
	for since, wantDone := range map[time.Time]int{
		finished.Add(-time.Hour):       1,
		finished.Truncate(time.Second): 1,
		finished.Add(time.Second):      0,
		finished.Add(24 * time.Hour):   0,
	} {
		counts, err := s.CountByState(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if counts[poolbot.StateDone] != wantDone || counts[poolbot.StateQueued] != 1 {
			t.Errorf("finished since %s: counts %v, want done=%d queued=1", since, counts, wantDone)
		}
	}
}

// queueDepools stores two queued requests, #1 depool apus eqiad and #2
// depool apus codfw.
func queueDepools(t *testing.T, s *Store) {
	t.Helper()
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := s.Tx(context.Background(), func(tx *Tx) error {
			_, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: dc,
				Reason: "test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}
