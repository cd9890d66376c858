package scap

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/logmsgbot"
)

// maxTrackedRuns bounds the Tracker; beyond it the oldest run is dropped.
const maxTrackedRuns = 64

// Sender is who sent a channel message; which senders count is
// logmsgbot's rule.
type Sender = logmsgbot.Sender

// RunKind says what a tracked run is.
type RunKind int

const (
	// RunScap is a scap command between Started and Finished/aborted/failed.
	RunScap RunKind = iota + 1
	// RunLock is a `scap lock` between Locking and Unlocked.
	RunLock
)

// Run is something the channel says is in progress.
type Run struct {
	Kind RunKind
	// Who is "user@host".
	Who string
	// Program is scap's subcommand (RunScap).
	Program string
	// Repo is the locked repository (RunLock).
	Repo string
	// Message is the text of the starting line.
	Message string
	// Since is when the starting line was seen.
	Since time.Time
}

// key identifies a run: the same user on the same host running the same
// program (or locking the same repo). scap's own locks keep one user from
// running two of those at once.
func (r Run) key() string {
	who := strings.ToLower(r.Who)
	if r.Kind == RunLock {
		return who + " lock [" + r.Repo + "]"
	}
	return who + " scap " + r.Program
}

// Describe is a one-line description: "scap sync-world: Backport for …".
func (r Run) Describe() string {
	var s string
	if r.Kind == RunLock {
		s = "scap lock [" + r.Repo + "]"
	} else if r.Program == "" {
		s = "scap"
	} else {
		s = "scap " + r.Program
	}
	if r.Message != "" {
		s += ": " + sanitizeText(r.Message, 200)
	}
	return s
}

// Event is what one trusted scap line did to the Tracker.
type Event struct {
	Line Line
	// At is when the line was observed.
	At time.Time
	// Started is the run the line started (Started or Locking lines).
	Started *Run
	// Ended are the tracked runs the line ended (none when the start was
	// never seen, e.g. poolbot joined mid-deploy).
	Ended []Run
}

// Ends reports whether something just finished, so the caller should
// re-evaluate its gates now (also when no tracked run matched: the lock
// files may have been released).
func (e Event) Ends() bool { return e.Line.Kind.Ends() }

// Tracker follows scap runs announced in the channel. It trusts only lines
// from the configured relay nicks (and accounts, when configured): any user
// can type "!log x@deploy1003 Finished scap …". A run whose end is never
// seen (a lost line, a netsplit) is forgotten after max_run_age, so it
// cannot block forever; NextExpiry tells when. Safe for concurrent use.
type Tracker struct {
	relay  logmsgbot.Relay
	maxAge time.Duration
	clock  clockwork.Clock
	log    *slog.Logger

	mu   sync.Mutex
	runs map[string]Run
}

// NewTracker returns a Tracker for cfg (defaults filled in) reading the
// lines relay trusts.
func NewTracker(cfg ChannelConfig, relay logmsgbot.Relay, clock clockwork.Clock, log *slog.Logger) *Tracker {
	cfg = Config{Channel: cfg}.WithDefaults().Channel
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{
		relay:  relay,
		maxAge: cfg.MaxRunAge,
		clock:  clock,
		log:    log,
		runs:   map[string]Run{},
	}
}

// Observe feeds one channel message. ok is false when the message is not a
// scap announcement from a trusted relay (nothing changed).
func (t *Tracker) Observe(from Sender, text string) (ev Event, ok bool) {
	if !t.relay.Trusts(from) {
		return Event{}, false
	}
	line, ok := ParseLine(text)
	if !ok {
		return Event{}, false
	}
	now := t.clock.Now()
	ev = Event{Line: line, At: now}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now)
	switch line.Kind {
	case LineStarted, LineLocked:
		r := Run{Kind: RunScap, Who: line.Who, Program: line.Program, Message: line.Message, Since: now}
		if line.Kind == LineLocked {
			r = Run{Kind: RunLock, Who: line.Who, Repo: line.Repo, Message: line.Message, Since: now}
		}
		t.runs[r.key()] = r
		if len(t.runs) > maxTrackedRuns {
			t.dropOldestLocked()
		}
		ev.Started = &r
	case LineFinished:
		ev.Ended = t.endLocked(Run{Kind: RunScap, Who: line.Who, Program: line.Program}.key())
	case LineAborted, LineFailed:
		ev.Ended = t.endLocked(Run{Kind: RunScap, Who: line.Who, Program: line.Program}.key())
		if len(ev.Ended) == 0 && clearlyScap(line, text) {
			// The program name in scap's abort/failure message need not be
			// the one it announced at the start: end whatever scap run this
			// user had going on this host. Only for lines that are scap's
			// for sure: logmsgbot relays every tool's "<x> failed: …".
			ev.Ended = t.endWhereLocked(func(r Run) bool { return r.Kind == RunScap && strings.EqualFold(r.Who, line.Who) })
		}
	case LineUnlocked:
		ev.Ended = t.endLocked(Run{Kind: RunLock, Who: line.Who, Repo: line.Repo}.key())
	case LineForceUnlocked:
		// `scap lock --unlock-all` removes the global lock whoever held it.
		ev.Ended = t.endWhereLocked(func(r Run) bool { return r.Kind == RunLock && r.Repo == "ALL REPOSITORIES" })
	}
	t.log.Debug("scap: channel line", "kind", line.Kind.String(), "who", line.Who, "program", line.Program, "repo", line.Repo, "ended", len(ev.Ended))
	return ev, true
}

// scapPrograms are the scap subcommands known (reference/wikimedia-ops.md
// and recorded channel lines) to announce "<program> aborted: …" or
// "<program> failed: …": scap's program name is its subcommand, and
// backport or train may fail under their own name after announcing
// "Started scap sync-world". Any other program ends only a run it started
// itself (the exact key), unless the line says "scap <program>".
var scapPrograms = []string{"sync-world", "sync-file", "backport", "train", "lock"}

// clearlyScap reports whether an aborted/failed line (relayed as text)
// comes from scap: "scap aborted: …", "scap <program> failed: …", or a
// known scap subcommand.
func clearlyScap(line Line, text string) bool {
	if line.Program == "" || slices.Contains(scapPrograms, line.Program) {
		return true
	}
	_, body, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(text), "!log "), " ")
	return strings.HasPrefix(body, "scap ")
}

func (t *Tracker) endLocked(key string) []Run {
	r, ok := t.runs[key]
	if !ok {
		return nil
	}
	delete(t.runs, key)
	return []Run{r}
}

func (t *Tracker) endWhereLocked(match func(Run) bool) []Run {
	var out []Run
	for k, r := range t.runs {
		if match(r) {
			out = append(out, r)
			delete(t.runs, k)
		}
	}
	sortRuns(out)
	return out
}

func (t *Tracker) dropOldestLocked() {
	var oldest string
	for k, r := range t.runs {
		if oldest == "" || r.Since.Before(t.runs[oldest].Since) {
			oldest = k
		}
	}
	t.log.Warn("scap: too many open scap runs from the channel; forgetting the oldest", "who", t.runs[oldest].Who, "run", t.runs[oldest].Describe())
	delete(t.runs, oldest)
}

func (t *Tracker) pruneLocked(now time.Time) {
	for k, r := range t.runs {
		if !now.Before(r.Since.Add(t.maxAge)) {
			t.log.Warn("scap: forgetting a scap run whose end was never seen in the channel",
				"who", r.Who, "run", r.Describe(), "since", r.Since, "max_run_age", t.maxAge.String())
			delete(t.runs, k)
		}
	}
}

// Active returns the runs in progress, oldest first.
func (t *Tracker) Active() []Run {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(t.clock.Now())
	out := make([]Run, 0, len(t.runs))
	for _, r := range t.runs {
		out = append(out, r)
	}
	sortRuns(out)
	return out
}

// NextExpiry is when the oldest run will be forgotten for lack of an end
// line: the caller re-evaluates then. ok is false with no runs.
func (t *Tracker) NextExpiry() (at time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(t.clock.Now())
	for _, r := range t.runs {
		if e := r.Since.Add(t.maxAge); !ok || e.Before(at) {
			at, ok = e, true
		}
	}
	return at, ok
}

func sortRuns(rs []Run) {
	slices.SortFunc(rs, func(a, b Run) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.key(), b.key())
	})
}
