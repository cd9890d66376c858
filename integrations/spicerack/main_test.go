package spicerack

import (
	"os"
	"testing"

	etcdtest "poolbot/internal/testenv/etcd"
)

// shared is the package's one etcd; each test starts from an empty
// /spicerack (see etcdFor).
var shared etcdtest.Shared

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m, &shared)) }

// etcdFor returns the shared etcd with /spicerack emptied.
func etcdFor(t testing.TB) *etcdtest.Server {
	t.Helper()
	return shared.Fresh(t, "/spicerack")
}
