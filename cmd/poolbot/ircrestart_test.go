package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"poolbot"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ircnet"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

// The ircd goes away in the middle of an operation: the restarts carry on
// (IRC is how poolbot talks, not what it needs to act), and once the
// network is back poolbot rejoins and delivers the SAL lines written
// meanwhile, each once and in order.
func TestIRCdRestartMidOperation(t *testing.T) {
	t.Parallel()
	const channel = "#wikimedia-operations"
	w := site.New(t, 3)
	irc := startIRC(t, w.Dir, channel, ircnet.Account{Name: "alice", Password: "alicepw-1234"})
	n := irc.net
	ctx := context.Background()
	// poolbot reaches the ircd through a gate the test shuts while the
	// network restarts, so that the observer has joined before poolbot
	// can reconnect and deliver what waited.
	gate := newTCPGate(t, n.Addr())
	cfgPath := w.Config(t, strings.Replace(irc.chat(""), n.Addr(), gate.addr, 1), "http: {listen: \"off\"}\n")
	dial := func(nick, account, password string) *ircnet.Client { return irc.dial(t, nick, account, password) }
	waitLine := func(c *ircnet.Client, sub string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if _, err := c.WaitFor(wctx, func(l ircnet.Line) bool { return strings.Contains(l.Raw, sub) }); err != nil {
			t.Fatalf("waiting for %q: %v", sub, err)
		}
	}
	openStore := func() *store.Store {
		t.Helper()
		st, err := store.Open(ctx, filepath.Join(w.Dir, "poolbot.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	alice := dial("alice", "alice", "alicepw-1234")
	d := startDaemon(t, cfgPath)
	waitLine(alice, ":poolbot!")
	proceed := w.Systemctl.Hold(w.Hosts[1])
	if err := alice.Privmsg(channel, "!restart apus T422166 ircd restart test"); err != nil {
		t.Fatal(err)
	}
	waitLine(alice, "(1/3)")
	testenv.Eventually(t, 45*time.Second, "host 2 restarting", func() bool { return slices.Contains(w.Systemctl.Restarts(), w.Hosts[1]) })

	// The network goes down with host 2 in progress.
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	proceed()
	testenv.Eventually(t, 45*time.Second, "the request to finish while IRC is down", func() bool {
		st := openStore()
		defer st.Close()
		r, err := st.Request(ctx, 1)
		return err == nil && r.State.Terminal()
	})
	st := openStore()
	r, _ := st.Request(ctx, 1)
	backlog, _ := st.SALBacklog(ctx)
	want, _ := st.SALLines(ctx, 1)
	st.Close()
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if backlog == 0 {
		t.Fatal("no SAL line waited for the network: the test proves nothing")
	}
	if got := site.ProbeLock(t, w.GlobalLock()); got != "none" {
		t.Fatalf("deploy block after the end: %s", got)
	}

	gate.shut()
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	obs := dial("observer", "", "")
	gate.open()
	waitLine(obs, "END (PASS) - restart apus: 3/3 hosts restarted")
	var got []string
	for _, l := range obs.Lines() {
		if l.Msg.Command == "PRIVMSG" && l.Msg.Nick() == "poolbot" && strings.HasPrefix(l.Msg.Params[1], "!log ") {
			got = append(got, strings.TrimPrefix(l.Msg.Params[1], "!log "))
		}
	}
	// The observer joined after the restart and before poolbot came back,
	// so it sees exactly the lines that waited, which are the tail of the
	// request's SAL lines.
	if len(got) == 0 || len(got) > len(want) || !slices.Equal(got, want[len(want)-len(got):]) {
		t.Fatalf("SAL lines after the restart:\n%s\nthe request's SAL lines:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, sub := range []string{"(3/3)", "deploy block released", "END (PASS)"} {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, sub) }) {
			t.Errorf("after the restart, no SAL line with %q:\n%s", sub, strings.Join(got, "\n"))
		}
	}
	testenv.Eventually(t, 45*time.Second, "outbox drained", func() bool {
		st := openStore()
		defer st.Close()
		n, _ := st.SALBacklog(ctx)
		return n == 0
	})
	d.stop()
	d.wait(t, 30*time.Second)
}

// tcpGate forwards connections to an address while open; while shut it
// closes every new connection at once, as a refused connection would be.
type tcpGate struct {
	addr   string
	mu     sync.Mutex
	closed bool
}

func newTCPGate(t *testing.T, target string) *tcpGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &tcpGate{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			closed := g.closed
			g.mu.Unlock()
			if closed {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	})
	return g
}

func (g *tcpGate) shut() { g.mu.Lock(); g.closed = true; g.mu.Unlock() }
func (g *tcpGate) open() { g.mu.Lock(); g.closed = false; g.mu.Unlock() }
