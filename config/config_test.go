package config

import (
	"os"
	"path/filepath"
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

// The example documents every key and is a valid configuration.
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
	// Every key of the configuration types appears in the example: a key
	// nobody documented fails here.
	data, _ := os.ReadFile("../config.example.yaml")
	for _, key := range allKeys() {
		if !strings.Contains(string(data), key+":") {
			t.Errorf("config.example.yaml does not document %q", key)
		}
	}
	// And the password itself never appears in the YAML.
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
	if len(p.List) != 3 {
		t.Fatalf("problems %q", p.List)
	}
	for i, want := range []string{`unknown key "comand_prefix" in chat`, `unknown key "nik" in chat.irc`, `unknown key "dryrun" in procedure`} {
		if !strings.Contains(p.List[i], want) || !strings.HasPrefix(p.List[i], "line ") {
			t.Errorf("problem %d = %q, want %q with a line", i, p.List[i], want)
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
	if v, err := (Secret{File: f}).Read(); err != nil || v != "hunter2" {
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
