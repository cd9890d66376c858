package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	if code, _, errs := runCmd("", "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown: %d %q", code, errs)
	}
	if code, out, _ := runCmd("", "version"); code != 0 || !strings.HasPrefix(out, "poolbot ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errs := runCmd("", "check-config", "../../lab/console.yaml"); code != 0 {
		t.Fatalf("check-config lab: %d %q", code, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("chat: {comand_prefix: x}\nstore: {}\n"), 0o600)
	code, _, errs := runCmd("", "check-config", bad)
	if code != 1 || !strings.Contains(errs, `line 1: unknown key "comand_prefix" in chat`) {
		t.Fatalf("check-config bad: %d %q", code, errs)
	}
	if code, _, errs := runCmd("", "console", "-config", "../../lab/console.yaml"); code != 2 || !strings.Contains(errs, "-as NAME is required") {
		t.Fatalf("console without -as: %d %q", code, errs)
	}
}

// check-config takes -config FILE like run and dry-run (and still the
// positional FILE); -h prints each command's usage; run's usage does not
// list the console's flags.
func TestCommandLineFlags(t *testing.T) {
	t.Parallel()
	if code, out, errs := runCmd("", "check-config", "-config", "../../lab/console.yaml"); code != 0 || !strings.Contains(out, "console.yaml: OK") {
		t.Errorf("check-config -config: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCmd("", "check-config", "-config", "/nonexistent.yaml"); code != 1 || !strings.Contains(errs, "nonexistent") {
		t.Errorf("check-config -config missing: %d %q", code, errs)
	}
	for _, args := range [][]string{{"check-config"}, {"check-config", "a.yaml", "b.yaml"}, {"check-config", "-config", "a.yaml", "b.yaml"}} {
		if code, _, errs := runCmd("", args...); code != 2 || !strings.Contains(errs, "usage: poolbot check-config -config FILE") {
			t.Errorf("%q: %d %q", args, code, errs)
		}
	}
	if code, _, errs := runCmd("", "check-config", "-h"); code != 0 || !strings.Contains(errs, "usage: poolbot check-config -config FILE") {
		t.Errorf("check-config -h: %d %q", code, errs)
	}
	code, _, errs := runCmd("", "run", "-h")
	if code != 0 || !strings.Contains(errs, "usage: poolbot run -config FILE") || !strings.Contains(errs, "-config") || strings.Contains(errs, "-as") {
		t.Errorf("run -h: %d %q", code, errs)
	}
	if code, _, errs := runCmd("", "console", "-h"); code != 0 || !strings.Contains(errs, "-as") {
		t.Errorf("console -h: %d %q", code, errs)
	}
	if code, _, errs := runCmd("", "dry-run", "-h"); code != 0 || !strings.Contains(errs, "exit status: 0 it would start now; 3") {
		t.Errorf("dry-run -h: %d %q", code, errs)
	}
}

// check-config prints every problem at once, one a line: an unknown key,
// a bad duration and two invalid IRC fields are four lines, each with its
// line number and key path.
func TestCheckConfigPrintsEveryProblem(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../lab/console.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	for old, new := range map[string]string{
		"chat:\n  command_prefix: \"!\"\n": "chat:\n  command_prefix: \"!\"\n  colour: blue\n" +
			"  irc:\n    server: irc.example.org:6697\n    nick: 9lives\n    burst: -1\n",
		"      pace: 5s\n": "      pace: soon\n",
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("lab/console.yaml lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("", "check-config", path)
	if code != 1 || out != "" {
		t.Fatalf("check-config: exit %d, stdout %q", code, out)
	}
	lineOf := func(prefix string) string {
		for i, l := range strings.Split(cfg, "\n") {
			if strings.HasPrefix(l, prefix) {
				return fmt.Sprintf("  line %d: ", i+1)
			}
		}
		t.Fatalf("no line %q", prefix)
		return ""
	}
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	want := []string{
		path + ": 4 configuration problem(s):",
		lineOf("  colour:") + `unknown key "colour" in chat (known keys: `,
		lineOf("      pace:") + `services.apus.restart.pace: "soon" is not a duration`,
		lineOf("    nick:") + `chat.irc.nick: "9lives" must not start with a digit`,
		lineOf("    burst:") + `chat.irc.burst: -1 must not be negative`,
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(want), errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start %q", i, lines[i], w)
		}
	}
}

// The console runs the whole daemon: store, commands, procedure, SAL.
func TestConsoleSession(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, err := os.ReadFile("../../lab/console.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.ReplaceAll(string(data), "/tmp/poolbot-console.db", filepath.Join(dir, "p.db"))
	cfg = strings.ReplaceAll(cfg, "/tmp/poolbot-lab/", dir+"/")
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	code, out, errs := runCmd("!help depool\n!depool apus codfw T123 trying\n!status 1\n", "console", "-config", path, "-as", "alice")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"alice: !depool <service> <dc> <reason>", "alice: #1 queued: depool apus in codfw (T123)", "alice: #1 depool apus in codfw by alice:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := runCmd("", "console", "-config", path, "-as", "mallory"); code != 1 || !strings.Contains(errs, `"mallory" is not an operator`) {
		t.Fatalf("non-operator console: %d %q", code, errs)
	}
}
