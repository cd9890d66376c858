package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"poolbot"
)

// story is one of the scenario's unattended stories: what alice types,
// what the lab does meanwhile, and the lines the channel must show, in
// order.
type story struct {
	title string
	run   func(ctx context.Context, s *scenario) error
}

// scenario plays the stories against the running lab.
type scenario struct {
	w   *labEnv
	p   *participants
	t   *transcript
	o   options
	out io.Writer
	// cursor is where the next expectation starts looking.
	cursor int
}

// say sends a line as alice and moves the cursor to it.
func (s *scenario) say(text string) error {
	s.cursor = s.t.len()
	return s.p.alice.Privmsg(labChannel, text)
}

// expect waits for a line containing every one of subs after the cursor
// and moves the cursor past it.
func (s *scenario) expect(ctx context.Context, timeout time.Duration, subs ...string) error {
	_, i, err := s.t.wait(ctx, s.cursor, timeout, subs...)
	if err != nil {
		return err
	}
	s.cursor = i + 1
	return nil
}

// expectAll checks each line in order, each within timeout of the last.
func (s *scenario) expectAll(ctx context.Context, timeout time.Duration, lines ...[]string) error {
	for _, subs := range lines {
		if err := s.expect(ctx, timeout, subs...); err != nil {
			return err
		}
	}
	return nil
}

func stories(o options, hosts []string) []story {
	n := len(hosts)
	all := fmt.Sprintf("(%d/%d)", n, n)
	step := 60 * time.Second // generous: a CI machine is slow and shared
	if o.executor == "cumin" {
		// Every restart and check starts cumin (Python, then ssh): a
		// second or more each on a shared machine.
		step = 3 * time.Minute
	}
	// dnsLine is the SAL line of the DNS step, expected only with -dns.
	dnsLine := func(id int, text string) [][]string {
		if !o.dns {
			return nil
		}
		return [][]string{{fmt.Sprintf("!log poolbot #%d alice: DNS: apus.discovery.wmnet answers %s", id, text)}}
	}
	lines := func(parts ...[][]string) [][]string { return slices.Concat(parts...) }
	return []story{
		{"1. a depool blocked by a deployment window, then proceeding when it ends", func(ctx context.Context, s *scenario) error {
			// The window is placed now, not at start-up (see wiki.floatFirst).
			win := s.w.wiki.pin(time.Now(), o.windowIn, o.windowLen)
			s.t.note("%q is on the calendar %s–%s UTC", win.Name, win.Start.Format("15:04:05"), win.End.Format("15:04:05"))
			if err := s.say("!depool apus codfw T123456 lab: depool blocked by a deployment window"); err != nil {
				return err
			}
			return s.expectAll(ctx, step, lines([][]string{
				{"<poolbot>", "#1 queued: depool apus in codfw"},
				{"<poolbot>", "#1 depool apus in codfw (alice) waiting:", `deployment window "Lab backport window"`},
				{"<poolbot>", "#1 depool apus in codfw (alice) proceeding: all gates open"},
				{"!log poolbot #1 alice: START - depool apus in codfw: T123456"},
				{"!log poolbot #1 alice: deploy block taken"},
				{"!log poolbot #1 alice: conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw"}},
				dnsLine(1, "eqiad for codfw clients on 2/2 authoritative servers; waited "+poolbot.FormatDuration(labTTL*time.Second)+" for caches"),
				[][]string{
					{"!log poolbot #1 alice: restarted docker-registry-restricted.service on " + hosts[n-1], all},
					{"!log poolbot #1 alice: deploy block released"},
					{"!log poolbot #1 alice: END (PASS) - depool apus in codfw"}})...)
		}},
		{"2. a scap run holding up a pool until it finishes", func(ctx context.Context, s *scenario) error {
			// The run holds the lock until poolbot says it waits for scap,
			// then o.scapHold more: however slowly poolbot queues and
			// evaluates the pool, it finds the lock held.
			release, err := startScapHolder(s.w)
			if err != nil {
				return err
			}
			defer release()
			const what = "Backport for [[gerrit:4242|lab change (T123456)]]"
			s.t.note("a scap sync-world holds scap's global lock (shared) until poolbot waits for it, then %s more", o.scapHold)
			from := s.t.len()
			if err := s.p.logmsgbot.Privmsg(labChannel, "!log alice@deploy1003 Started scap sync-world: "+what); err != nil {
				return err
			}
			if _, _, err := s.t.wait(ctx, from, step, "<logmsgbot>", "Started scap"); err != nil {
				return err
			}
			began := time.Now()
			if err := s.say("!pool apus codfw T123456 lab: pool codfw back while a scap run holds it up"); err != nil {
				return err
			}
			if err := s.expectAll(ctx, step,
				[]string{"<poolbot>", "#2 queued: pool apus in codfw"},
				[]string{"<poolbot>", "#2 pool apus in codfw (alice) waiting:", "scap"}); err != nil {
				return err
			}
			select {
			case <-time.After(o.scapHold):
			case <-ctx.Done():
				return ctx.Err()
			}
			release()
			s.t.note("the scap run ends: its lock is released")
			secs := int(time.Since(began).Round(time.Second).Seconds())
			if err := s.p.logmsgbot.Privmsg(labChannel, fmt.Sprintf("!log alice@deploy1003 Finished scap sync-world: %s (duration: %02dm %02ds)", what, secs/60, secs%60)); err != nil {
				return err
			}
			return s.expectAll(ctx, step, lines([][]string{
				{"<logmsgbot>", "Finished scap sync-world"},
				{"<poolbot>", "#2 pool apus in codfw (alice) proceeding"},
				{"!log poolbot #2 alice: conftool action : set/pooled=true; selector: dnsdisc=apus,name=codfw"}},
				dnsLine(2, "codfw for codfw clients on 2/2 authoritative servers; waited "+poolbot.FormatDuration(labTTL*time.Second)+" for caches"),
				[][]string{{"!log poolbot #2 alice: END (PASS) - pool apus in codfw"}})...)
		}},
		{"3. a registry that fails on host 2 stops the restarts; fixed, !resume finishes them", func(ctx context.Context, s *scenario) error {
			s.w.ctl.Fail(hosts[1], true)
			s.t.note("the registry on host 2 (%s) will fail its restart", hosts[1])
			if err := s.say("!restart apus T123456 lab: a registry that fails on host 2"); err != nil {
				return err
			}
			if err := s.expectAll(ctx, step, lines([][]string{
				{"!log poolbot #3 alice: START - restart apus"}},
				dnsLine(3, "eqiad for eqiad clients on 2/2 authoritative servers; apus.discovery.wmnet answers codfw for codfw clients on 2/2 authoritative servers; no cache wait (no change by poolbot)"),
				[][]string{
					{"!log poolbot #3 alice: restarted docker-registry-restricted.service on " + hosts[0], fmt.Sprintf("(1/%d)", n)},
					{"!log poolbot #3 alice: END (FAIL) - restart apus: host 2/" + fmt.Sprint(n) + " " + hosts[1]}})...); err != nil {
				return err
			}
			if n > 2 {
				// "not touched: 127.0.0.4, 127.0.0.5" on the END line just seen.
				if _, _, err := s.t.wait(ctx, s.cursor-1, time.Second, "END (FAIL)", "not touched: "+joinHosts(hosts[2:])); err != nil {
					return fmt.Errorf("END (FAIL) does not name the hosts not touched (%s): %w", joinHosts(hosts[2:]), err)
				}
			}
			s.w.ctl.Fail(hosts[1], false)
			s.t.note("host 2 (%s) repaired", hosts[1])
			if err := s.say("!resume 3"); err != nil {
				return err
			}
			return s.expectAll(ctx, step,
				[]string{"!log poolbot #3 alice: RESUME by alice - restart apus from host 2/"},
				[]string{"!log poolbot #3 alice: restarted docker-registry-restricted.service on " + hosts[n-1], all},
				[]string{"!log poolbot #3 alice: END (PASS) - restart apus"})
		}},
	}
}

func joinHosts(hs []string) string { return strings.Join(hs, ", ") }

// runScenario plays every story and prints how long each took.
func runScenario(ctx context.Context, s *scenario) error {
	start := time.Now()
	if s.w.dns != nil {
		s.t.note("DNS: %s has a TTL of %ds in the lab (conftool's default is 300s), so the DNS step waits %ds after each change; hosts %s",
			s.w.dns.Record, labTTL, labTTL, s.w.describeHostDCs())
	}
	var lines []string
	for _, st := range stories(s.o, s.w.hosts) {
		s.t.note("=== %s", st.title)
		t0 := time.Now()
		if err := st.run(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", st.title, err)
		}
		lines = append(lines, fmt.Sprintf("  %-86s %5.1fs", st.title, time.Since(t0).Seconds()))
	}
	fmt.Fprintf(s.out, "\nscenario passed in %.1fs:\n", time.Since(start).Seconds())
	for _, l := range lines {
		fmt.Fprintln(s.out, l)
	}
	return nil
}
