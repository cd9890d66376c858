package dns

import (
	"testing"
	"time"

	"poolbot/integrations/restart"
	cuminenv "poolbot/internal/testenv/cumin"
)

// The host check through the real cumin: the runner gets exactly what the
// command printed, as ParseGetentAhosts reads it.
func TestExecutorRunnerCumin(t *testing.T) {
	env := cuminenv.Start(t, cuminenv.Options{Hosts: []string{"registry2001.codfw.test"}})
	e, err := restart.NewCumin(restart.CuminConfig{Command: env.Command, Timeout: 30 * time.Second}, restart.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ExecutorRunner{Executor: e}.Run(t.Context(), "registry2001.codfw.test", []string{"printf", "%s", getentOutput})
	if err != nil || string(got) != getentOutput {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ParseGetentAhosts(got); err != nil {
		t.Fatal(err)
	}
}
