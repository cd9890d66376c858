package scap

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// scapUnlocker does what `scap lock --unlock-all` does on the file side
// (scap/lock.py signal_gl_release): write the signal with
// json.dumps(info, indent=4), wait up to 5 s for the acknowledgement
// polling every 0.5 s, then remove the signal on exit. It reports whether
// it saw the acknowledgement ("Global lock removed").
func scapUnlocker(t *testing.T, dir, releaser, reason string) (acknowledged bool) {
	t.Helper()
	signal := filepath.Join(dir, UnlockSignalName)
	f, err := os.OpenFile(signal, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	body := "{\n    \"releaser\": \"" + releaser + "\",\n    \"reason\": \"" + reason + "\"\n}"
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(body), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer os.Remove(signal) // atexit.register(os.unlink, ...)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if fi, err := os.Stat(filepath.Join(dir, UnlockAckName)); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

func newTestWatcher(dir string) *UnlockWatcher {
	return NewUnlockWatcher(UnlockWatchOptions{Dir: dir, Poll: 10 * time.Millisecond})
}

func TestUnlockAllSignalFiles(t *testing.T) {
	if DefaultUnlockSignalDir+"/"+UnlockSignalName != "/tmp/scap-unlock-global" ||
		DefaultUnlockSignalDir+"/"+UnlockAckName != "/tmp/scap-unlock-global-removed" {
		t.Fatal("signal file names differ from scap's Lock.REMOVE_GL_SIGNAL_FILE / ACK_GL_SIGNAL_FILE")
	}
}

func TestUnlockAllIsNoticedAndAcknowledged(t *testing.T) {
	dir := t.TempDir()
	w := newTestWatcher(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		req UnlockRequest
		err error
	}
	done := make(chan result, 1)
	since := time.Now().Add(-time.Second)
	go func() { r, err := w.Watch(ctx, since); done <- result{r, err} }()

	if !scapUnlocker(t, dir, "jdoe", "stuck deploy block") {
		t.Fatal("the deployer's scap never saw the acknowledgement")
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.req.Releaser != "jdoe" || r.req.Reason != "stuck deploy block" || !r.req.Acknowledged || r.req.Written.Before(since) {
		t.Fatalf("request %+v", r.req)
	}
	if got := r.req.String(); got != "scap lock --unlock-all by jdoe: stuck deploy block" {
		t.Errorf("String %q", got)
	}
	// The acknowledgement is gone again, so the next unlock is not answered
	// by a leftover.
	if _, err := os.Lstat(filepath.Join(dir, UnlockAckName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("acknowledgement left behind: %v", err)
	}
}

func TestUnlockSignalOlderThanTheBlockIsIgnored(t *testing.T) {
	dir := t.TempDir()
	signal := filepath.Join(dir, UnlockSignalName)
	if err := os.WriteFile(signal, []byte(`{"releaser": "old", "reason": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(signal, old, old); err != nil {
		t.Fatal(err)
	}
	w := newTestWatcher(dir)
	since := time.Now().Add(-time.Minute)
	if req, err := w.Check(since); req != nil || err != nil {
		t.Fatalf("stale signal: %+v %v", req, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := w.Watch(ctx, since); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch over a stale signal: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, UnlockAckName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("stale signal acknowledged")
	}
	// Written again now: it counts.
	now := time.Now()
	if err := os.Chtimes(signal, now, now); err != nil {
		t.Fatal(err)
	}
	if req, err := w.Check(since); err != nil || req == nil || req.Releaser != "old" {
		t.Fatalf("fresh signal: %+v %v", req, err)
	}
}

func TestUnlockSignalBodies(t *testing.T) {
	dir := t.TempDir()
	w := newTestWatcher(dir)
	signal := filepath.Join(dir, UnlockSignalName)
	for body, want := range map[string][2]string{
		"":                                   {"?", "?"}, // caught between truncate and write
		`{"releaser": "jd`:                   {"?", "?"},
		`{"releaser": "a\r\nPRIVMSG #x :b"}`: {"a  PRIVMSG #x :b", "?"},
		`{"releaser": 5, "reason": "r"}`:     {"?", "?"},
		`{"releaser": "", "reason": "r"}`:    {"?", "r"},
	} {
		if err := os.WriteFile(signal, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		req, err := w.Check(time.Time{})
		if err != nil || req == nil || req.Releaser != want[0] || req.Reason != want[1] {
			t.Errorf("body %q: %+v %v, want %v", body, req, err, want)
		}
	}
	if err := os.Remove(signal); err != nil {
		t.Fatal(err)
	}
	if req, err := w.Check(time.Time{}); req != nil || err != nil {
		t.Fatalf("no signal: %+v %v", req, err)
	}
	if err := os.Mkdir(signal, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Check(time.Time{}); err == nil {
		t.Fatal("a directory as signal accepted")
	}
}

func TestUnlockAckAlreadyPresentIsKept(t *testing.T) {
	dir := t.TempDir()
	ack := filepath.Join(dir, UnlockAckName)
	// A leftover acknowledgement (scap's holder creates it 0444).
	if err := os.WriteFile(ack, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, UnlockSignalName), []byte(`{"releaser": "jdoe", "reason": "r"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	req, err := newTestWatcher(dir).Watch(context.Background(), time.Time{})
	if err != nil || !req.Acknowledged {
		t.Fatalf("%+v %v", req, err)
	}
	if _, err := os.Lstat(ack); err != nil {
		t.Fatalf("removed an acknowledgement poolbot did not create: %v", err)
	}
}

func TestUnlockAckNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, UnlockSignalName), []byte(`{"releaser": "jdoe", "reason": "r"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	// Noticed all the same (the caller still releases and reports), but
	// not acknowledged: the deployer's scap says it could not clear it.
	req, err := newTestWatcher(dir).Watch(context.Background(), time.Time{})
	if err != nil || req.Acknowledged || req.Releaser != "jdoe" {
		t.Fatalf("%+v %v", req, err)
	}
}

func TestUnlockWatchCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newTestWatcher(t.TempDir()).Watch(ctx, time.Now()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch after the block was released: %v", err)
	}
}

// BenchmarkUnlockCheck: the cost of one poll (no signal present).
func BenchmarkUnlockCheck(b *testing.B) {
	w := newTestWatcher(b.TempDir())
	since := time.Now()
	for b.Loop() {
		if req, err := w.Check(since); req != nil || err != nil {
			b.Fatal(req, err)
		}
	}
}

// scap truncates the signal file and then writes it: a watcher that reads
// it in between reads it again for a moment, so the notice names who
// unlocked and why; a body that never becomes JSON is answered anyway.
func TestUnlockAllRereadsAPartialSignal(t *testing.T) {
	for _, tc := range []struct {
		name, later      string
		releaser, reason string
	}{
		{"completed", `{"releaser": "jdoe", "reason": "stuck"}`, "jdoe", "stuck"},
		{"never JSON", `{"releaser": "jd`, "?", "?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			signal := filepath.Join(dir, UnlockSignalName)
			if err := os.WriteFile(signal, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			// No unlocker removes the signal here: do not wait long for it.
			w := NewUnlockWatcher(UnlockWatchOptions{Dir: dir, Poll: 10 * time.Millisecond, AckWait: 200 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan UnlockRequest, 1)
			go func() {
				r, err := w.Watch(ctx, time.Now().Add(-time.Second))
				if err != nil {
					t.Error(err)
				}
				done <- r
			}()
			time.Sleep(100 * time.Millisecond) // the watcher has read the empty file
			if err := os.WriteFile(signal, []byte(tc.later), 0o644); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.Releaser != tc.releaser || r.Reason != tc.reason {
				t.Fatalf("request %+v, want releaser %q reason %q", r, tc.releaser, tc.reason)
			}
		})
	}
}
