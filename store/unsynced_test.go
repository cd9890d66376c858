package store

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// synchronous reads the store connection's synchronous setting (2 is
// FULL).
func synchronous(t *testing.T, s *Store) string {
	t.Helper()
	var got string
	if err := s.db.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// Marking a SAL line sent commits without an fsync of its own; every
// other write still waits for the disk: the connection is back at FULL
// after the mark, whether it succeeded or failed.
func TestMarkSALSentLeavesTheStoreSynchronous(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	if err := s.Tx(ctx, func(tx *Tx) error { return tx.QueueSAL(r.ID, "one") }); err != nil {
		t.Fatal(err)
	}
	line, _, err := s.NextSAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSALSent(ctx, line.ID); err != nil {
		t.Fatal(err)
	}
	if got := synchronous(t, s); got != "2" {
		t.Fatalf("after marking sent: synchronous = %s, want 2 (FULL)", got)
	}
	// A mark that fails (the transaction's function errs) restores it too.
	err = s.txUnsynced(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE no_such_table SET x = 1`)
		return err
	})
	if err == nil {
		t.Fatal("update of a missing table succeeded")
	}
	if got := synchronous(t, s); got != "2" {
		t.Fatalf("after a failed unsynced write: synchronous = %s, want 2 (FULL)", got)
	}
	if n, err := s.SALBacklog(ctx); err != nil || n != 0 {
		t.Fatalf("backlog after marking the only line sent: %d, %v", n, err)
	}
}

const envKillAfterMark = "POOLBOT_STORE_TEST_KILL_AFTER_MARK"

// A line marked sent stays marked when poolbot is killed (SIGKILL) right
// after: the mark is in the WAL although it did not wait for the disk.
func TestMarkSALSentSurvivesKill9(t *testing.T) {
	if path := os.Getenv(envKillAfterMark); path != "" {
		// The child: mark the oldest line sent, then die without closing.
		s, err := Open(context.Background(), path, nil)
		if err != nil {
			os.Exit(3)
		}
		line, ok, err := s.NextSAL(context.Background())
		if err != nil || !ok || s.MarkSALSent(context.Background(), line.ID) != nil {
			os.Exit(4)
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	s, _, path := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	for _, l := range []string{"one", "two"} {
		if err := s.Tx(ctx, func(tx *Tx) error { return tx.QueueSAL(r.ID, l) }); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestMarkSALSentSurvivesKill9$")
	cmd.Env = append(os.Environ(), envKillAfterMark+"="+path)
	err := cmd.Run()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() || st.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL after marking: %v", err)
	}

	s2, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	line, ok, err := s2.NextSAL(ctx)
	if err != nil || !ok || line.Line != "two" {
		t.Fatalf("after kill -9 the next line is %+v (%v, %v), want \"two\"", line, ok, err)
	}
}
