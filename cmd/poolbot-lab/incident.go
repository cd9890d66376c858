package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/incident"
)

// incidentDebounce is the drift watch's debounce in the incident world:
// long enough for story 1's failing pushes to come first.
const incidentDebounce = 20 * time.Second

// runIncident is `poolbot-lab -incident`: T422166's world on real parts
// (testenv/incident: two Ceph RGW apus sites, gdnsd and a recursor per
// datacenter fed from etcd, registry hosts on S3 each resolving through
// its datacenter's recursor, HAProxy with a pybal stand-in), and poolbot
// in console mode. With -scenario it plays incident.Stories and prints
// what happens, poolbot's channel transcript included; otherwise the
// terminal is poolbot's console.
func runIncident(ctx context.Context, o options, stdin io.Reader, out io.Writer) (err error) {
	began := time.Now()
	if err := incident.Check(); err != nil {
		return fmt.Errorf("the incident world cannot run here: %w", err)
	}
	dir, cleanup, err := labDir(o, "poolbot-lab-incident-")
	if err != nil {
		return err
	}
	defer cleanup()
	helper, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "poolbot lab (incident world): starting in %s\n", dir)
	w, err := incident.Launch(ctx, dir, incident.Options{
		Hosts:  o.hosts,
		Pooled: map[string]bool{"eqiad": true, "codfw": false},
		Log:    func(f string, a ...any) { fmt.Fprintf(out, "  "+f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.WaitResolves(ctx, "eqiad", 30*time.Second); err != nil {
		return err
	}
	bin := o.poolbot
	if bin == "" {
		if bin, err = incident.BuildPoolbot(ctx, dir); err != nil {
			return err
		}
	}
	var rss int64
	for _, pid := range w.PIDs() {
		if n, err := testenv.RSS(pid); err == nil {
			rss += n
		}
	}
	fmt.Fprintf(out, "poolbot lab: up in %s (world RSS %.0f MiB)\n", time.Since(began).Round(time.Millisecond), float64(rss)/(1<<20))
	fmt.Fprintf(out, "  apus.discovery.wmnet: eqiad %s, codfw %s (port %d); pooled: eqiad, not codfw\n", w.Apus.Address("eqiad"), w.Apus.Address("codfw"), w.Apus.Port)
	for _, h := range w.Hosts {
		fmt.Fprintf(out, "  %s: registry %s (resolves through the %s recursor)\n", h.Name, h.Reg.Addr, w.DC)
	}
	fmt.Fprintf(out, "  docker-registry.discovery.wmnet (HAProxy): %s\n", w.LB.URL())

	var pb *incident.Poolbot
	defer func() {
		if pb != nil {
			pb.Stop()
		}
	}()
	start := func(dnsWait bool, console bool) (*incident.Poolbot, error) {
		if pb != nil && pb.DNSWait == dnsWait {
			return pb, nil
		}
		if pb != nil {
			pb.Stop()
			pb = nil
		}
		po := incident.PoolbotOptions{Binary: bin, Dir: dir, Helper: helper, DNSWait: dnsWait, Debounce: incidentDebounce}
		if console {
			po.Stdin, po.Echo = stdin, out
		}
		p, err := incident.StartPoolbot(ctx, w, po)
		if err != nil {
			return nil, err
		}
		pb = p
		return p, nil
	}

	if !o.scenario {
		p, err := start(true, true)
		if errors.Is(err, incident.ErrNoDNSStep) {
			fmt.Fprintf(out, "poolbot lab: %v; running without it\n", err)
			p, err = start(false, true)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "poolbot lab: you are alice on poolbot's console; try !check apus, !pool apus codfw T422166 test. Ctrl-D quits.")
		select {
		case <-p.Done():
		case <-ctx.Done():
		}
		return nil
	}

	stage := &incident.Stage{W: w, Debounce: incidentDebounce,
		Poolbot: func(dnsWait bool) (*incident.Poolbot, error) { return start(dnsWait, false) },
		Logf: func(f string, a ...any) {
			fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(fmt.Sprintf(f, a...), "\n", "\n    "))
		}}
	var failed []string
	for _, s := range incident.Stories {
		fmt.Fprintf(out, "\n=== story %s\n", s.Name)
		t0 := time.Now()
		err := s.Run(stage, ctx)
		switch {
		case errors.Is(err, incident.ErrNoDNSStep):
			fmt.Fprintf(out, "--- skipped: %v\n", err)
		case err != nil:
			fmt.Fprintf(out, "--- FAILED after %s: %v\n", time.Since(t0).Round(time.Second), err)
			failed = append(failed, s.Name)
		default:
			fmt.Fprintf(out, "--- passed in %s\n", time.Since(t0).Round(time.Second))
		}
	}
	if stage.IncidentError != "" {
		fmt.Fprintf(out, "\nthe incident's error, as the pusher saw it: %s\n", stage.IncidentError)
	}
	if len(failed) > 0 {
		return fmt.Errorf("incident scenario: %d stories failed: %s (files in %s with -keep)", len(failed), strings.Join(failed, "; "), dir)
	}
	fmt.Fprintln(out, "\nincident scenario: all stories passed")
	return nil
}
