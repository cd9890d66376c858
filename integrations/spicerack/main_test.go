package spicerack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"poolbot/internal/testenv"
	etcdtest "poolbot/internal/testenv/etcd"
)

// shared is the package's one etcd; each test starts from an empty
// /spicerack (see etcdFor). nil when etcd is not installed outside CI.
var shared *etcdtest.Server

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if _, err := testenv.Lookup("etcd"); err != nil && !testenv.InCI() {
		fmt.Fprintln(os.Stderr, "spicerack lock tests against etcd will skip:", err)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "poolbot-spicerack-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	shared, err = etcdtest.Launch(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer shared.Stop()
	return m.Run()
}

// etcdFor returns the shared etcd with /spicerack emptied.
func etcdFor(t testing.TB) *etcdtest.Server {
	t.Helper()
	if shared == nil {
		t.Skip("etcd is not installed")
	}
	req, _ := http.NewRequest(http.MethodDelete, shared.ClientURL+"/v2/keys/spicerack?recursive=true", nil)
	resp, err := shared.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return shared
}
