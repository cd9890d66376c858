package restart

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cuminFixtureDir holds cumin's exact output (stdout and stderr through one
// pipe, as the executor reads them, colours included) for the runs in
// cuminFixtures. TestCuminFixturesAreReal re-runs each one against the
// installed cumin and compares byte for byte; the parser tests and the
// fuzz seeds read the files, so they also run where cumin is missing.
const cuminFixtureDir = "testdata/cumin-4.2.0"

// cuminFixture is one recorded cumin run: the arguments after the
// environment's command prefix, and its exit code.
type cuminFixture struct {
	file string
	args []string
	exit int
}

// cuminFixtures are the runs recorded in cuminFixtureDir. Host names are
// those of startCumin; nothing in the output depends on ports or time.
func cuminFixtures() []cuminFixture {
	run := func(timeout time.Duration, host string, argv ...string) []string {
		e, err := NewCumin(CuminConfig{Command: []string{"cumin"}, Timeout: timeout}, Options{})
		if err != nil {
			panic(err)
		}
		return e.CommandLine(host, argv)[1:]
	}
	list := func(q string) []string { return []string{"--force", "--no-progress", "--dry-run", q} }
	return []cuminFixture{
		{"dry-run.txt", list("A:docker-registry"), 0},
		{"dry-run-one.txt", list("A:docker-registry and D{registry2004.codfw.test}"), 0},
		{"no-hosts.txt", list("A:docker-registry and A:esams"), 0},
		{"bad-alias.txt", list("A:nope"), 99},
		{"run-ok.txt", run(10*time.Second, "registry1001.eqiad.test", "sh", "-c", "echo restarted; echo 'a warning' >&2"), 0},
		{"run-fail.txt", run(10*time.Second, "registry1001.eqiad.test", "sh", "-c",
			"echo 'Job for docker-registry-ml.service failed because the control process exited with error code.' >&2; exit 1"), 2},
		{"run-unreachable.txt", run(10*time.Second, cuminDown, "systemctl", "restart", "docker-registry-ml.service"), 2},
		{"run-timeout.txt", run(time.Second, "registry1001.eqiad.test", "sleep", "4.5"), 2},
		// Several hosts in one cumin run (not what the executor does):
		// the deduplicated output with NODE GROUP headers.
		{"run-three-hosts.txt", []string{"-b", "1", "--force", "--no-progress", "-t", "10", "D{registry[1001-1003].eqiad.test}", "echo ok"}, 0},
	}
}

func readCuminFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cuminFixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCuminFixturesAreReal runs every recorded cumin invocation against
// the installed cumin and compares the output with the fixture byte for
// byte (with -update-cumin-fixtures, rewrites the fixtures instead).
func TestCuminFixturesAreReal(t *testing.T) {
	t.Parallel()
	env := startCumin(t, cuminHosts[:3]...)
	if v := env.Version(t); v != "cumin 4.2.0" && !*updateCuminFixtures {
		t.Fatalf("installed %s; the fixtures in %s were recorded from cumin 4.2.0: record new ones (-update-cumin-fixtures, in a directory named for the version) and check the parser against them", v, cuminFixtureDir)
	}
	for _, fx := range cuminFixtures() {
		t.Run(fx.file, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(env.Command[0], append(env.Command[1:], fx.args...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != fx.exit {
				t.Fatalf("exit %d, want %d:\n%s", code, fx.exit, out.Bytes())
			}
			path := filepath.Join(cuminFixtureDir, fx.file)
			if *updateCuminFixtures {
				if err := os.MkdirAll(cuminFixtureDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := readCuminFixture(t, fx.file); !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("cumin %q wrote\n%q\nthe fixture %s has\n%q", fx.args, out.Bytes(), path, want)
			}
		})
	}
	t.Cleanup(func() {
		// run-timeout's remote sleep outlives its ssh.
		if pid, ok := findProcess("sleep\x004.5\x00", 0); ok {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// TestReadCuminOutcome reads the recorded runs as the executor does.
func TestReadCuminOutcome(t *testing.T) {
	t.Parallel()
	fx := map[string]int{}
	for _, f := range cuminFixtures() {
		fx[f.file] = f.exit
	}
	commands := map[string]string{}
	for _, f := range cuminFixtures() {
		commands[f.file] = f.args[len(f.args)-1]
	}
	outcome := func(name string) cuminOutcome {
		text := StripANSI(readCuminFixture(t, name))
		host, _ := cuminHostOutput(text, commands[name])
		return readCuminOutcome(fx[name], text, host)
	}
	if o := outcome("run-ok.txt"); o != (cuminOutcome{}) {
		t.Fatalf("ok: %+v", o)
	}
	o := outcome("run-fail.txt")
	if o.err != nil || o.exitCode != 2 || o.detail != `100.0% (1/1) of nodes failed to execute command ''sh' '-c' 'echo ...\'' >&2; exit 1'': registry1001.eqiad.test` {
		t.Fatalf("fail: %+v", o)
	}
	o = outcome("run-unreachable.txt")
	if o.op != "connect" || o.err == nil || o.err.Error() != "ssh: connect to host 127.0.0.1 port 1: Connection refused (cumin: 100.0% (1/1) of nodes failed to execute command ''systemctl' 'res...stry-ml.service'': registry1009.eqiad.test)" {
		t.Fatalf("unreachable: %+v", o)
	}
	o = outcome("run-timeout.txt")
	if o.op != "run" || !errors.Is(o.err, ErrTimeout) || o.detail != "100.0% (1/1) of nodes timeout to execute command ''sleep' '4.5'': registry1001.eqiad.test" {
		t.Fatalf("timeout: %+v", o)
	}
	o = outcome("bad-alias.txt")
	if o.op != "run" || o.err == nil || o.err.Error() != "cumin exited 99 (unexpected exception): Caught InvalidQueryError exception: Unable to find alias replacement for 'nope' in the configuration" {
		t.Fatalf("bad alias: %+v", o)
	}

	// cumin v6 (not installable here) numbers the command in its report
	// lines and exits 4 on a timeout (ExecutionStatus.TIMEDOUT); the line
	// is the documented one (cumin doc/source/introduction.rst).
	v6 := "100.0% (1/1) of nodes failed to execute command #1: 'systemctl restart x.service': registry2003.codfw.wmnet\n" +
		"0.0% (0/1) success ratio (< 100.0% threshold) for command #1: 'systemctl restart x.service'. Aborting.\n"
	if o := readCuminOutcome(2, []byte(v6), nil); o.err != nil || o.exitCode != 2 || !strings.HasSuffix(o.detail, ": registry2003.codfw.wmnet") {
		t.Fatalf("v6 failure: %+v", o)
	}
	if o := readCuminOutcome(4, nil, nil); !errors.Is(o.err, ErrTimeout) || o.err.Error() != "cumin exited 4 (timed out): timed out" {
		t.Fatalf("v6 timeout: %+v", o)
	}
	// OpenSSH's line counts only as the host's last line: a command that
	// printed one and went on failed by itself.
	failText := StripANSI(readCuminFixture(t, "run-fail.txt"))
	if o := readCuminOutcome(2, failText, []byte("ssh: connect to host x port 22: Connection refused\nretrying\n")); o.err != nil || o.exitCode != 2 {
		t.Fatalf("ssh line not last: %+v", o)
	}
	if o := readCuminOutcome(2, failText, []byte("Warning: something\nroot@h: Permission denied (publickey,password).\n")); o.op != "connect" ||
		!strings.HasPrefix(o.err.Error(), "root@h: Permission denied (publickey,password). (cumin: 100.0% (1/1) of nodes failed") {
		t.Fatalf("permission denied: %+v", o)
	}
	// A failure exit without a report is not a command failure.
	if o := readCuminOutcome(2, []byte("usage: cumin ...\n"), nil); o.err == nil || o.exitCode != 0 {
		t.Fatalf("report-less exit 2: %+v", o)
	}
	// Interrupted.
	if o := readCuminOutcome(98, []byte("Execution interrupted by Ctrl+c/SIGINT/Aborted\n"), nil); o.err == nil || !strings.Contains(o.err.Error(), "cumin exited 98 (interrupted or aborted)") {
		t.Fatalf("interrupted: %+v", o)
	}
}

// TestCuminHostOutput cuts what the command printed out of the recorded
// runs.
func TestCuminHostOutput(t *testing.T) {
	t.Parallel()
	commands := map[string]string{}
	for _, fx := range cuminFixtures() {
		commands[fx.file] = fx.args[len(fx.args)-1]
	}
	for name, want := range map[string]string{
		"run-ok.txt":          "restarted\na warning\n",
		"run-fail.txt":        "Job for docker-registry-ml.service failed because the control process exited with error code.\n",
		"run-unreachable.txt": "ssh: connect to host 127.0.0.1 port 1: Connection refused\n",
		"run-timeout.txt":     "",
	} {
		got, ok := cuminHostOutput(StripANSI(readCuminFixture(t, name)), commands[name])
		if !ok || string(got) != want {
			t.Fatalf("%s: %q %v, want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"bad-alias.txt", "dry-run.txt", "no-hosts.txt"} {
		if got, ok := cuminHostOutput(StripANSI(readCuminFixture(t, name)), commands[name]); ok {
			t.Fatalf("%s: %q", name, got)
		}
	}
	// Another command's header is not this one's.
	if got, ok := cuminHostOutput(StripANSI(readCuminFixture(t, "run-ok.txt")), "true"); ok {
		t.Fatalf("other command: %q", got)
	}
	// The command may print cumin's separator itself: the last one ends
	// it. A command with a newline has a header on two lines.
	got, ok := cuminHostOutput([]byte("----- OUTPUT of 'x' -----\na\n================\nb\n================\n100.0% (1/1) success ratio\n"), "x")
	if !ok || string(got) != "a\n================\nb\n" {
		t.Fatalf("separator in output: %q %v", got, ok)
	}
	got, ok = cuminHostOutput([]byte("----- OUTPUT of 'a\nb' -----\nout\n================\n"), "a\nb")
	if !ok || string(got) != "out\n" {
		t.Fatalf("newline in command: %q %v", got, ok)
	}
	// As in run-unreachable.txt; and by characters, not bytes.
	if s := cuminShortCommand(ShellJoin([]string{"systemctl", "restart", "docker-registry-ml.service"})); s != "'systemctl' 'res...stry-ml.service'" {
		t.Fatalf("short %q", s)
	}
	if s := cuminShortCommand(strings.Repeat("é", 40)); s != strings.Repeat("é", 16)+"..."+strings.Repeat("é", 16) {
		t.Fatalf("short by characters: %q", s)
	}
}

func TestParseCuminHosts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, out string
		want      []string
		err       string
	}{
		// Recorded from cumin 4.2.0.
		{name: "fixture dry run", out: string(readCuminFixture(t, "dry-run.txt")),
			want: []string{"registry2003.codfw.test", "registry2004.codfw.test", "registry1001.eqiad.test",
				"registry1002.eqiad.test", "registry1003.eqiad.test", "registry1004.eqiad.test"}},
		{name: "fixture dry run, one host", out: string(readCuminFixture(t, "dry-run-one.txt")), want: []string{"registry2004.codfw.test"}},
		{name: "fixture no hosts", out: string(readCuminFixture(t, "no-hosts.txt")), want: []string{}},
		{name: "fixture bad alias", out: string(readCuminFixture(t, "bad-alias.txt")), err: "no host list in cumin output: Caught InvalidQueryError exception"},
		{name: "fixture run", out: string(readCuminFixture(t, "run-ok.txt")), want: []string{"registry1001.eqiad.test"}},
		{name: "fixture node groups", out: string(readCuminFixture(t, "run-three-hosts.txt")),
			want: []string{"registry1001.eqiad.test", "registry1002.eqiad.test", "registry1003.eqiad.test"}},
		// Edge cases of the same shapes.
		{
			name: "one host, CRLF",
			out:  "1 hosts will be targeted:\r\nregistry2005.codfw.wmnet\r\nDRY-RUN mode enabled, aborting\r\n",
			want: []string{"registry2005.codfw.wmnet"},
		},
		{
			name: "count mismatch",
			out:  "3 hosts will be targeted:\nregistry[2003-2004].codfw.wmnet\n",
			err:  "announced 3 hosts but the node set",
		},
		{name: "nothing after the count", out: "2 hosts will be targeted:\n\n", err: "not followed by a node set"},
		{name: "invalid host", out: "1 hosts will be targeted:\nREGISTRY1.x\n", err: "invalid host name"},
		{
			name: "node groups without the count",
			out: "===== NODE GROUP =====\n(2) cp[3007-3008].esams.wmnet\n----- OUTPUT of 'true' -----\nok\n" +
				"===== NODE GROUP =====\n(1) cp3010.esams.wmnet\n----- OUTPUT of 'true' -----\nok\n================\n",
			want: []string{"cp3007.esams.wmnet", "cp3008.esams.wmnet", "cp3010.esams.wmnet"},
		},
		{name: "bad node group", out: "===== NODE GROUP =====\nnope\n", err: "not followed by"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCuminHosts([]byte(tc.out))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

// FuzzParseCuminHosts: any output either fails or yields valid, distinct
// host names. The seeds are cumin's recorded output.
func FuzzParseCuminHosts(f *testing.F) {
	for _, fx := range cuminFixtures() {
		f.Add(readCuminFixture(f, fx.file))
	}
	f.Add([]byte("\x1b[33m1 hosts will be targeted:\x1b[0m\r\n\x1b[36ma1\x1b[0m\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		hosts, err := ParseCuminHosts(out)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, h := range hosts {
			if ValidateHost(h) != nil || seen[h] {
				t.Fatalf("bad or duplicate host %q from %q", h, out)
			}
			seen[h] = true
		}
	})
}
