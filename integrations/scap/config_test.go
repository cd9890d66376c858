package scap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"poolbot/internal/secret"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Locks.Files, ",") != "/var/lock/scap-global-lock,/var/lock/scap.srv_mediawiki-staging.lock,/var/lock/scap.backport.lock" ||
		c.DeployBlock.Backend != "lockfile" || c.DeployBlock.GlobalLock != "/var/lock/scap-global-lock" ||
		c.DeployBlock.Locker != "poolbot" || c.Channel.MaxRunAge != 2*time.Hour ||
		!c.Locks.LocksEnabled() || !c.Channel.ChannelEnabled() || c.SpiderPig.SpiderPigEnabled() {
		t.Fatalf("%+v", c)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("the zero config means the defaults: %v", err)
	}
}

func TestConfigFromYAML(t *testing.T) {
	const doc = `
locks:
  files: [/var/lock/scap-global-lock, /var/lock/scap.srv_mediawiki-staging.lock, /var/lock/scap.backport.lock]
deploy_block:
  backend: command
  locker: poolbot
  lock_command: [/usr/bin/ssh, deploy1003.eqiad.wmnet, scap, lock, --all, --bg, "{reason_sh}"]
  unlock_command: [/usr/bin/ssh, deploy1003.eqiad.wmnet, scap, lock, --unlock-all, --yes, "{reason_sh}"]
  command_timeout: 90s
spiderpig:
  url: https://spiderpig.wikimedia.org
  token: {file: /etc/poolbot/spiderpig-token}
  timeout: 5s
  jobs_limit: 20
channel:
  max_run_age: 3h
`
	var c Config
	if err := yaml.UnmarshalWithOptions([]byte(doc), &c, yaml.Strict()); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DeployBlock.CommandTimeout != 90*time.Second || c.Channel.MaxRunAge != 3*time.Hour || c.SpiderPig.JobsLimit != 20 ||
		c.DeployBlock.LockCommand[6] != "{reason_sh}" || len(c.Locks.Files) != 3 {
		t.Fatalf("%+v", c)
	}

	var typo Config
	err := yaml.UnmarshalWithOptions([]byte("channel:\n  max_run_ages: 3h\n"), &typo, yaml.Strict())
	if err == nil || !strings.Contains(err.Error(), "max_run_ages") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestConfigValidateNamesTheKey(t *testing.T) {
	f := false
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative lock file", Config{Locks: LocksConfig{Files: []string{"var/lock/x"}}}, "scap.locks.files[0]: must be an absolute path"},
		{"duplicate lock file", Config{Locks: LocksConfig{Files: []string{"/a", "/a/"}}}, "scap.locks.files[1]: \"/a/\" is listed twice"},
		{"no lock files", Config{Locks: LocksConfig{Files: []string{}}}, "scap.locks.files: must list at least one"},
		{"backend", Config{DeployBlock: DeployBlockConfig{Backend: "flock"}}, "scap.deploy_block.backend: must be \"lockfile\" or \"command\""},
		{"command without argv", Config{DeployBlock: DeployBlockConfig{Backend: "command"}}, "scap.deploy_block.lock_command: is required"},
		{"placeholder as program", Config{DeployBlock: DeployBlockConfig{Backend: "command", LockCommand: []string{"{reason}"}, UnlockCommand: []string{"x"}}}, "scap.deploy_block.lock_command: the program"},
		{"commands with lockfile", Config{DeployBlock: DeployBlockConfig{LockCommand: []string{"x"}}}, "scap.deploy_block.lock_command: is only used with backend \"command\""},
		{"locker", Config{DeployBlock: DeployBlockConfig{Locker: "pool bot"}}, "scap.deploy_block.locker"},
		{"spiderpig http", Config{SpiderPig: SpiderPigConfig{URL: "http://spiderpig.wikimedia.org"}}, "scap.spiderpig.url: must use https"},
		{"spiderpig two creds", Config{SpiderPig: SpiderPigConfig{URL: "https://s", Cookie: secret.Ref{File: "/a"}, Token: secret.Ref{Env: "T"}}}, "scap.spiderpig: set only one of cookie, token"},
		{"spiderpig creds without url", Config{SpiderPig: SpiderPigConfig{Token: secret.Ref{Env: "T"}}}, "scap.spiderpig.url: is empty but token is set"},
		{"spiderpig relative file", Config{SpiderPig: SpiderPigConfig{URL: "https://s", Cookie: secret.Ref{File: "cookie"}}}, "scap.spiderpig.cookie.file: must be an absolute path"},
		{"spiderpig file and env", Config{SpiderPig: SpiderPigConfig{URL: "https://s", Token: secret.Ref{File: "/t", Env: "T"}}}, "scap.spiderpig.token: set either file or env, not both"},
		{"spiderpig limit", Config{SpiderPig: SpiderPigConfig{URL: "https://s", JobsLimit: 1000}}, "scap.spiderpig.jobs_limit"},
		{"age", Config{Channel: ChannelConfig{MaxRunAge: -time.Second}}, "scap.channel.max_run_age: must be positive"},
		{"all off", Config{Locks: LocksConfig{Enabled: &f}, Channel: ChannelConfig{Enabled: &f}}, "every scap source is off"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	ok := Config{SpiderPig: SpiderPigConfig{URL: "http://127.0.0.1:8000"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("plain http to loopback is fine: %v", err)
	}
}

func TestSpiderPigCredentials(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	os.WriteFile(good, []byte("abc123\n"), 0o600)
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("line1\nline2-secret"), 0o600)
	if _, err := (SpiderPigConfig{URL: "https://s", Cookie: secret.Ref{File: bad}}).Credentials(); err == nil ||
		!strings.Contains(err.Error(), "spiderpig cookie (file:"+bad+")") || strings.Contains(err.Error(), "line2-secret") {
		t.Errorf("bad cookie file: %v", err)
	}
	creds, err := SpiderPigConfig{URL: "https://s", Token: secret.Ref{File: good}}.Credentials()
	if err != nil || creds.Token != "abc123" || creds.Cookie != "" {
		t.Fatalf("%v %v", creds, err)
	}
}
