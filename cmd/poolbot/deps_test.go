package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The poolbot binary must not link the lab or any test server helper:
// their heavy parts (and "testing") belong to cmd/poolbot-lab and tests.
func TestBinaryDoesNotImportTheLab(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "poolbot/cmd/poolbot").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "poolbot/internal/testenv") || strings.HasPrefix(pkg, "poolbot/cmd/poolbot-lab") || pkg == "testing" {
			t.Errorf("poolbot imports %s", pkg)
		}
	}
}
