package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"poolbot/internal/testenv/ircnet"
	"poolbot/internal/testenv/site"
)

// transcript is what the operator console saw in the channel, in order,
// one formatted line each ("14:03:07 <poolbot> …").
type transcript struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{}
	out     io.Writer
}

func newTranscript(out io.Writer) *transcript {
	return &transcript{changed: make(chan struct{}), out: out}
}

func (t *transcript) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	fmt.Fprintln(t.out, line)
	close(t.changed)
	t.changed = make(chan struct{})
}

// note prints a lab message in the transcript's flow.
func (t *transcript) note(format string, args ...any) {
	t.add(time.Now().Format("15:04:05") + " -- " + fmt.Sprintf(format, args...))
}

func (t *transcript) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.lines)
}

func (t *transcript) all() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// wait returns the first line at index from or later that contains every
// one of subs, waiting until timeout.
func (t *transcript) wait(ctx context.Context, from int, timeout time.Duration, subs ...string) (string, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		t.mu.Lock()
		lines, changed := t.lines, t.changed
		t.mu.Unlock()
		for i := from; i < len(lines); i++ {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(lines[i], s)
			}
			if ok {
				return lines[i], i, nil
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			return "", 0, fmt.Errorf("no line with %q within %s", subs, timeout)
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
}

// participants are the lab's IRC clients: alice (the operator console),
// bob (a second operator, for !confirm) and logmsgbot (relays scap's
// "Started/Finished scap" lines as on wikitech's channels).
type participants struct {
	alice, bob, logmsgbot *ircnet.Client
}

func connectParticipants(ctx context.Context, n *ircnet.Net) (*participants, error) {
	caps := []string{"account-tag", "message-tags", "server-time", "echo-message"}
	p := &participants{}
	type dial struct {
		dst  **ircnet.Client
		opts ircnet.ClientOptions
	}
	dials := []dial{
		{&p.alice, ircnet.ClientOptions{Nick: "alice", SASLAccount: "alice", SASLPassword: labAccounts[0].Password, Caps: caps}},
		{&p.bob, ircnet.ClientOptions{Nick: "bob", SASLAccount: "bob", SASLPassword: labAccounts[1].Password, Caps: caps}},
		{&p.logmsgbot, ircnet.ClientOptions{Nick: "logmsgbot", Caps: caps}},
	}
	errs := make([]error, len(dials))
	var wg sync.WaitGroup
	for i, d := range dials {
		wg.Go(func() {
			// Each registration takes about a second on InspIRCd: in parallel.
			c, err := n.Dial(ctx, d.opts)
			if err == nil {
				err = c.Join(ctx, labChannel)
			}
			*d.dst, errs[i] = c, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *participants) close() {
	for _, c := range []*ircnet.Client{p.alice, p.bob, p.logmsgbot} {
		if c != nil {
			c.Quit()
		}
	}
}

// record prints the channel as alice sees it (her own lines come back
// through echo-message, so the order is the server's) until ctx ends.
func (p *participants) record(ctx context.Context, t *transcript) {
	_, _ = p.alice.WaitFor(ctx, func(l ircnet.Line) bool {
		if s, ok := formatLine(l); ok {
			t.add(s)
		}
		return false
	})
}

func formatLine(l ircnet.Line) (string, bool) {
	m := l.Msg
	ts := time.Now().Format("15:04:05")
	switch m.Command {
	case "PRIVMSG", "NOTICE":
		if len(m.Params) < 2 || m.Nick() == "" || strings.EqualFold(m.Nick(), "NickServ") || strings.Contains(m.Nick(), ".") {
			return "", false
		}
		if m.Command == "NOTICE" {
			return fmt.Sprintf("%s -%s- %s", ts, m.Nick(), m.Params[1]), true
		}
		if m.Params[0] != labChannel {
			return fmt.Sprintf("%s *%s* %s", ts, m.Nick(), m.Params[1]), true
		}
		return fmt.Sprintf("%s <%s> %s", ts, m.Nick(), m.Params[1]), true
	case "JOIN":
		return fmt.Sprintf("%s * %s joined %s", ts, m.Nick(), labChannel), true
	case "QUIT":
		reason := ""
		if len(m.Params) > 0 {
			reason = " (" + m.Params[0] + ")"
		}
		return fmt.Sprintf("%s * %s quit%s", ts, m.Nick(), reason), true
	}
	return "", false
}

// errQuit ends the console (/quit).
var errQuit = errors.New("quit")

const consoleHelp = `console: a line is said in ` + labChannel + ` as alice (an operator). Try:
  !help   !status   !windows   !depool apus codfw T123456 lab test   !check apus   !history
lab commands:
  /bob <text>      say <text> as bob (the second operator: "/bob !confirm 1")
  /scap [seconds]  a scap sync-world holds scap's global lock (default 60 s), announced by logmsgbot
  /fail <n>        the registry on host n fails its next restarts;  /fix <n> undoes it
  /quit            stop the lab (poolbot finishes its host, releases the deploy block, quits)`

// console reads operator lines from in until /quit, end of input or ctx.
func console(ctx context.Context, w *labEnv, p *participants, t *transcript, in io.Reader) error {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case line, ok = <-lines:
			if !ok {
				return nil
			}
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if err := consoleLine(ctx, w, p, t, line); errors.Is(err, errQuit) {
			return nil
		} else if err != nil {
			t.note("%v", err)
		}
	}
}

func consoleLine(ctx context.Context, w *labEnv, p *participants, t *transcript, line string) error {
	if !strings.HasPrefix(line, "/") {
		return p.alice.Privmsg(labChannel, line)
	}
	cmd, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	switch cmd {
	case "/quit":
		return errQuit
	case "/help":
		for _, l := range strings.Split(consoleHelp, "\n") {
			t.note("%s", l)
		}
	case "/bob":
		return p.bob.Privmsg(labChannel, arg)
	case "/scap":
		d := 60 * time.Second
		if arg != "" {
			n, err := strconv.Atoi(arg)
			if err != nil || n <= 0 || n > 3600 {
				return fmt.Errorf("/scap: %q is not a number of seconds", arg)
			}
			d = time.Duration(n) * time.Second
		}
		go func() {
			if err := scapRun(ctx, w, p, t, d, "Backport for [[gerrit:4242|lab change (T123456)]]", nil); err != nil {
				t.note("/scap: %v", err)
			}
		}()
	case "/fail", "/fix":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 || n > len(w.hosts) {
			return fmt.Errorf("%s: want a host number 1..%d", cmd, len(w.hosts))
		}
		w.ctl.Fail(w.hosts[n-1], cmd == "/fail")
		t.note("host %d (%s): restarts now %s", n, w.hosts[n-1], map[bool]string{true: "fail", false: "succeed"}[cmd == "/fail"])
	default:
		return fmt.Errorf("unknown lab command %s; /help lists them", cmd)
	}
	return nil
}

// startScapHolder makes a child process hold scap's global lock shared,
// as every running scap command does.
func startScapHolder(w *labEnv) (release func(), err error) {
	return site.StartLockHolder(w.labBin, filepath.Join(w.lockDir, "scap-global-lock"), "shared")
}

// scapRun is a scap sync-world as poolbot sees it: a process holds scap's
// global lock shared for d, and logmsgbot relays its Started and Finished
// lines to the channel. held, when not nil, is closed once the lock is
// held and the Started line is in the channel.
func scapRun(ctx context.Context, w *labEnv, p *participants, t *transcript, d time.Duration, what string, held chan<- struct{}) error {
	release, err := startScapHolder(w)
	if err != nil {
		return err
	}
	t.note("a scap sync-world holds scap's global lock (shared) for %s", d)
	from := t.len()
	if err := p.logmsgbot.Privmsg(labChannel, "!log alice@deploy1003 Started scap sync-world: "+what); err != nil {
		release()
		return err
	}
	if _, _, err := t.wait(ctx, from, 10*time.Second, "<logmsgbot>", "Started scap"); err != nil {
		release()
		return err
	}
	if held != nil {
		close(held)
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
	release()
	t.note("the scap run ends: its lock is released")
	secs := int(d.Round(time.Second).Seconds())
	return p.logmsgbot.Privmsg(labChannel, fmt.Sprintf("!log alice@deploy1003 Finished scap sync-world: %s (duration: %02dm %02ds)", what, secs/60, secs%60))
}
