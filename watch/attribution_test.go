package watch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/chat"
	"poolbot/integrations/logmsgbot"
)

func TestParseLogLine(t *testing.T) {
	type match struct {
		service, dc string
		pooled      bool
		want        bool
	}
	for _, tc := range []struct {
		line    string
		ok      bool
		who     string
		kind    string
		matches []match
	}{
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw",
			ok: true, who: "jdoe@cumin1003", kind: "conftool",
			matches: []match{{"apus", "codfw", false, true}, {"apus", "codfw", true, false}, {"apus", "eqiad", false, false},
				{"apusx", "codfw", false, false}, {"thanos-swift", "codfw", false, false}}},
		// Selector values are anchored regexes; pooled may come with other fields.
		{line: "!log jdoe@cumin2002 conftool action : set/pooled=true:ttl=10; selector: dnsdisc=(apus|thanos-swift),name=eqiad|codfw",
			ok: true, who: "jdoe@cumin2002", kind: "conftool",
			matches: []match{{"apus", "eqiad", true, true}, {"thanos-swift", "codfw", true, true}, {"apus", "drmrs", true, false}}},
		// No name: every datacenter of the service.
		{line: "!log root@puppetserver1001 conftool action : set/pooled=False; selector: dnsdisc=apus",
			ok: true, who: "root@puppetserver1001", kind: "conftool",
			matches: []match{{"apus", "eqiad", false, true}, {"apus", "codfw", false, true}}},
		// tags mode.
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=false; selector: codfw (tags: ['dnsdisc=apus'])",
			ok: true, who: "jdoe@cumin1003", kind: "conftool",
			matches: []match{{"apus", "codfw", false, true}, {"apus", "eqiad", false, false}}},
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=true; selector: re:eq.* (tags: ['dnsdisc=apus'])",
			ok: true, who: "jdoe@cumin1003", kind: "conftool",
			matches: []match{{"apus", "eqiad", true, true}, {"apus", "codfw", true, false}}},
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=true; selector: all (tags: ['dnsdisc=apus'])",
			ok: true, who: "jdoe@cumin1003", kind: "conftool",
			matches: []match{{"apus", "eqiad", true, true}, {"apus", "codfw", true, true}, {"other", "codfw", true, false}}},
		// find mode: the name in every service.
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=false; selector: codfw",
			ok: true, who: "jdoe@cumin1003", kind: "conftool",
			matches: []match{{"apus", "codfw", false, true}, {"apus", "eqiad", false, false}}},
		// The discovery cookbook (spicerack's own conftool calls are quiet).
		{line: "!log jdoe@cumin1003 START - Cookbook sre.discovery.service-route depool apus in codfw: maintenance",
			ok: true, who: "jdoe@cumin1003", kind: "cookbook",
			matches: []match{{"apus", "codfw", false, true}, {"apus", "codfw", true, false}}},
		{line: "!log jdoe@cumin1003 END (PASS) - Cookbook sre.discovery.service-route (exit_code=0) pool apus,thanos-swift in eqiad: T422166",
			ok: true, who: "jdoe@cumin1003", kind: "cookbook",
			matches: []match{{"apus", "eqiad", true, true}, {"thanos-swift", "eqiad", true, true}, {"apus", "codfw", true, false}}},
		// Not about a discovery object's pooled state.
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=no; selector: dc=codfw,cluster=apus,service=apus,name=moss-fe2001.codfw.wmnet"},
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=false; selector: dc=codfw,cluster=apus,name=moss-fe2001.codfw.wmnet"},
		{line: "!log jdoe@cumin1003 conftool action : set/ttl=10; selector: dnsdisc=apus,name=codfw"},
		{line: "!log jdoe@cumin1003 conftool action : get; selector: dnsdisc=apus"},
		{line: "!log jdoe@cumin1003 START - Cookbook sre.hosts.reboot-single registry2004.codfw.wmnet"},
		{line: "!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:1|x]]"},
		{line: "conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"},
		{line: "!log not-a-user conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"},
		{line: "!log a@b\r\nPRIVMSG conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"},
		{line: "!log jdoe@cumin1003 conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw" + strings.Repeat("x", 2000)},
	} {
		l, ok := ParseLogLine(tc.line)
		if ok != tc.ok {
			t.Errorf("%q: ok = %v", tc.line, ok)
			continue
		}
		if !ok {
			continue
		}
		if l.Who != tc.who || l.Kind != tc.kind {
			t.Errorf("%q: who %q kind %q", tc.line, l.Who, l.Kind)
		}
		for _, m := range tc.matches {
			if got := l.Matches(m.service, m.dc, m.pooled); got != m.want {
				t.Errorf("%q: Matches(%s, %s, %t) = %v", tc.line, m.service, m.dc, m.pooled, got)
			}
		}
	}
}

// Only trusted relays count; the newest matching line within the window
// names the author.
func TestAttributor(t *testing.T) {
	clock := clockwork.NewFakeClockAt(t0)
	a := NewAttributor(logmsgbot.New(logmsgbot.Config{Nicks: []string{"logmsgbot"}, Accounts: []string{"logmsgbot-account"}}), 10*time.Minute, clock)
	line := func(who string) string {
		return "!log " + who + " conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"
	}
	if a.Observe(logmsgbot.Sender{Network: "irc", Nick: "logmsgbot", Account: ""}, line("mallory@x")) || a.Observe(logmsgbot.Sender{Network: "irc", Nick: "mallory", Account: "logmsgbot-account"}, line("mallory@x")) {
		t.Fatal("untrusted sender kept")
	}
	a.HandleMessage(context.Background(), chat.Message{Network: "slack", Channel: "C1", Nick: "logmsgbot",
		Account: "logmsgbot-account", Text: line("mallory@x")}, nil)
	a.HandleMessage(context.Background(), chat.Message{Network: "irc", Nick: "logmsgbot",
		Account: "logmsgbot-account", Text: line("mallory@x")}, nil) // private
	if len(a.lines) != 0 {
		t.Fatal("a Slack or private line was kept")
	}
	if !a.Observe(logmsgbot.Sender{Network: "irc", Nick: "LogMsgBot", Account: "logmsgbot-account"}, line("alice@cumin1003")) {
		t.Fatal("relay line dropped")
	}
	clock.Advance(time.Minute)
	a.Observe(logmsgbot.Sender{Network: "irc", Nick: "logmsgbot", Account: "logmsgbot-account"}, line("bob@cumin2002"))
	from := t0.Add(-time.Minute)
	if who := a.Who("apus", "codfw", false, from, clock.Now()); who != "bob@cumin2002" {
		t.Fatalf("who %q", who)
	}
	if who := a.Who("apus", "codfw", false, from, t0); who != "alice@cumin1003" {
		t.Fatalf("who before bob's line %q", who)
	}
	if who := a.Who("apus", "codfw", true, from, clock.Now()); who != "" {
		t.Fatalf("who for pooled=true %q", who)
	}
	if who := a.Who("apus", "codfw", false, clock.Now().Add(time.Second), clock.Now().Add(time.Minute)); who != "" {
		t.Fatalf("who after the window %q", who)
	}
	// Bounded: a flood keeps the newest lines only.
	for range 3 * maxLogLines {
		a.Observe(logmsgbot.Sender{Network: "irc", Nick: "logmsgbot", Account: "logmsgbot-account"}, line("flood@x"))
	}
	if n := len(a.lines); n != maxLogLines {
		t.Fatalf("%d lines kept", n)
	}
}

func FuzzParseLogLine(f *testing.F) {
	for _, s := range []string{
		"!log jdoe@cumin1003 conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw",
		"!log jdoe@cumin1003 conftool action : set/pooled=true:ttl=10; selector: dnsdisc=(apus|x),name=eq.*",
		"!log jdoe@cumin1003 conftool action : set/pooled=false; selector: re:[ (tags: ['dnsdisc=apus'])",
		"!log jdoe@cumin1003 conftool action : set/pooled=false; selector: codfw",
		"!log jdoe@cumin1003 START - Cookbook sre.discovery.service-route depool apus in codfw: maintenance",
		"!log jdoe@cumin1003 END (FAIL) - Cookbook sre.discovery.service-route (exit_code=99) pool apus in eqiad",
	} {
		f.Add(s, "apus", "codfw", false)
	}
	f.Fuzz(func(t *testing.T, line, service, dc string, pooled bool) {
		l, ok := ParseLogLine(line)
		if !ok {
			return
		}
		if !whoPattern.MatchString(l.Who) || strings.ContainsAny(l.Who, "\r\n\x00 ") {
			t.Fatalf("who %q from %q", l.Who, line)
		}
		if l.Kind != "conftool" && l.Kind != "cookbook" {
			t.Fatalf("kind %q", l.Kind)
		}
		_ = l.Matches(service, dc, pooled)
	})
}
