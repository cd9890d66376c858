package leader

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"poolbot/integrations/conftool"
	"poolbot/internal/testenv"
	etcdtest "poolbot/internal/testenv/etcd"
)

// shared is the package's one etcd (nil when not installed outside CI).
var shared *etcdtest.Server

// The test binary doubles as a second poolbot instance for the kill -9
// test: with helperEnv set it takes the lock and blocks.
const helperEnv = "POOLBOT_LEADER_TEST_HELPER"

func TestMain(m *testing.M) {
	if ep := os.Getenv(helperEnv); ep != "" {
		os.Exit(runHelper(ep))
	}
	os.Exit(runTests(m))
}

// runHelper holds the lock at endpoint/key with a 2 s ttl, renewed every
// 500 ms, until it is killed.
func runHelper(endpoint string) int {
	kv, err := conftool.NewEtcd(conftool.EtcdConfig{Endpoints: []string{endpoint}}, conftool.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	l, err := New(kv, Config{Key: os.Getenv(helperEnv + "_KEY"), TTL: 2 * time.Second, RenewEvery: 500 * time.Millisecond, Poll: 100 * time.Millisecond},
		Options{Owner: fmt.Sprintf("poolbot@helper [%d]", os.Getpid())})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if err := l.Acquire(context.Background()); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("active", l.Me().Instance)
	<-l.Lost()
	fmt.Println("lost")
	return 1
}

func runTests(m *testing.M) int {
	if _, err := testenv.Lookup("etcd"); err != nil && !testenv.InCI() {
		fmt.Fprintln(os.Stderr, "leader tests against etcd will skip:", err)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "poolbot-leader-test-")
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

// etcdFor returns the shared etcd with /poolbot emptied.
func etcdFor(t testing.TB) *etcdtest.Server {
	t.Helper()
	if shared == nil {
		t.Skip("etcd is not installed")
	}
	req, _ := http.NewRequest(http.MethodDelete, shared.ClientURL+"/v2/keys/poolbot?recursive=true", nil)
	resp, err := shared.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return shared
}
