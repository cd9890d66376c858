package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/config"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/ircnet"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

// daemon is one runDaemon, as `poolbot run` starts it; stop is SIGTERM
// (signal.NotifyContext cancels the same context).
type daemon struct {
	stop func()
	done chan struct{} // closed when runDaemon returned
	err  error
	log  *testenv.SyncBuffer
}

func startDaemon(t *testing.T, cfgPath string) *daemon {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{stop: cancel, done: make(chan struct{}), log: &testenv.SyncBuffer{}}
	go func() {
		defer close(d.done)
		d.err = runDaemon(ctx, cfg, daemonOptions{stdin: strings.NewReader(""), stdout: io.Discard, stderr: d.log})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(60 * time.Second):
		}
		if t.Failed() {
			t.Logf("poolbot log:\n%s", d.log.String())
		}
	})
	return d
}

func (d *daemon) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("runDaemon: %v", d.err)
		}
	case <-time.After(within):
		t.Fatalf("poolbot did not stop within %s", within)
	}
}

// SIGTERM while a host is being restarted: poolbot finishes that host,
// touches no other, releases the deploy block, delivers every SAL line
// (the last says the request continues after the restart) and only then
// QUITs IRC with its quit message. The next start finishes the request.
// /healthz and /metrics are served meanwhile.
func TestSIGTERMFinishesHostFlushesSALThenQuits(t *testing.T) {
	t.Parallel()
	const channel = "#wikimedia-operations"
	w := site.New(t, 3)
	irc := startIRC(t, w.Dir, channel, ircnet.Account{Name: "alice", Password: "alicepw-1234"})
	ctx := context.Background()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfgPath := w.Config(t, irc.chat(`, quit_message: "poolbot stopping for an upgrade"`), fmt.Sprintf("http: {listen: %q}\n", httpAddr))
	alice := irc.dial(t, "alice", "alice", "alicepw-1234")
	seen := func(sub string) func(ircnet.Line) bool {
		return func(l ircnet.Line) bool { return strings.Contains(l.Raw, sub) }
	}
	waitLine := func(what string, match func(ircnet.Line) bool) ircnet.Line {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		l, err := alice.WaitFor(wctx, match)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return l
	}

	start := time.Now()
	mark := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	defer mark("end")
	d := startDaemon(t, cfgPath)
	waitLine("poolbot joins", func(l ircnet.Line) bool { return l.Msg.Command == "JOIN" && l.Msg.Nick() == "poolbot" })
	if body := httpGet(t, "http://"+httpAddr+"/healthz"); body != "ready\nstore: ok\nchat irc: ok\n" {
		t.Fatalf("/healthz: %q", body)
	}

	proceed := w.Systemctl.Hold(w.Hosts[1])
	if err := alice.Privmsg(channel, "!restart apus T422166 shutdown test"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 45*time.Second, "host 2 restarting", func() bool { return slices.Contains(w.Systemctl.Restarts(), w.Hosts[1]) })
	if got := site.ProbeLock(t, w.GlobalLock()); got != "exclusive" {
		t.Fatalf("deploy block while restarting: %s", got)
	}

	mark("host 2 restarting")
	d.stop() // SIGTERM
	// The host in progress is finished, not abandoned: poolbot waits.
	select {
	case <-d.done:
		t.Fatalf("poolbot stopped in the middle of a host: %v", d.err)
	case <-time.After(500 * time.Millisecond):
	}
	proceed()
	d.wait(t, 45*time.Second)
	mark("stopped")

	if got := w.Systemctl.Restarts(); !slices.Equal(got, w.Hosts[:2]) {
		t.Fatalf("restarts %v, want %v (the third host untouched)", got, w.Hosts[:2])
	}
	if got := site.ProbeLock(t, w.GlobalLock()); got != "none" {
		t.Fatalf("deploy block after shutdown: %s", got)
	}
	st, err := store.Open(ctx, filepath.Join(w.Dir, "poolbot.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := st.Request(ctx, 1)
	steps, _ := st.HostSteps(ctx, 1)
	backlog, _ := st.SALBacklog(ctx)
	st.Close()
	if r.State != poolbot.StateRestarting || len(steps) != 3 || steps[1].State != poolbot.HostDone || steps[2].State != poolbot.HostPending {
		t.Fatalf("after shutdown: %s, steps %+v", r.State, steps)
	}
	if backlog != 0 {
		t.Fatalf("%d SAL lines not flushed at shutdown", backlog)
	}
	// In the channel: the host line, the release, then the QUIT.
	hostLine := waitLine("SAL 2/3", seen("(2/3)"))
	release := waitLine("SAL release", seen("deploy block released: poolbot is stopping; the request continues after it restarts"))
	quit := waitLine("QUIT", func(l ircnet.Line) bool { return l.Msg.Command == "QUIT" && l.Msg.Nick() == "poolbot" })
	if !strings.Contains(quit.Raw, "poolbot stopping for an upgrade") {
		t.Fatalf("QUIT %q", quit.Raw)
	}
	lines := alice.Lines()
	idx := func(want ircnet.Line) int {
		return slices.IndexFunc(lines, func(l ircnet.Line) bool { return l.Raw == want.Raw })
	}
	if !(idx(hostLine) < idx(release) && idx(release) < idx(quit)) {
		t.Fatalf("order: host %d, release %d, quit %d", idx(hostLine), idx(release), idx(quit))
	}

	// The next start continues with the third host and finishes.
	mark("checked")
	d2 := startDaemon(t, cfgPath)
	waitLine("END (PASS)", seen("END (PASS) - restart apus: 3/3 hosts restarted"))
	mark("second run done")
	if got := w.Systemctl.Restarts(); !slices.Equal(got, w.Hosts) {
		t.Fatalf("restarts %v, want %v", got, w.Hosts)
	}
	// The channel shows END as soon as the server relays it; the outbox
	// marks it sent once the server's echo reaches poolbot, a moment later.
	var metrics string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		metrics = httpGet(t, "http://"+httpAddr+"/metrics")
		if strings.Contains(metrics, "poolbot_sal_outbox_depth 0") || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range []string{
		`poolbot_requests{state="done"} 1`,
		`poolbot_sal_outbox_depth 0`,
		`poolbot_chat_connected{network="irc"} 1`,
		`poolbot_gate_closed{gate="scap",service="apus"} 0`,
		fmt.Sprintf(`poolbot_host_restart_duration_seconds_count{host=%q,outcome="ok",service="apus"} 1`, w.Hosts[2]),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	d2.stop()
	d2.wait(t, 30*time.Second)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
