package commands

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type watchLines struct {
	lines map[string][]string
	err   error
}

func (w watchLines) StatusLines(_ context.Context, service string) ([]string, error) {
	return w.lines[service], w.err
}

// !status shows the watch's lines for each service, with or without open
// requests, and says so when they cannot be read.
func TestStatusShowsWatchLines(t *testing.T) {
	f := newFixture(t, true)
	f.router.SetBackends(Backends{Watch: watchLines{lines: map[string][]string{
		"apus": {"probes: registry1/restricted ok 2m ago", "drift (last 24h): 14:03 UTC apus/codfw pooled=false → #3"}}}})
	got := f.say("", "!status")
	want := []string{"apus: no active or queued requests", "apus probes: registry1/restricted ok 2m ago",
		"apus drift (last 24h): 14:03 UTC apus/codfw pooled=false → #3"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("status:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.say("alice", "!restart apus T1 test")
	got = f.say("", "!status")
	if len(got) != 4 || !strings.Contains(got[1], "#1 restart apus") || got[2] != want[1] {
		t.Fatalf("status with a request: %q", got)
	}
	f.router.SetBackends(Backends{Watch: watchLines{err: errors.New("database is locked")}})
	got = f.say("", "!status")
	if got[len(got)-1] != "apus: watch status unknown (database is locked)" {
		t.Fatalf("status: %q", got)
	}
}
