package procedure

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/mediawiki"
)

// cacheRetry is calendar.retryAfterError: how soon Cached.Run tries again
// after a failed fetch.
const cacheRetry = time.Minute

// wikiLab is the test harness with the calendar read for real: the Wikitech
// source and the Cached cache, on the harness's fake clock, reading a
// stand-in of wikitech's api.php over HTTP in the API's wire format.
type wikiLab struct {
	*harness
	page  *mediawiki.Deployments
	cache *calendar.Cached
	// cacheClock is the cache's view of the fake clock: its timers say
	// when the cache will fetch next.
	cacheClock *engineClock
	fetches    atomic.Int64 // API requests answered (two per fetch of a changed page)
}

// newWikiLab builds newHarness's harness, then replaces its engine by one with
// the same config, deps and services but the cached wikitech calendar,
// and runs the cache as cmd/poolbot does: Run in the background, and
// every Changed wakes all workers. prepare sets up the page before the
// first fetch.
func newWikiLab(t *testing.T, nHosts int, cfg Config, prepare func(*mediawiki.Deployments)) *wikiLab {
	t.Helper()
	wl := &wikiLab{page: mediawiki.NewDeployments()}
	prepare(wl.page)
	mux := http.NewServeMux()
	mux.HandleFunc("/w/api.php", func(rw http.ResponseWriter, r *http.Request) {
		wl.fetches.Add(1)
		wl.page.ServeHTTP(rw, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // last: after the cache has stopped

	l := newHarness(t, nHosts, cfg)
	wl.harness = l
	wl.cacheClock = &engineClock{FakeClock: l.clock}
	opts := calendar.Options{Clock: wl.cacheClock}
	src, err := calendar.NewWikitech(calendar.WikitechConfig{APIURL: srv.URL + "/w/api.php",
		UserAgent: "poolbot-test/1.0 (https://example.org/poolbot; sre@example.org)"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	wl.cache, err = calendar.NewCached(src, 0, 0, opts) // production defaults: 15m refresh, 1h max age
	if err != nil {
		t.Fatal(err)
	}

	// The engine newHarness started reads the fake calendar: stop it (it had
	// nothing to do) and start one reading the cache instead. newHarness's
	// cleanup closes whichever engine l.engine is at the end.
	l.stop()
	old := l.engine
	deps := old.deps
	deps.Calendar = wl.cache
	var services []*Service
	for _, s := range old.services {
		services = append(services, s)
	}
	if l.engine, err = New(old.cfg, deps, services); err != nil {
		t.Fatal(err)
	}
	_ = old.Close()
	l.cal = nil
	l.start()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = wl.cache.Run(ctx) })
	wg.Go(func() { // cmd/poolbot/wire.go's change fan-out
		for {
			select {
			case <-ctx.Done():
				return
			case <-wl.cache.Changed():
				l.engine.NotifyAll()
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return wl
}

// weekOfWindows is a week of wikitech's recurring windows from Monday
// monday: backport windows at 07:00, 13:00 and 20:00 UTC on weekdays, the
// train Tuesday to Thursday at 15:00. At t0 (Monday 14:10) none is active
// and the next starts at 20:00, so the gate is open.
func weekOfWindows(monday time.Time) []mediawiki.Window {
	var ws []mediawiki.Window
	at := func(day, hour int, d time.Duration, name string, deployers ...string) {
		start := monday.AddDate(0, 0, day).Add(time.Duration(hour) * time.Hour)
		ws = append(ws, mediawiki.Window{Name: name, Start: start, End: start.Add(d), Deployers: deployers})
	}
	for day := range 5 {
		at(day, 7, time.Hour, "UTC morning backport window", "Lucas_WMDE", "TheresNoTime")
		at(day, 13, time.Hour, "UTC afternoon backport window", "Amir1", "Urbanecm")
		if day >= 1 && day <= 3 {
			at(day, 15, 2*time.Hour, "MediaWiki train - Utc-0+Utc-7 Version", "brennen")
		}
		at(day, 20, time.Hour, "UTC late backport window", "Krinkle")
	}
	return ws
}

// eventually waits (real time) for cond, advancing the fake clock by tick
// each round when tick > 0.
func (wl *wikiLab) eventually(what string, tick time.Duration, cond func() bool) {
	wl.t.Helper()
	testenv.EventuallyReport(wl.t, 30*time.Second, what, func() (bool, string) {
		if cond() {
			return true, ""
		}
		if tick > 0 {
			wl.clock.Advance(tick)
		}
		return false, fmt.Sprintf("fake clock at %s, %d API requests, cache error %v",
			wl.clock.Now().Format(time.RFC3339), wl.fetches.Load(), wl.cache.LastError())
	})
}

// refreshAgain moves the fake clock to the cache's next fetch: it waits
// (real time) until the cache, after its last fetch, has set the timer for
// the next one, then advances exactly to it. Ticking fake time while a
// real fetch is awaited would instead let an unbounded amount of it pass
// on a busy machine.
func (wl *wikiLab) refreshAgain() {
	wl.t.Helper()
	var due time.Time
	testenv.EventuallyReport(wl.t, 30*time.Second, "the cache to set its next fetch", func() (bool, string) {
		var ok bool
		due, ok = wl.cacheClock.last()
		return ok && due.After(wl.clock.Now()), "last timer due " + due.Format(time.RFC3339)
	})
	wl.clock.Advance(due.Sub(wl.clock.Now()))
}

// leaveWaiting moves the fake clock to the cache's next fetch, waits until
// the request no longer waits, then lets it run to its end.
func (wl *wikiLab) leaveWaiting(id poolbot.RequestID) poolbot.Request {
	wl.t.Helper()
	wl.refreshAgain()
	wl.eventually(id.String()+" to leave waiting", 0, func() bool {
		return wl.request(id).State != poolbot.StateWaiting
	})
	return wl.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed)
}

// wikitech answers 503 from the start: the request waits, one notice names
// the unreadable calendar, later failed retries say nothing new; once
// wikitech answers again the cache's retry reads the page, its Changed
// wakes the engine, and the restart runs to END (PASS).
func TestCalendarOverHTTPDownThenBack(t *testing.T) {
	t.Parallel()
	wl := newWikiLab(t, 1, Config{}, func(p *mediawiki.Deployments) { p.FailHTTP(http.StatusServiceUnavailable) })
	wl.eventually("the first fetch to fail", 0, func() bool { return wl.cache.LastError() != nil })

	id := wl.queue(poolbot.ActionRestart, "")
	r := wl.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, `deployment calendar unreadable (calendar: not fetched yet: calendar: wikitech: page info for "Deployments": HTTP 503 Service Unavailable`) ||
		!strings.HasSuffix(r.Step, "start time unknown") {
		t.Fatalf("waiting step %q", r.Step)
	}
	// Another failed fetch (Changed fires on failures too) re-evaluates
	// the request without a second notice.
	n := wl.fetches.Load()
	wl.refreshAgain()
	wl.eventually("a retry", 0, func() bool { return wl.fetches.Load() > n })
	time.Sleep(100 * time.Millisecond)
	if got := wl.notices.Matching("waiting"); len(got) != 1 || !strings.Contains(got[0], "waiting: deployment calendar unreadable (") ||
		!strings.Contains(got[0], "HTTP 503") {
		t.Fatalf("waiting notices %q", got)
	}
	if len(wl.restarted()) != 0 {
		t.Fatal("restarted while the calendar was unreadable")
	}

	wl.page.SetWindows(weekOfWindows(t0.Add(-14*time.Hour - 10*time.Minute)))
	wl.page.Recover()
	before := wl.clock.Now()
	r = wl.leaveWaiting(id)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if waited := wl.clock.Now().Sub(before); waited > cacheRetry {
		t.Errorf("proceeded %s (fake) after wikitech came back, want one retry (%s)", waited, cacheRetry)
	}
	sched, _, err := wl.cache.Schedule()
	if err != nil || len(sched.Windows) != 18 || sched.Revision != "1001" {
		t.Fatalf("cached schedule: %d windows, revision %q, err %v", len(sched.Windows), sched.Revision, err)
	}
	if got := wl.restarted(); strings.Join(got, ",") != "registry1" {
		t.Fatalf("restarts %v", got)
	}
	if sal := wl.sal(id); len(sal) == 0 || !strings.Contains(sal[len(sal)-1], "END (PASS) - restart apus") {
		t.Fatalf("SAL lines:\n%s", strings.Join(sal, "\n"))
	}
	if len(wl.notices.Matching("waiting")) != 1 || len(wl.notices.Matching("proceeding: all gates open")) != 1 {
		t.Fatalf("notices:\n%s", strings.Join(wl.notices.All(), "\n"))
	}
}

// wikitech goes down after a good fetch: the cached copy still counts
// while it is younger than max_age (1h), so a request runs; once it is
// older, the next request waits on the stale calendar, and runs after
// wikitech is back.
func TestCalendarOverHTTPStaleAfterMaxAge(t *testing.T) {
	t.Parallel()
	wl := newWikiLab(t, 1, Config{}, func(p *mediawiki.Deployments) { p.SetWindows(weekOfWindows(t0.Add(-14*time.Hour - 10*time.Minute))) })
	wl.eventually("the first fetch", 0, func() bool { _, _, err := wl.cache.Schedule(); return err == nil })
	if _, at, _ := wl.cache.Schedule(); !at.Equal(t0) {
		t.Fatalf("fetched at %s, want %s", at, t0)
	}

	wl.page.FailHTTP(http.StatusServiceUnavailable)
	// The 15-minute refresh fails; the copy from t0 is still fresh.
	wl.refreshAgain()
	wl.eventually("a refresh to fail", 0, func() bool { return wl.cache.LastError() != nil })
	wl.clock.Advance(t0.Add(59 * time.Minute).Sub(wl.clock.Now()))
	if _, _, err := wl.cache.Schedule(); err != nil {
		t.Fatalf("at +59m: %v", err)
	}
	first := wl.queue(poolbot.ActionRestart, "")
	if r := wl.waitState(first, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("first request ended %s: %s", r.State, r.Error)
	}
	if got := wl.notices.Matching("waiting"); len(got) != 0 {
		t.Fatalf("waited on a fresh calendar: %q", got)
	}

	wl.clock.Advance(2 * time.Minute) // t0+61m: older than max_age
	second := wl.queue(poolbot.ActionRestart, "")
	r := wl.waitState(second, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "deployment calendar unreadable (calendar: schedule is stale: last good fetch 1h 01m 00s ago (at 2026-11-23T14:10:00Z), max age 1h 00m 00s; last error: ") ||
		!strings.Contains(r.Step, "HTTP 503 Service Unavailable") {
		t.Fatalf("waiting step %q", r.Step)
	}
	if got := wl.notices.Matching("waiting"); len(got) != 1 || !strings.Contains(got[0], second.String()+" restart apus (alice) waiting: deployment calendar unreadable (calendar: schedule is stale") {
		t.Fatalf("waiting notices %q", got)
	}

	wl.page.Recover()
	if r := wl.leaveWaiting(second); r.State != poolbot.StateDone {
		t.Fatalf("second request ended %s: %s", r.State, r.Error)
	}
	if got := wl.restarted(); len(got) != 2 {
		t.Fatalf("restarts %v", got)
	}
	if sal := wl.sal(second); len(sal) == 0 || !strings.Contains(sal[len(sal)-1], "END (PASS)") {
		t.Fatalf("SAL lines:\n%s", strings.Join(sal, "\n"))
	}
}
