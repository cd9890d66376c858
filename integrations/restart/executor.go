package restart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"
)

// Executor runs one command on one host.
//
// Run returns a nil error when the command ran to completion; its exit
// status is then in Result.ExitCode (0 is success, anything else is a
// failure of the command itself: "host X: exit 3: <output tail>").
//
// Run returns a non-nil error, always a *RunError, when the command could
// not be run or its outcome is unknown: bad host name, connect or handshake
// failure, host key mismatch, authentication failure, the executor program
// missing, a timeout or cancellation (the command may have been killed part
// way), or the connection lost before an exit status arrived. Result.ExitCode
// is -1 then, and Result still carries whatever output and duration there
// were. Callers must treat both as "this host failed"; the split only changes
// what they say.
//
// The command's deadline is ctx's; when ctx has none, the executor applies
// its configured default timeout (Options.DefaultTimeout).
type Executor interface {
	Run(ctx context.Context, host string, argv []string) (Result, error)
}

// Result is what one Run produced.
type Result struct {
	// Host is the host the command was for.
	Host string
	// Argv is the command as given to Run (for the ssh and cumin executors
	// the remote command; for local, before template expansion).
	Argv []string
	// ExitCode is the command's exit status when the error from Run is nil;
	// -1 when it is unknown. A remote process killed by a signal reports
	// 128+signal, like a shell. For the cumin executor it is cumin's exit code
	// (cumin does not report the remote one): non-zero means cumin reported
	// the command failed on the host.
	ExitCode int
	// Output is the tail of stdout and stderr combined, in the order they
	// arrived, at most the executor's MaxOutput bytes.
	Output []byte
	// OutputBytes counts every byte produced; more than len(Output) means
	// the head was dropped.
	OutputBytes int64
	// Duration is how long the run took, connection set-up included.
	Duration time.Duration
	// Detail is an executor's note on the outcome, e.g. "killed by signal
	// TERM" or cumin's report line. Empty when there is nothing to add.
	Detail string
}

// OK reports whether the command ran and exited 0.
func (r Result) OK() bool { return r.ExitCode == 0 }

// Truncated reports whether the head of the output was dropped.
func (r Result) Truncated() bool { return r.OutputBytes > int64(len(r.Output)) }

// Tail returns at most max bytes from the end of the output as one line of
// printable text: terminal escape sequences removed, control characters
// dropped, line breaks shown as " | ", invalid UTF-8 replaced. It is meant
// for chat and log messages ("exit 3: <tail>").
func (r Result) Tail(max int) string { return OneLineTail(r.Output, max) }

// Summary is "exit N: <tail>" (plus the detail when there is one) for a
// command that ran, for messages that name a failed step.
func (r Result) Summary(max int) string {
	var b strings.Builder
	b.WriteString("exit ")
	b.WriteString(strconv.Itoa(r.ExitCode))
	if r.Detail != "" {
		b.WriteString(" (")
		b.WriteString(r.Detail)
		b.WriteString(")")
	}
	if t := r.Tail(max); t != "" {
		b.WriteString(": ")
		b.WriteString(t)
	}
	return b.String()
}

// ErrTimeout is wrapped by a RunError when the command or the connection
// timed out, whether by the context deadline, the executor's own timeout
// or the remote tool's (cumin -t).
var ErrTimeout = errors.New("timed out")

// RunError says a command could not be run on a host, or that its outcome
// is unknown.
type RunError struct {
	// Host is the host the command was for.
	Host string
	// Via is the executor: "ssh", "cumin" or "local".
	Via string
	// Op is the phase that failed: "validate", "connect", "handshake",
	// "session", "run", "start", "wait".
	Op string
	// Err is the cause.
	Err error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("host %s: %s: %s: %v", e.Host, e.Via, e.Op, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }

// Options are what every executor takes besides its own config.
type Options struct {
	// Logger gets one debug line per run; nil discards. Secrets are never
	// logged.
	Logger *slog.Logger
	// Clock measures durations; nil is the real clock.
	Clock clockwork.Clock
	// MaxOutput bounds the captured output (its tail is kept). 0 means
	// DefaultMaxOutput.
	MaxOutput int
	// DefaultTimeout applies to a Run whose context has no deadline. 0
	// means none.
	DefaultTimeout time.Duration
}

// DefaultMaxOutput is how much output a Run keeps when Options.MaxOutput is
// not set: plenty for systemctl's complaints, bounded against a runaway
// command.
const DefaultMaxOutput = 64 << 10

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	return o
}

// runContext applies the default timeout when ctx has no deadline.
func (o Options) runContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); !ok && o.DefaultTimeout > 0 {
		return context.WithTimeout(ctx, o.DefaultTimeout)
	}
	return context.WithCancel(ctx)
}

// ctxError turns a finished context into the error a RunError carries:
// ErrTimeout for a deadline, the context's error for a cancellation.
func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return ctx.Err()
}

// hostRE is a DNS host name (lower case labels of letters, digits and inner
// hyphens) or an IPv4 address. Upper case is refused rather than folded so
// that what the operator configured is what appears in logs and SAL.
var hostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

// ValidateHost checks that host is a plain host name before it reaches an
// argv or a network address: no leading '-', no shell or cumin query
// syntax, no port, at most 253 characters.
func ValidateHost(host string) error {
	if host == "" {
		return errors.New("empty host name")
	}
	if len(host) > 253 {
		return fmt.Errorf("host name %.40q... longer than 253 characters", host)
	}
	if !hostRE.MatchString(host) {
		return fmt.Errorf("invalid host name %q: want lower-case letters, digits, '-' and '.' (no leading '-' or '.')", host)
	}
	return nil
}

// validateArgv checks the command given to Run.
func validateArgv(argv []string) error {
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	if argv[0] == "" {
		return errors.New("empty program name")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %d contains a NUL byte", i)
		}
	}
	return nil
}

// tailBuffer is an io.Writer that keeps the last max bytes written to it.
// It is safe for concurrent writers (stdout and stderr are copied by
// separate goroutines).
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	// Let the buffer grow to twice the bound before compacting, so a stream
	// of small writes costs amortised O(1) per byte.
	if len(t.buf) > 2*t.max {
		n := copy(t.buf, t.buf[len(t.buf)-t.max:])
		t.buf = t.buf[:n]
	}
	return len(p), nil
}

// Bytes returns a copy of the kept tail.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return append([]byte(nil), b...)
}

// Total returns how many bytes were written.
func (t *tailBuffer) Total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// ansiRE matches terminal escape sequences: CSI (colours, cursor moves) and
// OSC, as cumin's colorama and tqdm write them.
var ansiRE = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]`)

// StripANSI removes terminal escape sequences.
func StripANSI(b []byte) []byte {
	if !strings.ContainsRune(string(b), 0x1b) {
		return b
	}
	return ansiRE.ReplaceAll(b, nil)
}

// OneLineTail renders at most max bytes from the end of out as one line of
// printable text (see Result.Tail).
func OneLineTail(out []byte, max int) string {
	out = StripANSI(out)
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n") {
		// A carriage return inside a line is a progress bar redrawing itself:
		// keep what was drawn last.
		if i := strings.LastIndexByte(l, '\r'); i >= 0 {
			l = l[i+1:]
		}
		l = strings.TrimSpace(strings.Map(func(r rune) rune {
			switch {
			case r == utf8.RuneError:
				return '\uFFFD'
			case r == '\t':
				return ' '
			case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
				return -1
			}
			return r
		}, strings.ToValidUTF8(l, "\uFFFD")))
		if l != "" {
			lines = append(lines, l)
		}
	}
	s := strings.Join(lines, " | ")
	if max <= 0 || len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	// Do not start in the middle of a UTF-8 sequence.
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return "…" + s
}
