package store

import (
	"context"
	"testing"
	"time"

	"poolbot"
)

func TestProbeStates(t *testing.T) {
	s, clock, _ := openTest(t)
	ctx := context.Background()
	p := ProbeState{Service: "apus", Host: "registry2004.codfw.wmnet", Instance: "ml", At: clock.Now(), Code: "BLOB_UPLOAD_UNKNOWN",
		Step: "complete_upload", Status: 404, Error: "complete_upload: PUT …", Duration: 1500 * time.Millisecond,
		ConsecutiveFailures: 3, FailingSince: clock.Now().Add(-4 * time.Minute), Notified: true}
	err := s.Tx(ctx, func(tx *Tx) error {
		if _, ok, err := tx.ProbeState("apus", p.Host, "ml"); ok || err != nil {
			t.Fatalf("probe state before any probe: %v %v", ok, err)
		}
		if err := tx.PutProbeState(p); err != nil {
			return err
		}
		// The latest result replaces the previous one.
		p.At, p.ConsecutiveFailures = p.At.Add(time.Minute), 4
		return tx.PutProbeState(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	other := ProbeState{Service: "apus", Host: "registry1003.eqiad.wmnet", Instance: "restricted", At: clock.Now(), OK: true,
		Code: "ok", LastOK: clock.Now()}
	if err := s.Tx(ctx, func(tx *Tx) error { return tx.PutProbeState(other) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.ProbeStates(ctx, "apus")
	if err != nil || len(got) != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	if got[0].Host != other.Host || !got[0].OK || !got[0].LastOK.Equal(other.LastOK) || !got[0].FailingSince.IsZero() {
		t.Fatalf("first %+v", got[0])
	}
	g := got[1]
	if g.ConsecutiveFailures != 4 || !g.At.Equal(p.At) || !g.Notified || g.Duration != p.Duration || g.Status != 404 ||
		g.Code != p.Code || g.Step != p.Step || !g.FailingSince.Equal(p.FailingSince) || g.Error != p.Error {
		t.Fatalf("second %+v", g)
	}
	if none, err := s.ProbeStates(ctx, "other"); err != nil || len(none) != 0 {
		t.Fatalf("other service: %+v %v", none, err)
	}
}

func TestDrifts(t *testing.T) {
	s, clock, _ := openTest(t)
	ctx := context.Background()
	r := insert(t, s, newRequest("poolbot"))
	for i, d := range []Drift{
		{Service: "apus", Datacenter: "codfw", PooledFrom: true, Mode: "propose", Detail: "old"},
		{Service: "apus", Datacenter: "codfw", PooledTo: true, Changes: 2, Who: "jdoe@cumin1003", Mode: "auto", RequestID: r.ID, Detail: "new"},
		{Service: "other", Datacenter: "eqiad", Mode: "auto"},
	} {
		if err := s.Tx(ctx, func(tx *Tx) error { _, err := tx.AddDrift(d); return err }); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			clock.Advance(2 * time.Hour)
		}
	}
	got, err := s.RecentDrifts(ctx, "apus", clock.Now().Add(-time.Hour), 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	d := got[0]
	if d.Detail != "new" || d.RequestID != r.ID || d.Changes != 2 || d.Who != "jdoe@cumin1003" || !d.PooledTo || !d.At.Equal(clock.Now()) {
		t.Fatalf("%+v", d)
	}
	got, _ = s.RecentDrifts(ctx, "apus", time.Time{}, 10)
	if len(got) != 2 || got[1].Detail != "old" || got[1].Changes != 1 || got[1].RequestID != 0 {
		t.Fatalf("%+v", got)
	}
	// A drift may name a request only if it exists.
	err = s.Tx(ctx, func(tx *Tx) error {
		_, err := tx.AddDrift(Drift{Service: "apus", Datacenter: "codfw", Mode: "auto", RequestID: poolbot.RequestID(99)})
		return err
	})
	if err == nil {
		t.Fatal("drift with an unknown request stored")
	}
}
