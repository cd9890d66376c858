package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

// poolbot is killed with SIGKILL while it waits for the recursors' cached
// answers to expire (real gdnsd and pdns_recursor, TTL 5s); a new poolbot
// resumes the wait with the time left, counted from the stored moment the
// authoritative servers converged: the restarts start 5s after it, not 5s
// after the restart (from zero) nor at once (skipped). Each host checks
// that it resolves the new address before its restart.
func TestKill9DuringDNSWaitResumes(t *testing.T) {
	t.Parallel()
	const ttl = 5 * time.Second
	w := newCrashWorld(t)
	d := w.StartDNS(t, int(ttl/time.Second))
	w.ServiceExtra = d.ServiceYAML()
	w.cfg = w.Config(t, `  command_prefix: "!"`, "")
	if out, err := exec.Command(w.bin, "check-config", w.cfg).CombinedOutput(); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	const id = poolbot.RequestID(1)
	dnsStep := func() (poolbot.DNSStep, poolbot.State) {
		st, err := store.Open(context.Background(), w.dbPath, nil)
		if err != nil {
			return poolbot.DNSStep{}, ""
		}
		defer st.Close()
		r, err := st.Request(context.Background(), id)
		if err != nil {
			return poolbot.DNSStep{}, ""
		}
		s, _, _ := st.DNSStep(context.Background(), id)
		return s, r.State
	}

	p := w.start()
	fmt.Fprintln(p.stdin, "!depool apus codfw T3001 crash during the DNS wait")
	testenv.Eventually(w.t, 60*time.Second, "the cache wait", func() bool {
		s, state := dnsStep()
		return state == poolbot.StateDNS && !s.ConvergedAt.IsZero()
	})
	p.kill9()
	killedAt := time.Now()
	step, state := dnsStep()
	if state != poolbot.StateDNS || len(w.Systemctl.Restarts()) > 0 {
		t.Fatalf("killed in %s with restarts %v", state, w.Systemctl.Restarts())
	}
	if got := site.ProbeLock(t, w.GlobalLock()); got != "none" {
		t.Fatalf("global lock after kill -9: %s", got)
	}
	time.Sleep(2 * time.Second) // poolbot is down for part of the wait

	p2 := w.start()
	testenv.Eventually(w.t, 60*time.Second, "request done", func() bool { r, _, _ := w.request(id); return r.State.Terminal() })
	p2.stop(t)
	r, sal, steps := w.request(id)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s\n%s", r.State, r.Error, p2.out.String())
	}
	st, err := store.Open(context.Background(), w.dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs, err := st.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var movedAt time.Time
	for _, e := range evs {
		if e.Kind == "dns" {
			movedAt = e.At
		}
	}
	waited := movedAt.Sub(step.ConvergedAt)
	t.Logf("converged %s, killed %s later, restarts allowed %s after convergence", step.ConvergedAt.Format("15:04:05.000"),
		killedAt.Sub(step.ConvergedAt).Round(time.Millisecond), waited.Round(time.Millisecond))
	if waited < ttl || waited > ttl+time.Second {
		t.Fatalf("restarts allowed %s after convergence, want the %s TTL to within a second\n%s", waited, ttl, p2.out.String())
	}
	if !strings.Contains(p2.out.String(), "resumed after a poolbot restart: DNS: waiting") {
		t.Errorf("no resume notice:\n%s", p2.out.String())
	}
	for _, want := range []string{"DNS: apus.discovery.wmnet answers eqiad for codfw clients on 2/2 authoritative servers; waited 00m 05s for caches",
		"deploy block re-taken, continuing at dns", "resolves apus.discovery.wmnet to 10.2.2.10", "END (PASS)"} {
		if !hasSAL(sal, want) {
			t.Errorf("SAL lacks %q:\n%s", want, strings.Join(sal, "\n"))
		}
	}
	if len(steps) != 3 || len(w.Systemctl.Restarts()) != 3 {
		t.Errorf("host steps %+v, restarts %v", steps, w.Systemctl.Restarts())
	}
	w.checkSettled()
}
