package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"poolbot"
	"poolbot/integrations/registry"
	"poolbot/internal/testenv/site"
	"poolbot/procedure"
	"poolbot/store"
)

// dry-run evaluates the gates for real and prints the plan, changing
// nothing: no store file appears, conftool keeps its value, no host is
// restarted, no lock is taken.
func TestDryRun(t *testing.T) {
	t.Parallel()
	w := site.New(t, 2)
	cfg := w.Config(t, `  command_prefix: "!"`, "")
	db := filepath.Join(w.Dir, "poolbot.db")

	// A scap run holds the global lock shared.
	release := site.HoldLock(t, w.GlobalLock(), "shared")
	code, out, errs := runCmd("", "dry-run", "-config", cfg, "depool", "apus", "codfw")
	if code != exitWouldWait || !strings.Contains(errs, "dry-run: it would not start now: scap gate closed") {
		t.Fatalf("exit %d, want %d (scap runs): %s", code, exitWouldWait, errs)
	}
	for _, want := range []string{
		"DRY RUN: depool apus in codfw. Nothing is changed",
		"pooled now: codfw pooled, eqiad pooled (codfw,eqiad serving)",
		"queue    open   no other apus request",
		"conftool open   depooling codfw leaves another datacenter serving",
		"calendar open   disabled (calendar.source: none)",
		"scap     CLOSED scap: lock: ",
		"would start: unknown",
		"set apus/codfw pooled=false through conftool and read it back (now pooled=true)",
		"1/2 127.0.0.2: " + "systemctl restart docker-registry-restricted.service; systemctl is-active --quiet docker-registry-restricted.service",
		"then wait for restricted: http://127.0.0.3:",
		"(healthy now); then the write-then-read blob probe",
		"does not exist yet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	release()
	// Every gate open and every instance healthy: it would start now.
	if code, out, errs := runCmd("", "dry-run", "-config", cfg, "depool", "apus", "codfw"); code != 0 || strings.Contains(errs, "would not start") {
		t.Fatalf("exit %d, want 0 with every gate open: %s\n%s", code, errs, out)
	}
	if _, err := os.Stat(db); err == nil {
		t.Fatal("dry-run created the store")
	}
	if len(w.Systemctl.Restarts()) != 0 || site.ProbeLock(t, w.GlobalLock()) != "none" {
		t.Fatal("dry-run restarted a host or kept a lock")
	}
	if node, _ := w.Etcd.Get(t, "/conftool/v1/discovery/apus/codfw"); !strings.Contains(node.Value, `"pooled": true`) {
		t.Fatalf("conftool changed: %s", node.Value)
	}

	// With a store: its queue is read, the file is not touched.
	st, err := store.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionPool, Service: "apus", Datacenter: "codfw",
			Reason: "T1", Operator: "alice", Origin: poolbot.Origin{Network: "irc"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	sum := func() [32]byte { b, _ := os.ReadFile(db); return sha256.Sum256(b) }
	before := sum()
	code, out, errs = runCmd("", "dry-run", "-config", cfg, "restart", "apus")
	if code != exitWouldWait || !strings.Contains(errs, "queue gate closed") {
		t.Fatalf("exit %d, want %d (a request ahead): %s", code, exitWouldWait, errs)
	}
	if !strings.Contains(out, "queue    CLOSED behind #1 pool apus in codfw (queued)") || strings.Contains(out, "does not exist") ||
		strings.Contains(out, "through conftool") || !strings.Contains(out, "scap     open") {
		t.Fatalf("restart with a queue:\n%s", out)
	}
	if sum() != before {
		t.Fatal("dry-run changed the store file")
	}
}

func TestDryRunUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"dry-run"},
		{"dry-run", "depool", "apus"},
		{"dry-run", "restart", "apus", "codfw"},
		{"dry-run", "drain", "apus", "codfw"},
	} {
		if code, _, errs := runCmd("", args...); code != 2 || !strings.Contains(errs, "usage: poolbot dry-run") {
			t.Errorf("%q: exit %d, %q", args, code, errs)
		}
	}
	if code, _, errs := runCmd("", "dry-run", "-config", "/nonexistent.yaml", "restart", "apus"); code != 1 || !strings.Contains(errs, "nonexistent") {
		t.Errorf("missing config: %d %q", code, errs)
	}
}

// An unhealthy registry instance makes dry-run fail like a closed gate: a
// restart would stop at that host.
func TestDryRunNotReady(t *testing.T) {
	t.Parallel()
	x := procedure.Explanation{
		Gates: []procedure.GateStatus{{Gate: "queue", Open: true}, {Gate: "calendar", Open: false}, {Gate: "scap", Open: true}},
		Hosts: []procedure.HostPlan{
			{Host: "registry1003", Instances: []procedure.InstanceHealth{{Instance: registry.Instance{Name: "restricted"}}}},
			{Host: "registry1004", Instances: []procedure.InstanceHealth{{Instance: registry.Instance{Name: "ml"}, Health: errors.New("503")}}},
		},
	}
	if got := strings.Join(notReady(x), "; "); got != "calendar gate closed; registry ml on registry1004 unhealthy" {
		t.Errorf("notReady = %q", got)
	}
	x.Gates[1].Open, x.Hosts[1].Instances[0].Health = true, nil
	if got := notReady(x); len(got) != 0 {
		t.Errorf("all open and healthy: %q", got)
	}
}
