package restart

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
	cuminenv "poolbot/internal/testenv/cumin"
)

// The cumin tests run Debian's cumin (4.2.0 on bookworm) with its
// ClusterShell transport over SSH against real sshd "hosts"
// (internal/testenv/cumin). Each cumin run costs about a second of
// Python start-up, so the tests keep their runs few.

// cuminHosts are the hosts of the cumin tests; each is an sshd.
var cuminHosts = []string{"registry1001.eqiad.test", "registry1002.eqiad.test", "registry1003.eqiad.test", "registry1004.eqiad.test"}

// cuminDown is known to ssh but nothing listens there.
const cuminDown = "registry1009.eqiad.test"

func startCumin(t testing.TB, hosts ...string) *cuminenv.Env {
	t.Helper()
	return cuminenv.Start(t, cuminenv.Options{
		Hosts:       hosts,
		Unreachable: []string{cuminDown},
		Aliases: map[string]string{
			"docker-registry": "D{registry[1001-1004].eqiad.test,registry[2003-2004].codfw.test}",
			"eqiad":           "D{registry[1001-1009].eqiad.test}",
			"codfw":           "D{registry[2001-2009].codfw.test}",
			"esams":           "D{cp[3001-3002].esams.test}",
		},
	})
}

func newTestCumin(t testing.TB, env *cuminenv.Env, cfg CuminConfig) *Cumin {
	t.Helper()
	if cfg.Command == nil {
		cfg.Command = env.Command
	}
	e, err := NewCumin(cfg, Options{DefaultTimeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCuminCommandLine(t *testing.T) {
	t.Parallel()
	e, err := NewCumin(CuminConfig{Command: []string{"sudo", "-n", "cumin"}, Timeout: 1500 * time.Millisecond}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := e.CommandLine("registry2003.codfw.wmnet", []string{"systemctl", "restart", "a b.service"})
	want := []string{"sudo", "-n", "cumin", "-b", "1", "-p", "100", "--force", "--no-progress", "-t", "2",
		"D{registry2003.codfw.wmnet}", "'systemctl' 'restart' 'a b.service'"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("argv %q, want %q", got, want)
	}
	e, _ = NewCumin(CuminConfig{}, Options{})
	if got := e.CommandLine("h1", []string{"true"}); slicesContains(got, "-t") || got[0] != "sudo" {
		t.Fatalf("no -t without cumin.timeout, sudo by default: %q", got)
	}
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCuminRunSuccessAndQuoting(t *testing.T) {
	t.Parallel()
	env := startCumin(t, cuminHosts[0])
	e := newTestCumin(t, env, CuminConfig{Timeout: 20 * time.Second})
	dir := t.TempDir()
	args := nastyArgs(dir)
	argv := append([]string{"printf", `[%s]\n`}, args...)
	res, err := e.Run(context.Background(), cuminHosts[0], argv)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v exit %d output %q", err, res.ExitCode, res.Output)
	}
	// Output is exactly what printf printed: cumin's own lines are cut off
	// (the command has newlines and non-ASCII characters in it, which
	// cumin's header shows).
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]\n")
	}
	if string(res.Output) != want.String() {
		t.Fatalf("output\n%q, want\n%q", res.Output, want.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); !os.IsNotExist(err) {
		t.Fatal("injected command ran")
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned2")); !os.IsNotExist(err) {
		t.Fatal("injected command ran")
	}
	// cumin logs its arguments: the options the executor promises.
	log, err := os.ReadFile(env.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"batch_size={'value': 1, 'ratio': None}", "success_percentage=100", "timeout=20", "force=True", "hosts='D{registry1001.eqiad.test}'"} {
		if !strings.Contains(string(log), w) {
			t.Fatalf("cumin log lacks %q:\n%s", w, log)
		}
	}
}

// TestCuminRestartStopsAtFailingHost resolves the hosts through cumin,
// then restarts them one by one as the procedure does, stopping at the
// first failure: the restart fails on the second host, whose sshd is
// recognised by the port in $SSH_CONNECTION; the third is never touched.
func TestCuminRestartStopsAtFailingHost(t *testing.T) {
	t.Parallel()
	hosts := cuminHosts[:3]
	env := startCumin(t, hosts...)
	e := newTestCumin(t, env, CuminConfig{Timeout: 30 * time.Second})
	ctx := context.Background()
	cfg := Config{Executor: ExecutorCumin, HostsQuery: "A:docker-registry and A:eqiad and not D{registry1004.eqiad.test}", Cumin: CuminConfig{Command: env.Command},
		Units:          []string{"docker-registry-restricted.service"},
		PerHostTimeout: 60 * time.Second,
	}
	dir := t.TempDir()
	failing := hosts[1]
	// restart: record "<unit>" in ran-<sshd port>, fail on the failing
	// host's port like systemctl when the start job fails.
	cfg.RestartCommand = []string{"sh", "-c", `port=${SSH_CONNECTION##* }; echo "$2" >> "$0/ran-$port"; ` +
		`if [ "$port" = "$1" ]; then echo "Job for $2 failed because the control process exited with error code." >&2; exit 1; fi`,
		dir, strconv.Itoa(env.Servers[failing].Port), "{units}"}
	cfg.CheckCommand = []string{"test", "-n", "{unit}"}
	lister, err := NewHostLister(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(ctx, cfg, lister)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plan.Hosts, hosts) {
		t.Fatalf("plan hosts %q, want %q", plan.Hosts, hosts)
	}
	var stopped error
	for _, h := range plan.Hosts {
		if _, err := RestartHost(ctx, e, plan, h); err != nil {
			stopped = err
			break
		}
	}
	var se *StepError
	if !errors.As(stopped, &se) || !se.Ran() || se.Host != failing || se.Step != "restart" || se.Result.ExitCode != 2 {
		t.Fatalf("stopped with %v", stopped)
	}
	// cumin's report line, then what the command printed.
	want := "host registry1002.eqiad.test: restart: exit 2 (100.0% (1/1) of nodes failed to execute command ''sh' '-c' 'port=...tricted.service'': registry1002.eqiad.test): " +
		"Job for docker-registry-restricted.service failed because the control process exited with error code."
	if stopped.Error() != want {
		t.Fatalf("error\n%q, want\n%q", stopped, want)
	}
	for i, h := range hosts {
		b, err := os.ReadFile(filepath.Join(dir, "ran-"+strconv.Itoa(env.Servers[h].Port)))
		switch {
		case i <= 1 && (err != nil || string(b) != "docker-registry-restricted.service\n"):
			t.Fatalf("host %s: restart ran %q (%v), want once", h, b, err)
		case i > 1 && !os.IsNotExist(err):
			t.Fatalf("host %s after the failing one was touched: %q %v", h, b, err)
		}
	}
}

// TestCuminUnreachable: ssh cannot connect, or does not trust the host
// key. cumin counts the host as failed; the executor says the command did
// not run, with ssh's own line.
func TestCuminUnreachable(t *testing.T) {
	t.Parallel()
	env := startCumin(t, cuminHosts[0])
	e := newTestCumin(t, env, CuminConfig{Timeout: 20 * time.Second})
	plan := Plan{Hosts: []string{cuminDown}, Units: DefaultUnits(), RestartCommand: DefaultRestartCommand(), CheckCommand: DefaultCheckCommand()}
	_, err := RestartHost(context.Background(), e, plan, cuminDown)
	var se *StepError
	if !errors.As(err, &se) || se.Ran() || se.Step != "restart" {
		t.Fatalf("err %v", err)
	}
	want := "host registry1009.eqiad.test: restart: cumin: connect: ssh: connect to host 127.0.0.1 port 1: Connection refused " +
		"(cumin: 100.0% (1/1) of nodes failed to execute command ''systemctl' 'res...stry-ml.service'': registry1009.eqiad.test)"
	if err.Error() != want {
		t.Fatalf("error\n%q, want\n%q", err, want)
	}

	// A host key that is not the pinned one.
	if err := os.WriteFile(env.KnownHostsPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.Run(context.Background(), cuminHosts[0], []string{"true"})
	re := mustRunError(t, err, "connect")
	if re.Err.Error() != ("Host key verification failed. (cumin: 100.0% (1/1) of nodes failed to execute command ''true'': registry1001.eqiad.test)") {
		t.Fatalf("err %v", err)
	}
}

func TestCuminRunTimeout(t *testing.T) {
	t.Parallel()
	env := startCumin(t, cuminHosts[0])
	e := newTestCumin(t, env, CuminConfig{Timeout: time.Second})
	marker := uniqueSleep()
	start := time.Now()
	_, err := e.Run(context.Background(), cuminHosts[0], []string{"sleep", marker})
	mustRunError(t, err, "run")
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "100.0% (1/1) of nodes timeout to execute command ''sleep' '") {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
	// ClusterShell killed its ssh; the remote sleep of a non-tty session
	// runs on (the "remote" host is this one).
	if pid, ok := findProcess("sleep\x00"+marker+"\x00", time.Second); ok {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestCuminRunErrors(t *testing.T) {
	t.Parallel()
	env := startCumin(t)
	// A usage error exits 2 without a report: could not run.
	_, err := newTestCumin(t, env, CuminConfig{Command: append(append([]string(nil), env.Command...), "--bogus")}).
		Run(context.Background(), cuminDown, []string{"true"})
	mustRunError(t, err, "run")
	if !strings.Contains(err.Error(), "cumin exited 2") || !strings.Contains(err.Error(), "unrecognized arguments: --bogus") {
		t.Fatalf("err %v", err)
	}
	// A configuration error: the same.
	cmd := append([]string(nil), env.Command...)
	cmd[len(cmd)-1] = filepath.Join(env.Dir, "missing.yaml")
	_, err = newTestCumin(t, env, CuminConfig{Command: cmd}).Run(context.Background(), cuminDown, []string{"true"})
	mustRunError(t, err, "run")
	if !strings.Contains(err.Error(), "cumin exited 2") || !strings.Contains(err.Error(), "Unable to read configuration file") {
		t.Fatalf("err %v", err)
	}
	// cumin missing.
	_, err = newTestCumin(t, env, CuminConfig{Command: []string{filepath.Join(env.Dir, "nope")}}).Run(context.Background(), "h1.example", []string{"true"})
	mustRunError(t, err, "start")
	// Hosts are checked before anything runs: no cumin run, no log.
	_ = os.Remove(env.LogPath)
	_, err = newTestCumin(t, env, CuminConfig{}).Run(context.Background(), "A:all", []string{"true"})
	mustRunError(t, err, "validate")
	if _, statErr := os.Stat(env.LogPath); !os.IsNotExist(statErr) {
		t.Fatal("an invalid host reached cumin")
	}
}

// TestCuminCancel: cancelling sends cumin SIGINT, which it turns into a
// clean stop (exit 98); Run reports the cancellation.
func TestCuminCancel(t *testing.T) {
	t.Parallel()
	env := startCumin(t, cuminHosts[0])
	e := newTestCumin(t, env, CuminConfig{})
	dir := t.TempDir()
	marker := uniqueSleep()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, cuminHosts[0], []string{"sh", "-c", "touch " + filepath.Join(dir, "started") + "; exec sleep " + marker})
		done <- err
	}()
	testenv.Eventually(t, 20*time.Second, "the command to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "started"))
		return err == nil
	})
	cancel()
	select {
	case err := <-done:
		mustRunError(t, err, "wait")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if pid, ok := findProcess("sleep\x00"+marker+"\x00", time.Second); ok {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestCuminListHosts resolves queries through cumin's dry run, and
// hosts_query through NewPlan: a query that selects nothing is an error.
func TestCuminListHosts(t *testing.T) {
	t.Parallel()
	env := startCumin(t)
	e := newTestCumin(t, env, CuminConfig{})
	ctx := context.Background()
	// cumin orders hosts by ClusterShell's node set, not as written.
	hosts, err := e.ListHosts(ctx, "A:docker-registry")
	if want := []string{"registry2003.codfw.test", "registry2004.codfw.test", "registry1001.eqiad.test",
		"registry1002.eqiad.test", "registry1003.eqiad.test", "registry1004.eqiad.test"}; err != nil || !reflect.DeepEqual(hosts, want) {
		t.Fatalf("hosts %q %v, want %q", hosts, err, want)
	}
	hosts, err = e.ListHosts(ctx, "A:docker-registry and A:esams")
	if err != nil || hosts == nil || len(hosts) != 0 {
		t.Fatalf("no match: %q %v", hosts, err)
	}

	cfg := Config{Executor: ExecutorCumin, HostsQuery: "A:docker-registry and A:codfw", Cumin: CuminConfig{Command: env.Command}}
	lister, err := NewHostLister(cfg, Options{})
	if err != nil || lister == nil {
		t.Fatalf("lister %v %v", lister, err)
	}
	p, err := NewPlan(ctx, cfg, lister)
	if err != nil || !reflect.DeepEqual(p.Hosts, []string{"registry2003.codfw.test", "registry2004.codfw.test"}) {
		t.Fatalf("plan %+v %v", p, err)
	}
	cfg.HostsQuery = "A:docker-registry and A:esams"
	_, err = NewPlan(ctx, cfg, lister)
	if err == nil || err.Error() != `restart: hosts_query "A:docker-registry and A:esams" matched no hosts` {
		t.Fatalf("empty query: %v", err)
	}
	if _, err := NewPlan(ctx, cfg, nil); err == nil || !strings.Contains(err.Error(), "needs a host lister") {
		t.Fatalf("nil lister: %v", err)
	}
	if l, err := NewHostLister(Config{Hosts: []string{"a"}}, Options{}); l != nil || err != nil {
		t.Fatalf("static hosts: lister %v err %v", l, err)
	}

	// cumin's own errors name the query and give cumin's error line;
	// queries that could be read as options or hold control characters
	// never reach cumin.
	for q, want := range map[string]string{
		"A:nope":   `restart: cumin: list "A:nope": exited 99 (unexpected exception): Caught InvalidQueryError exception: Unable to find alias replacement for 'nope' in the configuration`,
		"D{bad[":   `restart: cumin: list "D{bad[": exited 99 (unexpected exception): Caught InvalidQueryError exception: Unable to parse the query 'D{bad[' neither with the default backend 'direct' nor with the global grammar:`,
		"--help":   "starts with '-'",
		"":         "empty host query",
		"A:x\nB:y": "control character",
	} {
		if _, err := e.ListHosts(ctx, q); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("query %q: %v, want %q", q, err, want)
		}
	}
}

// BenchmarkCuminRunTrue measures one Run of `true` through cumin: Python
// start-up, configuration, the direct backend, ClusterShell spawning
// OpenSSH's client (connect, handshake, auth, exec), the report. Compare
// with BenchmarkSSHRunTrue for the time cumin adds per host. child-cpu-ms/op
// is the CPU time of cumin and its ssh, which a loaded machine does not
// inflate the way it does wall time.
func BenchmarkCuminRunTrue(b *testing.B) {
	env := startCumin(b, cuminHosts[0])
	e := newTestCumin(b, env, CuminConfig{})
	ctx := context.Background()
	cpu := childCPU()
	for b.Loop() {
		res, err := e.Run(ctx, cuminHosts[0], []string{"true"})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("run: %v exit %d", err, res.ExitCode)
		}
	}
	b.ReportMetric(float64((childCPU()-cpu).Milliseconds())/float64(b.N), "child-cpu-ms/op")
}

// BenchmarkOpenSSHRunTrue is the same command through OpenSSH's client
// alone, with the ssh_config cumin uses: the share of the cumin run that is
// ssh itself.
func BenchmarkOpenSSHRunTrue(b *testing.B) {
	env := startCumin(b, cuminHosts[0])
	cpu := childCPU()
	for b.Loop() {
		out, err := exec.Command("ssh", "-F", env.SSHConfigPath, "-oBatchMode=yes", cuminHosts[0], "true").CombinedOutput()
		if err != nil {
			b.Fatalf("ssh: %v %s", err, out)
		}
	}
	b.ReportMetric(float64((childCPU()-cpu).Milliseconds())/float64(b.N), "child-cpu-ms/op")
}

// childCPU is the user and system CPU time of this process's waited-for
// children so far.
func childCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var updateCuminFixtures = flag.Bool("update-cumin-fixtures", false, "rewrite testdata/cumin-4.2.0 from the installed cumin")
