package procedure

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/internal/testenv"
	"poolbot/requests"
)

// The lifecycle's decisions on fakes (fakes_test.go): fast and parallel.
// Each has a real-server counterpart in procedure_test.go or cancel_test.go.

var (
	alice = requests.Actor{Name: "alice"}
	bob   = requests.Actor{Name: "bob"}
)

// A depool runs end to end: block, conftool, every host, release.
func TestUnitDepoolRuns(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 3, Config{})
	id := u.queue(poolbot.ActionDepool, "codfw")
	if r := u.waitState(id, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	if got := u.exec.hosts(); !slices.Equal(got, []string{"registry1", "registry2", "registry3"}) {
		t.Fatalf("restarted %v", got)
	}
	if pooled, writes := u.conf.state("apus", "codfw"); pooled || writes != 1 {
		t.Fatalf("codfw pooled=%t after %d writes", pooled, writes)
	}
	if held, blocks := u.scap.state(); held || blocks != 1 {
		t.Fatalf("deploy block held=%t, taken %d times", held, blocks)
	}
	sal := u.sal(id)
	if len(sal) == 0 || !strings.Contains(sal[0], "START - depool apus in codfw") || !strings.Contains(sal[len(sal)-1], "END (PASS)") {
		t.Fatalf("SAL:\n%s", strings.Join(sal, "\n"))
	}
}

// A write conftool refuses ends the request with conftool's own words,
// said once: the client's errors already name conftool.
func TestUnitConftoolRefusalSaidOnce(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 1, Config{})
	u.conf.mu.Lock()
	// As the etcd client words it.
	u.conf.refuse = fmt.Errorf("conftool: set apus/codfw pooled=false: %w", &conftool.LastPooledError{Service: "apus", Datacenter: "codfw"})
	u.conf.mu.Unlock()
	id := u.queue(poolbot.ActionDepool, "codfw")
	r := u.waitState(id, poolbot.StateDone, poolbot.StateFailed)
	want := u.conf.refuse.Error()
	if r.State != poolbot.StateFailed || !strings.HasPrefix(r.Error, want) || strings.Contains(r.Error, "conftool: conftool:") {
		t.Fatalf("%s %q, want it to start %q", r.State, r.Error, want)
	}
	if sal := u.sal(id); len(sal) == 0 || strings.Contains(sal[len(sal)-1], "conftool: conftool:") {
		t.Fatalf("SAL:\n%s", strings.Join(sal, "\n"))
	}
}

// conftool's depool landed, then a concurrent depool elsewhere made it put
// the object back: both writes are poolbot's own for the drift watch
// (before, the depool's intent was forgotten and both were drift).
func TestUnitRevertedDepoolIsOwnWrite(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 1, Config{})
	u.conf.mu.Lock()
	u.conf.refuse = fmt.Errorf("conftool: set apus/codfw pooled=false: %w", &conftool.LastPooledError{
		Service: "apus", Datacenter: "codfw", Depool: 41, Repool: 42})
	u.conf.mu.Unlock()
	id := u.queue(poolbot.ActionDepool, "codfw")
	if r := u.waitState(id, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateFailed {
		t.Fatalf("%s %s", r.State, r.Error)
	}
	// The forget after the read-back (codfw is pooled) finds no open
	// intent left: the records settled it.
	want := []string{"intend apus/codfw pooled=false", "record apus/codfw pooled=false index=41",
		"record apus/codfw pooled=true index=42", "forget apus/codfw pooled=false"}
	if got := u.own.all(); !slices.Equal(got, want) {
		t.Fatalf("OwnWrites calls %q, want %q", got, want)
	}
}

// While scap deploys, a request waits and says so; it runs once scap is
// clear.
func TestUnitWaitsForScap(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 1, Config{})
	u.scap.setBusy("jdoe")
	id := u.queue(poolbot.ActionRestart, "")
	u.waitFor(id, "waiting on scap", func(r poolbot.Request) bool {
		return r.State == poolbot.StateWaiting && strings.Contains(r.Step, "jdoe")
	})
	if len(u.exec.hosts()) != 0 {
		t.Fatalf("restarted while scap ran: %v", u.exec.hosts())
	}
	u.scap.setBusy("")
	u.engine.Notify("apus")
	if r := u.waitState(id, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("%s %s", r.State, r.Error)
	}
}

// !force skips the calendar only once another operator confirms it; the
// last-datacenter guard holds even then.
func TestUnitForceNeedsConfirmAndGuardHolds(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 1, Config{ForceNeedsConfirm: true})
	w := window("w1", "train", t0.Add(-time.Hour), t0.Add(time.Hour))
	u.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	ctx := context.Background()

	u.conf.set("apus", "eqiad", false) // codfw is the last pooled datacenter
	guarded := u.queue(poolbot.ActionDepool, "codfw")
	restart := u.queue(poolbot.ActionRestart, "")
	u.waitState(guarded, poolbot.StateWaiting)
	for _, id := range []poolbot.RequestID{guarded, restart} {
		if _, err := u.changes.Force(ctx, alice, id, "T1 outage"); err != nil {
			t.Fatal(err)
		}
	}
	u.engine.Notify("apus")
	u.waitFor(guarded, "awaiting !confirm", func(r poolbot.Request) bool { return strings.Contains(r.Step, "awaits !confirm") })
	if reply, _ := u.changes.Confirm(ctx, alice, guarded); !strings.HasPrefix(reply, "refused:") {
		t.Fatalf("self-confirm: %q", reply)
	}
	if _, err := u.changes.Confirm(ctx, bob, guarded); err != nil {
		t.Fatal(err)
	}
	u.engine.Notify("apus")
	r := u.waitFor(guarded, "blocked by the last-datacenter guard", func(r poolbot.Request) bool {
		return r.State == poolbot.StateWaiting && strings.Contains(r.Step, "cannot be depooled as they are only active in codfw") && !strings.Contains(r.Step, "train")
	})
	if r.Forced != true || r.ConfirmedBy != "bob" {
		t.Fatalf("forced=%t confirmed by %q", r.Forced, r.ConfirmedBy)
	}
	if _, writes := u.conf.state("apus", "codfw"); writes != 0 {
		t.Fatalf("conftool written %d times past the guard", writes)
	}
	// The guarded depool heads the queue; cancelling it lets the forced,
	// confirmed restart run through the window.
	if _, err := u.changes.Cancel(ctx, alice, guarded, "wrong dc"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.changes.Confirm(ctx, bob, restart); err != nil {
		t.Fatal(err)
	}
	u.engine.Notify("apus")
	if r := u.waitState(restart, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("forced restart: %s %s", r.State, r.Error)
	}
	if !hasLine(u.notices.All(), "FORCED by alice") {
		t.Fatalf("notices %q", u.notices.All())
	}
}

// A cancel of a waiting request ends it at once; nothing is touched.
func TestUnitCancelWhileWaiting(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 2, Config{})
	u.scap.setBusy("jdoe")
	id := u.queue(poolbot.ActionDepool, "codfw")
	u.waitState(id, poolbot.StateWaiting)
	reply, err := u.changes.Cancel(context.Background(), bob, id, "not today")
	if err != nil || reply != "#1 cancelled: depool apus in codfw" {
		t.Fatalf("cancel: %q %v", reply, err)
	}
	u.engine.Notify("apus")
	if r := u.request(id); r.State != poolbot.StateCancelled || r.Error != "cancelled: not today by bob" {
		t.Fatalf("%s %q", r.State, r.Error)
	}
	u.scap.setBusy("")
	u.engine.Notify("apus")
	if _, blocks := u.scap.state(); blocks != 0 || len(u.exec.hosts()) != 0 {
		t.Fatalf("deploy block taken %d times, restarts %v", blocks, u.exec.hosts())
	}
	if _, writes := u.conf.state("apus", "codfw"); writes != 0 {
		t.Fatalf("conftool written %d times", writes)
	}
}

// A cancel during the restarts stops before the next host and logs END
// (CANCELLED), releasing the deploy block.
func TestUnitCancelDuringRestarts(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 3, Config{})
	proceed := u.exec.holdHost("registry2")
	id := u.queue(poolbot.ActionRestart, "")
	testenv.Eventually(t, 10*time.Second, "host 2 to start", func() bool { return slices.Contains(u.exec.hosts(), "registry2") })
	reply, err := u.changes.Cancel(context.Background(), bob, id, "")
	if err != nil || !strings.Contains(reply, "stops before the next host") {
		t.Fatalf("cancel: %q %v", reply, err)
	}
	proceed()
	r := u.waitState(id, poolbot.StateCancelled, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateCancelled || slices.Contains(u.exec.hosts(), "registry3") {
		t.Fatalf("%s, restarted %v", r.State, u.exec.hosts())
	}
	if held, _ := u.scap.state(); held {
		t.Fatal("deploy block still held")
	}
	if sal := u.sal(id); !strings.Contains(sal[len(sal)-1], "END (CANCELLED)") {
		t.Fatalf("SAL:\n%s", strings.Join(sal, "\n"))
	}
}

// The first failing host stops the sequence; the request fails and
// releases the block, and !resume continues from that host.
func TestUnitFirstHostFailureStopsThenResumes(t *testing.T) {
	t.Parallel()
	u := newUnit(t, 3, Config{})
	u.exec.failHost("registry2")
	id := u.queue(poolbot.ActionRestart, "")
	r := u.waitState(id, poolbot.StateFailed, poolbot.StateDone)
	if r.State != poolbot.StateFailed || slices.Contains(u.exec.hosts(), "registry3") {
		t.Fatalf("%s, restarted %v", r.State, u.exec.hosts())
	}
	if held, _ := u.scap.state(); held {
		t.Fatal("deploy block still held")
	}
	u.exec.mu.Lock()
	u.exec.fail = nil
	u.exec.mu.Unlock()
	reply, err := u.engine.Resume(context.Background(), id, "bob", poolbot.Origin{})
	if err != nil || reply != "#1 resuming restart apus at host 2/3 registry2" {
		t.Fatalf("resume: %q %v", reply, err)
	}
	if r := u.waitState(id, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after resume: %s %s", r.State, r.Error)
	}
	if got := u.exec.hosts(); !slices.Equal(got, []string{"registry1", "registry2", "registry2", "registry3"}) {
		t.Fatalf("restarted %v, want registry1 once and registry2 again", got)
	}
	if !hasLine(u.sal(id), "RESUME by bob - restart apus from host 2/3 registry2") {
		t.Fatalf("SAL:\n%s", strings.Join(u.sal(id), "\n"))
	}
}
