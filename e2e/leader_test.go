package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv"

	"poolbot"
)

// Two poolbots with the same config: the second is standby (no chat, no
// actions, no SAL) and says so; when the first is killed with SIGKILL
// mid-host, the second takes over within the lock's ttl + 5 s and
// continues the stored request without repeating a completed host.
func TestStandbyTakesOverAfterKill9(t *testing.T) {
	t.Parallel()
	w := newCrashWorld(t)
	const ttl = 3 * time.Second
	w.cfg = w.Config(t, `  command_prefix: "!"`, "leader: {ttl: 3s, renew_every: 1s, poll: 500ms}\n")
	hold := w.Systemctl.Hold(w.Hosts[1])
	p1 := w.start()
	testenv.Eventually(w.t, 60*time.Second, "first poolbot active", func() bool { return strings.Contains(p1.out.String(), "this poolbot is active") })
	p2 := w.start()
	testenv.Eventually(w.t, 60*time.Second, "second poolbot standby", func() bool {
		return strings.Contains(p2.out.String(), "standby: another poolbot is active")
	})
	if out := p2.out.String(); !strings.Contains(out, "holder=") || strings.Contains(out, "poolbot console:") {
		t.Fatalf("standby output:\n%s", out)
	}
	fmt.Fprintln(p1.stdin, "!restart apus T3001 takeover test")
	testenv.Eventually(w.t, 60*time.Second, "restart of host 2 in progress", func() bool {
		return strings.Join(w.Systemctl.Restarts(), ",") == w.Hosts[0]+","+w.Hosts[1]
	})
	if out := p2.out.String(); strings.Contains(out, "#1") || strings.Contains(out, "!log") {
		t.Fatalf("the standby acted or spoke:\n%s", out)
	}

	p1.kill9()
	killed := time.Now()
	hold() // the orphaned restart finishes
	testenv.Eventually(w.t, 60*time.Second, "takeover", func() bool { return strings.Contains(p2.out.String(), "this poolbot is active") })
	took := time.Since(killed)
	if took > ttl+5*time.Second {
		t.Fatalf("took over after %s, want within ttl %s + 5s", took, ttl)
	}
	testenv.Eventually(w.t, 60*time.Second, "request done", func() bool { r, _, _ := w.request(1); return r.State.Terminal() })
	p2.stop(t)
	r, sal, steps := w.request(1)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s\n%s", r.State, r.Error, p2.out.String())
	}
	for _, s := range steps {
		if s.State != poolbot.HostDone {
			t.Fatalf("host steps %+v", steps)
		}
	}
	counts := map[string]int{}
	for _, h := range w.Systemctl.Restarts() {
		counts[h]++
	}
	// Host 1 was done before the kill: not again. Host 2 was in progress:
	// restarted again. Host 3: once.
	if counts[w.Hosts[0]] != 1 || counts[w.Hosts[1]] != 2 || counts[w.Hosts[2]] != 1 {
		t.Fatalf("restarts %v", w.Systemctl.Restarts())
	}
	seen := map[string]bool{}
	for _, l := range sal {
		if seen[l] {
			t.Errorf("SAL line repeated: %q", l)
		}
		seen[l] = true
	}
	if !hasSAL(sal, "deploy block re-taken, continuing at restarting") || !hasSAL(sal, "END (PASS) - restart apus: 3/3 hosts restarted - T3001") {
		t.Fatalf("SAL:\n%s", strings.Join(sal, "\n"))
	}
	w.checkSettled()
	t.Logf("standby took over %s after the kill (ttl %s)", took.Round(time.Millisecond), ttl)
}
