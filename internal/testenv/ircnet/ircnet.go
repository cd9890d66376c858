// Package ircnet runs a throwaway IRC network on 127.0.0.1 for tests: an
// InspIRCd 3 ircd linked to Atheme 7.2 services (NickServ, ChanServ,
// SaslServ), both from Debian packages (`inspircd`, `atheme-services`). It
// is the same shape as Libera.Chat — an ircd plus Atheme — so the bot's real
// code paths run against it: NickServ accounts, SASL PLAIN, the IRCv3
// account-tag, server-time, echo-message and extended-join capabilities, and
// server-side flood control.
//
// Every file (configs, logs, Atheme's services.db) lives in one directory.
// The ircd listens on two client ports with different connect classes:
//
//   - Addr: a relaxed class for test clients, which may write as fast as
//     they like and connect as often as they like from 127.0.0.1.
//   - FloodAddr: the class under test, by default the one a Libera-like
//     network gives a normal client (a burst of about ten commands, then
//     one a second; a client that goes over is killed with "Excess Flood").
//     The bot connects here, so a bot that floods fails its tests.
//
// Facts about the daemons that shaped this package:
//
//   - InspIRCd 3 completes a client's registration on its once-a-second
//     pass, which an idle ircd runs a full second after the client's last
//     line. A pacemaker client keeps the ircd busy (pacemaker.go), so 001
//     comes at the next wall-clock second boundary: half a second on
//     average, still worth connecting clients in parallel.
//   - It runs with --nofork (and --runasroot as root, which it otherwise
//     refuses). Atheme runs in the foreground too (-n); both are children of
//     the test process, killed if it dies, and reaped.
//   - Atheme is configured without registration throttles, with up to 1000
//     logins per account, pbkdf2 at its minimum 10000 rounds and no e-mail
//     verification, so REGISTER works at once and SASL is fast.
//   - Atheme saves services.db when it stops, so Restart keeps accounts.
package ircnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// FloodClass is the InspIRCd connect class for clients on FloodAddr.
//
// InspIRCd adds a penalty of 1000 per command (2000 for JOIN, 4000 more for
// a NICK change after registration), takes CommandRate off every second, and
// acts when the penalty reaches Threshold×1000: with FakeLag it stops
// reading the client's commands until the penalty drops (and quits it with
// "RecvQ exceeded" once RecvQ bytes are waiting); without, it quits the
// client with "Excess Flood".
type FloodClass struct {
	Threshold   int  // commands; InspIRCd's default is 10
	CommandRate int  // penalty decay per second; 1000 = one command a second
	FakeLag     bool // delay instead of kill
	RecvQ       int  // bytes
	SoftSendQ   int  // bytes queued to the client before its commands are delayed
	HardSendQ   int  // bytes queued to the client before it is disconnected
}

// LiberaLike is a connect class as strict as the one a normal client gets
// on a big network: about ten commands in a burst, then one a second, and
// a client that goes over is killed with "Excess Flood" rather than lagged
// (Solanum, Libera.Chat's ircd, allows a burst of five and kills a client
// whose unprocessed lines pile up).
func LiberaLike() FloodClass {
	return FloodClass{Threshold: 10, CommandRate: 1000, FakeLag: false,
		RecvQ: 8192, SoftSendQ: 8192, HardSendQ: 1 << 20}
}

// Options configure a network. The zero value is valid.
type Options struct {
	// Flood is the connect class on FloodAddr; zero means LiberaLike().
	Flood FloodClass
	// Inspircd and Atheme are the daemons' paths; empty means look them up
	// in PATH and the sbin directories.
	Inspircd string
	Atheme   string
	// StartTimeout bounds the wait for the ircd to listen and the services
	// to link (default 30s).
	StartTimeout time.Duration
	// NoAccountTag leaves out the account-tag capability, as an ircd
	// without it would: clients cannot tell who sent a message.
	NoAccountTag bool
}

// Net is a running (or stopped) test network. Its methods are safe for
// concurrent use.
type Net struct {
	dir      string
	opts     Options
	linkPass string

	clientPort, floodPort, linkPort, tlsPort int

	mu     sync.Mutex
	ircd   *daemon
	atheme *daemon
	beat   *pacemaker // keeps the ircd's loop turning (pacemaker.go)
	closed bool
}

// daemon is one child process and the channel closed when it exits.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result; read after done is closed
}

// Start runs a network for the test and stops it when the test ends. It
// skips the test (fails it under CI) when a daemon is not installed. When
// the test failed, the daemons' log tails are written to the test log.
func Start(t testing.TB, opts Options) *Net {
	t.Helper()
	if opts.Inspircd == "" {
		opts.Inspircd = testenv.Need(t, "inspircd")
	}
	if opts.Atheme == "" {
		opts.Atheme = testenv.Need(t, "atheme-services")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Launch(ctx, dir, opts)
	if err != nil {
		t.Fatalf("ircnet: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ircnet: logs in %s:\n%s", dir, n.LogTails(20))
		}
		if err := n.Close(); err != nil {
			t.Errorf("ircnet: close: %v", err)
		}
	})
	return n
}

// Launch starts a network whose files live in dir (which must exist and
// should be empty or hold a previous run's files: a services.db there is
// reused). ctx bounds the start only; the daemons run until Close.
func Launch(ctx context.Context, dir string, opts Options) (*Net, error) {
	if opts.Flood == (FloodClass{}) {
		opts.Flood = LiberaLike()
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	var err error
	if opts.Inspircd == "" {
		if opts.Inspircd, err = testenv.Lookup("inspircd"); err != nil {
			return nil, fmt.Errorf("ircnet: %w", err)
		}
	}
	if opts.Atheme == "" {
		if opts.Atheme, err = testenv.Lookup("atheme-services"); err != nil {
			return nil, fmt.Errorf("ircnet: %w", err)
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("ircnet: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	n := &Net{dir: dir, opts: opts, linkPass: fmt.Sprintf("link%d", os.Getpid())}
	if err := n.prepareDir(); err != nil {
		return nil, err
	}
	// Free ports can be taken between probing and binding: try a few sets.
	for attempt := 1; ; attempt++ {
		if err := n.pickPorts(); err != nil {
			return nil, err
		}
		err = n.start(ctx)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, errBind) || attempt == 3 {
			return nil, err
		}
	}
}

// prepareDir writes the files that do not change across restarts.
func (n *Net) prepareDir() error {
	if err := os.WriteFile(n.path("motd.txt"), []byte("poolbot test network in "+n.dir+"\n"), 0o644); err != nil {
		return fmt.Errorf("ircnet: %w", err)
	}
	return writeTLSFiles(n.dir)
}

// checkDir refuses directory names the generated configs could not quote.
func checkDir(dir string) error {
	for _, r := range dir {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=,@%", r)
		if !ok {
			return fmt.Errorf("ircnet: directory %q: only letters, digits and /._-+=,@%% are allowed", dir)
		}
	}
	return nil
}

func (n *Net) pickPorts() error {
	// Below the ephemeral range (testenv.Port): Restart binds them again.
	ports := make([]int, 4)
	for i := range ports {
		for {
			p, err := testenv.Port("127.0.0.1")
			if err != nil {
				return fmt.Errorf("ircnet: %w", err)
			}
			if !slices.Contains(ports[:i], p) {
				ports[i] = p
				break
			}
		}
	}
	n.clientPort, n.floodPort, n.linkPort, n.tlsPort = ports[0], ports[1], ports[2], ports[3]
	return nil
}

// Addr is host:port of the relaxed client port, for test clients.
func (n *Net) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.clientPort) }

// FloodAddr is host:port of the port whose connect class is Options.Flood,
// for the client under test.
func (n *Net) FloodAddr() string { return "127.0.0.1:" + strconv.Itoa(n.floodPort) }

// TLSAddr is host:port of a TLS client port with the same connect class as
// FloodAddr. Its certificate is for 127.0.0.1, signed by the CA in CAFile.
func (n *Net) TLSAddr() string { return "127.0.0.1:" + strconv.Itoa(n.tlsPort) }

// CAFile is the PEM file of the CA that signed the TLS port's certificate.
func (n *Net) CAFile() string { return n.path("ca.pem") }

// Dir is the directory holding the configs, logs and services.db.
func (n *Net) Dir() string { return n.dir }

var errBind = errors.New("ircnet: inspircd could not bind its ports")

// start writes the configs and starts both daemons, returning once the
// services have linked.
func (n *Net) start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("ircnet: network is closed")
	}
	if n.ircd != nil {
		return errors.New("ircnet: network is already running")
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.StartTimeout)
	defer cancel()

	if err := os.WriteFile(n.path("inspircd.conf"), []byte(n.inspircdConf()), 0o600); err != nil {
		return fmt.Errorf("ircnet: %w", err)
	}
	if err := os.WriteFile(n.path("atheme.conf"), []byte(n.athemeConf()), 0o600); err != nil {
		return fmt.Errorf("ircnet: %w", err)
	}
	// A previous run's logs would satisfy the readiness checks below.
	for _, f := range []string{"inspircd.log", "inspircd.out", "atheme.log", "atheme.out", "inspircd.pid", "atheme.pid"} {
		if err := os.Remove(n.path(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ircnet: %w", err)
		}
	}

	argv := []string{n.opts.Inspircd, "--config", n.path("inspircd.conf"), "--nofork"}
	if os.Geteuid() == 0 {
		argv = append(argv, "--runasroot") // InspIRCd refuses to run as root without it
	}
	ircd, err := n.spawn("inspircd", argv, "inspircd.out")
	if err != nil {
		return err
	}
	if err := n.waitListening(ctx, ircd); err != nil {
		n.kill(ircd)
		return err
	}
	beat, err := startPacemaker(ctx, n.Addr(), "pacemaker")
	if err != nil {
		n.kill(ircd)
		return err
	}
	// Atheme in the foreground (-n): it stays our child, so it is reaped and
	// dies with the test process.
	atheme, err := n.spawn("atheme-services", []string{n.opts.Atheme, "-n",
		"-c", n.path("atheme.conf"), "-D", n.dir, "-l", n.path("atheme.log"), "-p", n.path("atheme.pid")}, "atheme.out")
	if err != nil {
		beat.close()
		n.kill(ircd)
		return err
	}
	if err := n.waitLinked(ctx, ircd, atheme); err != nil {
		beat.close()
		n.kill(atheme)
		n.kill(ircd)
		return err
	}
	n.ircd, n.atheme, n.beat = ircd, atheme, beat
	return nil
}

func (n *Net) path(name string) string { return filepath.Join(n.dir, name) }

// spawn starts argv with its output in dir/out. The child gets SIGKILL if
// the test process dies, so a crashed test leaves no daemons behind.
func (n *Net) spawn(name string, argv []string, out string) (*daemon, error) {
	f, err := os.OpenFile(n.path(out), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ircnet: %w", err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ircnet: start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// waitListening waits until the ircd has started and bound every port.
// InspIRCd keeps running when some <bind> fails (another process took the
// port after pickPorts probed it): it says so on stdout before "is now
// running", and that is an errBind here.
func (n *Net) waitListening(ctx context.Context, ircd *daemon) error {
	for {
		out, _ := os.ReadFile(n.path("inspircd.out"))
		if strings.Contains(string(out), "is now running") {
			if strings.Contains(string(out), "failed to bind") {
				return fmt.Errorf("%w:\n%s", errBind, lastLines(string(out), 12))
			}
			return nil
		}
		select {
		case <-ircd.done:
			return fmt.Errorf("ircnet: inspircd exited during start (%v):\n%s", ircd.err, n.LogTails(15))
		case <-ctx.Done():
			return fmt.Errorf("ircnet: inspircd not listening on %s: %w\n%s", n.Addr(), ctx.Err(), n.LogTails(15))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitLinked waits until Atheme has finished its burst to the ircd: from
// then on NickServ answers and SASL is offered.
func (n *Net) waitLinked(ctx context.Context, ircd, atheme *daemon) error {
	for {
		if b, err := os.ReadFile(n.path("atheme.log")); err == nil && strings.Contains(string(b), "finished synching with uplink") {
			return nil
		}
		select {
		case <-ircd.done:
			return fmt.Errorf("ircnet: inspircd exited while services linked (%v):\n%s", ircd.err, n.LogTails(15))
		case <-atheme.done:
			return fmt.Errorf("ircnet: atheme-services exited during start (%v):\n%s", atheme.err, n.LogTails(15))
		case <-ctx.Done():
			return fmt.Errorf("ircnet: services did not link: %w\n%s", ctx.Err(), n.LogTails(15))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// kill stops a daemon: SIGTERM, then SIGKILL after 5 s, and waits for it.
func (n *Net) kill(d *daemon) error {
	if d == nil {
		return nil
	}
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("ircnet: %s ignored SIGTERM for 5s and was killed", d.name)
}

// Stop stops both daemons and keeps the directory, so Restart can bring the
// same network back. Atheme goes first: it saves services.db on SIGTERM.
// Clients see their connection close.
func (n *Net) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopLocked()
}

func (n *Net) stopLocked() error {
	n.beat.close()
	err := errors.Join(n.kill(n.atheme), n.kill(n.ircd))
	n.atheme, n.ircd, n.beat = nil, nil, nil
	if err != nil {
		return err
	}
	return nil
}

// Restart stops the network if it runs and starts it again on the same
// ports with the same configs and services database: accounts survive, and
// clients that reconnect to the same address find the network again.
func (n *Net) Restart(ctx context.Context) error {
	if err := n.Stop(); err != nil {
		return err
	}
	return n.start(ctx)
}

// Close stops the network for good. It is safe to call more than once.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return n.stopLocked()
}

// LogTails returns the last lines of each daemon's logs, for failure reports.
func (n *Net) LogTails(lines int) string {
	var b strings.Builder
	for _, f := range []string{"inspircd.out", "inspircd.log", "atheme.out", "atheme.log"} {
		data, err := os.ReadFile(n.path(f))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", f, lines, lastLines(string(data), lines))
	}
	return b.String()
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
