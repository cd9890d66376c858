// Package incident plays T422166 and poolbot's answer to it on real parts
// (internal/testenv/incident: its World and its Stories): the stories
// share one world, started once, and one poolbot, the real binary in
// console mode, restarted only to turn its DNS step on or off.
package incident

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/incident"
	"poolbot/internal/testenv/site"
)

// driftDebounce is long enough for the incident's failing pushes to come
// before poolbot's drift watch acts.
const driftDebounce = 20 * time.Second

var shared struct {
	once sync.Once
	w    *incident.World
	pb   *incident.Poolbot
	bin  string
	dir  string
	err  error
	skip string // why the world cannot run here (not in CI)
}

func TestMain(m *testing.M) {
	// The test binary is the "systemctl" poolbot's local executor runs.
	site.Main()
	code := m.Run()
	if shared.pb != nil {
		shared.pb.Stop()
	}
	if shared.w != nil {
		shared.w.Close()
	}
	if shared.dir != "" && code == 0 {
		os.RemoveAll(shared.dir)
	} else if shared.dir != "" {
		fmt.Fprintf(os.Stderr, "incident world kept in %s\n", shared.dir)
	}
	os.Exit(code)
}

// stage starts the world once and returns a stage for one story.
func stage(t *testing.T) *incident.Stage {
	t.Helper()
	shared.once.Do(func() {
		if err := incident.Check(); err != nil {
			if testenv.InCI() {
				shared.err = err
			} else {
				shared.skip = err.Error()
			}
			return
		}
		if shared.dir, shared.err = os.MkdirTemp("", "poolbot-incident-"); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		began := time.Now()
		shared.w, shared.err = incident.Launch(ctx, shared.dir, incident.Options{
			// As before T422166: apus depooled in codfw, the registry
			// hosts (codfw) on eqiad's site.
			Pooled: map[string]bool{"eqiad": true, "codfw": false},
			Log:    func(f string, a ...any) { fmt.Fprintf(os.Stderr, "incident world: "+f+"\n", a...) },
		})
		if shared.err != nil {
			return
		}
		if shared.err = shared.w.WaitResolves(ctx, "eqiad", 30*time.Second); shared.err != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "incident world: up in %s\n", time.Since(began).Round(time.Millisecond))
		shared.bin, shared.err = incident.BuildPoolbot(ctx, shared.dir)
	})
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return &incident.Stage{W: shared.w, Poolbot: switchPoolbot, Logf: t.Logf, Debounce: driftDebounce}
}

// switchPoolbot returns the running poolbot, restarting it (same
// database) when the story wants the DNS step the other way.
func switchPoolbot(dnsWait bool) (*incident.Poolbot, error) {
	if shared.pb != nil && shared.pb.DNSWait == dnsWait {
		return shared.pb, nil
	}
	if shared.pb != nil {
		shared.pb.Stop()
		shared.pb = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pb, err := incident.StartPoolbot(ctx, shared.w, incident.PoolbotOptions{Binary: shared.bin, Dir: shared.dir,
		Helper: os.Args[0], DNSWait: dnsWait, Debounce: driftDebounce})
	if err != nil {
		return nil, err
	}
	shared.pb = pb
	return pb, nil
}

func play(t *testing.T, story incident.Story) *incident.Stage {
	t.Helper()
	s := stage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	began := time.Now()
	err := story.Run(s, ctx)
	if errors.Is(err, incident.ErrNoDNSStep) {
		t.Skip(err)
	}
	if err != nil {
		t.Logf("since the story began:\n%s", shared.w.Diagnose(began))
		t.Fatalf("%s: %v", story.Name, err)
	}
	return s
}

// TestStory1Incident: see incident.Stage.Incident.
func TestStory1Incident(t *testing.T) {
	s := play(t, incident.Stories[0])
	t.Logf("the incident's error text: %s", s.IncidentError)
}

// TestStory2DepoolWithPoolbot: see incident.Stage.DepoolWithPoolbot.
func TestStory2DepoolWithPoolbot(t *testing.T) { play(t, incident.Stories[1]) }

// TestStory3TooEarly: see incident.Stage.TooEarly.
func TestStory3TooEarly(t *testing.T) { play(t, incident.Stories[2]) }

// TestStory4SiteDown: see incident.Stage.SiteDown.
func TestStory4SiteDown(t *testing.T) { play(t, incident.Stories[3]) }
