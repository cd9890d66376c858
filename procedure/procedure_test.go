package procedure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/scap"
	"poolbot/internal/testenv"
)

func window(id, name string, start, end time.Time, deployers ...string) calendar.Window {
	return calendar.Window{ID: id, Name: name, Start: start, End: end, Deployers: deployers}
}

func hasLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// Story 1: a depool requested during a deployment window waits with one
// notice naming the window, proceeds when the window (plus margin) ends,
// switches conftool, restarts every host with health and probe, and logs
// START … END (PASS) with the deploy block taken and released.
func TestDepoolWaitsForWindowThenRuns(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 3, Config{})
	w := window("deploycal-item-20261123T1400", "UTC afternoon backport window",
		t0.Add(-10*time.Minute), t0.Add(50*time.Minute), "Amir1", "Urbanecm")
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	pids := map[string]int{}
	for h, r := range l.regs {
		pids[h] = r.PID()
	}

	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "UTC afternoon backport window") || !strings.Contains(r.Step, "estimated start 15:05 UTC") {
		t.Fatalf("waiting step %q", r.Step)
	}
	// Re-evaluating with the same blockers says nothing new.
	l.engine.Notify("apus")
	time.Sleep(100 * time.Millisecond)
	if got := l.notices.Matching("waiting"); len(got) != 1 || !strings.Contains(got[0], "deployers: Amir1, Urbanecm") {
		t.Fatalf("waiting notices %q", got)
	}
	if !l.pooled("codfw") || len(l.restarted()) != 0 {
		t.Fatal("acted while the window was open")
	}
	// The window ends at 15:00; with the 5m lead margin the gate opens at
	// 15:05. One second before, nothing happens.
	l.clock.Advance(t0.Add(55*time.Minute - time.Second).Sub(l.clock.Now()))
	time.Sleep(100 * time.Millisecond)
	if r := l.request(id); r.State != poolbot.StateWaiting {
		t.Fatalf("state %s before the gate opened", r.State)
	}
	r = l.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if l.pooled("codfw") || !l.pooled("eqiad") {
		t.Fatal("conftool not switched")
	}
	if got := l.restarted(); strings.Join(got, ",") != "registry1,registry2,registry3" {
		t.Fatalf("restart order %v", got)
	}
	for h, r := range l.regs {
		if r.PID() == pids[h] {
			t.Errorf("%s was not restarted", h)
		}
	}
	sal := l.sal(id)
	want := []string{"START - depool apus in codfw: T422166 test", "deploy block taken",
		"conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw",
		"on registry1 (1/3): restricted healthy, probe ok", "(2/3)", "(3/3)",
		"deploy block released", "END (PASS) - depool apus in codfw: 3/3 hosts restarted"}
	if len(sal) != len(want) {
		t.Fatalf("SAL lines:\n%s", strings.Join(sal, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(sal[i], w) || !strings.HasPrefix(sal[i], "poolbot #1 alice: ") {
			t.Errorf("SAL line %d = %q, want it to contain %q", i, sal[i], w)
		}
	}
	if got := l.globalLock(); got != "none" {
		t.Fatalf("global lock after the end: %s", got)
	}
	if len(l.notices.Matching("proceeding")) != 1 {
		t.Fatalf("notices: %q", l.notices.All())
	}
}

// Story 2: a running scap (a shared holder of the global lock) holds the
// request; the periodic lock probe notices the release.
func TestWaitsForScapLock(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 1, Config{ScapPoll: time.Second})
	release := l.holdScapLock("scap-global-lock", "shared")
	id := l.queue(poolbot.ActionRestart, "")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "scap:") {
		t.Fatalf("step %q", r.Step)
	}
	l.clock.Advance(3 * time.Second) // the probe still sees the holder
	time.Sleep(100 * time.Millisecond)
	if l.request(id).State != poolbot.StateWaiting {
		t.Fatal("proceeded while scap ran")
	}
	release()
	r = l.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
}

// Story 2b: an unreadable gate counts as closed, and the notice says why;
// once it can be read again the request proceeds.
func TestCalendarDownWaitsThenProceeds(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	l.cal.set(calendar.Schedule{}, errors.New("calendar: schedule is stale: wikitech answered 503"))
	id := l.queue(poolbot.ActionRestart, "")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "deployment calendar unreadable (calendar: schedule is stale: wikitech answered 503)") {
		t.Fatalf("step %q", r.Step)
	}
	if !hasLine(l.notices.All(), "deployment calendar unreadable") {
		t.Fatalf("notices %q", l.notices.All())
	}
	// !windows answers with the outage, not with an internal error.
	if lines, err := l.engine.Windows(context.Background(), "apus"); err != nil || len(lines) != 1 ||
		lines[0] != "deployment calendar unreadable (calendar: schedule is stale: wikitech answered 503): the calendar gate stays closed until it can be read" {
		t.Fatalf("windows %q, %v", lines, err)
	}
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), nil), nil)
	l.engine.NotifyAll() // what the calendar cache's Changed does
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
}

// Story 3: the registry on host 2 of 4 does not come back: hosts 3 and 4
// are not touched, the deploy block is released, END (FAIL) names them.
func TestFirstHostFailureStops(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 4, Config{})
	l.systemctl.Fail("registry2", true)
	id := l.queue(poolbot.ActionRestart, "")
	r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateFailed {
		t.Fatalf("ended %s", r.State)
	}
	if got := l.restarted(); strings.Join(got, ",") != "registry1,registry2" {
		t.Fatalf("restarted %v: hosts after the failure were touched", got)
	}
	sal := l.sal(id)
	end := sal[len(sal)-1]
	for _, want := range []string{"END (FAIL) - restart apus: host 2/4 registry2:", "done: registry1", "not touched: registry3, registry4"} {
		if !strings.Contains(end, want) {
			t.Errorf("END line %q lacks %q", end, want)
		}
	}
	if !strings.Contains(sal[len(sal)-2], "deploy block released") {
		t.Fatalf("SAL %q", sal)
	}
	if got := l.globalLock(); got != "none" {
		t.Fatalf("global lock after failure: %s", got)
	}
	steps, _ := l.store.HostSteps(context.Background(), id)
	if steps[1].State != poolbot.HostFailed || steps[2].State != poolbot.HostPending {
		t.Fatalf("host steps %+v", steps)
	}

	// Fixed by hand, !resume continues from host 2.
	l.systemctl.Fail("registry2", false)
	if err := l.regs["registry2"].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	msg, err := l.engine.Resume(context.Background(), id, "bob", poolbot.Origin{Network: "irc", Account: "bob"})
	if err != nil || !strings.Contains(msg, "at host 2/4 registry2") {
		t.Fatalf("resume: %q %v", msg, err)
	}
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after resume: %s %s", r.State, r.Error)
	}
	if got := l.restarted(); strings.Join(got, ",") != "registry1,registry2,registry2,registry3,registry4" {
		t.Fatalf("restarted %v", got)
	}
}

// A stop of poolbot between steps leaves the request where it is; the
// next run continues without repeating a completed step or SAL line.
func TestRestartOfPoolbotResumes(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 3, Config{})
	id := l.queue(poolbot.ActionDepool, "codfw")
	// Stop right after the first host is done.
	testenv.Eventually(t, 60*time.Second, "the first host to finish", func() bool {
		steps, _ := l.store.HostSteps(context.Background(), id)
		return len(steps) > 0 && steps[0].State == poolbot.HostDone
	})
	l.stop()
	r := l.request(id)
	if r.State.Terminal() {
		t.Skipf("finished before the stop (%s)", r.State)
	}
	if got := l.globalLock(); got != "none" {
		t.Fatalf("deploy block kept across the stop: %s", got)
	}
	l.start()
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after restart: %s %s", r.State, r.Error)
	}
	counts := map[string]int{}
	for _, h := range l.restarted() {
		counts[h]++
	}
	if counts["registry1"] != 1 {
		t.Fatalf("a completed host was restarted again: %v", l.restarted())
	}
	sal := l.sal(id)
	seen := map[string]bool{}
	for _, s := range sal {
		if seen[s] {
			t.Fatalf("SAL line repeated: %q", s)
		}
		seen[s] = true
	}
	if !hasLine(sal, "START -") || !hasLine(sal, "END (PASS)") || !hasLine(sal, "conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw") {
		t.Fatalf("SAL %q", sal)
	}
}

// With resume_after_crash: ask an interrupted request is parked, deploys
// are not blocked, and !resume continues it.
func TestInterruptedRequestParked(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{ResumeAfterCrash: "ask"})
	l.stop()
	id := l.queue(poolbot.ActionRestart, "")
	// A request a previous run left mid-way.
	l.edit(id, func(r *poolbot.Request) { r.State = poolbot.StateRestarting })
	l.start()
	testenv.Eventually(t, 20*time.Second, "the request to be parked", func() bool { return l.request(id).Parked })
	if !hasLine(l.notices.All(), "deploys are NOT blocked") || len(l.restarted()) != 0 {
		t.Fatalf("notices %q, restarts %v", l.notices.All(), l.restarted())
	}
	if _, err := l.engine.Resume(context.Background(), id, "alice", poolbot.Origin{}); err != nil {
		t.Fatal(err)
	}
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after resume: %s %s", r.State, r.Error)
	}
}

// !force skips the calendar and scap gates only once confirmed; the
// last-datacenter guard is never skipped.
func TestForceAndLastDatacenterGuard(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{ForceNeedsConfirm: true})
	w := window("w1", "train", t0.Add(-time.Hour), t0.Add(time.Hour))
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	id := l.queue(poolbot.ActionRestart, "")
	l.waitState(id, 0, poolbot.StateWaiting)
	setForce := func(confirmedBy string) {
		l.edit(id, func(r *poolbot.Request) { r.Forced, r.ForcedBy, r.ConfirmedBy = true, "alice", confirmedBy })
		l.engine.Notify("apus")
	}
	setForce("")
	// Until confirmed it keeps waiting, and says for what.
	testenv.EventuallyReport(t, 20*time.Second, "the unconfirmed force to wait for !confirm", func() (bool, string) {
		r := l.request(id)
		if r.State != poolbot.StateWaiting {
			t.Fatalf("unconfirmed force: %s %q", r.State, r.Step)
		}
		return strings.Contains(r.Step, "awaits !confirm"), fmt.Sprintf("%s %q", r.State, r.Step)
	})
	setForce("bob")
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("forced: %s %s", r.State, r.Error)
	}
	if !hasLine(l.notices.All(), "FORCED by alice") {
		t.Fatalf("notices %q", l.notices.All())
	}

	// eqiad depooled by hand: depooling codfw would leave apus nowhere.
	l.putDiscovery("eqiad", false)
	id2 := l.queue(poolbot.ActionDepool, "codfw")
	l.edit(id2, func(r *poolbot.Request) { r.Forced, r.ForcedBy, r.ConfirmedBy = true, "alice", "bob" })
	l.engine.Notify("apus")
	r := l.waitState(id2, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "cannot be depooled as they are only active in codfw") {
		t.Fatalf("guard step %q", r.Step)
	}
	if !l.pooled("codfw") {
		t.Fatal("last pooled datacenter depooled")
	}
}

// Requests wait their turn, and one that waits too long expires.
func TestQueueOrderAndExpiry(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 1, Config{MaxWait: time.Hour})
	w := window("w1", "train", t0.Add(-time.Hour), t0.Add(3*time.Hour))
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	a := l.queue(poolbot.ActionRestart, "")
	b := l.queue(poolbot.ActionDepool, "codfw")
	l.waitState(a, 0, poolbot.StateWaiting)
	rb := l.waitState(b, 0, poolbot.StateWaiting)
	if !strings.Contains(rb.Step, "behind #1") {
		t.Fatalf("second request step %q", rb.Step)
	}
	// Exactly MaxWait later (ticking a minute at a time could pass the
	// deadline by a minute before the engine acts, on a busy machine).
	l.clock.Advance(time.Hour)
	ra := l.waitState(a, 0, poolbot.StateExpired)
	if !strings.Contains(ra.Error, "expired after waiting 1h 00m") {
		t.Fatalf("expiry %q", ra.Error)
	}
	l.waitState(b, time.Minute, poolbot.StateExpired)
	if len(l.restarted()) != 0 || !l.pooled("codfw") {
		t.Fatal("expired requests acted")
	}
}

// !cancel during restarts stops before the next host and logs END
// (CANCELLED), releasing the deploy block.
func TestCancelDuringRestarts(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 3, Config{})
	proceed := l.systemctl.Hold("registry2")
	id := l.queue(poolbot.ActionRestart, "")
	testenv.Eventually(t, 30*time.Second, "host 2 to start", func() bool { return slices.Contains(l.restarted(), "registry2") })
	l.edit(id, func(r *poolbot.Request) { r.CancelRequested, r.CancelledBy = true, "bob" })
	l.engine.Notify("apus")
	proceed() // host 2, already started, is finished
	r := l.waitState(id, 0, poolbot.StateCancelled, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateCancelled {
		t.Fatalf("ended %s", r.State)
	}
	if got := l.restarted(); strings.Join(got, ",") != "registry1,registry2" {
		t.Fatalf("restarted %v", got)
	}
	l.checkEnd(id, "END (CANCELLED) - restart apus: cancelled by bob after 2/3 hosts; done: registry1, registry2; not touched: registry3")
}

// Dry-run: every read-only step is real (gates, health), every mutating
// one is announced and skipped, and nothing goes to SAL.
func TestDryRun(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{DryRun: true})
	pid := l.regs["registry1"].PID()
	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("dry run ended %s: %s", r.State, r.Error)
	}
	if !l.pooled("codfw") || len(l.restarted()) != 0 || l.regs["registry1"].PID() != pid {
		t.Fatal("dry run changed something")
	}
	if n := len(l.sal(id)); n != 0 {
		t.Fatalf("dry run queued %d SAL lines", n)
	}
	for _, want := range []string{"DRY-RUN #1: would take the deploy block", "DRY-RUN #1: would set apus/codfw pooled=false (now true)",
		"DRY-RUN #1: would restart docker-registry-restricted.service on registry1"} {
		if !hasLine(l.notices.All(), want) {
			t.Errorf("no notice %q in %q", want, l.notices.All())
		}
	}
	for _, n := range l.notices.All() {
		if !strings.HasPrefix(n, "DRY-RUN") {
			t.Errorf("notice without DRY-RUN: %q", n)
		}
	}
}

// A scap run that starts between the gate check and poolbot's lock makes
// the request go back to waiting, having changed nothing.
func TestScapSlipsInBeforeTheBlock(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 1, Config{}, withoutLockProbe)
	release := l.holdScapLock("scap-global-lock", "shared")
	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "a scap run started first") {
		t.Fatalf("step %q", r.Step)
	}
	if !l.pooled("codfw") || len(l.restarted()) != 0 || len(l.sal(id)) != 0 {
		t.Fatal("acted although the block was not taken")
	}
	release()
	l.engine.Notify("apus")
	if r := l.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
}

// A "Finished scap" line relayed by logmsgbot clears the channel gate at
// once; the Started line alone holds the request.
func TestFinishedScapLineClears(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	tr := l.scap.Tracker
	from := scap.Sender{Nick: "logmsgbot"}
	if _, ok := tr.Observe(from, "!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:42|x (T1)]]"); !ok {
		t.Fatal("Started line not recognised")
	}
	id := l.queue(poolbot.ActionRestart, "")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "jdoe@deploy1003") {
		t.Fatalf("step %q", r.Step)
	}
	ev, ok := tr.Observe(from, "!log jdoe@deploy1003 Finished scap sync-world: Backport for [[gerrit:42|x (T1)]] (duration: 02m 15s)")
	if !ok || !ev.Ends() {
		t.Fatal("Finished line not recognised")
	}
	l.engine.NotifyAll() // what the daemon's channel observer does on ev.Ends()
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
}

// While poolbot holds the deploy block, a deployment window that starts
// gets a notice addressed to its deployers.
func TestWindowStartsWhileBlocked(t *testing.T) {
	t.Parallel()
	// Not parallel: it ticks the fake clock while the engine reacts in
	// real time, which a loaded CPU turns into extra ticks.
	l := newHarness(t, 2, Config{})
	w := window("w-late", "UTC late backport window", t0.Add(20*time.Minute), t0.Add(80*time.Minute), "Lucas_WMDE")
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	proceed := l.systemctl.Hold("registry2")
	id := l.queue(poolbot.ActionRestart, "")
	testenv.Eventually(t, 30*time.Second, "host 2 to start", func() bool { return slices.Contains(l.restarted(), "registry2") })
	testenv.EventuallyReport(t, 30*time.Second, "the deployer notice", func() (bool, string) {
		if len(l.notices.Matching("Lucas_WMDE:")) > 0 {
			return true, ""
		}
		l.clock.Advance(time.Minute)
		return false, fmt.Sprintf("notices %q", l.notices.All())
	})
	got := l.notices.Matching("Lucas_WMDE:")[0]
	if !strings.Contains(got, "UTC late backport window") || !strings.Contains(got, "poolbot holds the scap lock for #1") {
		t.Fatalf("notice %q", got)
	}
	proceed()
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
}
