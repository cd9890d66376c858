package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// exampleIn writes the files config.example.yaml refers to under dir and
// returns the example with /etc/poolbot pointing there.
func exampleIn(t *testing.T, dir string) []byte {
	t.Helper()
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"irc-password":        "s3cret\n",
		"slack-app-token":     "xapp-1-A0-1-s3cret\n",
		"slack-bot-token":     "xoxb-1-s3cret\n",
		"ssh/id_ed25519":      "not parsed at load time\n",
		"ssh/known_hosts":     "",
		"ssh/known_hosts.old": "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []byte(strings.ReplaceAll(string(data), "/etc/poolbot", dir))
}

// The example is a valid configuration.
func TestExampleIsValid(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse("config.example.yaml", exampleIn(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Chat.IRC.Password != "s3cret" {
		t.Fatalf("password not read from its file")
	}
	if got := cfg.Services["apus"].Datacenters; len(got) != 2 || got[0] != "eqiad" {
		t.Fatalf("datacenters %v", got)
	}
	if cfg.Calendar.RefreshInterval != 15*time.Minute || !cfg.Force.NeedsConfirm() {
		t.Fatalf("decoded %+v", cfg)
	}
	// Every key is documented: TestExampleDocumentsEveryKey. The password
	// itself never appears in the YAML.
	data, _ := os.ReadFile("../config.example.yaml")
	if strings.Contains(string(data), "s3cret") {
		t.Fatal("secret in the example")
	}
}

func TestUnknownKeysAllReported(t *testing.T) {
	dir := t.TempDir()
	data := string(exampleIn(t, dir))
	data = strings.Replace(data, "  command_prefix: \"!\"", "  comand_prefix: \"!\"", 1)
	data = strings.Replace(data, "    nick: poolbot", "    nik: poolbot", 1)
	data = strings.Replace(data, "  dry_run: false", "  dryrun: false", 1)
	_, err := Parse("bad.yaml", []byte(data))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	// Validation goes on without the unknown keys: the misspelt nick
	// leaves chat.irc without one.
	if len(p.List) != 4 {
		t.Fatalf("problems %q", p.List)
	}
	for i, want := range []string{`unknown key "comand_prefix" in chat`, `unknown key "nik" in chat.irc`, `unknown key "dryrun" in procedure`} {
		if !strings.Contains(p.List[i], want) || !strings.HasPrefix(p.List[i], "line ") {
			t.Errorf("problem %d = %q, want %q with a line", i, p.List[i], want)
		}
	}
	if p.List[3] != "chat.irc.nick: required" {
		t.Errorf("problem 3 = %q", p.List[3])
	}
}

// check-config's promise: one run lists every problem, unknown keys and
// bad values alike, each on its own line with its key path and line.
func TestEveryKindOfProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	data := string(exampleIn(t, dir))
	for old, new := range map[string]string{
		"  dry_run: false":       "  dryrun: false",          // unknown key
		"  max_wait: 12h":        "  max_wait: twelve hours", // bad duration
		"    nick: poolbot":      "    nick: 9lives",         // invalid IRC nick
		"    burst: 0 ":          "    burst: -4 ",           // invalid IRC burst
		"    rate: 0 ":           "    rate: [fast] ",        // wrong type
		"  format: text":         "  format: xml",            // invalid value elsewhere
		"        blob_size: 256": "        blob_size: big",   // wrong type in a map of services
	} {
		if !strings.Contains(data, old) {
			t.Fatalf("example lacks %q", old)
		}
		data = strings.Replace(data, old, new, 1)
	}
	_, err := Parse("bad.yaml", []byte(data))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	line := func(prefix string) string {
		for i, l := range strings.Split(data, "\n") {
			if strings.HasPrefix(l, prefix) {
				return fmt.Sprintf("line %d: ", i+1)
			}
		}
		t.Fatalf("no line %q", prefix)
		return ""
	}
	want := []string{
		line("  dryrun:") + `unknown key "dryrun" in procedure`,
		line("  max_wait:") + `procedure.max_wait: "twelve hours" is not a duration`,
		line("    rate:") + "chat.irc.rate: a list where a number is expected",
		line("        blob_size:") + "services.apus.registry.probe.blob_size: a string where an integer is expected",
		line("    nick:") + `chat.irc.nick: "9lives" must not start with a digit`,
		line("    burst: -4") + "chat.irc.burst: -4 must not be negative",
		line("  format:") + `log.format: "xml" must be text or json`,
	}
	if len(p.List) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(p.List), len(want), strings.Join(p.List, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(p.List, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("no problem starting %q in:\n%s", w, strings.Join(p.List, "\n"))
		}
	}
	for _, l := range p.List {
		if strings.Contains(l, "\n") {
			t.Errorf("problem over several lines: %q", l)
		}
	}
}

func TestValidationProblemsAllAtOnce(t *testing.T) {
	cfg := `
chat: {command_prefix: "! "}
operators: []
services:
  apus: {datacenters: [eqiad, eqiad], restart: {executor: local, local: {command: [/bin/true]}, hosts: [h1]}}
store: {path: ""}
sal: {sink: carrier-pigeon}
log: {format: xml}
procedure: {resume_after_crash: maybe}
calendar: {source: none}
conftool: {backend: etcd, etcd: {endpoints: ["http://127.0.0.1:2379"]}}
`
	_, err := Parse("x.yaml", []byte(cfg))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	joined := strings.Join(p.List, "\n")
	for _, want := range []string{"chat.command_prefix", "operators: at least one", `"eqiad" is listed twice`,
		"store.path", "sal.sink", "log.format", "procedure.resume_after_crash"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
}

func TestTypeErrorHasPosition(t *testing.T) {
	_, err := Parse("x.yaml", []byte("procedure:\n  max_wait: forever\n"))
	if err == nil || !strings.Contains(err.Error(), `line 2: procedure.max_wait: "forever" is not a duration`) {
		t.Fatalf("err = %v", err)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	os.WriteFile(f, []byte(" hunter2 \n"), 0o600)
	// Only the line end goes: a password or passphrase may begin or end
	// with a space (one rule for every secret, see internal/secret).
	if v, err := (Secret{File: f}).Read(); err != nil || v != " hunter2 " {
		t.Fatalf("file secret %q %v", v, err)
	}
	t.Setenv("POOLBOT_TEST_SECRET", "tok")
	if v, err := (Secret{Env: "POOLBOT_TEST_SECRET"}).Read(); err != nil || v != "tok" {
		t.Fatalf("env secret %q %v", v, err)
	}
	if _, err := (Secret{Env: "POOLBOT_TEST_UNSET_SECRET"}).Read(); err == nil {
		t.Fatal("unset env accepted")
	}
	if s := (Secret{File: f}).String(); strings.Contains(s, "hunter2") {
		t.Fatal("String shows the secret")
	}
}

// The relay's old per-section keys are refused with where the setting
// lives now, each with its line, and the new section is validated.
func TestRetiredRelayKeys(t *testing.T) {
	s := strings.Replace(string(exampleIn(t, t.TempDir())), "    enabled: true                       # watch scap's !log lines",
		"    relay_nicks: [logmsgbot]\n    enabled: true                       # watch scap's !log lines", 1)
	s = strings.Replace(s, "    attribution_window: 10m", "    relay_accounts: []\n    attribution_window: 10m", 1)
	s = strings.Replace(s, "  nicks: [logmsgbot]", "  nicks: [log msgbot]", 1)
	_, err := Parse("old.yaml", []byte(s))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"scap.channel.relay_nicks is no longer read: set logmsgbot.nicks",
		"watch.drift.relay_accounts is no longer read: set logmsgbot.accounts",
		`logmsgbot.nicks[0]: not a valid IRC nick: "log msgbot"`,
	}
	if len(p.List) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(p.List), len(want), strings.Join(p.List, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(p.List, func(l string) bool { return strings.HasPrefix(l, "line ") && strings.Contains(l, w) }) {
			t.Errorf("no problem %q with its line in:\n%s", w, strings.Join(p.List, "\n"))
		}
	}
}

// Every secret has one style, {file: …} or {env: …}: the older
// *_file/*_env keys are refused with the key to set instead.
func TestRetiredSecretKeys(t *testing.T) {
	s := string(exampleIn(t, t.TempDir()))
	for old, repl := range map[string]string{
		"    password:                           # the password, from a file": "    password_env: ETCD_PW\n    password:                           # the password, from a file",
		"        password:                       # the password, from a file": "        password_file: /x\n        password:                       # the password, from a file",
		"        passphrase:                     # if the key is encrypted":   "        passphrase_file: /x\n        passphrase:                     # if the key is encrypted",
		"    cookie:                             # a session cookie":          "    token_file: /x\n    cookie:                             # a session cookie",
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("example lacks %q", old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	_, err := Parse("old.yaml", []byte(s))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"conftool.etcd.password_env is no longer read: set conftool.etcd.password: {env: …}",
		"services.apus.registry.auth.password_file is no longer read: set auth.password: {file: …}",
		"services.apus.restart.ssh.passphrase_file is no longer read: set ssh.passphrase: {file: …}",
		"scap.spiderpig.token_file is no longer read: set scap.spiderpig.token: {file: …}",
	}
	if len(p.List) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(p.List), len(want), strings.Join(p.List, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(p.List, func(l string) bool { return strings.HasPrefix(l, "line ") && strings.Contains(l, w) }) {
			t.Errorf("no problem %q with its line in:\n%s", w, strings.Join(p.List, "\n"))
		}
	}
}

// The sections of issue 15: bad values and an etcd-only feature on the
// confctl backend are each reported with their key.
func TestGuardSectionsValidated(t *testing.T) {
	cfg := `
chat: {command_prefix: "!"}
operators: [{name: alice, irc_accounts: [alice]}]
services:
  apus:
    datacenters: [eqiad, codfw]
    restart: {executor: local, local: {command: [/bin/true]}, hosts: [h1]}
    drain: {pools: [{dc: codfw, cluster: "a.*", service: apus}], period: 1h}
store: {path: /tmp/x.db}
sal: {sink: channel, channel: "#ops"}
calendar: {source: none}
conftool: {backend: confctl}
alertmanager: {urls: ["ftp://am"], fail_closed: false}
spicerack_locks: {enabled: true, service_route_lock: "a/b"}
leader: {ttl: 1s}
`
	_, err := Parse("x.yaml", []byte(cfg))
	p, ok := err.(*Problems)
	if !ok {
		t.Fatalf("err = %v", err)
	}
	joined := strings.Join(p.List, "\n")
	for _, want := range []string{"services.apus.drain.pools[0]: invalid name: cluster", "services.apus.drain.period",
		"alertmanager.urls[0]",
		"spicerack_locks.service_route_lock", "spicerack_locks.enabled: spicerack's locks live in etcd",
		"leader.ttl", "leader: the leader lock lives in etcd"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
}
