package etcd

import (
	"context"
	"net/http"
	"testing"

	"poolbot/internal/testenv"
)

func TestStartPutRestart(t *testing.T) {
	srv := Start(t, WithSnapshotCount(100))
	idx := srv.PutDiscovery(t, "apus", "codfw", true)
	node, ok := srv.Get(t, DiscoveryKey("apus", "codfw"))
	if !ok || node.ModifiedIndex != idx || node.Value != `{"pooled": true, "references": [], "ttl": 300}` {
		t.Fatalf("got %+v", node)
	}

	srv.Stop()
	if _, _, err := srv.do(context.Background(), http.MethodGet, "/health", nil); err == nil {
		t.Fatal("etcd still answers after Stop")
	}
	srv.Stop() // idempotent
	srv.Restart()
	node, ok = srv.Get(t, DiscoveryKey("apus", "codfw"))
	if !ok || node.ModifiedIndex != idx {
		t.Fatalf("after restart: %+v, %v", node, ok)
	}

	last := srv.FillHistory(t, 50)
	if last <= idx {
		t.Fatalf("FillHistory index %d <= %d", last, idx)
	}
	srv.Delete(t, DiscoveryKey("apus", "codfw"))
	if _, ok := srv.Get(t, DiscoveryKey("apus", "codfw")); ok {
		t.Fatal("key survived Delete")
	}
}

func TestTLSAndAuth(t *testing.T) {
	srv := Start(t, WithTLS())
	if srv.CAFile == "" || srv.ClientURL[:8] != "https://" {
		t.Fatalf("TLS server %q, CA %q", srv.ClientURL, srv.CAFile)
	}
	srv.EnableAuth(t, "pw")
	srv.PutDiscovery(t, "apus", "eqiad", false) // authenticates as root

	resp, err := srv.HTTPClient().Get(srv.ClientURL + "/v2/keys" + DiscoveryKey("apus", "eqiad"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous read: HTTP %d, want 401", resp.StatusCode)
	}
}

// Launch is Start for programs that are not tests: the caller owns the
// directory and stops the server.
func TestLaunch(t *testing.T) {
	testenv.Need(t, "etcd")
	srv, err := Launch(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if err := srv.SetDiscovery(t.Context(), "apus", "eqiad", false); err != nil {
		t.Fatal(err)
	}
	node, ok := srv.Get(t, DiscoveryKey("apus", "eqiad"))
	if !ok || node.Value != `{"pooled": false, "references": [], "ttl": 300}` {
		t.Fatalf("got %+v, %v", node, ok)
	}
	if err := srv.Relaunch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Get(t, DiscoveryKey("apus", "eqiad")); !ok {
		t.Fatal("key lost across Relaunch")
	}
}
