package ircnet

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dialAll connects clients in parallel (each takes about a second).
func dialAll(t *testing.T, ctx context.Context, addrs []string, opts []ClientOptions) []*Client {
	t.Helper()
	cs := make([]*Client, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i := range opts {
		wg.Go(func() { cs[i], errs[i] = Dial(ctx, addrs[i], opts[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %s: %v", opts[i].Nick, err)
		}
		t.Cleanup(cs[i].Close)
	}
	return cs
}

func privmsgWith(text string) func(Line) bool {
	return func(l Line) bool {
		return l.Msg.Command == "PRIVMSG" && len(l.Msg.Params) == 2 && l.Msg.Params[1] == text
	}
}

// Accounts, SASL and the account tag: what the bot relies on to tell
// operators from people who merely use their nick.
func TestAccountsSASLAndAccountTag(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := ctxT(t, 30*time.Second)
	if err := n.RegisterAll(ctx, Account{"alice", "alicepw1"}, Account{"bob", "bobpw123"}); err != nil {
		t.Fatal(err)
	}
	// Registering a taken account fails with NickServ's reason.
	if err := n.Register(ctx, "alice", "otherpw1"); err == nil {
		t.Error("registering alice twice succeeded")
	} else {
		t.Logf("second REGISTER: %v", err)
	}
	caps := []string{"account-tag", "message-tags", "server-time", "extended-join"}
	cs := dialAll(t, ctx, []string{n.Addr(), n.Addr(), n.Addr()}, []ClientOptions{
		{Nick: "watcher", Caps: caps},
		{Nick: "alice2", SASLAccount: "alice", SASLPassword: "alicepw1"},
		{Nick: "bob"}, // bob's nick, not logged in
	})
	watcher, alice, bob := cs[0], cs[1], cs[2]
	for _, c := range cs {
		if err := c.Join(ctx, "#ops"); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.Privmsg("#ops", "from alice"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Privmsg("#ops", "from bob"); err != nil {
		t.Fatal(err)
	}
	la, err := watcher.WaitFor(ctx, privmsgWith("from alice"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, acct := la.Msg.GetTag("account"); !ok || acct != "alice" {
		t.Errorf("alice's message: account tag %v %q in %s", ok, acct, la.Raw)
	}
	if ok, _ := la.Msg.GetTag("time"); !ok {
		t.Errorf("no server-time tag: %s", la.Raw)
	}
	lb, err := watcher.WaitFor(ctx, privmsgWith("from bob"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, acct := lb.Msg.GetTag("account"); ok {
		t.Errorf("bob is not logged in but his message has account=%q: %s", acct, lb.Raw)
	}
	// A wrong SASL password is refused.
	if _, err := n.Dial(ctx, ClientOptions{Nick: "mallory", SASLAccount: "alice", SASLPassword: "wrong"}); err == nil {
		t.Error("SASL with a wrong password succeeded")
	}
	// Foreground Atheme must not tell users it runs "in debug mode".
	for _, c := range cs {
		for _, l := range c.Lines() {
			if strings.Contains(l.Raw, "debug mode") {
				t.Errorf("%s got %s", c.Nick(), l.Raw)
			}
		}
	}
}

// The flood port's class kills a client that bursts, the relaxed port's
// class delivers the same burst: the difference the bot's flood test
// depends on.
func TestFloodClassKillsOnlyOnFloodPort(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := ctxT(t, 30*time.Second)
	cs := dialAll(t, ctx, []string{n.Addr(), n.Addr(), n.FloodAddr(), n.FloodAddr()}, []ClientOptions{
		{Nick: "sink"}, {Nick: "relaxed"}, {Nick: "strict"}, {Nick: "polite"},
	})
	sink, relaxed, strict, polite := cs[0], cs[1], cs[2], cs[3]
	for _, c := range cs {
		if err := c.Join(ctx, "#flood"); err != nil {
			t.Fatal(err)
		}
	}
	burst := func(c *Client) {
		var b strings.Builder
		for i := range 30 {
			fmt.Fprintf(&b, "PRIVMSG #flood :%s %02d\r\n", c.Nick(), i)
		}
		if err := c.SendRaw(strings.TrimSuffix(b.String(), "\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	burst(relaxed)
	burst(strict)
	if _, err := sink.WaitFor(ctx, privmsgWith("relaxed 29")); err != nil {
		t.Fatalf("relaxed class: %v", err)
	}
	q, err := sink.WaitFor(ctx, func(l Line) bool { return l.Msg.Command == "QUIT" && l.Msg.Nick() == "strict" })
	if err != nil {
		t.Fatalf("strict class did not kill the flooder: %v", err)
	}
	t.Logf("flooder on the flood port: %s", q.Raw)
	if !strings.Contains(q.Raw, "Excess Flood") {
		t.Errorf("quit reason: %s", q.Raw)
	}
	// One line a second stays within the class.
	for i := range 3 {
		if err := polite.Privmsg("#flood", fmt.Sprintf("polite %d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // pacing a real server's flood limit, not waiting for logic
	}
	if _, err := sink.WaitFor(ctx, privmsgWith("polite 2")); err != nil {
		t.Fatal(err)
	}
}

// Restart keeps accounts (Atheme saves services.db on SIGTERM) and the
// addresses.
func TestRestartKeepsAccounts(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := ctxT(t, 40*time.Second)
	if err := n.Register(ctx, "carol", "carolpw1"); err != nil {
		t.Fatal(err)
	}
	c, err := n.Dial(ctx, ClientOptions{Nick: "carol2", SASLAccount: "carol", SASLPassword: "carolpw1"})
	if err != nil {
		t.Fatal(err)
	}
	addr := n.Addr()
	t0 := time.Now()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Closed(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Dial(ctx, ClientOptions{Nick: "early"}); err == nil {
		t.Fatal("connected to a stopped network")
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop+restart took %v", time.Since(t0))
	if n.Addr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, n.Addr())
	}
	c2, err := n.Dial(ctx, ClientOptions{Nick: "carol3", SASLAccount: "carol", SASLPassword: "carolpw1"})
	if err != nil {
		t.Fatalf("account lost in restart: %v", err)
	}
	c2.Quit()
}

// The TLS port: a client that trusts CAFile connects; one that does not is
// refused by its own verification.
func TestTLSPort(t *testing.T) {
	t.Parallel()
	n := Start(t, Options{})
	ctx := ctxT(t, 30*time.Second)
	conf, err := n.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ctx, n.TLSAddr(), ClientOptions{Nick: "secure", TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if _, err := Dial(ctx, n.TLSAddr(), ClientOptions{Nick: "naive", TLS: &tls.Config{ServerName: "127.0.0.1"}}); err == nil {
		t.Fatal("a client without the test CA accepted the certificate")
	}
}
