package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
	"poolbot/store"
)

// buildPoolbot builds the poolbot binary once per test.
func buildPoolbot(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "poolbot")
	out, err := exec.Command("go", "build", "-o", bin, "poolbot/cmd/poolbot").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// crashWorld is poolbot as a real process (console adapter) in a
// site.Site: real etcd, real registries on three loopback "hosts", scap
// lock files.
type crashWorld struct {
	*site.Site
	t      *testing.T
	bin    string
	cfg    string
	dbPath string
}

func newCrashWorld(t *testing.T) *crashWorld {
	t.Helper()
	w := &crashWorld{Site: site.New(t, 3), t: t, bin: buildPoolbot(t)}
	w.cfg = w.Config(t, `  command_prefix: "!"`, "")
	w.dbPath = filepath.Join(w.Dir, "poolbot.db")
	if out, err := exec.Command(w.bin, "check-config", w.cfg).CombinedOutput(); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	return w
}

// poolbotProc is one run of the poolbot binary.
type poolbotProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testenv.SyncBuffer
	done  chan struct{}
}

func (w *crashWorld) start() *poolbotProc {
	w.t.Helper()
	cmd := exec.Command(w.bin, "console", "-config", w.cfg, "-as", "alice")
	cmd.Env = append(os.Environ(), site.EnvCtl+"="+w.Systemctl.URL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	p := &poolbotProc{cmd: cmd, stdin: stdin, out: &testenv.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	w.t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	return p
}

func (p *poolbotProc) kill9() {
	_ = p.cmd.Process.Kill() // SIGKILL: no cleanup of any kind
	<-p.done
}

func (p *poolbotProc) stop(t *testing.T) {
	p.stdin.Close() // the console ends with its input; poolbot shuts down
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("poolbot did not stop")
	}
}

func (w *crashWorld) request(id poolbot.RequestID) (poolbot.Request, []string, []poolbot.HostStep) {
	w.t.Helper()
	st, err := store.Open(context.Background(), w.dbPath, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	defer st.Close()
	r, err := st.Request(context.Background(), id)
	if err != nil {
		w.t.Fatal(err)
	}
	sal, _ := st.SALLines(context.Background(), id)
	steps, _ := st.HostSteps(context.Background(), id)
	return r, sal, steps
}

// poolbot is killed with SIGKILL while each host in turn is being
// restarted; a new poolbot finishes the request: no completed host is
// restarted again, no SAL line is lost or repeated, the deploy block is
// consistent.
func TestKill9AtEachHostResumes(t *testing.T) {
	t.Parallel()
	w := newCrashWorld(t)
	actions := []string{"depool apus codfw", "pool apus codfw", "depool apus codfw"}
	for i, host := range w.Hosts {
		id := poolbot.RequestID(i + 1)
		t.Run(fmt.Sprintf("kill at host %d", i+1), func(t *testing.T) {
			w.t = t
			before := len(w.Systemctl.Restarts())
			proceed := w.Systemctl.Hold(host)
			p := w.start()
			fmt.Fprintf(p.stdin, "!%s T%d crash test %d\n", actions[i], 1000+i, i)
			testenv.Eventually(w.t, 60*time.Second, "restart of "+host+" in progress", func() bool {
				return slices.Contains(w.Systemctl.Restarts()[before:], host)
			})
			p.kill9()
			r, _, _ := w.request(id)
			if r.State != poolbot.StateRestarting {
				t.Fatalf("killed in state %s", r.State)
			}
			// The kernel dropped poolbot's deploy block with the process.
			if got := site.ProbeLock(t, w.GlobalLock()); got != "none" {
				t.Fatalf("global lock after kill -9: %s", got)
			}
			proceed() // the orphaned restart finishes

			p2 := w.start()
			testenv.Eventually(w.t, 60*time.Second, "request done", func() bool { r, _, _ := w.request(id); return r.State.Terminal() })
			p2.stop(t)
			r, sal, steps := w.request(id)
			if r.State != poolbot.StateDone {
				t.Fatalf("ended %s: %s\n%s", r.State, r.Error, p2.out.String())
			}
			for _, s := range steps {
				if s.State != poolbot.HostDone {
					t.Fatalf("host steps %+v", steps)
				}
			}
			// Hosts before the killed one were restarted once, the killed
			// one at most twice (its restart was interrupted), later ones
			// once.
			counts := map[string]int{}
			for _, h := range w.Systemctl.Restarts()[before:] {
				counts[h]++
			}
			for j, h := range w.Hosts {
				want := 1
				if j == i {
					want = 2
				}
				if counts[h] != want {
					t.Errorf("%s restarted %d times, want %d (%v)", h, counts[h], want, w.Systemctl.Restarts()[before:])
				}
			}
			seen := map[string]bool{}
			for _, l := range sal {
				if seen[l] {
					t.Errorf("SAL line repeated: %q", l)
				}
				seen[l] = true
			}
			for _, want := range []string{"START - ", "deploy block taken", "conftool action : set/pooled=",
				"deploy block re-taken, continuing at restarting", "(1/3)", "(2/3)", "(3/3)", "deploy block released", "END (PASS)"} {
				if !hasSAL(sal, want) {
					t.Errorf("SAL lacks %q:\n%s", want, strings.Join(sal, "\n"))
				}
			}
			w.checkSettled()
		})
	}
}

// checkSettled asserts what must hold once a request ended: the deploy
// block is released and every SAL line was delivered (the console is the
// chat here).
func (w *crashWorld) checkSettled() {
	w.t.Helper()
	if got := site.ProbeLock(w.t, w.GlobalLock()); got != "none" {
		w.t.Fatalf("global lock after the end: %s", got)
	}
	st, err := store.Open(context.Background(), w.dbPath, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	defer st.Close()
	if n, _ := st.SALBacklog(context.Background()); n != 0 {
		w.t.Fatalf("%d SAL lines undelivered", n)
	}
}

func hasSAL(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// poolbot is killed with SIGKILL in each stored state before the restarts
// begin: waiting (scap runs), blocking-deploys (a forced request waits
// for a running scap command's lock) and switching (conftool hangs). A
// new poolbot finishes each request with one START, no SAL line repeated
// or lost, every host restarted once, and the deploy block released.
func TestKill9BeforeRestartsResumes(t *testing.T) {
	t.Parallel()
	w := newCrashWorld(t)
	// One operator at the console: !force needs no second one here.
	w.cfg = w.Config(t, `  command_prefix: "!"`, "force: {require_confirm: false}\n")
	cases := []struct {
		state poolbot.State
		say   []string
		// hold makes poolbot stop in state; the returned function lets it go.
		hold func(t *testing.T) (release func())
	}{
		{poolbot.StateWaiting, []string{"!depool apus codfw T2001 crash while waiting"},
			func(t *testing.T) func() { return site.HoldLock(t, w.GlobalLock(), "shared") }},
		{poolbot.StateBlockingDeploys, []string{"!restart apus T2002 crash while taking the block", "!force 2 registry broken"},
			func(t *testing.T) func() { return site.HoldLock(t, w.GlobalLock(), "shared") }},
		{poolbot.StateSwitching, []string{"!pool apus codfw T2003 crash while switching"},
			func(t *testing.T) func() { return w.Etcd.Freeze(t) }},
	}
	for i, c := range cases {
		id := poolbot.RequestID(i + 1) // the cases share one store, in order
		t.Run("kill at "+string(c.state), func(t *testing.T) {
			w.t = t
			before := len(w.Systemctl.Restarts())
			release := c.hold(t)
			p := w.start()
			for _, line := range c.say {
				fmt.Fprintln(p.stdin, line)
			}
			testenv.Eventually(w.t, 60*time.Second, fmt.Sprintf("%s in %s", id, c.state), func() bool {
				st, err := store.Open(context.Background(), w.dbPath, nil)
				if err != nil {
					return false
				}
				defer st.Close()
				r, err := st.Request(context.Background(), id)
				return err == nil && r.State == c.state
			})
			p.kill9()
			if got := site.ProbeLock(t, w.GlobalLock()); strings.Contains(got, "exclusive") {
				t.Fatalf("global lock after kill -9: %s", got)
			}
			release()

			p2 := w.start()
			testenv.Eventually(w.t, 60*time.Second, "request done", func() bool { r, _, _ := w.request(id); return r.State.Terminal() })
			p2.stop(t)
			r, sal, _ := w.request(id)
			if r.State != poolbot.StateDone {
				t.Fatalf("ended %s: %s\n%s", r.State, r.Error, p2.out.String())
			}
			counts := map[string]int{}
			for _, h := range w.Systemctl.Restarts()[before:] {
				counts[h]++
			}
			for _, h := range w.Hosts {
				if counts[h] != 1 {
					t.Errorf("%s restarted %d times, want 1 (%v)", h, counts[h], w.Systemctl.Restarts()[before:])
				}
			}
			seen, starts := map[string]bool{}, 0
			for _, l := range sal {
				if seen[l] {
					t.Errorf("SAL line repeated: %q", l)
				}
				seen[l] = true
				if strings.Contains(l, "START - ") {
					starts++
				}
			}
			if starts != 1 || !hasSAL(sal, "END (PASS)") || !hasSAL(sal, "(3/3)") {
				t.Errorf("SAL (%d START lines):\n%s", starts, strings.Join(sal, "\n"))
			}
			w.checkSettled()
		})
	}
}
