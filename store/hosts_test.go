package store

import (
	"context"
	"testing"
	"time"

	"poolbot"
)

// The time estimate learns only from hosts that were really restarted:
// a dry-run step took no restart's time.
func TestRecentHostDurationsLeaveOutDryRun(t *testing.T) {
	s, clock, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	if err := s.Tx(ctx, func(tx *Tx) error { return tx.InsertHostSteps(r.ID, []string{"h1", "h2"}) }); err != nil {
		t.Fatal(err)
	}
	step := func(pos int, took time.Duration, detail string) {
		t.Helper()
		for _, st := range []struct {
			state  poolbot.HostState
			detail string
		}{{poolbot.HostRestarting, ""}, {poolbot.HostDone, detail}} {
			if err := s.Tx(ctx, func(tx *Tx) error { return tx.UpdateHostStep(r.ID, pos, st.state, st.detail) }); err != nil {
				t.Fatal(err)
			}
			clock.Advance(took)
		}
	}
	step(1, 90*time.Second, "restricted healthy, probe ok")
	step(2, time.Second, poolbot.DryRunMark+" (not restarted): restricted healthy")
	got, err := s.RecentHostDurations(ctx, "apus", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] < 89 || got[0] > 91 {
		t.Fatalf("durations %v, want only the real restart's 90 s", got)
	}
}
