package main

import (
	"bytes"
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

// The console runs the whole daemon: store, commands, procedure, SAL.
func TestConsoleSession(t *testing.T) {
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
