// Package deploy holds poolbot's deployment definitions: a hardened
// systemd unit (poolbot.service) and a container image (Containerfile).
// Its tests check both with what can run here: systemd-analyze for the
// unit (Debian package systemd), and a parse of the Containerfile for the
// directives the image relies on (there is no container engine here to
// build it).
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"poolbot/internal/testenv"
)

// unitForVerify is the unit with ExecStart's binary pointing at a stand-in
// executable: systemd-analyze verify insists that the binary exists.
func unitForVerify(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("poolbot.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "poolbot")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "poolbot.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/poolbot", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return unit
}

// systemd-analyze verify prints a warning and still exits 0 for a
// misspelt key or a bad value ("…, ignoring"), so any output fails.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := testenv.Need(t, "systemd-analyze")
	unit := unitForVerify(t)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The hardening keeps the exposure score at or below 2.0 (of 10).
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=20", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 2.0: %v\n%s", err, out)
	}
}

// The unit has the hardening and the paths the README promises.
func TestSystemdUnitDirectives(t *testing.T) {
	data, err := os.ReadFile("poolbot.service")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not key=value: %q", line)
		}
		have[k] = append(have[k], v)
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "StateDirectory": "poolbot", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"PrivateTmp": "yes", "ProtectHome": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter": "@system-service", "CapabilityBoundingSet": "", "ReadWritePaths": "-/var/lock -/run/lock",
		"KillMode": "mixed", "KillSignal": "SIGTERM",
		// scap lock --unlock-all's signal files are in the host's /tmp,
		// which PrivateTmp hides (procedure/breakglass.go).
		"BindPaths": "/tmp:/run/poolbot-host-tmp",
	} {
		found := false
		for _, v := range have[k] {
			found = found || v == want
		}
		if !found {
			t.Errorf("%s=%s missing (have %q)", k, want, have[k])
		}
	}
	// The example config points the break-glass watch at that bind mount.
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), "unlock_signal_dir: /run/poolbot-host-tmp") {
		t.Error("config.example.yaml: scap.deploy_block.unlock_signal_dir is not the unit's BindPaths= target")
	}
	if !strings.Contains(strings.Join(have["ExecStart"], ""), "poolbot run -config /etc/poolbot/config.yaml") {
		t.Errorf("ExecStart %q", have["ExecStart"])
	}
}

// instruction is one Containerfile instruction: its keyword, flags
// (--from=…) and arguments.
type instruction struct {
	cmd   string
	flags []string
	args  string
	line  int
}

// parseContainerfile splits a Containerfile into instructions, joining
// backslash continuations and skipping comments (the Dockerfile grammar
// the image needs; no parser directives or heredocs are used).
func parseContainerfile(t *testing.T, text string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		fields := strings.Fields(cur.String())
		in := instruction{cmd: strings.ToUpper(fields[0]), line: start}
		rest := fields[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "--") {
			in.flags = append(in.flags, rest[0])
			rest = rest[1:]
		}
		in.args = strings.Join(rest, " ")
		out = append(out, in)
		cur.Reset()
	}
	if cur.Len() != 0 {
		t.Fatal("Containerfile ends in a line continuation")
	}
	return out
}

// The image is multi-stage, builds a static poolbot (not the lab), and
// runs it on distroless or debian-slim as a non-root user with an
// exec-form entrypoint. No container engine runs here to build it.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	ins := parseContainerfile(t, string(data))
	known := map[string]bool{"FROM": true, "ARG": true, "WORKDIR": true, "COPY": true, "RUN": true, "USER": true,
		"VOLUME": true, "EXPOSE": true, "STOPSIGNAL": true, "ENTRYPOINT": true, "CMD": true, "ENV": true, "LABEL": true}
	var stages [][]instruction
	for _, in := range ins {
		if !known[in.cmd] {
			t.Errorf("line %d: unknown or unexpected instruction %s", in.line, in.cmd)
		}
		if in.cmd == "ADD" {
			t.Errorf("line %d: ADD (use COPY)", in.line)
		}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("line %d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if f := strings.Fields(build[0].args); len(f) != 3 || !strings.EqualFold(f[1], "AS") || !strings.Contains(f[0], "golang:1.26") {
		t.Errorf("build stage %q: want golang:1.26… AS <name>", build[0].args)
	}
	buildName := strings.Fields(build[0].args)[2]
	var buildsPoolbot bool
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildsPoolbot = strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "./cmd/poolbot ") &&
				!strings.Contains(in.args, "poolbot-lab")
		}
	}
	if !buildsPoolbot {
		t.Error("the build stage does not build ./cmd/poolbot with CGO_ENABLED=0")
	}

	base := final[0].args
	if !strings.Contains(base, "distroless") && !(strings.Contains(base, "debian") && strings.Contains(base, "slim")) {
		t.Errorf("runtime base %q: want distroless or debian-slim", base)
	}
	var user, entrypoint string
	var copiesBinary bool
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			for _, f := range in.flags {
				if f == "--from="+buildName && strings.Contains(in.args, "/usr/local/bin/poolbot") {
					copiesBinary = true
				}
			}
		case "RUN":
			t.Errorf("line %d: RUN in the runtime stage (distroless has no shell)", in.line)
		}
	}
	if name, _, _ := strings.Cut(user, ":"); user == "" || name == "root" || name == "0" {
		t.Errorf("runtime USER %q: want a non-root user", user)
	}
	if !copiesBinary {
		t.Error("the runtime stage does not copy /usr/local/bin/poolbot from the build stage")
	}
	var argv []string
	if err := json.Unmarshal([]byte(entrypoint), &argv); err != nil || len(argv) == 0 || argv[0] != "/usr/local/bin/poolbot" {
		t.Errorf("ENTRYPOINT %q: want exec form [\"/usr/local/bin/poolbot\"]", entrypoint)
	}
}

// The parser itself: continuations, comments and flags.
func TestParseContainerfile(t *testing.T) {
	ins := parseContainerfile(t, "# c\nFROM a AS b\n\nRUN x \\\n  && y\nCOPY --from=b --chown=1:1 /s /d\n")
	if len(ins) != 3 || ins[1].args != "x && y" || ins[2].flags[1] != "--chown=1:1" || ins[2].args != "/s /d" || ins[1].line != 4 {
		t.Fatalf("%+v", ins)
	}
}
