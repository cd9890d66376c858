package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"poolbot/internal/testenv/apus"
	"poolbot/internal/testenv/registry"
)

// The stories run in the order of Stories, each leaving the state the
// next one starts from; run alone, a story first brings the world to its
// start through poolbot (ensure).

// Stage is what the stories play on.
type Stage struct {
	W *World
	// Poolbot returns the running poolbot with the DNS step on or off,
	// restarting it when needed; ErrNoDNSStep if it has none.
	Poolbot func(dnsWait bool) (*Poolbot, error)
	// Logf narrates.
	Logf func(format string, args ...any)
	// Debounce is poolbot's drift watch debounce (the incident's pushes
	// must fail before it acts).
	Debounce time.Duration
	// Step bounds one wait for poolbot (default 3m: machines are shared).
	Step time.Duration
	// IncidentError is the push error story 1 saw (set by it).
	IncidentError string
}

// Story is one story.
type Story struct {
	Name string
	Run  func(s *Stage, ctx context.Context) error
}

// Stories are the three stories of issue 14, in order.
var Stories = []Story{
	{"1. the incident: apus repooled in codfw by hand, registries not restarted", (*Stage).Incident},
	{"2. with poolbot: !depool apus codfw, a deployer pushing outside the deploy block", (*Stage).DepoolWithPoolbot},
	{"3. too early: a restart before the host's resolver follows, caught by the probe", (*Stage).TooEarly},
	{"4. the hosts' apus site down: !check fails closed, naming the site", (*Stage).SiteDown},
}

func (s *Stage) step() time.Duration {
	if s.Step == 0 {
		return 3 * time.Minute
	}
	return s.Step
}

// anyPoolbot is poolbot with the DNS step if it has one, else without.
func (s *Stage) anyPoolbot() (*Poolbot, error) {
	pb, err := s.Poolbot(true)
	if errors.Is(err, ErrNoDNSStep) {
		return s.Poolbot(false)
	}
	return pb, err
}

// Pooled reads apus' discovery object of dc.
func (w *World) Pooled(ctx context.Context, dc string) (bool, error) {
	node, err := w.Etcd.GetValue(ctx, "/conftool/v1/discovery/apus/"+dc)
	if err != nil {
		return false, err
	}
	var obj struct{ Pooled bool }
	if err := json.Unmarshal([]byte(node), &obj); err != nil {
		return false, fmt.Errorf("apus/%s: %w", dc, err)
	}
	return obj.Pooled, nil
}

// ensure brings apus/codfw to pooled (or not) through poolbot, and every
// host onto the site its resolver then answers. A story that failed can
// leave the hosts split between the sites (story 3 stopped before the
// operator's restart): then, once the resolvers follow, poolbot restarts
// them, so that one story's failure does not become the next one's.
func (s *Stage) ensure(ctx context.Context, pb *Poolbot, codfwPooled bool) error {
	w := s.W
	now, err := w.Pooled(ctx, "codfw")
	if err != nil {
		return err
	}
	verb, want := "depool", "eqiad"
	if codfwPooled {
		verb, want = "pool", "codfw"
	}
	if now != codfwPooled {
		from := pb.Mark()
		if err := s.say(pb, fmt.Sprintf("!%s apus codfw T422166 set up the story", verb)); err != nil {
			return err
		}
		line, err := s.outcome(ctx, pb, from, verb+" apus in codfw")
		if err != nil {
			return err
		}
		if strings.Contains(line, " FAILED") {
			// Without a DNS step the restarts may come before the
			// resolvers follow (story 3): restarted below.
			s.Logf("set-up: %s", line)
		}
	}
	err = s.allWriteTo(ctx, want, "set-up")
	if err == nil {
		return nil
	}
	s.Logf("%v; restarting the hosts once their resolvers answer %s", err, want)
	if err := w.WaitResolves(ctx, want, 30*time.Second); err != nil {
		return err
	}
	from := pb.Mark()
	if err := s.say(pb, "!restart apus T422166 set up the story after DNS followed"); err != nil {
		return err
	}
	line, err := s.outcome(ctx, pb, from, "restart apus")
	if err != nil {
		return err
	}
	if !strings.Contains(line, " DONE") {
		return fmt.Errorf("set-up: %s", line)
	}
	return s.allWriteTo(ctx, want, "set-up")
}

// outcome waits for the DONE or FAILED notice of what (e.g. "restart
// apus") after from.
func (s *Stage) outcome(ctx context.Context, pb *Poolbot, from int, what string) (string, error) {
	deadline := time.Now().Add(s.step())
	for {
		for _, end := range []string{" DONE", " FAILED"} {
			if line, ok := pb.Find(from, what+end); ok {
				return line, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no %s DONE or FAILED after %s; transcript:\n%s", what, s.step(), pb.Transcript(from))
		}
		select {
		case <-pb.Done():
			return "", fmt.Errorf("poolbot exited while waiting for %s", what)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Stage) say(pb *Poolbot, line string) error {
	s.Logf("alice> %s", line)
	return pb.Say(line)
}

// allWriteTo checks that every host's registry writes to dc's site, and
// holds connections to that site only (one push can go through while
// the host is split).
func (s *Stage) allWriteTo(ctx context.Context, dc, when string) error {
	var g errgroup.Group
	for _, h := range s.W.Hosts {
		g.Go(func() error { return s.writesOnlyTo(ctx, h, dc) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("%s: %w", when, err)
	}
	return nil
}

// writesOnlyTo checks that h's registry writes to dc's site and holds
// connections to it alone.
func (s *Stage) writesOnlyTo(ctx context.Context, h *Host, dc string) error {
	got, err := s.W.WritesTo(ctx, h)
	if err != nil {
		return err
	}
	if got != dc {
		return fmt.Errorf("%s writes to %s, want %s", h.Name, got, dc)
	}
	sites, err := s.W.ConnectedSites(h)
	if err != nil {
		return err
	}
	if !slices.Equal(sites, []string{dc}) {
		return fmt.Errorf("%s's registry holds S3 connections to %v, want %s only", h.Name, sites, dc)
	}
	return nil
}

// IncidentText is what the registry answers in T422166, as a pusher
// reports it.
const IncidentText = `HTTP 404: {"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}`

// Incident is T422166: an operator repools apus in codfw by hand
// (confctl, straight to etcd). DNS follows, the registries are not
// restarted: their kept S3 connections lead to eqiad, new ones (a push's
// concurrent uploads need more than the two kept idle) to codfw, and a
// push through the load balancer fails with the registry's own
// BLOB_UPLOAD_UNKNOWN. poolbot's drift watch sees the change, queues a
// restart of the hosts and runs it; the same push then succeeds, and
// lands in codfw.
func (s *Stage) Incident(ctx context.Context) error {
	w := s.W
	pb, err := s.anyPoolbot()
	if err != nil {
		return err
	}
	if err := s.ensure(ctx, pb, false); err != nil {
		return err
	}
	from := pb.Mark()
	s.Logf("every registry host writes to eqiad; operator, by hand: confctl --object-type discovery select 'dnsdisc=apus,name=codfw' set/pooled=true")
	changed := time.Now()
	if err := w.SetDiscovery(ctx, "codfw", true, 1); err != nil {
		return err
	}
	if err := w.WaitResolves(ctx, "codfw", 20*time.Second); err != nil {
		return err
	}
	s.Logf("DNS moved: every host resolves %s to codfw after %s; no registry restarted", "apus.discovery.wmnet", time.Since(changed).Round(time.Millisecond))

	// Pushes until one fails, before the drift watch acts.
	var failure *registry.PushError
	for attempt := 1; failure == nil; attempt++ {
		if time.Since(changed) > s.Debounce-3*time.Second {
			return fmt.Errorf("no push failed in %d attempts before poolbot's drift watch acts", attempt-1)
		}
		err := w.Push(ctx, "restricted/mediawiki-multiversion", "T422166", 8)
		var pe *registry.PushError
		switch {
		case err == nil:
			s.Logf("push %d through the balancer went through", attempt)
		case errors.As(err, &pe) && pe.Code() == "BLOB_UPLOAD_UNKNOWN":
			failure = pe
		default:
			s.Logf("push %d failed otherwise: %v", attempt, err)
		}
	}
	s.IncidentError = failure.Error()
	s.Logf("push through the balancer FAILED: %v", failure)
	if !strings.Contains(failure.Error(), IncidentText) {
		return fmt.Errorf("push failed with %v, want %s", failure, IncidentText)
	}

	for _, want := range [][]string{{"drift: apus/codfw pooled=true changed outside poolbot"}, {"restart apus (as poolbot)"}, {"restart apus DONE"}} {
		if _, err := pb.Wait(ctx, from, s.step(), want...); err != nil {
			return err
		}
	}
	if err := w.Push(ctx, "restricted/mediawiki-multiversion", "T422166", 8); err != nil {
		return fmt.Errorf("the same push after poolbot's restarts: %w", err)
	}
	s.Logf("the same push after poolbot's restarts: ok")
	if err := s.allWriteTo(ctx, "codfw", "after"); err != nil {
		return err
	}
	s.Logf("transcript:\n%s", pb.Transcript(from))
	return nil
}

// deployer pushes in a loop as scap does: only while it holds scap's
// global lock (F_SETLK, exclusive, non-blocking); while poolbot holds it
// (the deploy block) it waits.
type deployer struct {
	mu                      sync.Mutex
	pushes, blocked, errors int
	errs                    []string
	stop, done              chan struct{}
	once                    sync.Once
}

func startDeployer(w *World, lockPath string) (*deployer, error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		return nil, err
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
			lk := unix.Flock_t{Type: unix.F_WRLCK}
			if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
				d.mu.Lock()
				d.blocked++
				d.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
				continue
			}
			err := w.Push(context.Background(), "restricted/mediawiki-multiversion", fmt.Sprintf("deploy-%d", i), 3)
			unlock := unix.Flock_t{Type: unix.F_UNLCK}
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
	return d, nil
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

func (d *deployer) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(p, b, e int) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		p, b, e := d.counts()
		if cond(p, b, e) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("deployer: %s: pushes %d, blocked %d, errors %d", what, p, b, e)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DepoolWithPoolbot: the same kind of change through poolbot, with its
// DNS step. A deployer pushes all along outside the deploy block: 0
// errors before and after `!depool apus codfw`, blocked during it.
func (s *Stage) DepoolWithPoolbot(ctx context.Context) error {
	pb, err := s.Poolbot(true)
	if err != nil {
		return err
	}
	if err := s.ensure(ctx, pb, true); err != nil {
		return err
	}
	d, err := startDeployer(s.W, pb.GlobalLock)
	if err != nil {
		return err
	}
	defer d.finish()
	if err := d.waitFor(ctx, s.step(), "two pushes before", func(p, _, _ int) bool { return p >= 2 }); err != nil {
		return err
	}
	before, _, _ := d.counts()
	from := pb.Mark()
	if err := s.say(pb, "!depool apus codfw T422166 story 2: depool apus in codfw with poolbot"); err != nil {
		return err
	}
	if _, err := pb.Wait(ctx, from, s.step(), "depool apus in codfw DONE"); err != nil {
		return err
	}
	during, _, _ := d.counts()
	if err := d.waitFor(ctx, s.step(), "two pushes after", func(p, _, _ int) bool { return p >= during+2 }); err != nil {
		return err
	}
	d.finish()
	pushes, blocked, errs := d.counts()
	s.Logf("deployer: %d pushes before, %d after; blocked %d times while poolbot held the deploy block; %d errors", before, pushes-before, blocked, errs)
	if errs != 0 {
		return fmt.Errorf("the deployer's pushes failed %d times: %s", errs, strings.Join(d.errs, "\n"))
	}
	if blocked == 0 {
		return errors.New("the deployer was never blocked: poolbot did not hold the deploy block")
	}
	for _, want := range []string{"deploy block taken", "conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw", "DNS: ", "deploy block released", "END (PASS)"} {
		if _, ok := pb.Find(from, want); !ok {
			return fmt.Errorf("transcript lacks %q:\n%s", want, pb.Transcript(from))
		}
	}
	if err := s.allWriteTo(ctx, "eqiad", "after"); err != nil {
		return err
	}
	s.Logf("transcript:\n%s", pb.Transcript(from))
	return nil
}

// oldAnswerTTL is how long the recursors keep the old answer in TooEarly.
const oldAnswerTTL = 15

// TooEarly: the DNS wait off, and the recursors holding the old answer
// for 15 s. `!pool apus codfw` restarts the first host at once: its
// registry resolves eqiad from the cache and stays there. The second
// host's restart is held until its resolver answers codfw (the cache
// wiped once gdnsd answers codfw). The probe after it, across the first
// host, fails with the registry's BLOB_UPLOAD_UNKNOWN, and the request
// fails quoting it. An operator's !restart sets it right.
//
// Everything the story says of the first host holds only while the
// recursor still gives eqiad: once it gives codfw, any connection the
// first host's registry opens leads to codfw, and its uploads can start
// in one site and go on in the other (the probe then fails at the first
// host: "Range "0-0" after a 256-byte chunk"). So the caching is checked
// (holdOldAnswer) and the first host is looked at within the 15 s.
func (s *Stage) TooEarly(ctx context.Context) error {
	w := s.W
	if len(w.Hosts) < 2 {
		return errors.New("needs two hosts")
	}
	pb, err := s.anyPoolbot()
	if err != nil {
		return err
	}
	if err := s.ensure(ctx, pb, false); err != nil {
		return err
	}
	if pb, err = s.Poolbot(false); err != nil {
		return err
	}
	first, second := w.Hosts[0], w.Hosts[1]
	// A 15 s TTL (a ttl change only: not drift), then an answer cached;
	// the first host's restart and probe come within it even on a loaded
	// machine (2-5 s here).
	setTTL := func(ttl int) error {
		for _, dc := range []string{"eqiad", "codfw"} {
			p, err := w.Pooled(ctx, dc)
			if err != nil {
				return err
			}
			if err := w.SetDiscovery(ctx, dc, p, ttl); err != nil {
				return err
			}
		}
		return nil
	}
	if err := setTTL(oldAnswerTTL); err != nil {
		return err
	}
	defer func() { _ = setTTL(1) }()
	primed, err := s.holdOldAnswer(ctx, first)
	if err != nil {
		return err
	}
	window := oldAnswerTTL * time.Second
	s.Logf("the recursor of %s now holds eqiad's address for %s", w.DC, window)

	proceed := w.Systemctl.Hold(second.Addr)
	defer proceed()
	asked := len(w.Systemctl.Restarts())
	from := pb.Mark()
	if err := s.say(pb, "!pool apus codfw T422166 story 3: pool without waiting for DNS"); err != nil {
		return err
	}
	deadline := time.Now().Add(s.step())
	for !slices.Contains(w.Systemctl.Restarts()[asked:], second.Addr) {
		if line, ok := pb.Find(from, "pool apus in codfw FAILED"); ok {
			return fmt.Errorf("the request failed before the second host's restart, %s after the old answer was cached (it is held %s): %s",
				time.Since(primed).Round(time.Millisecond), window, line)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the second host's restart was not asked for; transcript:\n%s", pb.Transcript(from))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Logf("%s restarted and %s's restart asked %s after the old answer was cached; holding %s until its resolver says codfw",
		first.Name, second.Name, time.Since(primed).Round(time.Millisecond), second.Name)
	// The first host writes to eqiad, checked while the recursor still
	// answers eqiad (a push takes well under a second).
	if took := time.Since(primed); took > window-3*time.Second {
		return fmt.Errorf("the first host's restart and probe took %s of the %s the recursor holds the old answer: too little left to look at it", took.Round(time.Millisecond), window)
	}
	if err := s.writesOnlyTo(ctx, first, "eqiad"); err != nil {
		return fmt.Errorf("restarted too early: %w", err)
	}
	s.Logf("%s, restarted too early, writes to eqiad and holds connections to eqiad only", first.Name)
	// Rather than wait out the old answer: once gdnsd gives codfw's
	// clients codfw, the recursor's cache is wiped, as sre.dns.wipe-cache
	// does.
	if err := s.wipeOnceServed(ctx, "codfw"); err != nil {
		return err
	}
	if err := w.WaitResolves(ctx, "codfw", 30*time.Second); err != nil {
		return err
	}
	proceed()
	failed, err := pb.Wait(ctx, from, s.step(), "pool apus in codfw FAILED")
	if err != nil {
		return err
	}
	for _, want := range []string{second.Addr, "write-then-read probe FAILED (BLOB_UPLOAD_UNKNOWN)", "handoff on restricted@" + first.Addr,
		`{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry","detail":"blob upload unknown"}]}`} {
		if !strings.Contains(failed, want) {
			return fmt.Errorf("FAILED notice lacks %q: %s", want, failed)
		}
	}
	s.Logf("%s, restarted after its resolver followed, writes to codfw; the probe across the two failed", second.Name)

	// The operator restarts again now that every resolver says codfw.
	if err := s.say(pb, "!restart apus T422166 story 3: restart after DNS followed"); err != nil {
		return err
	}
	if _, err := pb.Wait(ctx, from, s.step(), "restart apus DONE"); err != nil {
		return err
	}
	if err := s.allWriteTo(ctx, "codfw", "after the operator's restart"); err != nil {
		return err
	}
	s.Logf("transcript:\n%s", pb.Transcript(from))
	return nil
}

// wipeOnceServed waits until every authoritative server answers the
// hosts' datacenter with site's address, then wipes the name from the
// hosts' recursor.
func (s *Stage) wipeOnceServed(ctx context.Context, site string) error {
	w := s.W
	deadline := time.Now().Add(20 * time.Second)
	for _, server := range w.DNS.Servers {
		for {
			addr, _, err := w.DNS.Ask(ctx, server, w.DC)
			if err == nil && w.Apus.SiteOf(addr.String()) == site {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("gdnsd %s does not answer %s's clients with %s's address: %s, %v", server, w.DC, site, addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rec := w.DNS.Recursor(w.DC)
	if rec == nil {
		return fmt.Errorf("no recursor for %s", w.DC)
	}
	return rec.WipeCache(ctx, apus.Name)
}

// holdOldAnswer makes h's recursor cache the answer it gives now (eqiad)
// with the oldAnswerTTL just written, checks that it did, and returns a
// time before the caching: the answer stays until oldAnswerTTL after it.
//
// gdnsd loads a changed state file only 1.02 s after the file last
// changed (extfile's settling timer in direct mode), later on a loaded
// machine: an answer cached before that has the old 1 s TTL, expires at
// once, and the next one is codfw's. So: wait until every authoritative
// server gives the new TTL, wipe what the recursor holds, then ask.
func (s *Stage) holdOldAnswer(ctx context.Context, h *Host) (time.Time, error) {
	w := s.W
	want := oldAnswerTTL * time.Second
	deadline := time.Now().Add(20 * time.Second)
	for _, server := range w.DNS.Servers {
		for {
			_, ttl, err := w.DNS.Ask(ctx, server, "")
			if err == nil && ttl == want {
				break
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("gdnsd %s does not answer with the %s TTL: TTL %s, %v", server, want, ttl, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	rec := w.DNS.Recursor(w.DC)
	if rec == nil {
		return time.Time{}, fmt.Errorf("no recursor for %s", w.DC)
	}
	if err := rec.WipeCache(ctx, apus.Name); err != nil {
		return time.Time{}, err
	}
	primed := time.Now()
	if got, err := w.Resolves(ctx, h); err != nil || got != "eqiad" {
		return time.Time{}, fmt.Errorf("%s resolves %s (%v), want eqiad", h.Name, got, err)
	}
	addr, ttl, err := w.DNS.Ask(ctx, netip.AddrPortFrom(rec.Addr, 53).String(), "")
	if err != nil {
		return time.Time{}, err
	}
	if w.Apus.SiteOf(addr.String()) != "eqiad" || ttl < want-2*time.Second {
		return time.Time{}, fmt.Errorf("the recursor of %s holds %s for %s more, want eqiad's address for about %s", w.DC, addr, ttl, want)
	}
	return primed, nil
}

// SiteDown: the gateway of the site the hosts write to stops. `!check
// apus` fails closed for every host, and what it says names the S3
// endpoint and the site's address (from the registry's S3 error, or from
// /debug/health once the registry's storage check failed). The gateway
// comes back and !check passes again.
func (s *Stage) SiteDown(ctx context.Context) error {
	w := s.W
	pb, err := s.anyPoolbot()
	if err != nil {
		return err
	}
	// Whichever site the hosts are on, all on the same one.
	codfw, err := w.Pooled(ctx, "codfw")
	if err != nil {
		return err
	}
	if err := s.ensure(ctx, pb, codfw); err != nil {
		return err
	}
	dc := "eqiad"
	if codfw {
		dc = "codfw"
	}
	site := w.Apus.Sites[dc]
	s.Logf("the hosts write to %s (%s); its gateway stops", dc, site.Host)
	if err := site.StopGateway(); err != nil {
		return err
	}
	start := pb.Mark()
	restarted := false
	defer func() {
		if !restarted {
			_ = site.StartGateway(context.WithoutCancel(ctx))
		}
	}()
	from := pb.Mark()
	if err := s.say(pb, "!check apus"); err != nil {
		return err
	}
	for _, h := range w.Hosts {
		line, err := pb.Wait(ctx, from, s.step(), h.Addr+": restricted: ")
		if err != nil {
			return err
		}
		if !strings.Contains(line, "FAILED") && !strings.Contains(line, "UNHEALTHY") || !strings.Contains(line, site.Host) || !strings.Contains(line, "apus.discovery.wmnet") {
			return fmt.Errorf("!check with %s down does not fail naming the site (%s): %s", dc, site.Host, line)
		}
	}
	if err := site.StartGateway(ctx); err != nil {
		return err
	}
	restarted = true
	s.Logf("%s's gateway is back", dc)
	deadline := time.Now().Add(s.step())
	for {
		from = pb.Mark()
		if err := s.say(pb, "!check apus"); err != nil {
			return err
		}
		ok := true
		for _, h := range w.Hosts {
			line, err := pb.Wait(ctx, from, s.step(), h.Addr+": restricted: ")
			if err != nil {
				return err
			}
			ok = ok && strings.Contains(line, "healthy, probe ok")
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("!check still fails after %s came back:\n%s", dc, pb.Transcript(from))
		}
		time.Sleep(time.Second)
	}
	s.Logf("transcript:\n%s", pb.Transcript(start))
	return nil
}
