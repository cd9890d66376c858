package scap

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/logmsgbot"
)

// logmsgbot relays every tool's lines, not only scap's. A one-word
// "<x> failed: …" from another tool must not end a user's scap run (and so
// open the gate mid-deploy); scap's own aborted/failed lines still do,
// whatever program name they carry.
func TestTrackerFailedFallbackOnlyForScap(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 4, 2, 14, 0, 0, 0, time.UTC))
	tr := NewTracker(ChannelConfig{}, logmsgbot.New(logmsgbot.Config{}), clock, nil)
	relay := Sender{Nick: "logmsgbot"}
	active := func() string {
		var out []string
		for _, r := range tr.Active() {
			out = append(out, r.Who+" "+r.Describe())
		}
		return strings.Join(out, "\n")
	}
	observe := func(line string) Event {
		t.Helper()
		clock.Advance(time.Minute)
		ev, ok := tr.Observe(relay, line)
		if !ok {
			t.Fatalf("line not recognised: %q", line)
		}
		return ev
	}

	observe("!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]")
	const running = "jdoe@deploy1003 scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]"
	for _, other := range []string{
		"!log jdoe@deploy1003 helmfile failed: Command 'helmfile apply' returned non-zero exit status 1. (duration: 00m 04s)",
		"!log jdoe@deploy1003 mwscript aborted: extensions/WikimediaMaintenance/foo.php (duration: 00m 10s)",
		"!log jdoe@deploy1003 deploy-mwdebug failed: <RuntimeError> no such host",
		"!log jdoe@deploy1003 sync-worlds failed: typo of a subcommand is not scap",
	} {
		if ev := observe(other); len(ev.Ended) != 0 {
			t.Errorf("%q ended %+v", other, ev.Ended)
		}
		if got := active(); got != running {
			t.Fatalf("after %q active is %q", other, got)
		}
	}
	// scap backport announces Started scap sync-world, then fails as
	// "backport": that ends the run.
	ev := observe("!log jdoe@deploy1003 backport failed: <CalledProcessError> Command 'helmfile apply' returned non-zero exit status 1. (scap version: 4.140.0) (duration: 03m 00s)")
	if len(ev.Ended) != 1 || ev.Ended[0].Program != "sync-world" || active() != "" {
		t.Fatalf("backport failed: ended %+v, active %q", ev.Ended, active())
	}

	// "scap <program> …" and bare "scap aborted" are scap's too.
	for _, c := range []struct{ start, end string }{
		{"!log kim@deploy1003 Started scap sync-world: x", "!log kim@deploy1003 scap sync-testwikis aborted: x (duration: 00m 30s)"},
		{"!log lee@deploy2002 Started scap sync-file: php-1.44.0-wmf.8/includes/Bar.php: Fix bar (T5)", "!log lee@deploy2002 scap aborted: Fix bar (duration: 01m 00s)"},
		// Not in the known list, but the run it started is ended by name.
		{"!log max@deploy1003 Started scap sync-wikiversions: group1 to 1.44.0-wmf.8", "!log max@deploy1003 sync-wikiversions failed: <OSError> x"},
	} {
		observe(c.start)
		if ev := observe(c.end); len(ev.Ended) != 1 || active() != "" {
			t.Errorf("%q: ended %+v, active %q", c.end, ev.Ended, active())
		}
	}
}
