package procedure

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/chat"
	"poolbot/commands"
	"poolbot/integrations/calendar"
	"poolbot/store"
)

type statusReplies struct {
	mu    sync.Mutex
	lines []string
}

func (r *statusReplies) Reply(_ context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, text)
	return nil
}

// status asks !status through the command router, with the engine as its
// Reporter, as the daemon wires it.
func (l *harness) status() string {
	l.t.Helper()
	ops, err := commands.NewOperators([]commands.Operator{{Name: "alice", IRCAccounts: []string{"alice"}}})
	if err != nil {
		l.t.Fatal(err)
	}
	router := commands.NewRouter(commands.Options{Prefix: "!", Services: map[string][]string{"apus": {"eqiad", "codfw"}}},
		ops, l.store, commands.Backends{Reporter: l.engine}, l.clock, nil)
	out := &statusReplies{}
	router.HandleMessage(context.Background(), chat.Message{Network: "irc", Channel: "#wikimedia-operations", Nick: "alice",
		Account: "alice", AccountKnown: true, Text: "!status", Time: l.clock.Now()}, out)
	out.mu.Lock()
	defer out.mu.Unlock()
	return strings.Join(out.lines, "\n")
}

// Issue 12 item 7: while restarting, !status said only "restarting, FORCED
// by alice". It says which host of how many, and the estimated end.
func TestStatusWhileRestartingShowsHostAndEnd(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 3, Config{})
	l.stop()
	id := l.queue(poolbot.ActionRestart, "")
	l.edit(id, func(r *poolbot.Request) {
		r.State, r.Forced, r.ForcedBy, r.ForceReason = poolbot.StateRestarting, true, "alice", "T1 urgent"
	})
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		if err := tx.InsertHostSteps(id, l.hosts); err != nil {
			return err
		}
		if err := tx.UpdateHostStep(id, 1, poolbot.HostRestarting, ""); err != nil {
			return err
		}
		if err := tx.UpdateHostStep(id, 1, poolbot.HostDone, "ok"); err != nil {
			return err
		}
		return tx.UpdateHostStep(id, 2, poolbot.HostRestarting, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	l.clock.Advance(20 * time.Second)
	// Host 2 started 20 s ago and takes a minute (PerHostEstimate), host 3
	// another: at 14:10:20 the end is 40 s + 1 min away, 14:12:00.
	got := l.status()
	want := "#1 restart apus by alice: restarting, FORCED by alice; host 2/3 registry2 restarting (1 done), estimated end 14:12:00 UTC"
	if !strings.Contains(got, want) {
		t.Fatalf("!status:\n%s\nwant a line with %q", got, want)
	}
}

// Issue 12 item 7: after host 2 failed with codfw already depooled,
// !status said "no active or queued requests". The failed request stays in
// view with the conftool state and what to do.
func TestStatusKeepsAFailedRequestInView(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{})
	l.systemctl.Fail("registry2", true)
	id := l.queue(poolbot.ActionDepool, "codfw")
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateFailed {
		t.Fatalf("ended %s", r.State)
	}
	got := l.status()
	for _, want := range []string{
		"apus: codfw depooled, eqiad pooled (eqiad serving) no active or queued requests",
		"#1 depool apus in codfw by alice: FAILED 00m 00s ago: host 2/2 registry2:",
		"apus/codfw pooled=false now; to do: !resume 1 retries host 2/2 registry2 once it is fixed",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("!status:\n%s\nwant %q", got, want)
		}
	}
	// Once a later request of the service ended, the failure is history.
	l.systemctl.Fail("registry2", false)
	if err := l.regs["registry2"].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := l.queue(poolbot.ActionPool, "codfw")
	if r := l.waitState(next, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("pool ended %s: %s", r.State, r.Error)
	}
	if got := l.status(); strings.Contains(got, "FAILED") {
		t.Fatalf("!status after a later request:\n%s", got)
	}
}

// Issue 12 item 7: a waiting request's blockers were said twice in
// !status, the stored ones and the live ones, with two different ages.
func TestStatusSaysTheBlockersOnce(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	stale := func(age string) error {
		return fmt.Errorf("%w: last good fetch %s ago; last error: %w", calendar.ErrStale, age, errors.New("wikitech answered HTTP 500"))
	}
	l.cal.set(calendar.Schedule{}, stale("1h 01m 00s"))
	id := l.queue(poolbot.ActionRestart, "")
	l.waitState(id, 0, poolbot.StateWaiting)
	l.cal.set(calendar.Schedule{}, stale("1h 02m 00s"))
	got := l.status()
	if n := strings.Count(got, "deployment calendar unreadable"); n != 1 || !strings.Contains(got, "1h 02m 00s ago") {
		t.Fatalf("!status says the blocker %d times:\n%s", n, got)
	}
}

// Issue 12 item 7: a cause that changes (calendar unreachable → HTTP 500 →
// timeout) is announced once per change, not only visible in !status; the
// same cause with a new age is not announced again.
func TestChangedCauseIsAnnouncedOnce(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	stale := func(age string, cause error) error {
		return fmt.Errorf("%w: last good fetch %s ago; last error: %w", calendar.ErrStale, age, cause)
	}
	causes := []error{
		stale("1h 01m 00s", errors.New("dial tcp 127.0.0.1:443: connect: connection refused")),
		stale("1h 02m 00s", errors.New("dial tcp 127.0.0.1:443: connect: connection refused")),
		stale("1h 03m 00s", errors.New("wikitech answered HTTP 500")),
		stale("1h 04m 00s", errors.New("wikitech answered HTTP 500")),
		stale("1h 05m 00s", errors.New("no complete answer within 00m 10s (timeout)")),
	}
	l.cal.set(calendar.Schedule{}, causes[0])
	id := l.queue(poolbot.ActionRestart, "")
	l.waitState(id, 0, poolbot.StateWaiting)
	for _, c := range causes[1:] {
		l.cal.set(calendar.Schedule{}, c)
		l.engine.NotifyAll()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(l.request(id).Step, strings.TrimPrefix(c.Error(), "calendar: schedule is stale: ")) {
			if time.Now().After(deadline) {
				t.Fatalf("step %q", l.request(id).Step)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got := l.notices.Matching("waiting: deployment calendar unreadable")
	if len(got) != 3 || !strings.Contains(got[0], "connection refused") || !strings.Contains(got[1], "HTTP 500") || !strings.Contains(got[2], "timeout") {
		t.Fatalf("waiting notices:\n%s", strings.Join(got, "\n"))
	}
}
