package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot/config"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/slacknet"
)

// tcpircbot is a local logmsgbot relay: one message per connection.
type tcpircbot struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func startTCPIRCBot(t *testing.T) *tcpircbot {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpircbot{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString(0) // until the sender closes
			c.Close()
			b.mu.Lock()
			b.lines = append(b.lines, line)
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *tcpircbot) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

// poolbot with Slack only: commands from Slack reach the store and the
// procedure, notices are mirrored (one status message per request), and
// a SAL line is mirrored once the relay took it.
func TestDaemonSlackOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := slacknet.Start(t, slacknet.Options{Users: map[string]string{"U0ALICE": "Alice"}})
	relay := startTCPIRCBot(t)
	o := srv.Options()
	for name, tok := range map[string]string{"app": o.AppToken, "bot": o.BotToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile("../../lab/console.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(data)
	for old, repl := range map[string]string{
		"/tmp/poolbot-console.db": filepath.Join(dir, "p.db"),
		"/tmp/poolbot-lab/":       dir + "/",
		"chat:\n": "chat:\n  slack:\n    channels: [C0OPS]\n    mirror_channel: C0MIRROR\n    api_url: " + srv.APIURL() + "\n" +
			"  slack_app_token: {file: " + filepath.Join(dir, "app") + "}\n" +
			"  slack_bot_token: {file: " + filepath.Join(dir, "bot") + "}\n",
		"{name: alice, irc_accounts: [alice]}":                   "{name: alice, irc_accounts: [alice], slack_user_ids: [U0ALICE]}",
		`sal: {sink: channel, channel: "#wikimedia-operations"}`: "sal: {sink: tcpircbot, tcpircbot: {addr: \"" + relay.ln.Addr().String() + "\", attribution: poolbot@test}}",
		// Nothing listens there: conftool is unreadable, so #1 waits.
		"http://127.0.0.1:2379": fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)),
	} {
		if !strings.Contains(y, old) {
			t.Fatalf("lab config changed: no %q", old)
		}
		y = strings.Replace(y, old, repl, 1)
	}
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Not the default port: another test (or a poolbot on this machine)
	// may hold it.
	cfg.HTTP.Listen = config.HTTPListenOff
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs strings.Builder
	var logMu sync.Mutex
	go func() {
		done <- runDaemon(ctx, cfg, daemonOptions{stderr: lockedWriter{&logMu, &logs}})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runDaemon: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("runDaemon did not stop")
		}
		logMu.Lock()
		t.Logf("logs:\n%s", logs.String())
		logMu.Unlock()
	})
	srv.WaitConnections(t, 1, 10*time.Second)

	say := func(env, ts, text string) slacknet.Post {
		t.Helper()
		srv.Send(t, slacknet.MessageEvent{EnvelopeID: env, EventID: "Ev" + env, User: "U0ALICE", Channel: "C0OPS",
			Text: text, TS: ts}.JSON())
		var reply slacknet.Post
		srv.Wait(t, "reply to "+text, 10*time.Second, func() bool {
			for _, p := range srv.Posts() {
				if p.ThreadTS == ts {
					reply = p
					return true
				}
			}
			return false
		})
		return reply
	}
	if p := say("e1", "1790003000.000001", "!depool apus codfw T123 via slack"); !strings.Contains(p.Text, "#1 queued") {
		t.Fatalf("reply %q", p.Text)
	}
	// The procedure's "waiting" notice for #1 reaches the mirror channel.
	srv.Wait(t, "the mirrored notice", 10*time.Second, func() bool {
		for _, p := range srv.Posts() {
			if p.Channel == "C0MIRROR" && strings.Contains(p.Blocks, "*poolbot #1*") && strings.Contains(p.Blocks, "waiting") {
				return true
			}
		}
		return false
	})
	// !force queues a SAL line: delivered to the relay, then mirrored into
	// #1's status message.
	if p := say("e2", "1790003000.000002", "!force 1 registry broken"); !strings.Contains(p.Text, "FORCE requested") {
		t.Fatalf("force reply %q", p.Text)
	}
	srv.Wait(t, "the SAL line in the mirror", 10*time.Second, func() bool {
		for _, p := range srv.Posts() {
			if p.Channel == "C0MIRROR" && p.Method == "chat.update" && strings.Contains(p.Blocks, "FORCE requested") {
				return true
			}
		}
		return false
	})
	// The relay stores a message once it has read the whole connection,
	// which can be just after poolbot's send returned and the mirror ran.
	srv.Wait(t, "the SAL line at the relay", 10*time.Second, func() bool {
		// Credited to the operator on the relay attribution's host.
		return strings.Contains(strings.Join(relay.got(), "\n"), "!log alice@test poolbot #1: FORCE requested")
	})
	statusMessages := 0
	for _, p := range srv.Posts() {
		if p.Channel == "C0MIRROR" && p.Method == "chat.postMessage" && strings.Contains(p.Text, "poolbot #1") {
			statusMessages++
		}
	}
	if statusMessages != 1 {
		t.Fatalf("%d status messages for #1, want 1: %+v", statusMessages, srv.Posts())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
