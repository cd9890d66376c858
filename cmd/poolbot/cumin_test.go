package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
)

// The cumin executor end to end: poolbot resolves hosts_query through the
// real cumin at start-up (a query that selects nothing stops it, naming the
// query), restarts the world's registries with cumin over each host's own
// sshd (the second host's restart fails: the request stops there), and
// !check resolves the query again, saying when it no longer selects the
// hosts the restarts use.
func TestCuminExecutorAndHostsQuery(t *testing.T) {
	t.Parallel()
	w := site.New(t, 2)
	env := w.UseCumin(t)
	aliases := filepath.Join(env.Dir, "aliases.yaml")
	setAlias := func(query string) {
		t.Helper()
		if err := os.WriteFile(aliases, []byte("docker-registry: '"+query+"'\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := w.Config(t, `  command_prefix: "!"`, "")

	// Start-up: the query selects nothing.
	setAlias("D{127.0.0.2} and D{127.0.0.9}")
	code, _, errs := runCmd("", "dry-run", "-config", cfg, "restart", "apus")
	if code != 1 || !strings.Contains(errs, `services.apus.restart: restart: hosts_query "A:docker-registry" matched no hosts`) {
		t.Fatalf("dry-run with an empty query: exit %d, %q", code, errs)
	}

	// The console runs the daemon; the hosts come from cumin.
	setAlias("D{127.0.0.[2-3]}")
	in, feed := io.Pipe()
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"console", "-config", cfg, "-as", "alice"}, in, &out, &errb) }()
	waitFor := func(n int, sub string) {
		t.Helper()
		testenv.EventuallyReport(t, 90*time.Second, fmt.Sprintf("%d× %q", n, sub), func() (bool, string) {
			return strings.Count(out.String(), sub) >= n, fmt.Sprintf("output:\n%s\nstderr:\n%s", out.String(), errb.String())
		})
	}
	io.WriteString(feed, "!check apus\n")
	waitFor(1, "alice: 127.0.0.3: restricted: healthy")
	if strings.Contains(out.String(), "hosts_query") {
		t.Fatalf("hosts unchanged, yet:\n%s", out.String())
	}

	// A restart through cumin; systemd's restart fails on the second host.
	w.Systemctl.Fail("127.0.0.3", true)
	io.WriteString(feed, "!restart apus T1 cumin test\n")
	waitFor(1, "alice: #1 restart apus FAILED: host 2/2 127.0.0.3: host 127.0.0.3: restart: exit 2 (100.0% (1/1) of nodes failed to execute command ''env' 'POOLBOT_T...tricted.service'': 127.0.0.3): "+
		"Job for docker-registry-restricted.service failed because the control process exited with error code.; done: 127.0.0.2; not touched: none")
	if got := w.Systemctl.Restarts(); strings.Join(got, ",") != "127.0.0.2,127.0.0.3" {
		t.Fatalf("restarts %q", got)
	}
	w.Systemctl.Fail("127.0.0.3", false)

	// The inventory changes under poolbot: one host fewer, then none.
	setAlias("D{127.0.0.3}")
	io.WriteString(feed, "!check apus\n")
	waitFor(1, `alice: hosts_query "A:docker-registry" now selects 1 hosts (127.0.0.3); restarts use the 2 it selected at start-up (127.0.0.2, 127.0.0.3) until poolbot restarts`)
	setAlias("D{127.0.0.2} and D{127.0.0.9}")
	io.WriteString(feed, "!check apus\n")
	waitFor(1, `alice: ERROR: hosts_query "A:docker-registry" matched no hosts; restarts use the 2 hosts it selected at start-up (127.0.0.2, 127.0.0.3)`)
	feed.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("console exit %d: %s", code, errb.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("console did not end")
	}
}
