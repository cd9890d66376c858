package calendar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"poolbot"
)

// ErrNotFetched is returned (wrapped) by Cached.Schedule before the first
// successful fetch.
var ErrNotFetched = errors.New("calendar: not fetched yet")

// ErrStale is returned (wrapped) by Cached.Schedule when the last successful
// fetch is older than the max age.
var ErrStale = errors.New("calendar: schedule is stale")

// Cached keeps the last good schedule of a Source.
//
// Refreshing is explicit, so nothing runs unless the caller starts it: Run
// refreshes at once, then every refresh interval, and also 5 s after each
// window starts (as jouncebot does, to catch last-minute additions); it stops
// when its context ends. Refresh fetches on demand (e.g. for a "!windows"
// command). Schedule never does I/O.
type Cached struct {
	src      Source
	interval time.Duration
	maxAge   time.Duration
	opt      Options

	sem chan struct{} // one fetch at a time

	mu        sync.Mutex
	sched     Schedule
	fetchedAt time.Time // zero until the first success
	lastErr   error
	// unreadable is the last fetch's error when it wraps ErrUnreadableCard:
	// the source was read and says something the gate cannot place, so
	// the last good schedule no longer stands in for it.
	unreadable error
	changed    chan struct{}
}

// afterWindowStart is how long after a window's start Run re-reads the
// calendar (jouncebot: 5 s).
const afterWindowStart = 5 * time.Second

// retryAfterError bounds the wait before retrying a failed fetch.
const retryAfterError = time.Minute

// NewCached wraps src. refreshInterval and maxAge of 0 take the defaults;
// maxAge must exceed refreshInterval.
func NewCached(src Source, refreshInterval, maxAge time.Duration, opt Options) (*Cached, error) {
	if refreshInterval == 0 {
		refreshInterval = DefaultRefreshInterval
	}
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	if refreshInterval < 0 || maxAge <= refreshInterval {
		return nil, fmt.Errorf("calendar: max_age (%s) must exceed refresh_interval (%s)", maxAge, refreshInterval)
	}
	return &Cached{
		src: src, interval: refreshInterval, maxAge: maxAge, opt: opt.withDefaults(),
		sem: make(chan struct{}, 1), changed: make(chan struct{}),
	}, nil
}

// Schedule returns the last good schedule and when it was fetched. A non-nil
// error means the calendar gate cannot be read and must count as closed:
// ErrNotFetched before the first success, ErrStale when the last success is
// older than max_age (both wrap the last fetch error, if any), and the last
// fetch's error itself when it wraps ErrUnreadableCard (the calendar was
// read, and one of its entries cannot be placed in time). With ErrStale the
// stale schedule is still returned, for display only.
func (c *Cached) Schedule() (Schedule, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unreadable != nil {
		return Schedule{}, time.Time{}, c.unreadable
	}
	if c.fetchedAt.IsZero() {
		if c.lastErr != nil {
			return Schedule{}, time.Time{}, fmt.Errorf("%w: %w", ErrNotFetched, c.lastErr)
		}
		return Schedule{}, time.Time{}, ErrNotFetched
	}
	if age := c.opt.Clock.Since(c.fetchedAt); age > c.maxAge {
		err := fmt.Errorf("%w: last good fetch %s ago (at %s), max age %s",
			ErrStale, poolbot.FormatDuration(age), c.fetchedAt.UTC().Format(time.RFC3339), poolbot.FormatDuration(c.maxAge))
		if c.lastErr != nil {
			err = fmt.Errorf("%w; last error: %w", err, c.lastErr)
		}
		return c.sched, c.fetchedAt, err
	}
	return c.sched, c.fetchedAt, nil
}

// LastError returns the error of the latest fetch, nil if it succeeded. A
// fresh schedule can coexist with a failed latest fetch; Schedule decides
// by age alone.
func (c *Cached) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Changed returns a channel that is closed when the next fetch completes,
// successfully or not. Callers waiting on the calendar gate select on it and
// then call Schedule again.
func (c *Cached) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Refresh fetches the schedule now, waiting for a fetch already in progress
// to finish first. On failure the previous good schedule is kept (until it
// ages out) and the error is returned.
func (c *Cached) Refresh(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()

	sched, err := c.src.Fetch(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	c.unreadable = nil
	if errors.Is(err, ErrUnreadableCard) {
		c.unreadable = err
	}
	if err == nil {
		c.sched = sched
		c.fetchedAt = sched.FetchedAt
		if c.fetchedAt.IsZero() {
			c.fetchedAt = c.opt.Clock.Now()
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return err
}

// Run refreshes until ctx ends, then returns ctx's error. See Cached.
func (c *Cached) Run(ctx context.Context) error {
	for {
		wait := c.interval
		if err := c.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.opt.Logger.Warn("calendar: refresh failed", "err", err)
			wait = min(wait, retryAfterError)
		}
		c.mu.Lock()
		sched, fetchedAt := c.sched, c.fetchedAt
		c.mu.Unlock()
		if !fetchedAt.IsZero() {
			now := c.opt.Clock.Now()
			if w, ok := sched.Next(now); ok {
				wait = min(wait, w.Start.Sub(now)+afterWindowStart)
			}
		}
		t := c.opt.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.Chan():
		}
	}
}
