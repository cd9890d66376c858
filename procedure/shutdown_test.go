package procedure

import (
	"context"
	"slices"
	"testing"
	"time"

	"poolbot/internal/testenv"

	"poolbot"
)

// A shutdown while a host is being restarted finishes that host and
// records it as done (its bookkeeping must not use the cancelled
// context), touches no further host, releases the deploy block and leaves
// the request restarting (TestRestartOfPoolbotResumes continues one).
func TestShutdownMidHostFinishesHostAndParksBetweenHosts(t *testing.T) {
	t.Parallel()
	l := newHarness(t, 3, Config{})
	proceed := l.systemctl.Hold("registry2")
	id := l.queue(poolbot.ActionRestart, "")
	testenv.Eventually(t, 30*time.Second, "host 2 to start", func() bool { return slices.Contains(l.restarted(), "registry2") })
	stopped := make(chan struct{})
	go func() { l.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("the engine stopped in the middle of a host")
	case <-time.After(300 * time.Millisecond):
	}
	proceed()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the engine did not stop")
	}
	r := l.request(id)
	steps, err := l.store.HostSteps(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != poolbot.StateRestarting || steps[1].State != poolbot.HostDone || steps[2].State != poolbot.HostPending {
		t.Fatalf("after shutdown: %s (%s), steps %+v", r.State, r.Error, steps)
	}
	if got := l.restarted(); !slices.Equal(got, []string{"registry1", "registry2"}) {
		t.Fatalf("restarted %v", got)
	}
	if got := l.globalLock(); got != "none" {
		t.Fatalf("global lock after shutdown: %s", got)
	}
	if sal := l.sal(id); !hasLine(sal, "(2/3)") || !hasLine(sal, "deploy block released: poolbot is stopping") {
		t.Fatalf("SAL %q", sal)
	}
}
