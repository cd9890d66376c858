package scap

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSSH writes an "ssh" that does what OpenSSH does with a command: it
// joins the arguments after the host with spaces into one string and has
// the (here: local) shell run it.
func fakeSSH(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssh")
	script := "#!/bin/sh\n# host, then the remote command, joined as sshd's $SHELL -c gets it\nshift\nexec /bin/sh -c \"$*\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// An operator's reason that a remote shell would run: with {reason_sh} it
// reaches scap as one literal argument, and nothing in it executes.
func TestCommandBlockerReasonShOverSSH(t *testing.T) {
	ssh := fakeSSH(t)
	dir := t.TempDir()
	pwned := filepath.Join(dir, "pwned")
	lockRec, unlockRec := filepath.Join(dir, "lock"), filepath.Join(dir, "unlock")
	cfg := DeployBlockConfig{
		Backend:        BackendCommand,
		LockCommand:    []string{ssh, "deploy1003.eqiad.wmnet", "printf", "%s", ReasonShPlaceholder, ">", lockRec},
		UnlockCommand:  []string{ssh, "deploy1003.eqiad.wmnet", "printf", "%s", "--reason=" + ReasonShPlaceholder, ">", unlockRec},
		CommandTimeout: 20 * time.Second,
	}
	if err := (Config{DeployBlock: cfg}).Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := NewCommandBlocker(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{
		`poolbot #9: depool apus "codfw"; $(touch ` + pwned + `) && echo 'x' | T1 ` + "`touch " + pwned + "`",
		`it's ''' a "quote" \ test; touch ` + pwned + ` # {reason} {reason_sh}`,
	} {
		release, err := b.Block(context.Background(), reason)
		if err != nil {
			t.Fatal(err)
		}
		if err := release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(lockRec); string(got) != reason {
			t.Errorf("lock got reason %q, want %q", got, reason)
		}
		if got, _ := os.ReadFile(unlockRec); string(got) != "--reason="+reason {
			t.Errorf("unlock got %q, want %q", got, "--reason="+reason)
		}
		if _, err := os.Stat(pwned); err == nil {
			t.Fatalf("the remote shell ran part of the reason %q", reason)
		}
	}
	// The control: the same fake ssh with a plain {reason} (which config
	// validation refuses) does run the reason, so the checks above can fail.
	argv, err := expandArgv([]string{ssh, "deploy1003.eqiad.wmnet", "printf", "%s", ReasonPlaceholder}, "x; touch "+pwned)
	if err != nil {
		t.Fatal(err)
	}
	if err := runBounded(context.Background(), argv, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pwned); err != nil {
		t.Fatalf("the control did not inject: %v", err)
	}
	// {reason_sh} filling an element still refuses a reason that the remote
	// command would read as an option.
	if _, err := b.Block(context.Background(), "--unlock-all"); err == nil || !strings.Contains(err.Error(), "option") {
		t.Fatalf("Block(--unlock-all): %v", err)
	}
}

// Plain {reason} is refused with ssh, whatever its path, with a one-line
// error that says what to use; it stays fine for commands without a shell.
func TestConfigRefusesPlainReasonWithSSH(t *testing.T) {
	for _, argv0 := range []string{"ssh", "/usr/bin/ssh", "/opt/bin/ssh"} {
		cfg := Config{DeployBlock: DeployBlockConfig{Backend: BackendCommand,
			LockCommand:   []string{argv0, "deploy1003.eqiad.wmnet", "scap", "lock", "--all", "--bg", ReasonShPlaceholder},
			UnlockCommand: []string{argv0, "deploy1003.eqiad.wmnet", "scap", "lock", "--unlock-all", "--yes", "why: " + ReasonPlaceholder},
		}}
		err := cfg.Validate()
		if err == nil || strings.Contains(err.Error(), "\n") ||
			!strings.Contains(err.Error(), "scap.deploy_block.unlock_command") || !strings.Contains(err.Error(), "use {reason_sh}") {
			t.Errorf("%s: %v", argv0, err)
		}
		if _, err := NewCommandBlocker(cfg.DeployBlock, nil, nil); err == nil || !strings.Contains(err.Error(), "use {reason_sh}") {
			t.Errorf("NewCommandBlocker with %s: %v", argv0, err)
		}
	}
	ok := Config{DeployBlock: DeployBlockConfig{Backend: BackendCommand,
		LockCommand:   []string{"/usr/bin/scap", "lock", "--all", "--bg", ReasonPlaceholder},
		UnlockCommand: []string{"/usr/bin/sshpass-free", ReasonPlaceholder},
	}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{DeployBlock: DeployBlockConfig{Backend: BackendCommand,
		LockCommand: []string{ReasonShPlaceholder}, UnlockCommand: []string{"x"}}}).Validate(); err == nil {
		t.Fatal("{reason_sh} as the program was accepted")
	}
}

// Whatever the reason, `sh -c 'printf %s <expanded {reason_sh}>'` prints
// exactly the reason.
func FuzzReasonShRoundTrip(f *testing.F) {
	for _, s := range []string{"plain", "it's", "'", "''", `$(touch /tmp/x)`, "`id`", `a\b "c" $HOME * ? ~ ; | & < > ( ) { } [ ] !`, "{reason} {reason_sh}", "ü🚀"} {
		f.Add(s)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		f.Skip("no sh")
	}
	f.Fuzz(func(t *testing.T, reason string) {
		reason, err := normalizeReason(reason)
		if err != nil || strings.HasPrefix(reason, "-") {
			t.Skip()
		}
		argv, err := expandArgv([]string{"printf", "%s", ReasonShPlaceholder}, reason)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sh, "-c", strings.Join(argv, " ")).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if string(out) != reason {
			t.Fatalf("the shell printed %q, want %q", out, reason)
		}
	})
}
