package apus_test

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/registry"
)

// TestS3RegistryKeepsTheOldSite shows what T422166 needs from the driver
// (registry.S3Storage): after apus.discovery.wmnet moves from eqiad to
// codfw, a running registry keeps writing to eqiad over the connections it
// holds; only a restart moves it to codfw.
func TestS3RegistryKeepsTheOldSite(t *testing.T) {
	a := sites(t)
	ctx := context.Background()
	// A long health interval: only the pushes use the S3 connections, one
	// request at a time, so the driver never needs a third connection.
	h := startHost(t, a, "registry1003", "eqiad", registry.Options{HealthInterval: time.Hour})
	var p registry.Pusher
	push := func(what string) string {
		t.Helper()
		layer := randomLayer(t)
		if _, err := p.PushImage(ctx, h.reg.URL(), "lab/keepalive", what, layer); err != nil {
			t.Fatalf("push %s: %v", what, err)
		}
		return registry.Digest(layer)
	}
	if got := siteHolding(t, a, push("before")); !slices.Equal(got, []string{"eqiad"}) {
		t.Fatalf("before the move the layer is in %v, want eqiad", got)
	}

	if err := h.hosts.Point(apus.Name, a.Address("codfw")); err != nil {
		t.Fatal(err)
	}
	// The host now resolves the name to codfw (a new process sees it) ...
	argv := append(h.hosts.Wrapper(), "getent", "hosts", apus.Name)
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil || !strings.HasPrefix(string(out), a.Address("codfw")+" ") {
		t.Fatalf("getent on the host after the move: %q %v", out, err)
	}
	// ... and so would the registry at its next dial, once Go's resolver
	// has re-read /etc/hosts (it does at most every 5 s).
	time.Sleep(6 * time.Second)
	if got := siteHolding(t, a, push("after-move")); !slices.Equal(got, []string{"eqiad"}) {
		t.Fatalf("after the move, without restart, the layer is in %v, want eqiad (kept connections)", got)
	}

	if err := h.reg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := siteHolding(t, a, push("after-restart")); !slices.Equal(got, []string{"codfw"}) {
		t.Fatalf("after the restart the layer is in %v, want codfw", got)
	}
}
