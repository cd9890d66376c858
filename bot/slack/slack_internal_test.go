package slack

import (
	"encoding/json"
	"fmt"
	"poolbot"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestSlackPlainText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"!status", "!status"},
		{"!depool apus codfw T1 &lt;b&gt; &amp; co", "!depool apus codfw T1 <b> & co"},
		{"ask <@U0ALICE> or <@U0BOB|bob>", "ask @U0ALICE or @bob"},
		{"in <#C0OPS|operations> and <#C0X>", "in #operations and #C0X"},
		{"<!here> <!channel> <!subteam^S1|@sre> <!date^1790000000^{date}|Nov 3>", "@here @channel @sre Nov 3"},
		{"see <https://phabricator.wikimedia.org/T422166>", "see https://phabricator.wikimedia.org/T422166"},
		{"see <https://phabricator.wikimedia.org/T1|phabricator.wikimedia.org/T1>", "see phabricator.wikimedia.org/T1"},
		{"see <https://evil.example/|T422166>", "see T422166 (https://evil.example/)"},
		{"<mailto:a@b.org|a@b.org>", "a@b.org"},
		{"two\nlines\r\nhere", "two lines  here"},
		{"unclosed <@U1 text", "unclosed <@U1 text"},
		{"a &amp;lt; b", "a &lt; b"}, // one level of unescaping only
	} {
		if got := PlainText(tc.in); got != tc.want {
			t.Errorf("PlainText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSlackEscape(t *testing.T) {
	got := Escape("<!channel> & <https://x|y>\x00\x07ok\n")
	want := "&lt;!channel&gt; &amp; &lt;https://x|y&gt;  ok\n"
	if got != want {
		t.Fatalf("Escape = %q, want %q", got, want)
	}
}

func TestSlackStripBotMention(t *testing.T) {
	for _, tc := range []struct {
		in, rest string
		ok       bool
	}{
		{"<@UBOT> status", "status", true},
		{"  <@UBOT>: status 12", "status 12", true},
		{"<@UBOT|poolbot>, help", "help", true},
		{"<@UBOTX> status", "<@UBOTX> status", false},
		{"hey <@UBOT> status", "hey <@UBOT> status", false},
		{"<@UBOT", "<@UBOT", false},
	} {
		rest, ok := stripBotMention(tc.in, "UBOT")
		if rest != tc.rest || ok != tc.ok {
			t.Errorf("stripBotMention(%q) = %q, %v; want %q, %v", tc.in, rest, ok, tc.rest, tc.ok)
		}
	}
}

func TestSlackConfigValidate(t *testing.T) {
	good := Config{Channels: []string{"C0OPS"}, AppToken: "xapp-1", BotToken: "xoxb-1"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, tc := range map[string]struct {
		mut  func(*Config)
		want string
	}{
		"no app token":     {func(c *Config) { c.AppToken = "" }, "app token: required"},
		"bot token as app": {func(c *Config) { c.AppToken = "xoxb-1" }, "app-level token"},
		"user token":       {func(c *Config) { c.BotToken = "xoxp-1" }, "bot token (xoxb-"},
		"channel name":     {func(c *Config) { c.Channels = []string{"#ops"} }, "channels: \"#ops\" is not a channel ID"},
		"dm as mirror":     {func(c *Config) { c.MirrorChannel = "D0X" }, "mirror_channel"},
		"nothing to do":    {func(c *Config) { c.Channels = nil }, "set at least one"},
		"slash":            {func(c *Config) { c.SlashCommand = "poolbot" }, "slash_command"},
		"url":              {func(c *Config) { c.APIURL = "ftp://x/" }, "api_url"},
		"backoff":          {func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Hour, time.Second }, "reconnect_min"},
		"timeout":          {func(c *Config) { c.RequestTimeout = time.Millisecond }, "request_timeout"},
	} {
		c := good
		c.Channels = append([]string(nil), good.Channels...)
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestSlackConfigNeverShowsTokens(t *testing.T) {
	c := Config{Channels: []string{"C0OPS"}, AppToken: "xapp-secret-1", BotToken: "xoxb-secret-2"}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v", c, c, c), c.LogValue().String()} {
		if strings.Contains(s, "secret") {
			t.Fatalf("token shown: %s", s)
		}
	}
}

func TestSlackSeenSet(t *testing.T) {
	s := newSeenSet(3)
	if s.checkAndAdd("envelope:e1", "event:Ev1") {
		t.Fatal("fresh keys reported as seen")
	}
	if !s.checkAndAdd("envelope:e2", "event:Ev1") {
		t.Fatal("retry with the same event_id not caught")
	}
	if s.checkAndAdd("envelope:", "event:") {
		t.Fatal("empty keys must not match each other")
	}
	// e1 was evicted by the bounded ring (capacity 3: Ev1, e2, e3).
	s.checkAndAdd("envelope:e3")
	if s.checkAndAdd("envelope:e1") {
		t.Fatal("oldest key should have been forgotten")
	}
}

func TestSlackMirrorRequestStatus(t *testing.T) {
	r := &mirrorRequest{id: 7}
	now := time.Date(2026, 11, 22, 14, 3, 22, 0, time.UTC)
	start := salNotice(7, "alice", poolbot.NoticeStarted, poolbot.StateSwitching, "START - depool apus in codfw: T1 <!channel> maint")
	start.Title = "depool apus in codfw: T1 <!channel> maint"
	host1 := salNotice(7, "alice", poolbot.NoticeHost, poolbot.StateRestarting, "restarted docker-registry-restricted.service on registry2003 (1/3): healthy")
	host1.Host, host1.Hosts = 1, 3
	host2 := salNotice(7, "alice", poolbot.NoticeHost, poolbot.StateRestarting, "restarted docker-registry-restricted.service on registry2004 (2/3): healthy")
	host2.Host, host2.Hosts = 2, 3
	for _, n := range []poolbot.Notice{start, host1, host2} {
		r.apply(mirrorLine{sal: true, notice: n, line: n.SALLine()}, now)
	}
	if r.state != "restarting" || r.done != 2 || r.total != 3 || r.operator != "alice" ||
		r.title != "depool apus in codfw: T1 <!channel> maint" {
		t.Fatalf("status %+v", r)
	}
	b, err := json.Marshal(r.blocks())
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, want := range []string{"*poolbot #7* depool apus in codfw: T1 \\u0026lt;!channel\\u0026gt; maint", "hosts 2/3", "by alice", "14:03:22 UTC"} {
		if !strings.Contains(js, want) {
			t.Errorf("blocks %s: missing %q", js, want)
		}
	}
	if strings.Contains(js, "<!channel>") {
		t.Errorf("blocks carry an unescaped <!channel>: %s", js)
	}
	end := salNotice(7, "alice", poolbot.NoticeEnded, poolbot.StateFailed, "END (FAIL) - depool apus in codfw: registry2005 unhealthy (duration: 4m)")
	r.apply(mirrorLine{sal: true, notice: end, line: end.SALLine()}, now)
	if r.state != "failed" {
		t.Fatalf("after END (FAIL): %q", r.state)
	}
}

func TestSlackTime(t *testing.T) {
	got := slackTime("1790000000.000123", nil)
	if want := time.Unix(1790000000, 123000).UTC(); !got.Equal(want) {
		t.Fatalf("slackTime = %v, want %v", got, want)
	}
}

// normalize is what text looks like after Escape and PlainText:
// controls as spaces, line breaks as spaces, invalid UTF-8 as U+FFFD.
func normalize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, stripControls(s))
}

func FuzzSlackPlainText(f *testing.F) {
	for _, s := range []string{"!status", "<@U1|x> <!channel> &amp;&lt;&gt;", "<https://a|b>", "a\nb", "<<>>", "&", "<@U0POOLBOT> status", "\xff<"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		plain := PlainText(s)
		if strings.ContainsAny(plain, "\n\r") {
			t.Fatalf("PlainText(%q) = %q keeps a line break", s, plain)
		}
		// Whatever a user or IRC says, once escaped it reads back as
		// itself: escaping leaves no control sequence for Slack to act on.
		esc := Escape(s)
		if strings.ContainsAny(esc, "<>") {
			t.Fatalf("Escape(%q) = %q keeps < or >", s, esc)
		}
		if back := PlainText(esc); back != normalize(s) {
			t.Fatalf("PlainText(Escape(%q)) = %q, want %q", s, back, normalize(s))
		}
		if utf8.ValidString(s) && !utf8.ValidString(plain) {
			t.Fatalf("PlainText(%q) made invalid UTF-8 %q", s, plain)
		}
		rest, ok := stripBotMention(s, "U0POOLBOT")
		if ok && len(rest) >= len(s) {
			t.Fatalf("stripBotMention(%q) = %q did not shorten", s, rest)
		}
	})
}

func BenchmarkSlackPlainText(b *testing.B) {
	in := "<@U0POOLBOT> depool apus codfw <https://phabricator.wikimedia.org/T422166|T422166> registry &amp; ceph maint"
	b.ReportAllocs()
	for b.Loop() {
		PlainText(in)
	}
}

func BenchmarkSlackMirrorStatus(b *testing.B) {
	n := salNotice(7, "alice", poolbot.NoticeHost, poolbot.StateRestarting,
		"restarted docker-registry-restricted.service docker-registry-ml.service on registry2004.codfw.wmnet (2/4): healthy, probe ok")
	n.Host, n.Hosts = 2, 4
	line := mirrorLine{sal: true, notice: n, line: n.SALLine()}
	r := &mirrorRequest{id: 7}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r.apply(line, now)
		_ = r.blocks()
		_ = r.fallback()
	}
}

// A waiting request's status message lists what it waits for and when it
// is expected to start, as structured parts; they go once it proceeds.
func TestMirrorStatusShowsBlockersAndETA(t *testing.T) {
	r := &mirrorRequest{id: 12}
	now := time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)
	waiting := poolbot.Notice{Request: 12, Operator: "alice", Kind: poolbot.NoticeWaiting, State: poolbot.StateWaiting,
		Blockers: []string{`deployment window "UTC afternoon backport window" 14:00–15:00 UTC (active) (deployers: Amir1)`, "scap: lock: jdoe — scap is deploying <x>"},
		ETA:      time.Date(2026, 11, 23, 15, 5, 0, 0, time.UTC),
		Text:     `#12 depool apus in codfw (alice) waiting: deployment window "UTC afternoon backport window" 14:00–15:00 UTC (active) (deployers: Amir1); scap: lock: jdoe — scap is deploying <x>; estimated start 15:05 UTC`}
	r.apply(mirrorLine{notice: waiting}, now)
	if r.state != "waiting" || r.eta != "15:05 UTC" || len(r.blockers) != 2 {
		t.Fatalf("status %+v", r)
	}
	b, err := json.Marshal(r.blocks())
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	for _, want := range []string{"estimated start 15:05 UTC", "*waiting for:*", `• deployment window \"UTC afternoon backport window\"`, "scap is deploying \\u0026lt;x\\u0026gt;"} {
		if !strings.Contains(js, want) {
			t.Errorf("blocks %s: missing %q", js, want)
		}
	}
	r.apply(mirrorLine{notice: poolbot.Notice{Request: 12, Operator: "alice", Kind: poolbot.NoticeProceeding,
		State: poolbot.StateBlockingDeploys, Text: "#12 depool apus in codfw (alice) proceeding: all gates open"}}, now)
	if r.state != "proceeding" || r.eta != "" || r.blockers != nil {
		t.Fatalf("after proceeding: %+v", r)
	}
	if js, _ := json.Marshal(r.blocks()); strings.Contains(string(js), "waiting for") {
		t.Fatalf("blockers kept after proceeding: %s", js)
	}
}

// The status message is driven by the notices' fields: reworded notices
// (here in another language) give the same status.
func TestMirrorStatusIgnoresWording(t *testing.T) {
	r := &mirrorRequest{id: 12}
	now := time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)
	r.apply(mirrorLine{notice: poolbot.Notice{Request: 12, Kind: poolbot.NoticeWaiting, State: poolbot.StateWaiting,
		Blockers: []string{"Fenster"}, Text: "Nr. 12 wartet"}}, now)
	if r.state != "waiting" || r.eta != "unknown" || !slices.Equal(r.blockers, []string{"Fenster"}) {
		t.Fatalf("after waiting: %+v", r)
	}
	start := salNotice(12, "alice", poolbot.NoticeStarted, poolbot.StateSwitching, "Anfang")
	start.Title = "Depool"
	r.apply(mirrorLine{sal: true, notice: start, line: start.SALLine()}, now)
	if r.state != "running" || r.title != "Depool" || r.operator != "alice" || r.blockers != nil {
		t.Fatalf("after start: %+v", r)
	}
	host := salNotice(12, "alice", poolbot.NoticeHost, poolbot.StateRestarting, "Wirt eins")
	host.Host, host.Hosts = 1, 2
	r.apply(mirrorLine{sal: true, notice: host, line: host.SALLine()}, now)
	if r.state != "restarting" || r.done != 1 || r.total != 2 || r.last != "Wirt eins" {
		t.Fatalf("after host: %+v", r)
	}
	r.apply(mirrorLine{notice: poolbot.Notice{Request: 12, Kind: poolbot.NoticeEnded, State: poolbot.StateDone, To: "alice", Text: "fertig"}}, now)
	if r.state != "done" || r.last != "alice: fertig" {
		t.Fatalf("after end: %+v", r)
	}
	// A notice that reports no state leaves it.
	r.apply(mirrorLine{notice: poolbot.Notice{Request: 12, Text: "egal"}}, now)
	if r.state != "done" || r.last != "egal" {
		t.Fatalf("after an info notice: %+v", r)
	}
}

// salNotice describes a SAL line about request id, as the procedure
// queues it.
func salNotice(id poolbot.RequestID, operator string, kind poolbot.NoticeKind, state poolbot.State, text string) poolbot.Notice {
	return poolbot.Notice{Request: id, Operator: operator, Kind: kind, State: state, Text: text}
}
