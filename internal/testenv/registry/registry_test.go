package registry_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv"
	regtest "poolbot/internal/testenv/registry"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitStatus polls a real server until url answers want (bounded).
func waitStatus(t *testing.T, url string, want int) string {
	t.Helper()
	var body string
	testenv.EventuallyReport(t, 10*time.Second, fmt.Sprintf("GET %s to answer %d", url, want), func() (bool, string) {
		var status int
		status, body = get(t, url)
		return status == want, fmt.Sprintf("%d %q", status, body)
	})
	return body
}

func TestInstanceLifecycle(t *testing.T) {
	inst := regtest.Start(t, regtest.Options{})
	if status, body := get(t, inst.URL()+"/v2/"); status != 200 || body != "{}" {
		t.Fatalf("GET /v2/ = %d %q", status, body)
	}
	if status, body := get(t, "http://"+inst.DebugAddr+"/debug/health"); status != 200 || body != "{}" {
		t.Fatalf("GET /debug/health = %d %q", status, body)
	}

	pid, port, debugPort := inst.PID(), inst.Port, inst.DebugPort
	marker := filepath.Join(inst.RootDir(), "marker")
	if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := inst.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if inst.PID() == pid || inst.Port != port || inst.DebugPort != debugPort {
		t.Fatalf("restart: pid %d→%d ports %d/%d→%d/%d", pid, inst.PID(), port, debugPort, inst.Port, inst.DebugPort)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("storage not kept across restart: %v", err)
	}
	waitStatus(t, inst.URL()+"/v2/", 200)

	if err := inst.BreakStorage(); err != nil {
		t.Fatal(err)
	}
	if err := inst.BreakStorage(); err == nil {
		t.Fatal("breaking twice should fail")
	}
	body := waitStatus(t, "http://"+inst.DebugAddr+"/debug/health", 503)
	if !strings.Contains(body, "storagedriver_filesystem") || !strings.Contains(body, "not a directory") {
		t.Fatalf("unhealthy body %q", body)
	}
	if err := inst.FixStorage(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "http://"+inst.DebugAddr+"/debug/health", 200)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("storage not restored: %v", err)
	}

	if err := inst.Kill(); err != nil {
		t.Fatal(err)
	}
	if inst.Running() {
		t.Fatal("running after Kill")
	}
	if status, _ := get(t, inst.URL()+"/v2/"); status != 0 {
		t.Fatalf("killed registry answered %d", status)
	}
	if err := inst.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, inst.URL()+"/v2/", 200)
}

func TestLaunchOutsideTests(t *testing.T) {
	bin := regtest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inst, err := regtest.Launch(ctx, regtest.Options{Binary: bin, Users: map[string]string{"probe": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := get(t, inst.URL()+"/v2/"); status != http.StatusUnauthorized {
		t.Errorf("htpasswd registry: GET /v2/ without credentials = %d, want 401", status)
	}
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inst.Dir); !os.IsNotExist(err) {
		t.Fatalf("Close left %s: %v", inst.Dir, err)
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := regtest.RepoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "go.mod")); err != nil {
		t.Fatalf("repo root %s has no tools/go.mod: %v", root, err)
	}
	if _, err := regtest.RepoRoot(t.TempDir()); err == nil {
		t.Fatal("found a poolbot module above a temp dir")
	}
}

func TestBinaryOverride(t *testing.T) {
	t.Setenv(regtest.BinEnv, filepath.Join(t.TempDir(), "nope"))
	if _, err := regtest.Binary(context.Background()); err == nil || !strings.Contains(err.Error(), regtest.BinEnv) {
		t.Fatalf("Binary with a missing override: %v", err)
	}
}
