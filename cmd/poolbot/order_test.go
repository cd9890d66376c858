package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"poolbot/config"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/site"
)

// One ordered stream per request, through the real wiring (procedure, SAL
// outbox and sender, notices, one channel): every notice comes after the
// SAL lines queued before it. "DONE" after the last host's line, the
// release and END; "deploys are blocked" after START and "deploy block
// taken".
func TestNoticesFollowTheirSALLines(t *testing.T) {
	t.Parallel()
	w := site.New(t, 2)
	cfg, err := config.Load(w.Config(t, `  command_prefix: "!"`, ""))
	if err != nil {
		t.Fatal(err)
	}
	stdin, typeLine := io.Pipe()
	out, logs := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
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
	if _, err := fmt.Fprintln(typeLine, "!depool apus codfw T422166 order"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 45*time.Second, "DONE on the console", func() bool { return strings.Contains(out.String(), "#1 depool apus in codfw DONE") })
	typeLine.Close()
	if err := <-done; err != nil {
		t.Fatalf("runDaemon: %v", err)
	}
	text := out.String()
	at := func(sub string) int {
		t.Helper()
		i := strings.Index(text, sub)
		if i < 0 {
			t.Fatalf("console lacks %q:\n%s", sub, text)
		}
		return i
	}
	for _, pair := range [][2]string{
		{"!log poolbot #1 alice: START - depool apus in codfw", "#1 deploys are blocked while depool apus in codfw runs"},
		{"!log poolbot #1 alice: deploy block taken", "#1 deploys are blocked while depool apus in codfw runs"},
		{"!log poolbot #1 alice: restarted", "alice: #1 depool apus in codfw DONE"},
		{"(2/2): ", "alice: #1 depool apus in codfw DONE"},
		{"!log poolbot #1 alice: deploy block released", "alice: #1 depool apus in codfw DONE"},
		{"!log poolbot #1 alice: END (PASS) - depool apus in codfw", "alice: #1 depool apus in codfw DONE"},
	} {
		if before, after := at(pair[0]), at(pair[1]); before > after {
			t.Errorf("%q came before %q:\n%s", pair[1], pair[0], text)
		}
	}
}
