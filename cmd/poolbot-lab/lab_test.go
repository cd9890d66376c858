package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv"
	regenv "poolbot/internal/testenv/registry"
	"poolbot/internal/testenv/site"
)

// The test binary doubles as the lab binary's helpers: every host's
// "systemctl" (poolbot runs os.Executable) and the scap lock holder.
func TestMain(m *testing.M) {
	site.Main()
	os.Exit(m.Run())
}

// `poolbot-lab -scenario` brings the lab up (real ircd and services,
// etcd, four registries, scap locks, the calendar), runs the real poolbot
// binary in it and plays the three stories; the transcript has every
// notice and SAL line in order. A short window and scap run and fast IRC
// keep it near half a minute after start-up.
func TestScenario(t *testing.T) {
	for _, b := range []string{"inspircd", "atheme-services", "etcd"} {
		testenv.Need(t, b)
	}
	regenv.Build(t) // the registry binary, built once per machine
	var out testenv.SyncBuffer
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	code := run(ctx, []string{"-scenario", "-fast-irc", "-install=false", "-dir", dir,
		"-window-len", "8s", "-scap-hold", "3s", "-pace", "500ms"}, strings.NewReader(""), &out, &out)
	text := out.String()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	t.Logf("lab and scenario took %.1fs", time.Since(start).Seconds())
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "lab: ") || strings.Contains(l, "ready in") || strings.HasPrefix(l, "scenario passed") ||
			strings.HasPrefix(l, "  1.") || strings.HasPrefix(l, "  2.") || strings.HasPrefix(l, "  3.") {
			t.Log(l)
		}
	}
	// The stories, in order, as the channel showed them.
	want := []string{
		"poolbot lab: ready in",
		"<alice> !depool apus codfw T123456",
		`#1 depool apus in codfw (alice) waiting: deployment window "Lab backport window"`,
		"#1 depool apus in codfw (alice) proceeding: all gates open",
		"!log poolbot #1 alice: START - depool apus in codfw: T123456",
		"!log poolbot #1 alice: conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw",
		"#1 DNS: waiting 00m 03s for cached answers to expire; restarts start at",
		"!log poolbot #1 alice: DNS: apus.discovery.wmnet answers eqiad for codfw clients on 2/2 authoritative servers; waited 00m 03s for caches",
		"resolves apus.discovery.wmnet to 10.2.2.10",
		"!log poolbot #1 alice: END (PASS) - depool apus in codfw: 4/4 hosts restarted",
		"alice: #1 depool apus in codfw DONE: 4/4 hosts restarted", // notices follow their SAL lines
		"<logmsgbot> !log alice@deploy1003 Started scap sync-world",
		"#2 pool apus in codfw (alice) waiting: scap: lock:",
		"<logmsgbot> !log alice@deploy1003 Finished scap sync-world",
		"#2 pool apus in codfw (alice) proceeding",
		"!log poolbot #2 alice: DNS: apus.discovery.wmnet answers codfw for codfw clients on 2/2 authoritative servers; waited 00m 03s for caches",
		"!log poolbot #2 alice: END (PASS) - pool apus in codfw",
		"alice: #2 pool apus in codfw DONE",
		"!log poolbot #3 alice: END (FAIL) - restart apus: host 2/4 127.0.0.3",
		"alice: #3 restart apus FAILED: host 2/4 127.0.0.3",
		"!log poolbot #3 alice: RESUME by alice - restart apus from host 2/4 127.0.0.3",
		"!log poolbot #3 alice: END (PASS) - restart apus: 4/4 hosts restarted",
		"scenario passed in",
		"* poolbot quit (poolbot lab shutting down)",
	}
	at := 0
	for _, w := range want {
		i := strings.Index(text[at:], w)
		if i < 0 {
			t.Fatalf("transcript lacks %q after offset %d:\n%s", w, at, text)
		}
		at += i + len(w)
	}
	if !strings.Contains(text, "not touched: 127.0.0.4, 127.0.0.5") {
		t.Errorf("END (FAIL) does not name the hosts not touched:\n%s", text)
	}
	transcript, err := os.ReadFile(dir + "/transcript.txt")
	if err != nil || !strings.Contains(string(transcript), "END (PASS) - restart apus") {
		t.Errorf("transcript.txt: %v", err)
	}
}

// Bad flags are refused before anything starts.
func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-hosts", "1"}, nil, &out, &out); code != 2 {
		t.Fatalf("-hosts 1: exit %d: %s", code, out.String())
	}
	if code := run(context.Background(), []string{"extra"}, nil, &out, &out); code != 2 {
		t.Fatalf("argument: exit %d", code)
	}
	out.Reset()
	if code := run(context.Background(), []string{"-help"}, nil, &out, &out); code != 0 || !strings.Contains(out.String(), "/scap [seconds]") {
		t.Fatalf("-help: %d %s", code, out.String())
	}
}
