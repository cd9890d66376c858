package scap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// `scap lock --unlock-all <reason>` (scap/lock.py signal_gl_release) does
// not break the global lock itself: when the global lock file holds a
// non-{} body (poolbot's Block writes one), it writes
// /tmp/scap-unlock-global with json.dumps({"releaser", "reason"}, indent=4),
// waits up to 5 s (polling every 0.5 s) for the holder to create
// /tmp/scap-unlock-global-removed, and on exit removes its file. The holder
// (watch_for_gl_release_signal) polls for the signal every 0.5 s, creates
// the acknowledgement (mode 0444), waits until the signal file is gone and
// then releases its lock. Two files, one written by each side, because
// fs.protected_regular forbids opening another user's file in sticky /tmp
// with O_CREAT.
const (
	DefaultUnlockSignalDir = "/tmp"
	UnlockSignalName       = "scap-unlock-global"
	UnlockAckName          = "scap-unlock-global-removed"
)

// Defaults of UnlockWatchOptions.
const (
	DefaultUnlockPoll = 500 * time.Millisecond // scap's holder polls as often
	// DefaultUnlockAckWait bounds the wait for the unlocker to remove its
	// signal after the acknowledgement (it exits within 5 s).
	DefaultUnlockAckWait = 10 * time.Second
)

// UnlockRequest is a deployer's `scap lock --unlock-all`.
type UnlockRequest struct {
	Releaser string    // the unlocking user ("?" when the file does not say)
	Reason   string    // their reason ("?" when the file does not say)
	Written  time.Time // the signal file's modification time
	// Acknowledged says the acknowledgement file was created (or already
	// there), so the deployer's scap printed "Global lock removed".
	Acknowledged bool

	// parsed says the body was complete JSON; Watch reads a partial one
	// again for a moment (unparsedGrace) before it settles for "?".
	parsed bool
}

// unparsedGrace is how long Watch re-reads a signal whose body is empty or
// partial (scap truncates, then writes) before it answers without knowing
// who and why: well inside the 5 s the deployer's scap waits for the
// acknowledgement.
const unparsedGrace = time.Second

func (r UnlockRequest) String() string {
	return fmt.Sprintf("scap lock --unlock-all by %s: %s", r.Releaser, r.Reason)
}

// UnlockWatchOptions configure an UnlockWatcher.
type UnlockWatchOptions struct {
	// Dir holds the signal files; default /tmp. Under systemd with
	// PrivateTmp (implied by DynamicUser=yes) poolbot's /tmp is not the
	// deployers' /tmp: bind the host's /tmp somewhere (BindPaths=/tmp:/run/host-tmp)
	// and point Dir there.
	Dir     string
	Poll    time.Duration
	AckWait time.Duration
	Clock   clockwork.Clock
	Logger  *slog.Logger
}

// UnlockWatcher notices `scap lock --unlock-all` while poolbot holds the
// deploy block.
type UnlockWatcher struct {
	signal, ack   string
	poll, ackWait time.Duration
	clock         clockwork.Clock
	log           *slog.Logger
}

// NewUnlockWatcher builds a watcher; it touches no file.
func NewUnlockWatcher(o UnlockWatchOptions) *UnlockWatcher {
	if o.Dir == "" {
		o.Dir = DefaultUnlockSignalDir
	}
	if o.Poll <= 0 {
		o.Poll = DefaultUnlockPoll
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultUnlockAckWait
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &UnlockWatcher{
		signal: filepath.Join(o.Dir, UnlockSignalName), ack: filepath.Join(o.Dir, UnlockAckName),
		poll: o.Poll, ackWait: o.AckWait, clock: o.Clock, log: o.Logger.With("component", "scap-unlock-watch"),
	}
}

// maxSignalBytes bounds what is read from the signal file.
const maxSignalBytes = 64 << 10

// Check looks once for an unlock signal written at or after since (older
// ones are leftovers of an unlocker that was killed before it cleaned up).
// It returns nil when there is none; it does not acknowledge.
func (w *UnlockWatcher) Check(since time.Time) (*UnlockRequest, error) {
	f, err := os.Open(w.signal)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("scap unlock signal %s: %w", w.signal, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("scap unlock signal %s: %w", w.signal, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("scap unlock signal %s is not a regular file", w.signal)
	}
	if fi.ModTime().Before(since) {
		w.log.Debug("ignoring scap unlock signal older than the deploy block", "path", w.signal, "written", fi.ModTime(), "block_since", since)
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(f, maxSignalBytes))
	if err != nil {
		return nil, fmt.Errorf("scap unlock signal %s: %w", w.signal, err)
	}
	req := &UnlockRequest{Releaser: "?", Reason: "?", Written: fi.ModTime()}
	var info struct {
		Releaser *string `json:"releaser"`
		Reason   *string `json:"reason"`
	}
	// scap writes the file in one pwrite after truncating, so a read may
	// see it empty or partial; the file's existence is the signal, the
	// body only says who and why.
	if json.Unmarshal(body, &info) == nil {
		req.parsed = true
		if info.Releaser != nil {
			req.Releaser = clean(*info.Releaser)
		}
		if info.Reason != nil {
			req.Reason = clean(*info.Reason)
		}
	}
	return req, nil
}

// clean makes a deployer-supplied string safe for one chat/SAL line.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "?"
	}
	return s
}

// Watch blocks while poolbot holds the deploy block (taken at since) until
// a deployer runs `scap lock --unlock-all`, and then answers it like scap's
// holder: it creates the acknowledgement file, waits (at most AckWait) for
// the unlocker to remove its signal, and removes the acknowledgement again
// so that the next unlock is not answered by a leftover. The caller then
// releases the block, says so in the channel and SAL, and does not take it
// again for that request without an operator. Watch returns ctx's error
// when the block is released first.
func (w *UnlockWatcher) Watch(ctx context.Context, since time.Time) (UnlockRequest, error) {
	var firstSeen time.Time // when a signal with a partial body was first read
	for {
		req, err := w.Check(since)
		if err != nil {
			w.log.Warn("cannot read scap unlock signal", "err", err)
		}
		wait := w.poll
		if req != nil && !req.parsed {
			if firstSeen.IsZero() {
				firstSeen = w.clock.Now()
			}
			if w.clock.Since(firstSeen) < unparsedGrace {
				req, wait = nil, min(w.poll, unparsedGrace/10) // being written: read it again soon
			}
		}
		if req != nil {
			w.acknowledge(ctx, req)
			return *req, nil
		}
		select {
		case <-ctx.Done():
			return UnlockRequest{}, ctx.Err()
		case <-w.clock.After(wait):
		}
	}
}

func (w *UnlockWatcher) acknowledge(ctx context.Context, req *UnlockRequest) {
	w.log.Warn("scap lock --unlock-all received", "releaser", req.Releaser, "reason", req.Reason)
	// Mode 0444 as scap's holder creates it. O_EXCL so that only a file
	// poolbot created is removed afterwards; one that is already there
	// (a leftover, or another user's that protected_regular would not let
	// us open) answers the unlocker just as well.
	created := false
	fd, err := unix.Open(w.ack, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o444)
	switch {
	case err == nil:
		unix.Close(fd)
		created = true
		req.Acknowledged = true
	case fileExists(w.ack):
		req.Acknowledged = true
		w.log.Warn("scap unlock acknowledgement already present (leftover?); not removing it", "path", w.ack)
	default:
		w.log.Error("cannot acknowledge scap unlock (the deployer's scap will say it could not clear the lock)", "path", w.ack, "err", err)
		return
	}
	if !created {
		return
	}
	deadline := w.clock.Now().Add(w.ackWait)
	for fileExists(w.signal) && w.clock.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			deadline = time.Time{}
		case <-w.clock.After(100 * time.Millisecond):
		}
	}
	if err := os.Remove(w.ack); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.log.Warn("cannot remove scap unlock acknowledgement", "path", w.ack, "err", err)
	}
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
