package scap

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readRecords(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var argv []string
		if err := json.Unmarshal([]byte(line), &argv); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		out = append(out, argv)
	}
	return out
}

func TestCommandBlockerPassesReasonAsOneArgvElement(t *testing.T) {
	setHelperEnv(t)
	rec := filepath.Join(t.TempDir(), "calls")
	cfg := DeployBlockConfig{
		Backend:        BackendCommand,
		LockCommand:    helperCommand("record", rec, "lock", "--all", "--bg", ReasonPlaceholder),
		UnlockCommand:  helperCommand("record", rec, "unlock", "--reason="+ReasonPlaceholder),
		CommandTimeout: 20 * time.Second,
	}
	b, err := NewCommandBlocker(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Shell metacharacters must arrive verbatim: there is no shell.
	reason := `poolbot #9: depool apus "codfw"; $(touch /tmp/pwned) && echo 'x' | T1`
	release, err := b.Block(context.Background(), reason)
	if err != nil {
		t.Fatal(err)
	}
	if holding, _ := b.Holding(); !holding {
		t.Fatal("not holding after Block")
	}
	if err := release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := release(context.Background()); err != nil {
		t.Fatalf("second release: %v", err)
	}
	got := readRecords(t, rec)
	want := [][]string{{"lock", "--all", "--bg", reason}, {"unlock", "--reason=" + reason}}
	if len(got) != 2 || strings.Join(got[0], "\x00") != strings.Join(want[0], "\x00") || strings.Join(got[1], "\x00") != strings.Join(want[1], "\x00") {
		t.Fatalf("calls\n got %q\nwant %q", got, want)
	}
	if holding, _ := b.Holding(); holding {
		t.Fatal("holding after release")
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Fatal("a shell ran the reason")
	}
}

func TestCommandBlockerFailureCarriesOutput(t *testing.T) {
	setHelperEnv(t)
	cfg := DeployBlockConfig{
		LockCommand:    helperCommand("fail", "3", `/var/lock/scap-global-lock is locked by jdoe (pid 4242) on Thu Apr  2 14:09:39 2026; reason is "train".`),
		UnlockCommand:  helperCommand("record", filepath.Join(t.TempDir(), "x")),
		CommandTimeout: 20 * time.Second,
	}
	b, err := NewCommandBlocker(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Block(context.Background(), "poolbot #10")
	var ce *CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Output, "locked by jdoe (pid 4242)") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("err = %v", err)
	}
	if holding, _ := b.Holding(); holding {
		t.Fatal("holding after a failed lock command")
	}
}

func TestCommandBlockerTimeout(t *testing.T) {
	setHelperEnv(t)
	cfg := DeployBlockConfig{
		LockCommand:    helperCommand("sleep"),
		UnlockCommand:  helperCommand("sleep"),
		CommandTimeout: 500 * time.Millisecond,
	}
	b, err := NewCommandBlocker(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.Block(context.Background(), "poolbot #11")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("timeout took %s", d)
	}
}

func TestCommandBlockerReleaseRetriesAndIgnoresCancel(t *testing.T) {
	setHelperEnv(t)
	dir := t.TempDir()
	cfg := DeployBlockConfig{
		LockCommand:    helperCommand("record", filepath.Join(dir, "calls"), ReasonPlaceholder),
		UnlockCommand:  helperCommand("fail-once", filepath.Join(dir, "state")),
		CommandTimeout: 20 * time.Second,
	}
	b, err := NewCommandBlocker(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	release, err := b.Block(context.Background(), "poolbot #12")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the request was cancelled; the block must still be lifted
	if err := release(ctx); err == nil || !strings.Contains(err.Error(), "try again") {
		t.Fatalf("first release: %v", err)
	}
	if holding, _ := b.Holding(); !holding {
		t.Fatal("a failed unlock must leave the block marked held")
	}
	if err := release(ctx); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if holding, _ := b.Holding(); holding {
		t.Fatal("still holding after a successful retry")
	}
}

func TestCommandBlockerRejectsOptionLikeReason(t *testing.T) {
	setHelperEnv(t)
	rec := filepath.Join(t.TempDir(), "calls")
	b, err := NewCommandBlocker(DeployBlockConfig{
		LockCommand:   helperCommand("record", rec, ReasonPlaceholder),
		UnlockCommand: helperCommand("record", rec, "--reason="+ReasonPlaceholder),
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Block(context.Background(), "--unlock-all"); err == nil || !strings.Contains(err.Error(), "option") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(rec); err == nil {
		t.Fatal("the command ran")
	}
}

func TestMonitorRecognisesCommandHeldBlockAsOwn(t *testing.T) {
	setHelperEnv(t)
	global, staging := lockDir(t)
	rec := filepath.Join(t.TempDir(), "calls")
	b, err := NewCommandBlocker(DeployBlockConfig{
		LockCommand:   helperCommand("record", rec, ReasonPlaceholder),
		UnlockCommand: helperCommand("record", rec, "unlock"),
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Stand-in for what `scap lock --all --bg` leaves running.
	c := startHolder(t, "hold-exclusive", global, "poolbot", "poolbot #13")
	m := NewMonitor(MonitorOptions{Locks: NewLocks(LocksOptions{}), LockFiles: []string{global, staging}, CommandBlocker: b, GlobalLock: global})

	act, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !act.Busy || act.Reasons[0].PID != c.pid {
		t.Fatalf("without a block held, an exclusive holder is a deployment: %+v", act)
	}
	release, err := b.Block(context.Background(), "poolbot #13")
	if err != nil {
		t.Fatal(err)
	}
	defer release(context.Background())
	act, err = m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if act.Busy || len(act.Own) != 1 || act.Own[0].PID != c.pid {
		t.Fatalf("while the command block is held it is poolbot's own: %+v", act)
	}
}
