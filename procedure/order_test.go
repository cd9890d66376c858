package procedure

import (
	"context"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
)

// Issue 12 item 1: with codfw depooled, a depool of eqiad waits on the
// last-datacenter guard; the pool of codfw queued after it, which clears
// that guard, must not wait behind it. It runs first; then the depool's
// guard is clear and it runs too. One operation at a time throughout.
func TestGuardHeldRequestStepsAsideForThePoolThatClearsIt(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	l.putDiscovery("codfw", false)

	depool := l.queue(poolbot.ActionDepool, "eqiad")
	r := l.waitState(depool, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "cannot be depooled") || !strings.Contains(r.Step, stepAsideNote) {
		t.Fatalf("waiting step %q", r.Step)
	}
	// The notice follows the stored step.
	l.waitNotice("go first meanwhile", 0)
	if got := l.notices.Matching("go first meanwhile"); len(got) != 1 {
		t.Fatalf("the waiting notice does not say that later requests go first: %q", l.notices.All())
	}

	pool := l.queue(poolbot.ActionPool, "codfw")
	// What !status says about each while the pool runs or is about to.
	if why, err := l.engine.Blockers(context.Background(), l.request(pool)); err != nil || strings.Contains(why, "behind #1") {
		t.Fatalf("!status of the pool: %q, %v", why, err)
	}
	// The pool runs and ends; no max_wait, no !cancel needed.
	if r := l.waitState(pool, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("pool ended %s: %s", r.State, r.Error)
	}
	// Then the depool: codfw serves now, so eqiad may go.
	if r := l.waitState(depool, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("depool ended %s: %s", r.State, r.Error)
	}
	if !l.pooled("codfw") || l.pooled("eqiad") {
		t.Fatal("conftool: want codfw pooled, eqiad depooled")
	}
	// One operation at a time: the depool started after the pool ended.
	pr, dr := l.request(pool), l.request(depool)
	if dr.StartedAt.Before(pr.FinishedAt) {
		t.Fatalf("depool started %s, before the pool ended %s", dr.StartedAt, pr.FinishedAt)
	}
	if got := l.restarted(); strings.Join(got, ",") != "registry1,registry1" {
		t.Fatalf("restarts %v", got)
	}
}

// A request held by anything but the guard (here a deployment window)
// still holds back the requests behind it: FIFO, as before.
func TestOtherBlockersKeepTheQueueOrder(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{window("w1", "UTC late backport window", t0.Add(-5*time.Minute), t0.Add(30*time.Minute))}), nil)
	first := l.queue(poolbot.ActionRestart, "")
	l.waitState(first, 0, poolbot.StateWaiting)
	second := l.queue(poolbot.ActionPool, "codfw")
	r := l.waitState(second, 0, poolbot.StateWaiting)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.Step, "behind #1") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		r = l.request(second)
	}
	if !strings.Contains(r.Step, "behind #1") {
		t.Fatalf("second request's step %q, want behind #1", r.Step)
	}
	if why, err := l.engine.Blockers(context.Background(), r); err != nil || !strings.Contains(why, "behind #1") {
		t.Fatalf("!status: %q, %v", why, err)
	}
}
