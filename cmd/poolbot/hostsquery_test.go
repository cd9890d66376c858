package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"poolbot/internal/testenv"
	cuminenv "poolbot/internal/testenv/cumin"
	"poolbot/internal/testenv/lab"
)

// hosts_query resolves through the real cumin: at start-up (a query that
// selects nothing stops poolbot with the query named), and again in !check,
// which says when the query no longer selects the hosts the restarts use.
func TestHostsQueryThroughCumin(t *testing.T) {
	w := lab.NewWorld(t, 2)
	env := cuminenv.Start(t, cuminenv.Options{})
	aliases := filepath.Join(env.Dir, "aliases.yaml")
	setAlias := func(query string) {
		t.Helper()
		if err := os.WriteFile(aliases, []byte("docker-registry: '"+query+"'\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := w.Config(t, `  command_prefix: "!"`, "")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	static := "      hosts: [" + strings.Join(w.Hosts, ", ") + "]\n"
	if !strings.Contains(string(data), static) {
		t.Fatalf("world config lacks %q", static)
	}
	quoted := make([]string, len(env.Command))
	for i, a := range env.Command {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", "''") + "'"
	}
	query := "      hosts_query: 'A:docker-registry'\n      cumin: {command: [" + strings.Join(quoted, ", ") + "]}\n"
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), static, query, 1)), 0o600); err != nil {
		t.Fatal(err)
	}

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
		deadline := time.Now().Add(60 * time.Second)
		for strings.Count(out.String(), sub) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %d× %q in:\n%s\nstderr:\n%s", n, sub, out.String(), errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	io.WriteString(feed, "!check apus\n")
	waitFor(1, "alice: 127.0.0.3: restricted: healthy")
	if strings.Contains(out.String(), "hosts_query") {
		t.Fatalf("hosts unchanged, yet:\n%s", out.String())
	}

	// The inventory changes under poolbot: one host fewer, then none.
	setAlias("D{127.0.0.3}")
	io.WriteString(feed, "!check apus\n")
	waitFor(2, "alice: 127.0.0.3: restricted: healthy")
	waitFor(1, `alice: hosts_query "A:docker-registry" now selects 1 hosts (127.0.0.3); restarts use the 2 it selected at start-up (127.0.0.2, 127.0.0.3) until poolbot restarts`)
	setAlias("D{127.0.0.2} and D{127.0.0.9}")
	io.WriteString(feed, "!check apus\n")
	waitFor(3, "alice: 127.0.0.3: restricted: healthy")
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
