package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"poolbot/internal/testenv/incident"
	"poolbot/internal/testenv/registry"
)

// The stories run in this order, each leaving the state the next one
// starts from; run alone, a story first brings the world to its start
// through poolbot (ensure).

// step bounds one wait for poolbot: generous, the machine is shared.
const step = 3 * time.Minute

// ensure brings apus/codfw to pooled and every host to the site its
// resolver answers, through poolbot (no drift: poolbot's own change).
func ensure(t *testing.T, w *incident.World, pb *poolbotProc, codfwPooled bool) {
	t.Helper()
	ctx := context.Background()
	if pooled(t, w, "codfw") == codfwPooled {
		return
	}
	verb, want := "depool", "eqiad"
	if codfwPooled {
		verb, want = "pool", "codfw"
	}
	from := pb.mark()
	pb.say(t, fmt.Sprintf("!%s apus codfw T422166 set up the story", verb))
	line := pb.wait(t, from, step, verb+" apus in codfw", "poolbot>", "#")
	for !strings.Contains(line, " DONE") && !strings.Contains(line, " FAILED") {
		from += strings.Index(pb.transcript(from), line) + len(line)
		line = pb.wait(t, from, step, verb+" apus in codfw", "poolbot>", "#")
	}
	if strings.Contains(line, " FAILED") {
		// Without a DNS step the restarts may come before the resolvers
		// follow (story 3): restart again once they have.
		t.Logf("set-up: %s", line)
		if err := w.WaitResolves(ctx, want, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		from = pb.mark()
		pb.say(t, "!restart apus T422166 set up the story after DNS followed")
		pb.wait(t, from, step, "restart apus DONE")
	}
	for _, h := range w.Hosts {
		if got, err := w.WritesTo(ctx, h); err != nil || got != want {
			t.Fatalf("set-up: %s writes to %s (%v), want %s", h.Name, got, err, want)
		}
	}
}

// TestStory1Incident is T422166: an operator repools apus in codfw by
// hand (confctl, straight to etcd). DNS follows, the registries are not
// restarted: their kept S3 connections lead to eqiad, the new ones (a
// push's concurrent uploads need more than the two idle ones) to codfw,
// and a push through the load balancer fails with the registry's own
// BLOB_UPLOAD_UNKNOWN. poolbot's drift watch sees the change, queues a
// restart of the hosts and runs it; the same push then succeeds, landing
// in codfw.
func TestStory1Incident(t *testing.T) {
	w := world(t)
	pb := anyPoolbot(t, w)
	ensure(t, w, pb, false)
	ctx := context.Background()
	from := pb.mark()
	for _, h := range w.Hosts {
		if got, err := w.WritesTo(ctx, h); err != nil || got != "eqiad" {
			t.Fatalf("before: %s writes to %s (%v), want eqiad", h.Name, got, err)
		}
	}

	t.Log("operator: confctl --object-type discovery select 'dnsdisc=apus,name=codfw' set/pooled=true")
	changed := time.Now()
	if err := w.SetDiscovery(ctx, "codfw", true, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitResolves(ctx, "codfw", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("DNS moved: every host resolves apus to codfw after %s; no registry restarted", time.Since(changed).Round(time.Millisecond))

	// Pushes until one fails, before the drift watch acts.
	var failure *registry.PushError
	for attempt := 1; failure == nil; attempt++ {
		if time.Since(changed) > driftDebounce-3*time.Second {
			t.Fatalf("no push failed in %d attempts before poolbot's drift watch acts", attempt-1)
		}
		err := w.Push(ctx, "restricted/mediawiki-multiversion", "T422166", 8)
		var pe *registry.PushError
		switch {
		case err == nil:
			t.Logf("push %d went through", attempt)
		case errors.As(err, &pe) && pe.Code() == "BLOB_UPLOAD_UNKNOWN":
			failure = pe
		default:
			t.Logf("push %d failed otherwise: %v", attempt, err)
		}
	}
	t.Logf("the incident's error: %v", failure)
	want := `HTTP 404: {"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}`
	if !strings.Contains(failure.Error(), want) {
		t.Fatalf("push failed with %v, want %s", failure, want)
	}
	if os.Getenv("POOLBOT_INCIDENT_ERROR") != "" {
		_ = os.WriteFile(os.Getenv("POOLBOT_INCIDENT_ERROR"), []byte(failure.Error()+"\n"), 0o644)
	}

	pb.wait(t, from, step, "drift: apus/codfw pooled=true changed outside poolbot")
	pb.wait(t, from, step, "restart apus (as poolbot)")
	pb.wait(t, from, step, "restart apus DONE")
	if err := w.Push(ctx, "restricted/mediawiki-multiversion", "T422166", 8); err != nil {
		t.Fatalf("the same push after poolbot's restarts: %v", err)
	}
	for _, h := range w.Hosts {
		if got, err := w.WritesTo(ctx, h); err != nil || got != "codfw" {
			t.Fatalf("after: %s writes to %s (%v), want codfw", h.Name, got, err)
		}
	}
	t.Logf("transcript:\n%s", pb.transcript(from))
}

// deployer pushes in a loop as scap does: only while it holds scap's
// global lock (F_SETLK, exclusive, non-blocking); when poolbot holds it
// (the deploy block), it waits.
type deployer struct {
	mu                      sync.Mutex
	pushes, blocked, errors int
	errs                    []string
	stop                    chan struct{}
	done                    chan struct{}
	once                    sync.Once
}

func startDeployer(t *testing.T, w *incident.World, lockPath string) *deployer {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		defer f.Close()
		for i := 0; ; i++ {
			select {
			case <-d.stop:
				return
			default:
			}
			lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
			if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
				d.mu.Lock()
				d.blocked++
				d.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
				continue
			}
			err := w.Push(context.Background(), "restricted/mediawiki-multiversion", fmt.Sprintf("deploy-%d", i), 3)
			unlock := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0}
			_ = unix.FcntlFlock(f.Fd(), unix.F_SETLK, &unlock)
			d.mu.Lock()
			d.pushes++
			if err != nil {
				d.errors++
				d.errs = append(d.errs, err.Error())
			}
			d.mu.Unlock()
			// Room for poolbot's lock probe between two runs.
			time.Sleep(700 * time.Millisecond)
		}
	}()
	return d
}

func (d *deployer) counts() (pushes, blocked, errs int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pushes, d.blocked, d.errors
}

func (d *deployer) finish() {
	d.once.Do(func() { close(d.stop) })
	<-d.done
}

// TestStory2DepoolWithPoolbot: the same kind of change through poolbot.
// A deployer pushes all along, outside the deploy block: 0 errors before,
// during (it is blocked) and after `!depool apus codfw`.
func TestStory2DepoolWithPoolbot(t *testing.T) {
	w := world(t)
	pb := poolbot(t, w, true)
	ensure(t, w, pb, true)
	ctx := context.Background()
	d := startDeployer(t, w, pb.GlobalLock)
	t.Cleanup(d.finish)
	waitCount := func(what string, cond func(p, b, e int) bool) {
		t.Helper()
		deadline := time.Now().Add(step)
		for {
			p, b, e := d.counts()
			if cond(p, b, e) {
				return
			}
			if time.Now().After(deadline) {
				d.finish()
				t.Fatalf("deployer: %s: pushes %d, blocked %d, errors %d", what, p, b, e)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitCount("two pushes before", func(p, _, _ int) bool { return p >= 2 })
	before, _, _ := d.counts()

	from := pb.mark()
	pb.say(t, "!depool apus codfw T422166 story 2: depool apus in codfw with poolbot")
	pb.wait(t, from, step, "depool apus in codfw DONE")
	during, blocked, _ := d.counts()
	waitCount("two pushes after", func(p, _, _ int) bool { return p >= during+2 })
	d.finish()
	pushes, blocked, errs := d.counts()
	t.Logf("deployer: %d pushes before, %d during or after; blocked %d times; %d errors", before, pushes-before, blocked, errs)
	if errs != 0 {
		t.Fatalf("the deployer's pushes failed %d times: %s", errs, strings.Join(d.errs, "\n"))
	}
	if blocked == 0 {
		t.Fatal("the deployer was never blocked: poolbot did not hold the deploy block")
	}
	for _, want := range []string{"deploy block taken", "conftool: set apus/codfw pooled=false (was true)", "deploy block released", "END (PASS)"} {
		if _, ok := pb.find(from, want); !ok {
			t.Errorf("transcript lacks %q", want)
		}
	}
	for _, h := range w.Hosts {
		if got, err := w.WritesTo(ctx, h); err != nil || got != "eqiad" {
			t.Fatalf("after: %s writes to %s (%v), want eqiad", h.Name, got, err)
		}
	}
	t.Logf("transcript:\n%s", pb.transcript(from))
}

// TestStory3TooEarly: the DNS wait off (no dns section in this poolbot's
// config), and the recursors hold the old answer for 10 s. `!pool apus
// codfw` restarts the first host at once: its registry resolves eqiad
// from the cache and stays there. The second host's restart is held until
// its resolver answers codfw. The probe after it, across the first host,
// fails with the registry's BLOB_UPLOAD_UNKNOWN, and the request fails
// quoting it. An operator's !restart once the cache expired fixes it.
func TestStory3TooEarly(t *testing.T) {
	w := world(t)
	// Set up with the DNS wait if there is one, then without it.
	ensure(t, w, anyPoolbot(t, w), false)
	pb := poolbot(t, w, false)
	if len(w.Hosts) < 2 {
		t.Fatal("needs two hosts")
	}
	ctx := context.Background()
	first, second := w.Hosts[0], w.Hosts[1]
	// A 10 s TTL (a ttl change only: no drift), then an answer cached.
	for _, dc := range []string{"eqiad", "codfw"} {
		if err := w.SetDiscovery(ctx, dc, dc == "eqiad", 10); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, dc := range []string{"eqiad", "codfw"} {
			_ = w.SetDiscovery(context.Background(), dc, pooled(t, w, dc), 1)
		}
	})
	time.Sleep(1500 * time.Millisecond) // the 1 s answers cached before expire
	if got, err := w.Resolves(ctx, first); err != nil || got != "eqiad" {
		t.Fatalf("%s resolves %s (%v), want eqiad", first.Name, got, err)
	}
	primed := time.Now()

	proceed := w.Systemctl.Hold(second.Addr)
	defer proceed()
	asked := len(w.Systemctl.Restarts())
	from := pb.mark()
	pb.say(t, "!pool apus codfw T422166 story 3: pool without waiting for DNS")
	deadline := time.Now().Add(step)
	for !contains(w.Systemctl.Restarts()[asked:], second.Addr) {
		if time.Now().After(deadline) {
			t.Fatalf("the second host's restart was not asked for; transcript:\n%s", pb.transcript(from))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s restarted, and %s's restart asked, %s after the old answer was cached for 10 s", first.Name, second.Name, time.Since(primed).Round(time.Millisecond))
	if err := w.WaitResolves(ctx, "codfw", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	proceed()
	failed := pb.wait(t, from, step, "pool apus in codfw FAILED")
	t.Logf("FAILED notice: %s", failed)
	for _, want := range []string{second.Addr, "write-then-read probe FAILED (BLOB_UPLOAD_UNKNOWN)", "handoff on restricted@" + first.Addr,
		`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}`} {
		if !strings.Contains(failed, want) {
			t.Errorf("FAILED notice lacks %q", want)
		}
	}
	if got, err := w.WritesTo(ctx, first); err != nil || got != "eqiad" {
		t.Fatalf("%s, restarted too early, writes to %s (%v), want eqiad", first.Name, got, err)
	}
	if got, _ := w.Resolves(ctx, first); got != "codfw" {
		t.Fatalf("%s resolves %s now", first.Name, got)
	}

	// The operator restarts again now that every resolver says codfw.
	from2 := pb.mark()
	pb.say(t, "!restart apus T422166 story 3: restart after DNS followed")
	pb.wait(t, from2, step, "restart apus DONE")
	for _, h := range w.Hosts {
		if got, err := w.WritesTo(ctx, h); err != nil || got != "codfw" {
			t.Fatalf("after the restart: %s writes to %s (%v), want codfw", h.Name, got, err)
		}
	}
	t.Logf("transcript:\n%s", pb.transcript(from))
}

// pooled reads apus' discovery object of dc.
func pooled(t *testing.T, w *incident.World, dc string) bool {
	t.Helper()
	node, ok := w.Etcd.Get(t, "/conftool/v1/discovery/apus/"+dc)
	if !ok {
		t.Fatalf("no apus/%s discovery object", dc)
	}
	var obj struct{ Pooled bool }
	if err := json.Unmarshal([]byte(node.Value), &obj); err != nil {
		t.Fatalf("apus/%s: %v", dc, err)
	}
	return obj.Pooled
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
