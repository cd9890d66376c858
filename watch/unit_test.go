package watch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/conftool"
	"poolbot/integrations/registry"
	"poolbot/store"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config (defaults filled): %v", err)
	}
	c := DefaultConfig()
	c.Drift.Mode = "sometimes"
	c.Drift.Debounce = -time.Second
	c.Drift.Operator = "Not An Operator"
	c.Drift.PollInterval = time.Millisecond
	c.Probe.Interval = time.Second
	c.Probe.FailuresBeforeNotice = 1000
	err := c.Validate()
	for _, key := range []string{"watch.drift.mode", "watch.drift.debounce", "watch.drift.operator", "watch.drift.poll_interval",
		"watch.probe.interval", "watch.probe.failures_before_notice"} {
		if err == nil || !strings.Contains(err.Error(), key+":") {
			t.Errorf("no problem reported for %s: %v", key, err)
		}
	}
}

func state(pooled bool, index uint64) *conftool.State {
	return &conftool.State{Pooled: pooled, TTL: 300, ModifiedIndex: index}
}

func TestDecide(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	own := NewOwnWrites(clock, 2*time.Minute)
	own.Record("apus", "codfw", conftool.State{Pooled: false, ModifiedIndex: 42})
	known := map[string]conftool.State{"codfw": *state(true, 40), "eqiad": *state(true, 41)}
	ev := func(dc string, old, new *conftool.State, src conftool.ChangeSource) conftool.Change {
		c := conftool.Change{Service: "apus", Datacenter: dc, Source: src, Old: old, New: new}
		if new != nil {
			c.ModifiedIndex = new.ModifiedIndex
		}
		return c
	}
	for _, tc := range []struct {
		name string
		c    conftool.Change
		want verdict
	}{
		{"initial state", ev("codfw", nil, state(false, 40), conftool.SourceInitial), verdictTrack},
		{"poolbot's write", ev("codfw", state(true, 40), state(false, 42), conftool.SourceEvent), verdictOwn},
		{"someone's depool", ev("codfw", state(true, 40), state(false, 43), conftool.SourceEvent), verdictDrift},
		{"resync differs from known", ev("eqiad", nil, state(false, 50), conftool.SourceResync), verdictDrift},
		{"ttl only", ev("eqiad", state(true, 41), &conftool.State{Pooled: true, TTL: 10, ModifiedIndex: 44}, conftool.SourceEvent), verdictTrack},
		{"new datacenter", ev("drmrs", nil, state(false, 45), conftool.SourceEvent), verdictTrack},
		{"pooled object deleted", conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceEvent, Deleted: true}, verdictDrift},
		{"undecodable value", conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceEvent, Err: errors.New("bad json")}, verdictIgnore},
		{"watch error", conftool.Change{Service: "apus", Source: conftool.SourceError, Err: errors.New("down")}, verdictIgnore},
	} {
		if got := decide(known, tc.c, own, clock.Now()); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// confctl has no index: a polled change is poolbot's when an unused write
// of the same value was recorded close enough in time, once.
func TestOwnWritesByValueAndTime(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	own := NewOwnWrites(clock, time.Minute)
	polled := func(pooled bool) conftool.Change {
		return conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceResync, New: state(pooled, 0)}
	}
	own.Record("apus", "codfw", conftool.State{Pooled: false})
	if own.Owns(polled(true), clock.Now()) {
		t.Fatal("other value matched")
	}
	if !own.Owns(polled(false), clock.Now().Add(30*time.Second)) {
		t.Fatal("own write not matched")
	}
	if own.Owns(polled(false), clock.Now().Add(30*time.Second)) {
		t.Fatal("one write matched twice")
	}
	own.Record("apus", "codfw", conftool.State{Pooled: false})
	if own.Owns(polled(false), clock.Now().Add(2*time.Minute)) {
		t.Fatal("matched outside the window")
	}
	var nilOwn *OwnWrites
	nilOwn.Record("apus", "codfw", conftool.State{})
	if nilOwn.Owns(polled(false), clock.Now()) {
		t.Fatal("nil record owns")
	}
	// Bounded per object.
	for i := range 100 {
		own.Record("apus", "codfw", conftool.State{Pooled: true, ModifiedIndex: uint64(i + 1)})
	}
	if n := len(own.writes[objectKey{"apus", "codfw"}]); n != maxOwnWritesPerObject {
		t.Fatalf("%d writes kept", n)
	}
}

func TestAdvanceProbe(t *testing.T) {
	fail := registry.ProbeResult{Code: registry.CodeBlobUploadUnknown, Step: registry.StepCompleteUpload, Status: 404,
		Err: errors.New("complete_upload: PUT /v2/poolbot/probe/blobs/uploads/x: BLOB_UPLOAD_UNKNOWN (HTTP 404)")}
	ok := registry.ProbeResult{OK: true, Code: registry.CodeOK}
	var s store.ProbeState
	var kinds []noticeKind
	at := t0
	for _, res := range []registry.ProbeResult{ok, fail, fail, fail, fail, ok, ok, fail, fail, fail} {
		var k noticeKind
		s, k = advanceProbe(s, res, at, 3)
		kinds = append(kinds, k)
		at = at.Add(time.Minute)
	}
	want := []noticeKind{noticeNone, noticeNone, noticeNone, noticeFailing, noticeNone, noticeRecovered, noticeNone, noticeNone, noticeNone, noticeFailing}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("notices %v, want %v", kinds, want)
		}
	}
	if s.ConsecutiveFailures != 3 || !s.FailingSince.Equal(t0.Add(7*time.Minute)) || !s.LastOK.Equal(t0.Add(6*time.Minute)) || !s.Notified {
		t.Fatalf("state %+v", s)
	}
	if s, _ := advanceProbe(s, registry.ProbeResult{Code: "SOMETHING_NEW"}, at, 3); s.Code != "other" {
		t.Fatalf("unbounded code %q", s.Code)
	}
}

func TestInstanceLabelAndAgo(t *testing.T) {
	for host, want := range map[string]string{"registry2004.codfw.wmnet": "registry2004/ml", "registry1": "registry1/ml",
		"10.64.0.1": "10.64.0.1/ml"} {
		if got := instanceLabel(host, "ml"); got != want {
			t.Errorf("instanceLabel(%s) = %s", host, got)
		}
	}
	for d, want := range map[time.Duration]string{-time.Second: "00m 00s", 45 * time.Second: "00m 45s", 2 * time.Minute: "02m 00s",
		3 * time.Hour: "3h 00m 00s", 300 * time.Millisecond: "00m 00s"} {
		if got := ago(d); got != want {
			t.Errorf("ago(%s) = %s", d, got)
		}
	}
	if got := truncate(strings.Repeat("é", 200), 11); got != "éééé…" {
		t.Errorf("truncate: %q", got)
	}
}

// BenchmarkDriftDecision is the hot path of every conftool event: rule on
// the change against what is known and the record of own writes.
func BenchmarkDriftDecision(b *testing.B) {
	clock := clockwork.NewFakeClockAt(t0)
	own := NewOwnWrites(clock, 2*time.Minute)
	for i := range maxOwnWritesPerObject {
		own.Record("apus", "codfw", conftool.State{Pooled: i%2 == 0, ModifiedIndex: uint64(100 + i)})
	}
	known := map[string]conftool.State{"codfw": *state(true, 90), "eqiad": *state(true, 91)}
	drift := conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceEvent,
		Old: state(true, 90), New: state(false, 999), ModifiedIndex: 999}
	mine := drift
	mine.New, mine.ModifiedIndex = state(false, 114), 114
	now := clock.Now()
	b.ReportAllocs()
	for b.Loop() {
		if decide(known, drift, own, now) != verdictDrift || decide(known, mine, own, now) != verdictOwn {
			b.Fatal("wrong verdict")
		}
	}
}

// BenchmarkObserve is the whole in-memory path of one event that is not a
// pooled change (the common case: poolbot's own writes, TTL changes).
func BenchmarkObserve(b *testing.B) {
	clock := clockwork.NewFakeClockAt(t0)
	w := &DriftWatcher{cfg: DefaultConfig().Drift, own: NewOwnWrites(clock, time.Minute), clock: clock,
		log: discardLogger(), svc: map[string]*serviceDrift{"apus": {name: "apus", known: map[string]conftool.State{}}}}
	w.observe(conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceInitial, New: state(true, 1)})
	c := conftool.Change{Service: "apus", Datacenter: "codfw", Source: conftool.SourceEvent, Old: state(true, 1)}
	b.ReportAllocs()
	i := uint64(1)
	for b.Loop() {
		i++
		c.New, c.ModifiedIndex = &conftool.State{Pooled: true, TTL: int(i % 300), ModifiedIndex: i}, i
		if w.observe(c) != verdictTrack {
			b.Fatal("wrong verdict")
		}
	}
}
