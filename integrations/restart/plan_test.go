package restart

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"poolbot/internal/testenv/sshd"
)

func TestPlanSteps(t *testing.T) {
	t.Parallel()
	p := Plan{Units: DefaultUnits(), RestartCommand: DefaultRestartCommand(), CheckCommand: DefaultCheckCommand()}
	want := []Step{
		{"restart", []string{"systemctl", "restart", "docker-registry-restricted.service", "docker-registry-ml.service"}},
		{"check docker-registry-restricted.service", []string{"systemctl", "is-active", "--quiet", "docker-registry-restricted.service"}},
		{"check docker-registry-ml.service", []string{"systemctl", "is-active", "--quiet", "docker-registry-ml.service"}},
	}
	if got := p.Steps(); !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %q\nwant %q", got, want)
	}
	p.RestartCommand = []string{"sudo", "-n", "systemctl", "restart", "{unit}"}
	p.CheckCommand = []string{"/usr/local/bin/all-healthy"}
	got := p.Steps()
	if len(got) != 3 || got[0].Name != "restart docker-registry-restricted.service" ||
		!reflect.DeepEqual(got[1].Argv, []string{"sudo", "-n", "systemctl", "restart", "docker-registry-ml.service"}) ||
		got[2].Name != "check" {
		t.Fatalf("steps %q", got)
	}
}

func TestValidateUnit(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"docker-registry-ml.service", "getty@tty1.service", "a_b.c.service"} {
		if err := ValidateUnit(u); err != nil {
			t.Errorf("%q: %v", u, err)
		}
	}
	for _, u := range []string{"", "-x.service", "docker-registry", "x.timer", "a b.service", "a;b.service", "../x.service"} {
		if ValidateUnit(u) == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// recordingExecutor is an Executor that records argv and answers from a
// table; for RestartHost's control flow only (the real executors have
// their own tests).
type recordingExecutor struct {
	calls   [][]string
	answers map[string]Result
	errs    map[string]error
}

func (r *recordingExecutor) Run(ctx context.Context, host string, argv []string) (Result, error) {
	r.calls = append(r.calls, argv)
	key := strings.Join(argv, " ")
	res := r.answers[key]
	res.Host, res.Argv, res.Duration = host, argv, time.Second
	return res, r.errs[key]
}

func TestRestartHostStopsAtFirstFailure(t *testing.T) {
	t.Parallel()
	p := Plan{Units: []string{"a.service", "b.service"}, RestartCommand: DefaultRestartCommand(), CheckCommand: DefaultCheckCommand(), PerHostTimeout: time.Minute}

	ok := &recordingExecutor{}
	res, err := RestartHost(context.Background(), ok, p, "h1")
	if err != nil || len(ok.calls) != 3 || res.Duration != 3*time.Second ||
		!reflect.DeepEqual(res.Argv, []string{"systemctl", "restart", "a.service", "b.service"}) {
		t.Fatalf("res %+v err %v calls %q", res, err, ok.calls)
	}

	failing := &recordingExecutor{answers: map[string]Result{
		"systemctl is-active --quiet a.service": {ExitCode: 3, Output: []byte("inactive\n")},
	}}
	_, err = RestartHost(context.Background(), failing, p, "h1")
	if len(failing.calls) != 2 {
		t.Fatalf("ran %q after the failure", failing.calls)
	}
	if err == nil || err.Error() != "host h1: check a.service: exit 3: inactive" {
		t.Fatalf("err %v", err)
	}

	broken := &recordingExecutor{errs: map[string]error{
		"systemctl restart a.service b.service": &RunError{Host: "h1", Via: "ssh", Op: "connect", Err: errors.New("connection refused")},
	}}
	_, err = RestartHost(context.Background(), broken, p, "h1")
	var se *StepError
	var re *RunError
	if !errors.As(err, &se) || se.Ran() || !errors.As(err, &re) || len(broken.calls) != 1 ||
		err.Error() != "host h1: restart: ssh: connect: connection refused" {
		t.Fatalf("err %v calls %q", err, broken.calls)
	}

	if _, err := RestartHost(context.Background(), ok, p, "-bad"); err == nil {
		t.Fatal("invalid host accepted")
	}
}

// TestConfigYAML decodes a full section strictly with the YAML library the
// bot uses, then builds the plan.
func TestConfigYAML(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	sshd.NewKey(t, key, nil)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	src := `
executor: ssh
ssh:
  user: poolbot
  port: 2222
  key_file: ` + key + `
  known_hosts: ` + kh + `
  connect_timeout: 5s
cumin:
  command: [sudo, -n, cumin]
  timeout: 2m
hosts: [registry2003.codfw.wmnet, registry2004.codfw.wmnet]
units: [docker-registry-restricted.service]
pace: 0s
per_host_timeout: 3m
`
	var cfg Config
	if err := yaml.UnmarshalWithOptions([]byte(src), &cfg, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.SSH.ConnectTimeout != 5*time.Second || cfg.Cumin.Timeout != 2*time.Minute || cfg.Pace == nil || *cfg.Pace != 0 {
		t.Fatalf("decoded %+v", cfg)
	}
	p, err := NewPlan(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pace != 0 || p.PerHostTimeout != 3*time.Minute || len(p.Hosts) != 2 || len(p.Units) != 1 ||
		!reflect.DeepEqual(p.CheckCommand, DefaultCheckCommand()) {
		t.Fatalf("plan %+v", p)
	}

	// Defaults when omitted.
	cfg.Pace, cfg.PerHostTimeout, cfg.Units = nil, 0, nil
	p, err = NewPlan(context.Background(), cfg, nil)
	if err != nil || p.Pace != DefaultPace || p.PerHostTimeout != DefaultPerHostTimeout || !reflect.DeepEqual(p.Units, DefaultUnits()) {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	e, err := NewExecutor(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.(*SSH); !ok {
		t.Fatalf("executor %T", e)
	}

	if err := yaml.UnmarshalWithOptions([]byte("executor: ssh\nhost: [a]\n"), &cfg, yaml.Strict()); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	neg := -time.Second
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{}, []string{"restart.executor: required", "restart.hosts or restart.hosts_query: one is required"}},
		{Config{Executor: "salt", Hosts: []string{"a"}}, []string{`restart.executor: "salt" is not one of`}},
		{Config{Executor: "ssh", Hosts: []string{"a"}}, []string{"restart.ssh.user: required", "restart.ssh.key_file: required unless", "restart.ssh.known_hosts: required"}},
		{Config{Executor: "ssh", Hosts: []string{"a"}, SSH: SSHConfig{User: "u", KeyFile: "/nonexistent/k", KnownHosts: "/nonexistent/kh"}},
			[]string{"restart.ssh.key_file: stat /nonexistent/k", "restart.ssh.known_hosts: stat /nonexistent/kh"}},
		{Config{Executor: "local", Hosts: []string{"a", "a", "-b"}}, []string{"restart.local.command: required", "restart.hosts[1]: a listed twice", "restart.hosts[2]: invalid host"}},
		{Config{Executor: "cumin", Hosts: []string{"a"}, HostsQuery: "A:x"}, []string{"set only one"}},
		{Config{Executor: "cumin", HostsQuery: "-x"}, []string{"restart.hosts_query: host query \"-x\" starts with '-'"}},
		{Config{Executor: "cumin", Hosts: []string{"a"}, Units: []string{"nginx"}, Pace: &neg, PerHostTimeout: -1},
			[]string{"restart.units[0]: invalid unit", "restart.pace: must not be negative", "restart.per_host_timeout: must not be negative"}},
		{Config{Executor: "cumin", Hosts: []string{"a"}, RestartCommand: []string{"systemctl", "restart", "x{unit}"}, CheckCommand: []string{"{unit}"}},
			[]string{"restart.restart_command[2]", "restart.check_command[0]: the program must be fixed"}},
		{Config{Executor: "cumin", Hosts: []string{"a"}, Cumin: CuminConfig{Command: []string{""}, Timeout: -1}},
			[]string{"restart.cumin.command[0]: empty", "restart.cumin.timeout: must not be negative"}},
	} {
		err := tc.cfg.Validate()
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: err %v, want %q", tc.cfg, err, w)
			}
		}
	}
	if err := (Config{Executor: "cumin", HostsQuery: "A:docker-registry"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
