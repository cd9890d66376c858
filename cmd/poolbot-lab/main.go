// Command poolbot-lab brings up a one-command local world for poolbot, all
// real parts on loopback, and runs poolbot in it:
//
//   - an IRC network (InspIRCd with Atheme services), operator accounts
//     alice and bob and the bot's account registered;
//   - N docker registries (CNCF distribution) standing in for the registry
//     hosts, on 127.0.0.2, 127.0.0.3, … with the same ports on each host,
//     like production;
//   - etcd with the v2 API holding apus' conftool discovery objects, pooled
//     in eqiad and codfw;
//   - scap's lock files, probed and taken with real fcntl locks;
//   - a wikitech stand-in answering the MediaWiki API (action=query and
//     action=parse) with a Deployments page whose window starts soon;
//   - a "systemctl" for the local executor: this binary, run by poolbot
//     with POOLBOT_TEST_CTL set, restarts the registry processes; with
//     -executor cumin, poolbot resolves the hosts (hosts_query
//     "A:docker-registry") and restarts them with the real cumin, over an
//     sshd on each host's address, where this binary is systemctl again;
//   - poolbot itself: the poolbot binary, built with go build from this
//     repository and run with a generated config, exactly as `poolbot run`
//     runs in production (nothing of the lab links into it).
//
// Then it is an operator console (lines go to the channel as alice) or,
// with -scenario, it plays the main stories unattended and prints the
// channel transcript. See -help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"poolbot/internal/testenv/site"
)

func main() {
	// First: poolbot runs this binary as every host's "systemctl", and the
	// lab runs it as scap lock holders.
	site.Main()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	hosts               int
	dir                 string
	keep                bool
	scenario            bool
	incident            bool
	windowIn, windowLen time.Duration
	scapHold            time.Duration
	pace, perHost       time.Duration
	margin              time.Duration
	poolbot             string
	install             bool
	fastIRC             bool
	executor            string
	dns                 bool
}

// timing is the config's durations, as YAML.
type timing struct{ pace, perHost, margin string }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("poolbot-lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.hosts, "hosts", 4, "registry hosts (127.0.0.2 …)")
	fs.StringVar(&o.dir, "dir", "", "directory for the lab's files (default: a new temporary one, removed at exit)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, database, transcript)")
	fs.BoolVar(&o.scenario, "scenario", false, "play the stories unattended, print the transcript, exit 0 if all passed")
	fs.BoolVar(&o.incident, "incident", false, "T422166's world instead (incident.go): registries on S3 (two Ceph RGW apus sites), real DNS, HAProxy; poolbot on a console; with -scenario its three stories")
	fs.DurationVar(&o.windowIn, "window-in", 0, "the deployment window starts this long after start-up, with -scenario after story 1 starts (default 2m, scenario 1s)")
	fs.DurationVar(&o.windowLen, "window-len", 0, "and lasts this long (default 5m, scenario 20s)")
	fs.DurationVar(&o.scapHold, "scap-hold", 6*time.Second, "scenario: how long the scap run holds the lock")
	fs.DurationVar(&o.pace, "pace", 0, "pause between hosts (default 5s, scenario 1s)")
	fs.DurationVar(&o.perHost, "per-host-estimate", 0, "poolbot's time estimate per host (default 20s, scenario 3s)")
	fs.DurationVar(&o.margin, "margin", 0, "calendar lead and tail margins (default 30s, scenario 2s)")
	fs.StringVar(&o.poolbot, "poolbot", "", "a poolbot binary to run (default: go build ./cmd/poolbot)")
	fs.BoolVar(&o.fastIRC, "fast-irc", false, "poolbot talks fast on a relaxed IRC port (for tests); default: Libera-like pacing and flood limits")
	fs.StringVar(&o.executor, "executor", "local", "how poolbot restarts the hosts: local (the lab binary as systemctl) or cumin (the real cumin, over an sshd on each host)")
	fs.BoolVar(&o.dns, "dns", true, fmt.Sprintf("the DNS step: real gdnsd and pdns-recursor, hosts resolving through their datacenter's recursor (needs root; the lab's record TTL is %ds)", labTTL))
	fs.BoolVar(&o.install, "install", true, "as root, install missing Debian packages with scripts/install-test-deps.sh")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: poolbot-lab [flags]\n\nA local world of real parts with poolbot running in it; see the package doc.\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s\n", consoleHelp)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 || o.hosts < 2 || o.hosts > 200 || (o.executor != "local" && o.executor != "cumin") {
		fmt.Fprintln(stderr, "poolbot-lab: takes only flags; -hosts must be 2..200, -executor local or cumin")
		return 2
	}
	def := func(d *time.Duration, interactive, scenario time.Duration) {
		if *d == 0 {
			*d = interactive
			if o.scenario {
				*d = scenario
			}
		}
	}
	def(&o.windowIn, 2*time.Minute, time.Second)
	def(&o.windowLen, 5*time.Minute, 20*time.Second)
	def(&o.pace, 5*time.Second, time.Second)
	def(&o.perHost, 20*time.Second, 3*time.Second)
	def(&o.margin, 30*time.Second, 2*time.Second)

	if o.incident {
		if err := runIncident(ctx, o, stdin, stdout); err != nil {
			fmt.Fprintln(stderr, "poolbot-lab:", err)
			return 1
		}
		return 0
	}
	if err := runLab(ctx, o, stdin, stdout); err != nil {
		fmt.Fprintln(stderr, "poolbot-lab:", err)
		return 1
	}
	return 0
}

// labDir is the lab's directory: -dir (made if missing), or a new
// temporary one named from pattern, removed by cleanup unless -keep.
func labDir(o options, pattern string) (dir string, cleanup func(), err error) {
	cleanup = func() {}
	if dir = o.dir; dir == "" {
		if dir, err = os.MkdirTemp("", pattern); err != nil {
			return "", nil, err
		}
		if !o.keep {
			cleanup = func() { os.RemoveAll(dir) }
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return abs, cleanup, nil
}

// runLab is one run of the lab.
func runLab(ctx context.Context, o options, stdin io.Reader, out io.Writer) (err error) {
	began := time.Now()
	if err := checkDeps(ctx, o, out); err != nil {
		return err
	}
	dir, cleanup, err := labDir(o, "poolbot-lab-")
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(out, "poolbot lab: starting in %s\n", dir)

	w, err := startLab(ctx, o, dir, out)
	if err != nil {
		return err
	}
	defer w.close()

	// The calendar: the lab's window, then a window a day later and one a
	// week later, so the page covers the coming weeks as wikitech's does.
	now := time.Now().UTC().Truncate(time.Second)
	window := labWindow{Name: "Lab backport window", Start: now.Add(o.windowIn), End: now.Add(o.windowIn + o.windowLen), Deployers: []string{"bob"}}
	w.wiki.setWindows([]labWindow{window,
		{Name: "UTC late backport window", Start: now.Add(26 * time.Hour), End: now.Add(27 * time.Hour), Deployers: []string{"bob"}},
		{Name: "MediaWiki train - Utc-0+Utc-7 Version", Start: now.Add(7*24*time.Hour + 2*time.Hour), End: now.Add(7*24*time.Hour + 4*time.Hour), Deployers: []string{"alice"}},
	})
	if o.scenario {
		// Story 1 places the window when it starts (wiki.pin), so the time
		// start-up takes does not matter; until then it floats ahead of
		// each calendar read, and poolbot re-reads the calendar every few
		// seconds. Long enough to outlast poolbot's 1m refresh as well.
		w.wiki.floatFirst(3*time.Second, max(o.windowLen, 70*time.Second))
	}
	if err := w.writeConfig(timing{pace: o.pace.String(), perHost: o.perHost.String(), margin: o.margin.String()}); err != nil {
		return err
	}

	t := newTranscript(out)
	p, err := connectParticipants(ctx, w.irc)
	if err != nil {
		return fmt.Errorf("IRC clients: %w", err)
	}
	defer p.close()
	recCtx, stopRec := context.WithCancel(context.WithoutCancel(ctx))
	recDone := make(chan struct{})
	go func() { defer close(recDone); p.record(recCtx, t) }()
	defer func() { stopRec(); <-recDone }()

	if err := w.startPoolbot(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "poolbot lab: ready in %.1fs\n", time.Since(began).Seconds())
	printWelcome(out, w, window, o)

	if o.scenario {
		s := &scenario{w: w, p: p, t: t, o: o, out: out}
		err = runScenario(ctx, s)
		if err != nil {
			err = fmt.Errorf("scenario failed: %w\npoolbot's log: %s\n%s", err, w.logPath, tail(w.logPath, 3000))
		}
	} else {
		err = console(ctx, w, p, t, stdin)
	}
	// poolbot stops as under systemd: SIGTERM, it finishes its host,
	// releases the deploy block, flushes SAL and quits IRC (the transcript
	// shows the QUIT).
	stopping := t.len()
	w.stopPoolbot()
	if _, _, werr := t.wait(context.Background(), stopping, 5*time.Second, "* poolbot quit"); werr != nil {
		t.note("poolbot stopped without a QUIT in the channel")
	}
	if o.keep || o.dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "transcript.txt"), []byte(strings.Join(t.all(), "\n")+"\n"), 0o644)
	}
	return err
}

func printWelcome(out io.Writer, w *labEnv, win labWindow, o options) {
	last := w.hosts[len(w.hosts)-1]
	when := win.Start.Format("15:04:05") + "–" + win.End.Format("15:04:05") + " UTC"
	if o.scenario {
		when = fmt.Sprintf("starts %s after story 1 does and lasts %s", o.windowIn, o.windowLen)
	}
	fmt.Fprintf(out, `
  IRC          %s (plain) or %s (TLS, CA %s), channel %s
               operators: alice / %s and bob / %s (NickServ accounts; SASL PLAIN or /msg NickServ IDENTIFY)
               e.g. irssi -c 127.0.0.1 -p %s -n carol, then /join %s  (anyone may !status, !windows, !check)
  calendar     %q %s (deployer bob), served at %s
  registries   %s..%s, API port %d, debug port %d (curl http://%s:%d/debug/health)
  etcd         %s (curl %s/v2/keys/conftool/v1/discovery/apus/codfw)
  scap locks   %s
  poolbot      config %s, log %s
               /metrics and /healthz on http://%s
`, w.irc.Addr(), w.irc.TLSAddr(), w.irc.CAFile(), labChannel,
		labAccounts[0].Password, labAccounts[1].Password, strings.TrimPrefix(w.irc.Addr(), "127.0.0.1:"), labChannel,
		win.Name, when, w.wiki.APIURL(),
		w.hosts[0], last, w.port, w.debug, w.hosts[0], w.debug,
		w.etcd.ClientURL, w.etcd.ClientURL, w.lockDir, w.configPath, w.logPath, w.httpAddr)
	if !o.scenario {
		fmt.Fprintf(out, "\n%s\n\n", consoleHelp)
	} else {
		fmt.Fprintf(out, "\nscenario: three stories, unattended; the channel as alice sees it:\n\n")
	}
}
