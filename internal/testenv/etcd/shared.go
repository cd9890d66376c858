package etcd

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// Shared is one etcd for all of a package's tests, started by RunShared
// from TestMain. Its zero value (etcd not installed, outside CI) makes
// Fresh skip the test.
type Shared struct {
	srv *Server
}

// RunShared starts one etcd, runs the package's tests and stops it: the
// body of a TestMain (os.Exit(etcd.RunShared(m, &shared))). Without an etcd
// binary the tests run anyway, outside CI, and those that need it skip.
func RunShared(m *testing.M, sh *Shared) int {
	if _, err := testenv.Lookup("etcd"); err != nil && !testenv.InCI() {
		fmt.Fprintln(os.Stderr, "tests against etcd will skip:", err)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "poolbot-etcd-shared-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	sh.srv, err = Launch(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer sh.srv.Stop()
	return m.Run()
}

// Fresh returns the shared etcd with every key under prefix ("/poolbot")
// deleted, so that each test starts from nothing; it skips the test when
// there is no etcd.
func (sh *Shared) Fresh(t testing.TB, prefix string) *Server {
	t.Helper()
	if sh.srv == nil {
		t.Skip("etcd is not installed")
	}
	req, err := http.NewRequest(http.MethodDelete, sh.srv.ClientURL+"/v2/keys"+prefix+"?recursive=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := sh.srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return sh.srv
}
