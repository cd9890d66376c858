package leader

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"poolbot/integrations/conftool"
	etcdtest "poolbot/internal/testenv/etcd"
)

// shared is the package's one etcd; each test starts from an empty
// /poolbot (see etcdFor).
var shared etcdtest.Shared

// The test binary doubles as a second poolbot instance for the kill -9
// test: with helperEnv set it takes the lock and blocks.
const helperEnv = "POOLBOT_LEADER_TEST_HELPER"

func TestMain(m *testing.M) {
	if ep := os.Getenv(helperEnv); ep != "" {
		os.Exit(runHelper(ep))
	}
	os.Exit(etcdtest.RunShared(m, &shared))
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

// etcdFor returns the shared etcd with /poolbot emptied.
func etcdFor(t testing.TB) *etcdtest.Server {
	t.Helper()
	return shared.Fresh(t, "/poolbot")
}
