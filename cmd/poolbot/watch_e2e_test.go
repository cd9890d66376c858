package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"poolbot/config"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
)

// The whole daemon with the watch wired in: poolbot's own depool through
// the procedure is not drift; a repool written straight to etcd is, and
// the restart request it queues runs; !status shows the probes and the
// drift.
func TestWatchInDaemon(t *testing.T) {
	t.Parallel()
	w := site.New(t, 2)
	cfgPath := w.Config(t, `  command_prefix: "!"`, "watch: {drift: {debounce: 1s}, probe: {interval: 10s}}\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// JSON at debug: every line of every part is checked for a key said
	// twice (component=watch component=drift was).
	cfg.Log.Format, cfg.Log.Level = "json", "debug"
	stdin, typeLine := io.Pipe()
	out := &testenv.SyncBuffer{}
	logs := &testenv.SyncBuffer{}
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(stopped)
		done <- runDaemon(context.Background(), cfg, daemonOptions{console: true, operator: "alice",
			stdin: stdin, stdout: out, stderr: logs})
	}()
	t.Cleanup(func() {
		typeLine.Close() // end of input ends poolbot
		select {
		case <-stopped:
		case <-time.After(60 * time.Second):
		}
		if t.Failed() {
			t.Logf("console:\n%s\nlog:\n%s", out.String(), logs.String())
		}
	})
	say := func(line string) {
		t.Helper()
		if _, err := fmt.Fprintln(typeLine, line); err != nil {
			t.Fatal(err)
		}
	}
	waitOut := func(sub string) {
		t.Helper()
		testenv.Eventually(t, 45*time.Second, fmt.Sprintf("%q on the console", sub), func() bool { return strings.Contains(out.String(), sub) })
	}

	// checkLogKeys: no log line says a key twice, and the parts that
	// matter here did log.
	checkLogKeys := func() {
		t.Helper()
		components := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			keys, err := topLevelKeys(l)
			if err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			seen := map[string]bool{}
			for _, k := range keys {
				if seen[k] {
					t.Errorf("log line has %q twice: %s", k, l)
				}
				seen[k] = true
			}
			var rec struct{ Component string }
			if json.Unmarshal([]byte(l), &rec) == nil && rec.Component != "" {
				components[rec.Component] = true
			}
		}
		for _, c := range []string{"drift", "probe", "procedure"} {
			if !components[c] {
				t.Errorf("no log line of component %q (seen %v): the check above did not see that part", c, components)
			}
		}
	}

	say("!depool apus codfw T422166 watch e2e")
	waitOut("#1 depool apus in codfw DONE")
	w.Etcd.PutDiscovery(t, "apus", "codfw", true)
	waitOut("drift: apus/codfw pooled=true changed outside poolbot (by whom unknown)")
	waitOut("queued #2 restart apus (as poolbot)")
	waitOut("#2 restart apus DONE")
	checkLogKeys()
	if strings.Contains(out.String(), "pooled=false changed outside poolbot") {
		t.Fatalf("poolbot's own depool was taken for drift:\n%s", out.String())
	}
	say("!status")
	waitOut("apus drift (last 24h): ")
	// The periodic probe drops a result of a host restarted under it, so
	// this !status may come before a probe of 127.0.0.2 was counted (the
	// next round is 10 s later): ask again until one was.
	asked := time.Now()
	testenv.Eventually(t, 45*time.Second, "a !status with 127.0.0.2's probe ok", func() bool {
		if strings.Contains(out.String(), "apus probes: 127.0.0.2/restricted ok") {
			return true
		}
		if time.Since(asked) > 2*time.Second {
			say("!status")
			asked = time.Now()
		}
		return false
	})
	typeLine.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runDaemon: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("poolbot did not stop")
	}
	checkLogKeys()
}

// topLevelKeys returns the keys of a JSON object in order, duplicates
// included (encoding/json keeps the last silently).
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
