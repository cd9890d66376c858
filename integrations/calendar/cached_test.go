package calendar

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// sourceFunc adapts a function to Source, to drive Cached through the
// success/failure sequences its contract is about.
type sourceFunc func(ctx context.Context) (Schedule, error)

func (f sourceFunc) Fetch(ctx context.Context) (Schedule, error) { return f(ctx) }

func TestCachedStaleness(t *testing.T) {
	clock := clockwork.NewFakeClockAt(utc("2026-11-02T10:00:00Z"))
	fail := errors.New("wikitech unreachable")
	var next error
	src := sourceFunc(func(context.Context) (Schedule, error) {
		if next != nil {
			return Schedule{}, next
		}
		return NewSchedule(clock.Now(), time.Time{}, []Window{win("w", at(11, 0), at(12, 0))}), nil
	})
	c, err := NewCached(src, 15*time.Minute, time.Hour, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	if _, _, err := c.Schedule(); !errors.Is(err, ErrNotFetched) {
		t.Fatalf("before any fetch: %v", err)
	}
	next = fail
	if err := c.Refresh(ctx); !errors.Is(err, fail) {
		t.Fatalf("Refresh = %v", err)
	}
	if _, _, err := c.Schedule(); !errors.Is(err, ErrNotFetched) || !errors.Is(err, fail) {
		t.Fatalf("after a failed first fetch: %v", err)
	}

	next = nil
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	good := clock.Now()
	s, fetchedAt, err := c.Schedule()
	if err != nil || !fetchedAt.Equal(good) || len(s.Windows) != 1 {
		t.Fatalf("after success: %v %s %d", err, fetchedAt, len(s.Windows))
	}

	// A failed refresh keeps the good schedule while it is young enough.
	next = fail
	clock.Advance(30 * time.Minute)
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("expected refresh error")
	}
	if _, fetchedAt, err := c.Schedule(); err != nil || !fetchedAt.Equal(good) {
		t.Fatalf("30m after the last success: %v %s", err, fetchedAt)
	}
	if !errors.Is(c.LastError(), fail) {
		t.Errorf("LastError = %v", c.LastError())
	}

	clock.Advance(30 * time.Minute)
	if _, _, err := c.Schedule(); err != nil {
		t.Fatalf("exactly max age: %v", err)
	}
	clock.Advance(time.Second)
	s, _, err = c.Schedule()
	if !errors.Is(err, ErrStale) || !errors.Is(err, fail) || len(s.Windows) != 1 {
		t.Fatalf("past max age: %v (windows %d)", err, len(s.Windows))
	}
	wantErrContains(t, err, "last good fetch 1h 00m 01s ago (at 2026-11-02T10:00:00Z), max age 1h 00m 00s; last error: wikitech unreachable")

	next = nil
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Schedule(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestCachedRefreshWaitsForContext(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	src := sourceFunc(func(ctx context.Context) (Schedule, error) {
		close(entered)
		<-release
		return Schedule{}, nil
	})
	c, err := NewCached(src, 0, 0, Options{Clock: clockwork.NewFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- c.Refresh(t.Context()) }()
	<-entered
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Refresh(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("second Refresh while one runs, cancelled: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewCachedValidates(t *testing.T) {
	if _, err := NewCached(sourceFunc(nil), time.Hour, time.Hour, Options{}); err == nil {
		t.Error("max age equal to the interval accepted")
	}
}

// waitChanged waits (in real time, bounded) for the next completed fetch.
func waitChanged(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh happened")
	}
}

// TestCachedRun drives Run with a fake clock against the fake MediaWiki API:
// a refresh at once, one 5 s after the next window starts (sooner than the
// interval), retries within a minute after a failure, and a clean exit.
func TestCachedRun(t *testing.T) {
	fake, srv := newFakeWiki(t, readFixture(t, "deployments-2026-10-26.html"))
	clock := clockwork.NewFakeClockAt(utc("2026-10-28T12:30:00Z"))
	src := newTestWikitech(t, srv.URL, clock, nil)
	c, err := NewCached(src, time.Hour, 3*time.Hour, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	changed := c.Changed()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()

	waitChanged(t, changed)
	if _, _, err := c.Schedule(); err != nil {
		t.Fatal(err)
	}
	if info, _ := fake.calls(); info != 1 {
		t.Fatalf("info calls %d", info)
	}

	// The afternoon backport window starts at 13:00: Run wakes at 13:00:05,
	// not at 13:30.
	changed = c.Changed()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30*time.Minute + 5*time.Second)
	waitChanged(t, changed)
	if info, _ := fake.calls(); info != 2 {
		t.Fatalf("info calls %d", info)
	}

	// The wiki fails: Run retries after a minute, not after the interval
	// or the next window (the train at 15:00).
	fake.set(func(f *fakeWiki) {
		f.override = func(w http.ResponseWriter, r *http.Request, action string) bool {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
	})
	changed = c.Changed()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	waitChanged(t, changed) // the failed fetch
	if c.LastError() == nil {
		t.Fatal("no error recorded")
	}
	fake.set(func(f *fakeWiki) { f.override = nil })
	changed = c.Changed()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	waitChanged(t, changed)
	if c.LastError() != nil {
		t.Fatalf("still failing: %v", c.LastError())
	}

	cancel()
	select {
	case err := <-runErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
