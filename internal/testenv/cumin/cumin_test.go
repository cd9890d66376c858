package cumin_test

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"poolbot/internal/testenv/cumin"
)

// TestStart runs one cumin command on two hosts through an alias and
// checks that each ran on its own sshd (the server port in SSH_CONNECTION).
func TestStart(t *testing.T) {
	env := cumin.Start(t, cumin.Options{
		Hosts:   []string{"registry1001.eqiad.test", "registry1002.eqiad.test"},
		Aliases: map[string]string{"docker-registry": "D{registry[1001-1002].eqiad.test}"},
	})
	if v := env.Version(t); !strings.HasPrefix(v, "cumin ") {
		t.Fatalf("version %q", v)
	}
	cmd := exec.Command(env.Command[0], append(env.Command[1:], "--force", "--no-progress", "-o", "txt",
		"A:docker-registry", `echo "port ${SSH_CONNECTION##* }"`)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cumin: %v\n%s", err, out)
	}
	for _, h := range env.Hosts {
		want := h + ": port " + strconv.Itoa(env.Servers[h].Port) + "\n"
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
