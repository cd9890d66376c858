package store

import (
	"context"
	"reflect"
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

// What a host step changed outside the host (drained nodes, silences) is
// stored with it and survives a reopen, as a crash mid-host needs.
func TestHostGuardsStored(t *testing.T) {
	s, _, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("alice"))
	ends := time.Date(2026, 11, 23, 14, 40, 0, 0, time.UTC)
	drained := []poolbot.DrainedNode{{DC: "codfw", Cluster: "apus", Service: "apus", Pooled: "yes"},
		{DC: "codfw", Cluster: "apus", Service: "apus-https", Pooled: "inactive"}}
	silences := []poolbot.HostSilence{{ID: "0c1f9a3e-1111-4222-8333-444455556666", EndsAt: ends}}
	err := s.Tx(ctx, func(tx *Tx) error {
		if err := tx.InsertHostSteps(r.ID, []string{"h1", "h2"}); err != nil {
			return err
		}
		if err := tx.SetHostDrained(r.ID, 2, drained); err != nil {
			return err
		}
		return tx.SetHostSilences(r.ID, 2, silences)
	})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := s.HostSteps(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if steps[0].Drained != nil || steps[0].Silences != nil {
		t.Fatalf("host 1 %+v", steps[0])
	}
	if !reflect.DeepEqual(steps[1].Drained, drained) || len(steps[1].Silences) != 1 ||
		steps[1].Silences[0].ID != silences[0].ID || !steps[1].Silences[0].EndsAt.Equal(ends) {
		t.Fatalf("host 2 %+v", steps[1])
	}
	if err := s.Tx(ctx, func(tx *Tx) error { return tx.SetHostSilences(r.ID, 2, nil) }); err != nil {
		t.Fatal(err)
	}
	if steps, _ := s.HostSteps(ctx, r.ID); steps[1].Silences != nil || steps[1].Drained == nil {
		t.Fatalf("after clearing silences %+v", steps[1])
	}
	if err := s.Tx(ctx, func(tx *Tx) error { return tx.SetHostDrained(r.ID, 9, drained) }); err == nil {
		t.Fatal("no error for a host step that does not exist")
	}
}
