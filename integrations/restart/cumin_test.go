package restart

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// cuminEnv is a directory with the fake cumin and its scenario.
type cuminEnv struct {
	dir  string
	path string
}

func newCuminEnv(t *testing.T, sc fakeScenario) cuminEnv {
	t.Helper()
	dir := t.TempDir()
	path := installHelper(t, dir, "cumin")
	b, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scenario.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cuminEnv{dir: dir, path: path}
}

// calls returns the argv of every fake cumin invocation.
func (c cuminEnv) calls(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(c.dir, "calls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var argv []string
		if err := json.Unmarshal(sc.Bytes(), &argv); err != nil {
			t.Fatal(err)
		}
		out = append(out, argv)
	}
	return out
}

func (c cuminEnv) executor(t *testing.T, cfg CuminConfig) *Cumin {
	t.Helper()
	if cfg.Command == nil {
		cfg.Command = []string{c.path}
	}
	e, err := NewCumin(cfg, Options{DefaultTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCuminRunSuccessAndQuoting(t *testing.T) {
	t.Parallel()
	env := newCuminEnv(t, fakeScenario{Color: true})
	e := env.executor(t, CuminConfig{Timeout: 1500 * time.Millisecond})
	dir := t.TempDir()
	args := nastyArgs(dir)
	argv := append([]string{"printf", `[%s]\n`}, args...)
	res, err := e.Run(context.Background(), "registry2003.codfw.wmnet", argv)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v exit %d output %q", err, res.ExitCode, res.Output)
	}
	for _, a := range args {
		if !strings.Contains(string(res.Output), "["+a+"]\n") {
			t.Fatalf("output lacks %q:\n%s", a, res.Output)
		}
	}
	if strings.Contains(string(res.Output), "\x1b[") {
		t.Fatalf("escape sequences left in output %q", res.Output)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); !os.IsNotExist(err) {
		t.Fatal("injected command ran")
	}
	calls := env.calls(t)
	want := []string{"-b", "1", "--force", "--no-progress", "-t", "2", "D{registry2003.codfw.wmnet}", ShellJoin(argv)}
	if len(calls) != 1 || !reflect.DeepEqual(calls[0], want) {
		t.Fatalf("cumin argv %q, want %q", calls, want)
	}
}

func TestCuminRunFailure(t *testing.T) {
	t.Parallel()
	env := newCuminEnv(t, fakeScenario{})
	e := env.executor(t, CuminConfig{})
	res, err := e.Run(context.Background(), "registry1003.eqiad.wmnet", []string{"sh", "-c", "echo unit failed >&2; exit 3"})
	if err != nil {
		t.Fatalf("a failed command must be a result, not an error: %v", err)
	}
	if res.ExitCode != 2 {
		t.Fatalf("exit %d, want cumin's 2", res.ExitCode)
	}
	if !strings.Contains(res.Detail, "of nodes failed to execute command") || !strings.Contains(res.Detail, "registry1003.eqiad.wmnet") {
		t.Fatalf("detail %q", res.Detail)
	}
	if !strings.Contains(string(res.Output), "unit failed") {
		t.Fatalf("output %q", res.Output)
	}
	if got := res.Summary(200); !strings.HasPrefix(got, "exit 2 (100.0% (1/1) of nodes failed to execute command") {
		t.Fatalf("summary %q", got)
	}
	if calls := env.calls(t); len(calls) != 1 || contains(calls[0], "-t") {
		t.Fatalf("no -t without cumin.timeout: %q", calls)
	}

	// The same through RestartHost.
	plan := Plan{Hosts: []string{"registry1003.eqiad.wmnet"}, Units: DefaultUnits(),
		RestartCommand: []string{"sh", "-c", "exit 1"}, CheckCommand: DefaultCheckCommand()}
	_, err = RestartHost(context.Background(), e, plan, "registry1003.eqiad.wmnet")
	var se *StepError
	if !errors.As(err, &se) || !se.Ran() || se.Step != "restart" ||
		!strings.HasPrefix(err.Error(), "host registry1003.eqiad.wmnet: restart: exit 2 (") {
		t.Fatalf("err %v", err)
	}
}

func TestCuminRunTimeout(t *testing.T) {
	t.Parallel()
	env := newCuminEnv(t, fakeScenario{})
	e := env.executor(t, CuminConfig{Timeout: time.Second})
	start := time.Now()
	_, err := e.Run(context.Background(), "h1.example", []string{"sleep", "20"})
	mustRunError(t, err, "run")
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "timeout to execute command") {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestCuminRunErrors(t *testing.T) {
	t.Parallel()
	// An exception after host selection: exit 99, not a command failure.
	env := newCuminEnv(t, fakeScenario{Crash: "ValueError: boom"})
	_, err := env.executor(t, CuminConfig{}).Run(context.Background(), "h1.example", []string{"true"})
	mustRunError(t, err, "run")
	if !strings.Contains(err.Error(), "cumin exited 99 (unexpected exception)") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err %v", err)
	}
	// A usage error exits 2 without a report: could not run.
	env = newCuminEnv(t, fakeScenario{})
	_, err = env.executor(t, CuminConfig{Command: []string{env.path, "--bogus"}}).Run(context.Background(), "h1.example", []string{"true"})
	mustRunError(t, err, "run")
	if !strings.Contains(err.Error(), "cumin exited 2") || !strings.Contains(err.Error(), "unrecognized arguments: --bogus") {
		t.Fatalf("err %v", err)
	}
	// cumin missing.
	_, err = env.executor(t, CuminConfig{Command: []string{filepath.Join(env.dir, "nope")}}).Run(context.Background(), "h1.example", []string{"true"})
	mustRunError(t, err, "start")
	// Hosts are checked before anything runs.
	env = newCuminEnv(t, fakeScenario{})
	_, err = env.executor(t, CuminConfig{}).Run(context.Background(), "A:all", []string{"true"})
	mustRunError(t, err, "validate")
	if _, statErr := os.Stat(filepath.Join(env.dir, "calls.jsonl")); !os.IsNotExist(statErr) {
		t.Fatal("an invalid host reached cumin")
	}
}

// TestCuminCancel: cancelling sends cumin SIGINT, which it turns into a
// clean stop; Run reports the cancellation.
func TestCuminCancel(t *testing.T) {
	t.Parallel()
	env := newCuminEnv(t, fakeScenario{})
	e := env.executor(t, CuminConfig{})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, "h1.example", []string{"sh", "-c", "touch " + filepath.Join(dir, "started") + "; sleep 30"})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		mustRunError(t, err, "wait")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestCuminListHosts(t *testing.T) {
	t.Parallel()
	env := newCuminEnv(t, fakeScenario{Color: true, Queries: map[string]string{
		"A:docker-registry":              "registry[2003-2004].codfw.wmnet,registry[1003-1004].eqiad.wmnet",
		"A:docker-registry and A:esams":  "",
		"A:docker-registry and A:single": "registry2005.codfw.wmnet",
	}})
	e := env.executor(t, CuminConfig{Command: []string{env.path, "-c", "/etc/cumin/config.yaml"}})
	hosts, err := e.ListHosts(context.Background(), "A:docker-registry")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"registry2003.codfw.wmnet", "registry2004.codfw.wmnet", "registry1003.eqiad.wmnet", "registry1004.eqiad.wmnet"}
	if !reflect.DeepEqual(hosts, want) {
		t.Fatalf("hosts %q, want %q", hosts, want)
	}
	if calls := env.calls(t); !reflect.DeepEqual(calls[0], []string{"-c", "/etc/cumin/config.yaml", "--force", "--no-progress", "--dry-run", "A:docker-registry"}) {
		t.Fatalf("argv %q", calls[0])
	}
	hosts, err = e.ListHosts(context.Background(), "A:docker-registry and A:single")
	if err != nil || !reflect.DeepEqual(hosts, []string{"registry2005.codfw.wmnet"}) {
		t.Fatalf("single: %q %v", hosts, err)
	}
	hosts, err = e.ListHosts(context.Background(), "A:docker-registry and A:esams")
	if err != nil || len(hosts) != 0 {
		t.Fatalf("no match: %q %v", hosts, err)
	}
	if _, err := e.ListHosts(context.Background(), "A:bad syntax("); err == nil || !strings.Contains(err.Error(), "exited 99") {
		t.Fatalf("bad query: %v", err)
	}
	for _, q := range []string{"--help", "", "A:x\nB:y"} {
		if _, err := e.ListHosts(context.Background(), q); err == nil {
			t.Fatalf("query %q accepted", q)
		}
	}
	if n := len(env.calls(t)); n != 4 {
		t.Fatalf("%d cumin calls, want 4 (invalid queries must not run cumin)", n)
	}
}

func TestParseCuminHosts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, out string
		want      []string
		err       string
	}{
		{
			name: "dry run",
			out: "\x1b[33m3 hosts will be targeted:\x1b[0m\n\x1b[33m\x1b[36mregistry[2003-2004].codfw.wmnet,registry1003.eqiad.wmnet\x1b[0m\n" +
				"\x1b[33mDRY-RUN mode enabled, aborting\x1b[0m\n",
			want: []string{"registry2003.codfw.wmnet", "registry2004.codfw.wmnet", "registry1003.eqiad.wmnet"},
		},
		{
			name: "one host, CRLF",
			out:  "1 hosts will be targeted:\r\nregistry2005.codfw.wmnet\r\nDRY-RUN mode enabled, aborting\r\n",
			want: []string{"registry2005.codfw.wmnet"},
		},
		{name: "no hosts", out: "No hosts found that matches the query\n", want: []string{}},
		{
			name: "count mismatch",
			out:  "3 hosts will be targeted:\nregistry[2003-2004].codfw.wmnet\n",
			err:  "announced 3 hosts but the node set",
		},
		{name: "nothing after the count", out: "2 hosts will be targeted:\n\n", err: "not followed by a node set"},
		{name: "invalid host", out: "1 hosts will be targeted:\nREGISTRY1.x\n", err: "invalid host name"},
		{name: "garbage", out: "Caught CuminError exception: nope\n", err: "no host list in cumin output"},
		{
			name: "node groups",
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
// host names.
func FuzzParseCuminHosts(f *testing.F) {
	f.Add([]byte("2 hosts will be targeted:\nregistry[2003-2004].codfw.wmnet\nDRY-RUN mode enabled, aborting\n"))
	f.Add([]byte("No hosts found that matches the query\n"))
	f.Add([]byte("===== NODE GROUP =====\n(2) cp[3007-3008].esams.wmnet\n"))
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
