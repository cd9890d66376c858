package store

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"poolbot"
)

func TestCountByStateAndReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "poolbot.db")
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := s.Tx(ctx, func(tx *Tx) error {
			_, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: dc,
				Reason: "test", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	counts, err := s.CountByState(ctx)
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
