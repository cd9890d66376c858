package procedure

import (
	"context"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/calendar"
)

// A Deployments card without an end time keeps the calendar gate closed
// from its start for calendar.unreadable_window_length (1h), and !windows,
// the waiting notice and !status name it as unreadable. Before, the card
// was skipped: !windows said no window was active, the next clear slot was
// "now", and the depool started during the window.
func TestUnreadableCalendarCardKeepsGateClosed(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{})
	ctx := context.Background()
	const page = `<div class="mw-parser-output">` +
		`<div class="deploycal-item" id="deploycal-item-20261123T1400" data-utcstart="2026-11-23T14:00:00Z">` +
		`<div class="deploycal-item-window">Emergency config change</div></div>` +
		`<div class="deploycal-item" id="deploycal-item-20261124T0800" data-utcstart="2026-11-24T08:00:00Z" data-utcend="2026-11-24T09:00:00Z">` +
		`<div class="deploycal-item-window">UTC morning backport window</div></div></div>`
	parsed, err := calendar.ParseDeploymentsHTML(page, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), parsed.Windows), nil)
	const named = "unreadable calendar card at 14:00 UTC (no end time): treated as 14:00–15:00 UTC"

	lines, err := l.engine.Windows(ctx, "apus")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "now: "+named) || strings.Contains(text, "no deployment window is active") || strings.Contains(text, ": now;") {
		t.Fatalf("!windows:\n%s", text)
	}

	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, named) {
		t.Fatalf("waiting step (!status) %q", r.Step)
	}
	if got := l.notices.Matching("waiting"); len(got) != 1 || !strings.Contains(got[0], named) {
		t.Fatalf("waiting notices %q", got)
	}
	blockers, err := l.engine.Blockers(ctx, r)
	if err != nil || !strings.Contains(blockers, named) {
		t.Fatalf("blockers %q, %v", blockers, err)
	}
	if !l.pooled("codfw") || len(l.restarted()) != 0 {
		t.Fatal("acted while the unreadable card was on")
	}
}

// A card without a start time makes the calendar unreadable: the gate
// closes with that reason, even when the other cards leave it open. Before,
// the card was skipped and the depool started.
func TestCardWithoutStartClosesCalendarGate(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 2, Config{})
	_, err := calendar.ParseDeploymentsHTML(`<div class="deploycal-item" id="deploycal-item-x" data-utcend="2026-11-23T15:00:00Z"></div>`+
		`<div class="deploycal-item" id="deploycal-item-20261124T0800" data-utcstart="2026-11-24T08:00:00Z" data-utcend="2026-11-24T09:00:00Z"></div>`, "", 0)
	if err == nil {
		t.Fatal("a card without a start was read")
	}
	l.cal.set(calendar.Schedule{}, err)
	id := l.queue(poolbot.ActionDepool, "codfw")
	r := l.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "deployment calendar unreadable") || !strings.Contains(r.Step, "unreadable calendar card deploycal-item-x (no start time)") {
		t.Fatalf("waiting step %q", r.Step)
	}
}
