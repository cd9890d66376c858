package requests

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/store"
)

var t0 = time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)

func openStore(t *testing.T, clock clockwork.Clock) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "poolbot.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var (
	alice = Actor{Name: "alice", Origin: poolbot.Origin{Network: "irc", Nick: "alice"}}
	bob   = Actor{Name: "bob", Origin: poolbot.Origin{Network: "irc", Nick: "bob"}}
)

func depool(dc string) poolbot.Request {
	return poolbot.Request{Action: poolbot.ActionDepool, Service: "apus", Datacenter: dc, Reason: "T1 test", Operator: "alice"}
}

// A second request for the same change is refused and stores nothing.
func TestQueueRefusesDuplicate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t, clockwork.NewFakeClockAt(t0))
	c := New(st, Policy{})
	r, pos, err := c.Queue(ctx, alice, depool("codfw"))
	if err != nil || pos != 1 || r.State != poolbot.StateQueued {
		t.Fatalf("first: %+v %d %v", r, pos, err)
	}
	_, _, err = c.Queue(ctx, bob, depool("codfw"))
	var refused Refusal
	if !errors.As(err, &refused) || string(refused) != "depool apus in codfw is already open as #1 (queued, requested by alice)" {
		t.Fatalf("duplicate: %v", err)
	}
	if all, _ := st.List(ctx, store.Filter{Service: "apus"}); len(all) != 1 {
		t.Fatalf("%d requests stored", len(all))
	}
	if _, pos, err := c.Queue(ctx, bob, depool("eqiad")); err != nil || pos != 2 {
		t.Fatalf("other dc: %d %v", pos, err)
	}
	ev, _ := st.Events(ctx, r.ID)
	if len(ev) != 1 || ev[0].Kind != "created" || ev[0].Actor != "alice" || ev[0].Detail != "depool apus in codfw: T1 test" {
		t.Fatalf("events %+v", ev)
	}
}

// Force and its confirmation are one transaction each with their SAL
// line; in dry-run mode the state and event change but no SAL line is
// queued.
func TestForceConfirmSAL(t *testing.T) {
	t.Parallel()
	for _, dry := range []bool{false, true} {
		ctx := context.Background()
		clock := clockwork.NewFakeClockAt(t0)
		st := openStore(t, clock)
		c := New(st, Policy{DryRun: dry, ForceNeedsConfirm: true, ConfirmWindow: 10 * time.Minute, Prefix: "!"})
		r, _, err := c.Queue(ctx, alice, depool("codfw"))
		if err != nil {
			t.Fatal(err)
		}
		reply, err := c.Force(ctx, alice, r.ID, "T2 outage")
		if err != nil || reply != "#1 FORCE requested by alice for depool apus in codfw: needs !confirm 1 from another operator within 10m 00s" {
			t.Fatalf("force: %q %v", reply, err)
		}
		if reply, _ := c.Confirm(ctx, alice, r.ID); !strings.HasPrefix(reply, "refused:") {
			t.Fatalf("self-confirm: %q", reply)
		}
		clock.Advance(11 * time.Minute)
		if reply, _ := c.Confirm(ctx, bob, r.ID); !strings.Contains(reply, "expired (older than 10m 00s); !force again") {
			t.Fatalf("late confirm: %q", reply)
		}
		if _, err := c.Force(ctx, alice, r.ID, "T2 outage"); err != nil {
			t.Fatal(err)
		}
		if reply, err := c.Confirm(ctx, bob, r.ID); err != nil || !strings.HasPrefix(reply, "#1 FORCE confirmed by bob") {
			t.Fatalf("confirm: %q %v", reply, err)
		}
		got, _ := st.Request(ctx, r.ID)
		if !got.Forced || got.ForcedBy != "alice" || got.ConfirmedBy != "bob" {
			t.Fatalf("dry=%t: %+v", dry, got)
		}
		sal, _ := st.SALLines(ctx, r.ID)
		want := 3 // force, force again, confirm
		if dry {
			want = 0
		}
		if len(sal) != want {
			t.Fatalf("dry=%t: SAL %q", dry, sal)
		}
	}
}

// Cancel ends a pending request at once and only asks a running one to
// stop; a second cancel changes nothing.
func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t, clockwork.NewFakeClockAt(t0))
	c := New(st, Policy{})
	pending, _, _ := c.Queue(ctx, alice, depool("codfw"))
	if reply, err := c.Cancel(ctx, bob, pending.ID, "wrong dc"); err != nil || reply != "#1 cancelled: depool apus in codfw" {
		t.Fatalf("cancel: %q %v", reply, err)
	}
	if r, _ := st.Request(ctx, pending.ID); r.State != poolbot.StateCancelled || r.Error != "cancelled: wrong dc by bob" {
		t.Fatalf("%+v", r)
	}
	running, _, _ := c.Queue(ctx, alice, depool("eqiad"))
	if err := st.Tx(ctx, func(tx *store.Tx) error {
		r, _ := tx.Request(running.ID)
		r.State = poolbot.StateRestarting
		_, err := tx.UpdateRequest(r, poolbot.StateQueued)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if reply, _ := c.Cancel(ctx, bob, running.ID, ""); reply != "#2: cancel requested; depool apus in eqiad stops before the next host" {
		t.Fatalf("running: %q", reply)
	}
	if reply, _ := c.Cancel(ctx, alice, running.ID, ""); reply != "#2: cancel already requested by bob; it stops before the next host" {
		t.Fatalf("again: %q", reply)
	}
	if ev, _ := st.Events(ctx, running.ID); len(ev) != 2 || ev[1].Kind != "cancel" || ev[1].Actor != "bob" {
		t.Fatalf("events %+v", ev)
	}
}
