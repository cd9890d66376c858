package procedure

import (
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
)

// Issue 12 item 6: the window of the incident, 01:21:10–01:21:50, was
// shown as 01:21–01:22 UTC and then as 01:21–01:21 UTC (active).
func TestWindowShownNeverEndsBeforeItStarts(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 7, 1, 21, 10, 0, time.UTC)
	w := window("w", "UTC late backport window", start, start.Add(40*time.Second))
	for _, now := range []time.Time{start.Add(-time.Minute), start.Add(30 * time.Second)} {
		got := describeWindow(w, now)
		if !strings.Contains(got, "01:21–01:22 UTC") {
			t.Errorf("at %s: %q", now.Format(time.TimeOnly), got)
		}
	}
}

// Issue 12 item 6: the estimated start was cut to the minute, up to 59 s
// earlier than the real one. A window ending at 14:20:30 with a 5m lead
// margin opens the gate at 14:25:30: the notice says 14:26, not 14:25.
func TestEstimatedStartNeverEarlierThanTheGate(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 1, Config{})
	w := window("w", "UTC afternoon backport window", t0.Add(-10*time.Minute), t0.Add(10*time.Minute+30*time.Second))
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), []calendar.Window{w}), nil)
	id := l.queue(poolbot.ActionRestart, "")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "estimated start 14:26 UTC") || !strings.Contains(r.Step, "14:00–14:21 UTC (active)") {
		t.Fatalf("waiting step %q", r.Step)
	}
	// Near the start, the seconds are shown.
	l.clock.Advance(13 * time.Minute)
	l.engine.NotifyAll()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.request(id).Step, "estimated start 14:25:30 UTC") {
		if time.Now().After(deadline) {
			t.Fatalf("step %q", l.request(id).Step)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
