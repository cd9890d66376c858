package commands

import (
	"context"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/store"
)

// setDNS moves request id to state with its stored DNS step, as the
// procedure would have left it.
func (f *fixture) setDNS(id poolbot.RequestID, state poolbot.State, step poolbot.DNSStep, errText string) {
	f.t.Helper()
	err := f.store.Tx(context.Background(), func(tx *store.Tx) error {
		r, err := tx.Request(id)
		if err != nil {
			return err
		}
		from := r.State
		r.State, r.Error = state, errText
		if _, err := tx.UpdateRequest(r, from); err != nil {
			return err
		}
		step.RequestID = id
		return tx.PutDNSStep(step)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// !status counts down a request's wait for cached DNS answers from the
// stored convergence time, and !cancel says it stops before any host.
func TestStatusShowsDNSWait(t *testing.T) {
	f := newFixture(t, true)
	f.say("alice", "!depool apus codfw T422166 maint")
	converged := f.clock.Now().Add(-48 * time.Second)
	f.setDNS(1, poolbot.StateDNS, poolbot.DNSStep{OldTTL: 300 * time.Second, ConvergedAt: converged}, "")
	got := f.say("", "!status")
	want := "#1 depool apus in codfw by alice: dns (DNS: waiting 04m 12s for cached answers to expire; restarts start at 14:04:12 UTC)"
	if len(got) != 2 || got[1] != want {
		t.Fatalf("status %q, want %q", got, want)
	}
	if got := one(t, f.say("alice", "!cancel 1")); !strings.Contains(got, "stops during the DNS wait, before any host is restarted") {
		t.Fatalf("cancel %q", got)
	}
}

// After a request failed because DNS did not follow its conftool change,
// !status says so until the next request ends.
func TestStatusShowsDNSNotFollowed(t *testing.T) {
	f := newFixture(t, true)
	f.say("alice", "!depool apus codfw T422166 maint")
	why := "conftool was changed (apus/codfw pooled=false now) but DNS did not follow: DNS did not follow within 1m0s: authoritative server 10.0.0.1:5353 answered 10.2.1.10 (codfw) for codfw clients, want 10.2.2.10 (eqiad); no host was restarted"
	f.setDNS(1, poolbot.StateFailed, poolbot.DNSStep{OldTTL: 300 * time.Second}, why)
	got := f.say("", "!status")
	if len(got) != 2 || got[0] != "apus last request #1 depool apus in codfw FAILED in its DNS step: "+why {
		t.Fatalf("status %q", got)
	}
}
