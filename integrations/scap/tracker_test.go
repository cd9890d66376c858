package scap

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/logmsgbot"
)

func describeEvent(e Event) string {
	s := fmt.Sprintf("%s %s %s%s", e.At.Format("15:04:05"), e.Line.Kind, e.Line.Who, map[bool]string{true: " [" + e.Line.Repo + "]", false: " " + e.Line.Program}[e.Line.Repo != ""])
	if e.Line.HasDuration {
		s += " " + e.Line.Duration.String()
	}
	if len(e.Ended) > 0 {
		var ended []string
		for _, r := range e.Ended {
			ended = append(ended, r.Who+" "+r.Describe())
		}
		s += " ends(" + strings.Join(ended, "; ") + ")"
	}
	return s
}

// Replays a recorded #wikimedia-operations transcript: scap lines relayed by
// logmsgbot interleaved with chat, stashbot, conftool and cookbook lines,
// and other nicks (mallory, logmsgbot_, LogMsgBot2, jdoe) typing scap lines.
func TestTrackerReplaysTranscript(t *testing.T) {
	entries := readTranscript(t)
	clock := clockwork.NewFakeClockAt(entries[0].at)
	tr := NewTracker(ChannelConfig{MaxRunAge: 2 * time.Hour}, logmsgbot.New(logmsgbot.Config{}), clock, nil)

	var events []string
	checkpoints := map[string][]string{
		// mallory's fake Finished and the impostor relays changed nothing.
		"14:04:50": {"jdoe@deploy1003 scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]"},
		"14:05:00": {"jdoe@deploy1003 scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]", "sam@deploy2002 scap lock [MediaWiki]: investigating T999"},
		"14:12:00": {},
		"14:40:00": {"tyler@deploy1003 scap lock [ALL REPOSITORIES]: train blocker T777", "lee@deploy1003 scap sync-world: Backport for [[gerrit:1105000|Backport fix number 0 for the frobnicator extension (T380000)]], [[gerrit:1105001|Backport fix number 1 for the frobnicator extension (T380001)]], [[gerrit:1105002|Bac…"},
		"15:01:00": {"ops@deploy1003 scap sync-world: Backport for [[gerrit:1107000|Config change (T999)]]"},
	}
	for _, e := range entries {
		if d := e.at.Sub(clock.Now()); d > 0 {
			clock.Advance(d)
		}
		if ev, ok := tr.Observe(Sender{Nick: e.nick}, e.text); ok {
			events = append(events, describeEvent(ev))
			if ev.Ends() != ev.Line.Kind.Ends() {
				t.Fatal("Ends mismatch")
			}
		}
		if want, ok := checkpoints[e.at.Format("15:04:05")]; ok {
			var got []string
			for _, r := range tr.Active() {
				got = append(got, r.Who+" "+r.Describe())
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("active at %s:\n got %q\nwant %q", e.at.Format("15:04:05"), got, want)
			}
		}
	}
	want := []string{
		"14:02:10 started jdoe@deploy1003 sync-world",
		"14:05:00 locked sam@deploy2002 [MediaWiki]",
		"14:10:57 finished jdoe@deploy1003 sync-world 8m47s ends(jdoe@deploy1003 scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]])",
		"14:12:00 unlocked sam@deploy2002 [MediaWiki] 7m0s ends(sam@deploy2002 scap lock [MediaWiki]: investigating T999)",
		"14:20:00 started kim@deploy1003 sync-file",
		"14:21:00 aborted kim@deploy1003 sync-file 1m0s ends(kim@deploy1003 scap sync-file: php-1.44.0-wmf.8/includes/Bar.php: Fix bar (T5))",
		"14:30:00 locked tyler@deploy1003 [ALL REPOSITORIES]",
		"14:40:00 started lee@deploy1003 sync-world",
		"14:45:00 force-unlocked tyler@deploy1003  ends(tyler@deploy1003 scap lock [ALL REPOSITORIES]: train blocker T777)",
		// The chunked Finished line (no duration tail) still ends the run.
		"14:52:03 finished lee@deploy1003 sync-world ends(lee@deploy1003 scap sync-world: Backport for [[gerrit:1105000|Backport fix number 0 for the frobnicator extension (T380000)]], [[gerrit:1105001|Backport fix number 1 for the frobnicator extension (T380001)]], [[gerrit:1105002|Bac…)",
		"14:55:00 started max@deploy1003 sync-world",
		"14:58:00 failed max@deploy1003 sync-world 3m0s ends(max@deploy1003 scap sync-world: Backport for [[gerrit:1106000|Revert bad thing (T888)]])",
		"15:00:00 started ops@deploy1003 sync-world",
	}
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\n\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}

	// ops@deploy1003's Finished line was only ever typed by jdoe: the run
	// is forgotten after max_run_age, and NextExpiry says when.
	at, ok := tr.NextExpiry()
	if !ok || !at.Equal(time.Date(2026, 4, 2, 17, 0, 0, 0, time.UTC)) {
		t.Fatalf("NextExpiry = %v, %v", at, ok)
	}
	clock.Advance(at.Sub(clock.Now()) - time.Second)
	if len(tr.Active()) != 1 {
		t.Fatal("expired a second early")
	}
	clock.Advance(time.Second)
	if a := tr.Active(); len(a) != 0 {
		t.Fatalf("not expired: %+v", a)
	}
	if _, ok := tr.NextExpiry(); ok {
		t.Fatal("NextExpiry with nothing tracked")
	}
}

func TestTrackerRelayAccounts(t *testing.T) {
	clock := clockwork.NewFakeClock()
	tr := NewTracker(ChannelConfig{}, logmsgbot.New(logmsgbot.Config{Nicks: []string{"logmsgbot"}, Accounts: []string{"logmsgbot"}}), clock, nil)
	line := "!log jdoe@deploy1003 Started scap sync-world: x"
	for _, s := range []Sender{{Nick: "logmsgbot"}, {Nick: "logmsgbot", Account: "mallory"}, {Nick: "mallory", Account: "logmsgbot"}} {
		if _, ok := tr.Observe(s, line); ok {
			t.Errorf("sender %+v trusted", s)
		}
	}
	// IRC nicks and accounts compare case-insensitively (rfc1459).
	if _, ok := tr.Observe(Sender{Nick: "LogMsgBot", Account: "LOGMSGBOT"}, line); !ok {
		t.Fatal("the relay was not trusted")
	}
	// The tracker trusts no one without a relay.
	if _, ok := NewTracker(ChannelConfig{}, logmsgbot.Relay{}, clock, nil).Observe(Sender{Nick: "logmsgbot"}, line); ok {
		t.Fatal("a tracker without a relay trusted logmsgbot")
	}
}

func TestTrackerRestartedRunRefreshesSinceAndBounds(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 4, 2, 10, 0, 0, 0, time.UTC))
	tr := NewTracker(ChannelConfig{}, logmsgbot.New(logmsgbot.Config{}), clock, nil)
	relay := Sender{Nick: "logmsgbot"}
	tr.Observe(relay, "!log a@deploy1003 Started scap sync-world: first")
	clock.Advance(time.Hour)
	tr.Observe(relay, "!log a@deploy1003 Started scap sync-world: retry")
	a := tr.Active()
	if len(a) != 1 || a[0].Message != "retry" || !a[0].Since.Equal(clock.Now()) {
		t.Fatalf("%+v", a)
	}
	// A flood of Started lines cannot grow the tracker without bound.
	for i := range 200 {
		tr.Observe(relay, fmt.Sprintf("!log u%d@deploy1003 Started scap sync-world: x", i))
	}
	if n := len(tr.Active()); n != maxTrackedRuns {
		t.Fatalf("%d runs tracked", n)
	}
}

func TestTrackerConcurrentUse(t *testing.T) {
	tr := NewTracker(ChannelConfig{}, logmsgbot.New(logmsgbot.Config{}), clockwork.NewFakeClock(), nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				who := fmt.Sprintf("u%d@deploy1003", (g*200+i)%50)
				tr.Observe(Sender{Nick: "logmsgbot"}, "!log "+who+" Started scap sync-world: x")
				tr.Observe(Sender{Nick: "logmsgbot"}, "!log "+who+" Finished scap sync-world: x (duration: 00m 01s)")
				tr.Active()
				tr.NextExpiry()
			}
		})
	}
	wg.Wait()
}

func TestMonitorChannelReasons(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 4, 2, 14, 2, 10, 0, time.UTC))
	tr := NewTracker(ChannelConfig{}, logmsgbot.New(logmsgbot.Config{}), clock, nil)
	m := NewMonitor(MonitorOptions{Tracker: tr, Clock: clock})
	tr.Observe(Sender{Nick: "logmsgbot"}, "!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:1|x (T1)]]")
	act, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !act.Busy || len(act.Reasons) != 1 {
		t.Fatalf("%+v", act)
	}
	r := act.Reasons[0]
	if r.Source != SourceChannel || r.Who != "jdoe@deploy1003" || r.What != "scap sync-world: Backport for [[gerrit:1|x (T1)]]" || !r.Since.Equal(clock.Now()) {
		t.Fatalf("%+v", r)
	}
	if s := act.Summary(); s != "channel: jdoe@deploy1003 — scap sync-world: Backport for [[gerrit:1|x (T1)]] (since 2026-04-02 14:02 UTC)" {
		t.Fatalf("summary %q", s)
	}
	ev, _ := tr.Observe(Sender{Nick: "logmsgbot"}, "!log jdoe@deploy1003 Finished scap sync-world: Backport for [[gerrit:1|x (T1)]] (duration: 01m 00s)")
	if !ev.Ends() {
		t.Fatal("Finished must tell the caller to re-evaluate")
	}
	if act, _ := m.Check(context.Background()); !act.Clear() {
		t.Fatalf("%+v", act)
	}
}

func BenchmarkTrackerObserve(b *testing.B) {
	tr := NewTracker(ChannelConfig{}, logmsgbot.New(logmsgbot.Config{}), clockwork.NewFakeClock(), nil)
	relay := Sender{Nick: "logmsgbot"}
	start := "!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]"
	fin := "!log jdoe@deploy1003 Finished scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]] (duration: 08m 47s)"
	chat := Sender{Nick: "jdoe"}
	b.Run("start+finish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tr.Observe(relay, start)
			tr.Observe(relay, fin)
		}
	})
	b.Run("untrusted-chat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tr.Observe(chat, "anyone deploying right now?")
		}
	})
}
