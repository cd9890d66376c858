package conftool

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	etcdtest "poolbot/internal/testenv/etcd"
)

// testLogger logs to the test output at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func testLoggerDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startApus starts etcd with apus pooled in eqiad and codfw, as confctl
// would have stored it.
func startApus(t testing.TB, opts ...etcdtest.Option) *etcdtest.Server {
	t.Helper()
	srv := etcdtest.Start(t, opts...)
	srv.PutDiscovery(t, "apus", "eqiad", true)
	srv.PutDiscovery(t, "apus", "codfw", true)
	return srv
}

func newEtcdClient(t testing.TB, cfg EtcdConfig) *Etcd {
	t.Helper()
	c, err := NewEtcd(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewEtcd: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func etcdClientFor(t testing.TB, srv *etcdtest.Server) *Etcd {
	t.Helper()
	return newEtcdClient(t, EtcdConfig{Endpoints: []string{srv.ClientURL}})
}

// storedFields returns the JSON fields stored at key.
func storedFields(t testing.TB, srv *etcdtest.Server, key string) (map[string]any, uint64) {
	t.Helper()
	node, ok := srv.Get(t, key)
	if !ok {
		t.Fatalf("%s does not exist", key)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(node.Value), &fields); err != nil {
		t.Fatalf("%s holds %q: %v", key, node.Value, err)
	}
	return fields, node.ModifiedIndex
}

// fakeConfctl is the test program standing in for confctl (see
// fakeconfctl_test.go), wired to a real etcd.
type fakeConfctl struct {
	bin    string // symlink named confctl pointing at the test binary
	config string // conftool config naming the etcd
	record string // where the fake appends what it received
}

func newFakeConfctl(t *testing.T, srv *etcdtest.Server) *fakeConfctl {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConfctl{
		bin:    filepath.Join(dir, "confctl"),
		config: filepath.Join(dir, "config.yaml"),
		record: filepath.Join(dir, "calls.jsonl"),
	}
	if err := os.Symlink(self, f.bin); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"hosts": [%q], "namespace": "/conftool", "api_version": "v1"}`, srv.ClientURL)
	if err := os.WriteFile(f.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_CONFCTL_RECORD", f.record)
	t.Setenv("FAKE_CONFCTL_MODE", "")
	t.Setenv("FAKE_CONFCTL_DEFAULT_CONFIG", f.config)
	// Under -race the fake (this test binary) would sleep 1 s at exit to let
	// the race detector report; it has nothing to report worth 1 s a run.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return f
}

func (f *fakeConfctl) client(t *testing.T, mutate func(*ConfctlConfig)) *Confctl {
	t.Helper()
	cfg := ConfctlConfig{Command: []string{f.bin}, Config: f.config, Timeout: 20 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := NewConfctl(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("NewConfctl: %v", err)
	}
	return c
}

// calls returns what the fake recorded, and forgets it.
func (f *fakeConfctl) calls(t *testing.T) []fakeRecord {
	t.Helper()
	file, err := os.Open(f.record)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var recs []fakeRecord
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var r fakeRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	if err := os.Remove(f.record); err != nil {
		t.Fatal(err)
	}
	return recs
}
