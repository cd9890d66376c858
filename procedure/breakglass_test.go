package procedure

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/scap"
)

// unlockAll does what `scap lock --unlock-all <reason>` does to the
// holder (scap/lock.py signal_gl_release): write the signal, wait for the
// holder's acknowledgement, remove the signal.
func unlockAll(t *testing.T, dir, releaser, reason string) {
	t.Helper()
	signal := filepath.Join(dir, scap.UnlockSignalName)
	body := "{\n    \"releaser\": \"" + releaser + "\",\n    \"reason\": \"" + reason + "\"\n}"
	if err := os.WriteFile(signal, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, scap.UnlockAckName)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("poolbot did not acknowledge the unlock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Remove(signal); err != nil {
		t.Fatal(err)
	}
}

// A deployer breaks the deploy block during host 2 of 3: poolbot releases
// it at once, says so in the channel and SAL, finishes host 2, and parks
// the request before host 3; it takes the block again only on !resume.
func TestBreakGlassParksTheRequest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := newHarnessWith(t, 3, Config{}, nil, func(_ *harness, d *Deps, _ *Config, _ *Service) {
		d.Unlocks = scap.NewUnlockWatcher(scap.UnlockWatchOptions{Dir: dir, Poll: 20 * time.Millisecond})
	})
	proceed := l.systemctl.Hold("registry2")
	id := l.queue(poolbot.ActionRestart, "")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(strings.Join(l.restarted(), ","), "registry2") {
		if time.Now().After(deadline) {
			t.Fatal("host 2 never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	began := time.Now()
	unlockAll(t, dir, "jdoe", "emergency train fix")
	t.Logf("unlock acknowledged after %s", time.Since(began))
	l.waitNotice("deploy block BROKEN by jdoe", 0)
	t.Logf("break-glass announced after %s", time.Since(began))
	// Released while host 2 is still in progress: the deployer's scap
	// gets the lock now.
	if got := l.globalLock(); got != "none" {
		t.Fatalf("global lock after the break-glass: %s", got)
	}
	proceed()
	r := l.request(id)
	deadline = time.Now().Add(30 * time.Second)
	for !r.Parked {
		if time.Now().After(deadline) {
			t.Fatalf("not parked: %s %s", r.State, r.Step)
		}
		time.Sleep(20 * time.Millisecond)
		r = l.request(id)
	}
	if r.State != poolbot.StateRestarting || !strings.Contains(r.Step, "broken by jdoe (scap lock --unlock-all: emergency train fix)") {
		t.Fatalf("parked %s: %q", r.State, r.Step)
	}
	if got := strings.Join(l.restarted(), ","); got != "registry1,registry2" {
		t.Fatalf("restarted %s after the break-glass", got)
	}
	steps, _ := l.store.HostSteps(context.Background(), id)
	if steps[1].State != poolbot.HostDone || steps[2].State != poolbot.HostPending {
		t.Fatalf("steps %+v", steps)
	}
	sal := l.sal(id)
	if indexOf(sal, "deploy block BROKEN by jdoe with scap lock --unlock-all (emergency train fix); poolbot released it") < 0 {
		t.Fatalf("SAL:\n%s", strings.Join(sal, "\n"))
	}
	// Nothing happens by itself.
	l.engine.Notify("apus")
	time.Sleep(200 * time.Millisecond)
	if got := l.globalLock(); got != "none" || len(l.restarted()) != 2 {
		t.Fatalf("acted while parked: lock %s, restarts %v", got, l.restarted())
	}
	if _, err := l.engine.Resume(context.Background(), id, "bob", poolbot.Origin{Network: "irc", Account: "bob"}); err != nil {
		t.Fatal(err)
	}
	if r := l.waitState(id, 0, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after resume: %s %s", r.State, r.Error)
	}
	if got := strings.Join(l.restarted(), ","); got != "registry1,registry2,registry3" {
		t.Fatalf("restarted %s", got)
	}
	l.checkEnd(id, "END (PASS)")
	if indexOf(l.sal(id), "deploy block re-taken") < 0 {
		t.Fatal("no re-take line")
	}
}
