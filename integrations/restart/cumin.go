package restart

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CuminConfig configures the cumin executor and host queries.
type CuminConfig struct {
	// Command is the argv that runs cumin, options before the query may be
	// included (e.g. ["sudo", "-n", "cumin", "-c", "/etc/cumin/config.yaml"]).
	// Default ["sudo", "-n", "cumin"]: cumin runs as root, and as root it
	// insists on knowing the real user from sudo's SUDO_USER (it logs it).
	Command []string `yaml:"command"`
	// Timeout is cumin's per-command timeout (-t, whole seconds, rounded
	// up). 0 passes no -t: the Run's context deadline still stops cumin.
	Timeout time.Duration `yaml:"timeout"`
}

// defaultCuminCommand runs cumin through non-interactive sudo.
func defaultCuminCommand() []string { return []string{"sudo", "-n", "cumin"} }

// Validate checks the cumin section; key names are given as prefix+key.
func (c CuminConfig) Validate(prefix string) error {
	var errs []error
	for i, a := range c.Command {
		if a == "" || strings.IndexByte(a, 0) >= 0 {
			errs = append(errs, fmt.Errorf("%scommand[%d]: empty or contains NUL", prefix, i))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%stimeout: must not be negative", prefix))
	}
	return errors.Join(errs...)
}

// Cumin runs commands with WMF's cumin CLI, one host per invocation.
type Cumin struct {
	command []string
	timeout time.Duration
	opts    Options
}

// NewCumin checks cfg and returns the executor. cumin is not run until Run
// or ListHosts.
func NewCumin(cfg CuminConfig, opts Options) (*Cumin, error) {
	if err := cfg.Validate("cumin."); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	cmd := cfg.Command
	if len(cmd) == 0 {
		cmd = defaultCuminCommand()
	}
	return &Cumin{command: append([]string(nil), cmd...), timeout: cfg.Timeout, opts: opts.withDefaults()}, nil
}

// CommandLine returns the argv Run would execute for argv on host, for
// dry-run output and logs:
//
//	<command...> -b 1 -p 100 --force --no-progress [-t SECS] 'D{<host>}' '<quoted argv>'
//
// -b 1 -p 100 is the classic one-host-at-a-time form with cumin's default
// success threshold spelled out (any failure aborts); with a single host
// they only make sure nothing else is touched. --force skips the
// interactive confirmation (cumin errors out without a TTY otherwise),
// --no-progress keeps tqdm's progress bars out of the captured output.
// The output stays cumin's default (no -o): the host's output as it
// arrives, then the report lines Run reads. D{...} is cumin's direct
// backend: exactly that host, no PuppetDB lookup.
func (c *Cumin) CommandLine(host string, argv []string) []string {
	out := append([]string(nil), c.command...)
	out = append(out, "-b", "1", "-p", "100", "--force", "--no-progress")
	if c.timeout > 0 {
		secs := int64(math.Ceil(c.timeout.Seconds()))
		out = append(out, "-t", strconv.FormatInt(secs, 10))
	}
	return append(out, "D{"+host+"}", ShellJoin(argv))
}

// cumin's report lines (stderr), as the ClusterShell transport prints them
// (cumin 4.2.0, recorded in testdata/cumin-4.2.0):
//
//	100.0% (1/1) of nodes failed to execute command 'false': host1.example.org
//	100.0% (1/1) of nodes timeout to execute command 'sleep 30': host1.example.org
//	0.0% (0/1) success ratio (< 100.0% threshold) for command: 'false'. Aborting.
//
// (v6 writes "command #1: '...'"; both match.)
var (
	cuminNodesRE = regexp.MustCompile(`(?m)^.*\(\d+/\d+\) of nodes (failed|timeout) to execute command.*$`)
	cuminRatioRE = regexp.MustCompile(`(?m)^.*\(\d+/\d+\) success ratio \(< .*$`)
	// cuminSSHErrorRE matches the last line OpenSSH's client prints when it
	// cannot reach or log in to the host (it then exits 255, and cumin
	// counts the host as failed like any other non-zero exit): the
	// command did not run. (A remote command that fails with such a line
	// as its last would be taken for one; nothing poolbot runs does.)
	cuminSSHErrorRE = regexp.MustCompile(`^(ssh: connect to host .*|ssh: Could not resolve hostname .*|Host key verification failed\.|\S+: Permission denied \([a-z,-]+\)\.)$`)
)

// cuminExitMeaning describes cumin's exit codes for messages.
func cuminExitMeaning(code int) string {
	switch code {
	case 1:
		return "completed with failures"
	case 2:
		return "failed below the success threshold, or a usage or configuration error"
	case 3:
		return "setup error or unknown result"
	case 4:
		return "timed out"
	case 5:
		return "interrupted"
	case 98:
		return "interrupted or aborted"
	case 99:
		return "unexpected exception"
	}
	return "unknown exit code"
}

// Run runs argv on host through cumin. Result.ExitCode is cumin's exit
// code: 0 when the command succeeded on the host, 1 or 2 when cumin
// reported it failed there (Result.Detail has cumin's report line). A
// timeout reported by cumin, any other exit code, or a failure exit without
// a failure report is a *RunError: the command may not have run.
func (c *Cumin) Run(ctx context.Context, host string, argv []string) (Result, error) {
	start := c.opts.Clock.Now()
	res := Result{Host: host, Argv: argv, ExitCode: -1}
	fail := func(op string, err error) (Result, error) {
		res.Duration = c.opts.Clock.Since(start)
		c.opts.Logger.Debug("cumin run failed", "host", host, "argv", argv, "op", op, "err", err, "duration", res.Duration)
		return res, &RunError{Host: host, Via: "cumin", Op: op, Err: err}
	}
	if err := ValidateHost(host); err != nil {
		return fail("validate", err)
	}
	if err := validateArgv(argv); err != nil {
		return fail("validate", err)
	}
	ctx, cancel := c.opts.runContext(ctx)
	defer cancel()

	out := newTailBuffer(c.opts.MaxOutput)
	// cumin turns SIGINT into a clean stop (exit 98); sudo relays it.
	outcome, op, err := runProcess(ctx, c.CommandLine(host, argv), out, false, syscall.SIGINT)
	raw := out.Bytes()
	text := StripANSI(raw)
	res.Output, res.OutputBytes = text, out.Total()
	hostOut, ok := cuminHostOutput(text, ShellJoin(argv))
	if ok && out.Total() == int64(len(raw)) {
		// What the command printed, without cumin's own lines (they are
		// in the log, and Detail has the report line that matters).
		res.Output, res.OutputBytes = hostOut, int64(len(hostOut))
	}
	res.Duration = c.opts.Clock.Since(start)
	if err != nil {
		return fail(op, err)
	}
	v := readCuminOutcome(outcome.exitCode, text, hostOut)
	res.Detail = v.detail
	if v.err != nil {
		return fail(v.op, v.err)
	}
	res.ExitCode = v.exitCode
	c.opts.Logger.Debug("cumin run", "host", host, "argv", argv, "exit", v.exitCode, "detail", v.detail, "duration", res.Duration)
	return res, nil
}

// cuminOutcome is what one single-host cumin run says about the command.
type cuminOutcome struct {
	// exitCode is cumin's exit code when the command ran: 0, or 1/2 with
	// cumin's report of the failed host in detail.
	exitCode int
	detail   string
	// err (with op, the RunError phase) when the command did not run or
	// its outcome is unknown.
	op  string
	err error
}

// readCuminOutcome reads cumin's exit code and output (escape sequences
// removed; hostOutput is the host's part of it, see cuminHostOutput, nil
// when there is none): 0 is success; 1 or 2 with a "failed to execute" or
// "success ratio (<" report is the command failing on the host, unless the
// host's output ends with OpenSSH's own "could not connect/log in" line,
// which means it never ran; a "timeout to execute" report or exit 4 (v6's
// TIMEDOUT) is a timeout; anything else is cumin failing (usage,
// configuration, exception, interrupt).
func readCuminOutcome(code int, output, hostOutput []byte) cuminOutcome {
	if code == 0 {
		return cuminOutcome{}
	}
	var detail string
	report := cuminNodesRE.FindAllSubmatch(output, -1)
	ratio := cuminRatioRE.FindAll(output, -1)
	if len(report) > 0 {
		last := report[len(report)-1]
		detail = OneLineTail(last[0], 300)
		if string(last[1]) == "timeout" {
			return cuminOutcome{detail: detail, op: "run", err: fmt.Errorf("cumin: %s: %w", detail, ErrTimeout)}
		}
	} else if len(ratio) > 0 {
		detail = OneLineTail(ratio[len(ratio)-1], 300)
	}
	switch {
	case code == 4:
		return cuminOutcome{detail: detail, op: "run", err: fmt.Errorf("cumin exited 4 (%s): %w", cuminExitMeaning(code), ErrTimeout)}
	case (code == 1 || code == 2) && detail != "":
		if last := lastLine(hostOutput); len(report) > 0 && cuminSSHErrorRE.Match(last) {
			return cuminOutcome{detail: detail, op: "connect", err: fmt.Errorf("%s (cumin: %s)", OneLineTail(last, 200), detail)}
		}
		return cuminOutcome{exitCode: code, detail: detail}
	}
	return cuminOutcome{op: "run", err: fmt.Errorf("cumin exited %d (%s): %s", code, cuminExitMeaning(code), cuminErrorText(output))}
}

// lastLine is the last non-empty line of out, without its line break.
func lastLine(out []byte) []byte {
	out = bytes.TrimRight(out, "\r\n")
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	return bytes.TrimRight(out, "\r")
}

// cuminShortCommand is how cumin names a command in its headers and
// report lines (TqdmQuietReporter._get_short_command): longer than 35
// characters, the first and last 16 around "...". Python counts
// characters, not bytes.
func cuminShortCommand(command string) string {
	const max, keep = 35, (35 - 3) / 2
	r := []rune(command)
	if len(r) <= max {
		return command
	}
	return string(r[:keep]) + "..." + string(r[len(r)-keep:])
}

// cuminHostOutput returns what command printed in a single-host cumin run
// (escape sequences removed): the lines between its header,
// "----- OUTPUT of '<short command>' -----" (which spans lines when the
// command has a newline), and the last "================" line. ok is
// false when there is no such section (cumin failed before running the
// command, or several hosts' output was grouped).
func cuminHostOutput(text []byte, command string) (out []byte, ok bool) {
	header := []byte("----- OUTPUT of '" + cuminShortCommand(command) + "' -----\n")
	i := bytes.Index(text, header)
	for i > 0 && text[i-1] != '\n' {
		j := bytes.Index(text[i+1:], header)
		if j < 0 {
			return nil, false
		}
		i += 1 + j
	}
	if i < 0 {
		return nil, false
	}
	body := append([]byte{'\n'}, text[i+len(header):]...)
	end := bytes.LastIndex(body, []byte("\n================\n"))
	if end < 0 {
		return nil, false
	}
	return body[1 : end+1], true
}

// cuminErrorText is the line that says why cumin failed: its
// "Caught <Type> exception: <message>" line when there is one (a query
// parse error goes on for several lines after it), else the output's tail.
func cuminErrorText(output []byte) string {
	for _, l := range bytes.Split(output, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("Caught ")) && bytes.Contains(l, []byte(" exception: ")) {
			return OneLineTail(l, 300)
		}
	}
	return OneLineTail(output, 300)
}

// maxListOutput bounds what ListHosts reads from cumin; a host list larger
// than this is refused rather than parsed from a truncated tail.
const maxListOutput = 4 << 20

// ListHosts returns the hosts a cumin query selects (e.g. "A:docker-registry"
// or "A:docker-registry and A:codfw"), in cumin's order, by running
// `cumin --force --no-progress --dry-run <query>` (a query without a
// command is a dry run anyway; the flag states it). An empty list with a
// nil error means the query matched nothing.
func (c *Cumin) ListHosts(ctx context.Context, query string) ([]string, error) {
	if err := ValidateQuery(query); err != nil {
		return nil, fmt.Errorf("restart: cumin: %w", err)
	}
	ctx, cancel := c.opts.runContext(ctx)
	defer cancel()
	argv := append(append([]string(nil), c.command...), "--force", "--no-progress", "--dry-run", query)
	out := newTailBuffer(maxListOutput)
	outcome, op, err := runProcess(ctx, argv, out, false, syscall.SIGINT)
	if err != nil {
		return nil, fmt.Errorf("restart: cumin: list %q: %s: %w", query, op, err)
	}
	text := StripANSI(out.Bytes())
	if outcome.exitCode != 0 {
		return nil, fmt.Errorf("restart: cumin: list %q: exited %d (%s): %s", query, outcome.exitCode, cuminExitMeaning(outcome.exitCode), cuminErrorText(text))
	}
	if out.Total() > maxListOutput {
		return nil, fmt.Errorf("restart: cumin: list %q: output larger than %d bytes", query, maxListOutput)
	}
	hosts, err := ParseCuminHosts(text)
	if err != nil {
		return nil, fmt.Errorf("restart: cumin: list %q: %w", query, err)
	}
	c.opts.Logger.Debug("cumin list", "query", query, "hosts", len(hosts))
	return hosts, nil
}

// ValidateQuery checks a cumin host query before it becomes an argv
// element: not empty, no leading '-' (cumin would read an option), no
// control characters, at most 1000 bytes. The query language itself is
// cumin's to parse.
func ValidateQuery(q string) error {
	switch {
	case strings.TrimSpace(q) == "":
		return errors.New("empty host query")
	case len(q) > 1000:
		return errors.New("host query longer than 1000 bytes")
	case strings.HasPrefix(strings.TrimSpace(q), "-"):
		return fmt.Errorf("host query %q starts with '-'", q)
	}
	for _, r := range q {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("host query %q contains a control character", q)
		}
	}
	return nil
}

var (
	cuminTargetedRE = regexp.MustCompile(`^(\d+) hosts? will be targeted:$`)
	cuminGroupRE    = regexp.MustCompile(`^\((\d+)\) (\S.*)$`)
)

const (
	cuminNoHosts   = "No hosts found that matches the query"
	cuminNodeGroup = "===== NODE GROUP ====="
)

// ParseCuminHosts extracts the host list from cumin's output (stdout and
// stderr together, escape sequences already removed or not).
//
// The form cumin's CLI writes before running anything, and the only output
// of a dry run:
//
//	2 hosts will be targeted:
//	registry[2003-2004].codfw.wmnet
//	DRY-RUN mode enabled, aborting
//
// The folded node set is expanded (ExpandNodeset) and its size must equal
// the announced count. "No hosts found that matches the query" gives an
// empty list. Failing that, the NODE GROUP headers of a command's output
// ("===== NODE GROUP =====" then "(N) <node set>") are collected. Every
// name must pass ValidateHost. Anything else is an error: a host list is
// never guessed.
func ParseCuminHosts(out []byte) ([]string, error) {
	text := strings.ReplaceAll(string(StripANSI(out)), "\r\n", "\n")
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, len(text)+1)
	for sc.Scan() {
		l := sc.Text()
		if i := strings.LastIndexByte(l, '\r'); i >= 0 {
			l = l[i+1:] // a progress bar redrawn over itself
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	for i, l := range lines {
		if l == cuminNoHosts {
			return []string{}, nil
		}
		m := cuminTargetedRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		want, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("host count %q: %w", m[1], err)
		}
		j := i + 1
		for j < len(lines) && lines[j] == "" {
			j++
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%q is not followed by a node set", l)
		}
		hosts, err := expandHosts(lines[j])
		if err != nil {
			return nil, err
		}
		if len(hosts) != want {
			return nil, fmt.Errorf("cumin announced %d hosts but the node set %q has %d", want, truncate(lines[j], 80), len(hosts))
		}
		return hosts, nil
	}

	var hosts []string
	seen := map[string]bool{}
	for i := 0; i+1 < len(lines); i++ {
		if lines[i] != cuminNodeGroup {
			continue
		}
		m := cuminGroupRE.FindStringSubmatch(lines[i+1])
		if m == nil {
			return nil, fmt.Errorf("%q is not followed by \"(N) <node set>\"", cuminNodeGroup)
		}
		group, err := expandHosts(m[2])
		if err != nil {
			return nil, err
		}
		if n, _ := strconv.Atoi(m[1]); n != len(group) {
			return nil, fmt.Errorf("node group announces %s hosts but %q has %d", m[1], truncate(m[2], 80), len(group))
		}
		for _, h := range group {
			if !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	if hosts != nil {
		return hosts, nil
	}
	return nil, fmt.Errorf("no host list in cumin output: %s", OneLineTail([]byte(text), 300))
}

func expandHosts(nodeset string) ([]string, error) {
	hosts, err := ExpandNodeset(nodeset)
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		if err := ValidateHost(h); err != nil {
			return nil, fmt.Errorf("node set %q: %w", truncate(nodeset, 80), err)
		}
	}
	return hosts, nil
}
