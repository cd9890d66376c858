package procedure

import (
	"context"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/internal/testenv"
	"poolbot/store"
)

// A forced request skips the scap gate but cannot break the lock of a
// running scap command: it waits for it in place, without going round
// the gates again and again, and takes the block as soon as scap ends.
func TestForcedRequestWaitsForRunningScapLock(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 1, Config{ScapPoll: 100 * time.Millisecond})
	l.stop()
	release := l.holdScapLock("scap-global-lock", "shared")
	id := l.queue(poolbot.ActionRestart, "")
	l.edit(id, func(r *poolbot.Request) { r.Forced, r.ForcedBy, r.ForceReason = true, "alice", "registry down" })
	l.start()
	l.waitNotice("cannot break a running scap command's lock", 0)
	// Many retry periods pass while scap runs.
	for range 50 {
		l.clock.Advance(100 * time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	if r := l.request(id); r.State != poolbot.StateBlockingDeploys {
		t.Fatalf("state %s (%s), want blocking-deploys while scap holds its lock", r.State, r.Step)
	}
	if k := l.eventKinds(id); k["proceed"] != 1 || k["waiting"] != 0 {
		t.Fatalf("events %v: a forced request went round the gates while waiting for the lock", k)
	}
	if n := len(l.notices.Matching("cannot break")); n != 1 {
		t.Fatalf("%d lock notices, want 1: %q", n, l.notices.All())
	}
	if len(l.restarted()) != 0 || len(l.sal(id)) != 0 {
		t.Fatal("acted before the deploy block was taken")
	}
	release()
	if r := l.waitState(id, 100*time.Millisecond, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if sal := l.sal(id); !hasLine(sal, "START -") || !hasLine(sal, "END (PASS)") {
		t.Fatalf("SAL %q", sal)
	}
}

// A cancel reaches a forced request that waits for scap's lock.
func TestCancelWhileWaitingForScapLock(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{ScapPoll: 100 * time.Millisecond})
	l.stop()
	release := l.holdScapLock("scap-global-lock", "shared")
	defer release()
	id := l.queue(poolbot.ActionRestart, "")
	l.edit(id, func(r *poolbot.Request) { r.Forced, r.ForcedBy = true, "alice" })
	l.start()
	l.waitNotice("cannot break a running scap command's lock", 0)
	l.edit(id, func(r *poolbot.Request) { r.CancelRequested, r.CancelledBy = true, "bob" })
	l.engine.Notify("apus")
	r := l.waitState(id, 0, poolbot.StateCancelled, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateCancelled || !strings.Contains(r.Error, "cancelled by bob before it started") {
		t.Fatalf("ended %s: %q", r.State, r.Error)
	}
	if len(l.restarted()) != 0 || len(l.sal(id)) != 0 {
		t.Fatalf("restarts %v, SAL %q: nothing should have happened", l.restarted(), l.sal(id))
	}
}

// A cancel that arrives while the deploy block is being taken ends the
// request before conftool is touched: a switched record without its
// restarts is the state the incident came from.
func TestCancelBeforeSwitchLeavesConftoolAlone(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	l.stop()
	id := l.queue(poolbot.ActionDepool, "codfw")
	// Where a cancel during blocking-deploys leaves it once the block is
	// recorded: switching, with the cancel asked for.
	l.edit(id, func(r *poolbot.Request) {
		r.State, r.StartedAt = poolbot.StateSwitching, t0
		r.CancelRequested, r.CancelledBy = true, "bob"
	})
	l.start()
	r := l.waitState(id, 0, poolbot.StateCancelled, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateCancelled {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if !l.pooled("codfw") {
		t.Fatal("conftool changed after the cancel")
	}
	if len(l.restarted()) != 0 {
		t.Fatalf("restarted %v", l.restarted())
	}
	l.checkEnd(id, "END (CANCELLED) - depool apus in codfw: cancelled by bob before the conftool change; apus/codfw pooled=true now")
}

// A request parked after a crash holds no deploy block; !cancel ends it
// at once, naming what was done, and !resume can no longer start it.
func TestCancelParkedRequest(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{ResumeAfterCrash: "ask"})
	l.stop()
	id := l.queue(poolbot.ActionRestart, "")
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		if err := tx.InsertHostSteps(id, l.hosts); err != nil {
			return err
		}
		return tx.UpdateHostStep(id, 1, poolbot.HostDone, "restricted healthy")
	})
	if err != nil {
		t.Fatal(err)
	}
	l.edit(id, func(r *poolbot.Request) { r.State, r.StartedAt = poolbot.StateRestarting, t0 })
	l.start()
	testenv.Eventually(t, 20*time.Second, "the request to be parked", func() bool { return l.request(id).Parked })
	l.edit(id, func(r *poolbot.Request) { r.CancelRequested, r.CancelledBy = true, "bob" })
	l.engine.Notify("apus")
	r := l.waitState(id, 0, poolbot.StateCancelled, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateCancelled || r.Parked {
		t.Fatalf("ended %s parked=%t", r.State, r.Parked)
	}
	l.checkEnd(id, "END (CANCELLED) - restart apus: cancelled by bob while parked at restarting; done: registry1; not touched: registry2")
	if len(l.restarted()) != 0 {
		t.Fatalf("restarted %v", l.restarted())
	}
	msg, err := l.engine.Resume(context.Background(), id, "alice", poolbot.Origin{})
	if err != nil || !strings.Contains(msg, "is cancelled") {
		t.Fatalf("resume after cancel: %q %v", msg, err)
	}
}

// A host failure that poolbot recorded but did not get to end the request
// for (it died in between) stands after the restart: the next host is not
// touched until an operator says !resume.
func TestFailedHostStandsAfterCrash(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 3, Config{})
	l.stop()
	id := l.queue(poolbot.ActionRestart, "")
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		if err := tx.InsertHostSteps(id, l.hosts); err != nil {
			return err
		}
		if err := tx.UpdateHostStep(id, 1, poolbot.HostDone, "restricted healthy"); err != nil {
			return err
		}
		return tx.UpdateHostStep(id, 2, poolbot.HostFailed, "restricted not healthy: timed out")
	})
	if err != nil {
		t.Fatal(err)
	}
	l.edit(id, func(r *poolbot.Request) { r.State, r.StartedAt = poolbot.StateRestarting, t0 })
	l.start()
	r := l.waitState(id, 0, poolbot.StateFailed, poolbot.StateDone, poolbot.StateCancelled)
	if r.State != poolbot.StateFailed {
		t.Fatalf("ended %s", r.State)
	}
	if len(l.restarted()) != 0 {
		t.Fatalf("restarted %v after a stored host failure", l.restarted())
	}
	l.checkEnd(id, "END (FAIL) - restart apus: host 2/3 registry2: restricted not healthy: timed out; done: registry1; not touched: registry3")
	if _, err := l.engine.Resume(context.Background(), id, "alice", poolbot.Origin{}); err != nil {
		t.Fatal(err)
	}
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after resume: %s %s", r.State, r.Error)
	}
	if got := strings.Join(l.restarted(), ","); got != "registry2,registry3" {
		t.Fatalf("restarted %s after resume", got)
	}
}

// A forced request that takes the block during a window tells that
// window's deployers at once, and those of a window that starts later
// when it starts.
func TestForcedDuringWindowTellsItsDeployers(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 1, Config{})
	l.stop()
	now := calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{
		window("w1", "UTC morning backport window", t0.Add(-10*time.Minute), t0.Add(50*time.Minute), "jdoe", "asmith"),
		// Starts while host 1's restart is held.
		window("w2", "MediaWiki train", t0.Add(10*time.Second), t0.Add(time.Hour), "trainbot"),
	})
	l.cal.set(now, nil)
	proceed := l.systemctl.Hold("registry1")
	id := l.queue(poolbot.ActionRestart, "")
	l.edit(id, func(r *poolbot.Request) { r.Forced, r.ForcedBy = true, "alice" })
	l.start()
	l.waitNotice("jdoe, asmith: ", 0)
	if got := l.notices.Matching("jdoe, asmith: "); !strings.Contains(got[0], "is on now, but poolbot holds the scap lock for #1") {
		t.Fatalf("notice %q", got[0])
	}
	// gocron registers its timers on the fake clock asynchronously: tick.
	l.waitNotice("trainbot: ", time.Second)
	if got := l.notices.Matching("trainbot: "); !strings.Contains(got[0], "starts now, but poolbot holds the scap lock for #1") {
		t.Fatalf("notice %q", got[0])
	}
	proceed()
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
}

// The literal case of the issue: host 2's registry restarts fine (the
// unit is active) but never becomes healthy. The wait for health times
// out, hosts 3 and 4 are not touched, the block is released, and END
// (FAIL) names what was done and what was not.
func TestRegistryThatDoesNotComeBackStops(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 4, Config{})
	l.systemctl.Hang("registry2", true)
	t.Cleanup(func() { l.systemctl.Hang("registry2", false) })
	id := l.queue(poolbot.ActionRestart, "")
	r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateFailed {
		t.Fatalf("ended %s", r.State)
	}
	if got := strings.Join(l.restarted(), ","); got != "registry1,registry2" {
		t.Fatalf("restarted %s: hosts after the failure were touched", got)
	}
	l.checkEnd(id, "END (FAIL) - restart apus: host 2/4 registry2: restricted not healthy")
	l.checkEnd(id, "done: registry1; not touched: registry3, registry4")
}
