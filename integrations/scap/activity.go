package scap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Source names where a Reason or failure came from.
type Source string

const (
	SourceLock      Source = "lock"
	SourceSpiderPig Source = "spiderpig"
	SourceChannel   Source = "channel"
)

// Reason is one piece of evidence that a deployment is in progress.
type Reason struct {
	Source Source
	// Who is deploying: the lock's locker or the holder process's user,
	// SpiderPig's job user, or the channel's "user@host".
	Who string
	// What is going on, one line.
	What string
	// Since is when it started; zero when unknown.
	Since time.Time
	// PID of the lock holder (lock source), else 0.
	PID int
	// Paths are the lock files this holder holds (lock source).
	Paths []string
	// JobID is the SpiderPig job (spiderpig source), else 0.
	JobID int64
}

func (r Reason) String() string {
	var b strings.Builder
	b.WriteString(string(r.Source))
	b.WriteString(": ")
	if r.Who != "" {
		b.WriteString(r.Who)
		b.WriteString(" — ")
	}
	b.WriteString(r.What)
	var extra []string
	if r.PID != 0 {
		extra = append(extra, fmt.Sprintf("pid %d", r.PID))
	}
	if !r.Since.IsZero() {
		extra = append(extra, "since "+r.Since.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if len(extra) > 0 {
		b.WriteString(" (" + strings.Join(extra, ", ") + ")")
	}
	return b.String()
}

// SourceError is a source that could not be read. The caller counts it as
// closed (fail closed).
type SourceError struct {
	Source Source
	Err    error
}

func (e *SourceError) Error() string {
	return fmt.Sprintf("scap %s source unreadable: %v", e.Source, e.Err)
}
func (e *SourceError) Unwrap() error { return e.Err }

// Activity is the combined answer of every enabled source.
type Activity struct {
	CheckedAt time.Time
	// Busy is true when some source positively sees a deployment.
	Busy bool
	// Reasons are that evidence: what blocks poolbot.
	Reasons []Reason
	// Own are poolbot's own deploy block (seen on the global lock); they do
	// not make Busy.
	Own []Reason
	// Failed are the sources that could not be read.
	Failed []SourceError
	// Locks are the raw probe results, for !status.
	Locks []LockStatus
}

// Clear reports that no source sees a deployment and every source could be
// read: the only state in which poolbot may proceed.
func (a Activity) Clear() bool { return !a.Busy && len(a.Failed) == 0 }

// Summary is a one-line description for notices.
func (a Activity) Summary() string {
	var parts []string
	for _, r := range a.Reasons {
		parts = append(parts, r.String())
	}
	for _, f := range a.Failed {
		parts = append(parts, f.Error())
	}
	if len(parts) == 0 {
		return "no scap deployment in progress"
	}
	return strings.Join(parts, "; ")
}

// ActivityChecker is what the procedure consumes: a Check that returns the
// evidence and which sources failed. The error is non-nil exactly when some
// source failed (it joins the *SourceError values); Activity is always
// filled with whatever could be read.
type ActivityChecker interface {
	Check(ctx context.Context) (Activity, error)
}

// MonitorOptions configures NewMonitor. A nil source is disabled.
type MonitorOptions struct {
	Locks        *Locks
	LockFiles    []string
	AllowMissing bool
	SpiderPig    *SpiderPig
	Tracker      *Tracker
	// CommandBlocker, when the command backend is used: while it holds a
	// block, an exclusive holder of GlobalLock is taken to be poolbot's own
	// (a command-held lock cannot be recognised by PID).
	CommandBlocker *CommandBlocker
	GlobalLock     string
	// SpiderPigMinInterval: SpiderPig is asked at most this often; checks
	// in between reuse its last answer (errors included). The procedure
	// checks every second while it waits; SpiderPig is a production
	// service. 0 asks every time.
	SpiderPigMinInterval time.Duration
	Clock                clockwork.Clock
	Logger               *slog.Logger
}

// Monitor combines the enabled sources into one Activity. Safe for
// concurrent use.
type Monitor struct {
	o MonitorOptions

	spMu      sync.Mutex
	spAt      time.Time
	spReasons []Reason
	spErr     error
}

// NewMonitor returns a Monitor over the given sources.
func NewMonitor(o MonitorOptions) *Monitor {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.GlobalLock == "" {
		o.GlobalLock = DefaultGlobalLock
	}
	return &Monitor{o: o}
}

// Check asks every enabled source. SpiderPig (network) runs concurrently
// with the local sources.
func (m *Monitor) Check(ctx context.Context) (Activity, error) {
	act := Activity{CheckedAt: m.o.Clock.Now()}

	var (
		wg       sync.WaitGroup
		spReason []Reason
		spErr    error
	)
	if m.o.SpiderPig != nil {
		wg.Go(func() { spReason, spErr = m.spiderPigCached(ctx) })
	}

	if m.o.Locks != nil {
		sts, busy, own, err := m.lockReasons(ctx)
		act.Locks = sts
		act.Reasons = append(act.Reasons, busy...)
		act.Own = append(act.Own, own...)
		if err != nil {
			act.Failed = append(act.Failed, SourceError{Source: SourceLock, Err: err})
		}
	}
	wg.Wait()
	if m.o.SpiderPig != nil {
		act.Reasons = append(act.Reasons, spReason...)
		if spErr != nil {
			act.Failed = append(act.Failed, SourceError{Source: SourceSpiderPig, Err: spErr})
		}
	}
	if m.o.Tracker != nil {
		for _, r := range m.o.Tracker.Active() {
			act.Reasons = append(act.Reasons, Reason{Source: SourceChannel, Who: r.Who, What: r.Describe(), Since: r.Since})
		}
	}
	act.Busy = len(act.Reasons) > 0

	var errs []error
	for i := range act.Failed {
		errs = append(errs, &act.Failed[i])
	}
	if len(errs) > 0 {
		m.o.Logger.Warn("scap: activity source unreadable", "err", errors.Join(errs...))
	}
	return act, errors.Join(errs...)
}

func (m *Monitor) lockReasons(ctx context.Context) (sts []LockStatus, busy, own []Reason, err error) {
	sts, err = m.o.Locks.ProbeAll(ctx, m.o.LockFiles)
	if err == nil && !m.o.AllowMissing && len(sts) > 0 &&
		!slices.ContainsFunc(sts, func(s LockStatus) bool { return s.Exists }) {
		err = fmt.Errorf("none of the scap lock files exists (%s): is poolbot running on the deploy host? (set locks.allow_missing to accept)", strings.Join(m.o.LockFiles, ", "))
	}
	if m.o.CommandBlocker != nil {
		if holding, _ := m.o.CommandBlocker.Holding(); holding {
			for i := range sts {
				if sts[i].Holder == HolderExclusive && sameFile(sts[i].Path, m.o.GlobalLock) {
					sts[i].Own = true
				}
			}
		}
	}

	type group struct {
		pid int
		sts []LockStatus
	}
	var groups []*group
	byPID := map[int]*group{}
	for _, s := range sts {
		if !s.Held() {
			if s.Info != nil {
				m.o.Logger.Debug("scap: stale lock file body (no holder)", "path", s.Path, "locker", s.Info.Locker, "pid", s.Info.PID)
			}
			continue
		}
		if s.Own {
			own = append(own, lockReason(s.PID, []LockStatus{s}, m.o.GlobalLock))
			continue
		}
		if g, ok := byPID[s.PID]; ok && s.PID > 0 {
			g.sts = append(g.sts, s)
			continue
		}
		g := &group{pid: s.PID, sts: []LockStatus{s}}
		groups = append(groups, g)
		byPID[s.PID] = g
	}
	for _, g := range groups {
		busy = append(busy, lockReason(g.pid, g.sts, m.o.GlobalLock))
	}
	return sts, busy, own, err
}

// lockReason describes one holder, which may hold several lock files (a
// scap command holds the global file shared and its repo file exclusive).
func lockReason(pid int, sts []LockStatus, globalLock string) Reason {
	r := Reason{Source: SourceLock, PID: pid}
	var info *LockInfo
	var proc ProcessInfo
	globalExclusive := false
	var files []string
	for _, s := range sts {
		r.Paths = append(r.Paths, s.Path)
		files = append(files, filepath.Base(s.Path)+" "+s.Holder.String())
		if info == nil && s.InfoMatches() {
			info = s.Info
		}
		if proc.User == "" && proc.Command == "" {
			proc = s.Process
		}
		if s.Holder == HolderExclusive && sameFile(s.Path, globalLock) {
			globalExclusive = true
		}
	}
	switch {
	case sts[0].Own:
		r.What = "poolbot's deploy block"
	case globalExclusive:
		r.What = "all deployments locked (scap lock --all)"
	default:
		r.What = "scap is deploying"
	}
	switch {
	case info != nil:
		r.Who = info.Locker
		if t, ok := info.Time(); ok {
			r.Since = t
		}
		if info.Reason != "" {
			r.What += ": " + sanitizeText(info.Reason, 200)
		}
	case proc.User != "" || proc.Command != "":
		r.Who = proc.User
		if proc.Command != "" {
			r.What += ": " + proc.Command
		}
	}
	if r.Since.IsZero() {
		r.Since = proc.Started
	}
	r.What += " [" + strings.Join(files, ", ") + "]"
	return r
}

func sameFile(a, b string) bool { return filepath.Clean(a) == filepath.Clean(b) }

// spiderPigCached asks SpiderPig unless it was asked less than
// SpiderPigMinInterval ago. Concurrent checks wait for one request.
func (m *Monitor) spiderPigCached(ctx context.Context) ([]Reason, error) {
	m.spMu.Lock()
	defer m.spMu.Unlock()
	now := m.o.Clock.Now()
	if m.o.SpiderPigMinInterval > 0 && !m.spAt.IsZero() && now.Sub(m.spAt) < m.o.SpiderPigMinInterval && now.Sub(m.spAt) >= 0 {
		return slices.Clone(m.spReasons), m.spErr
	}
	m.spReasons, m.spErr = m.spiderPigReasons(ctx)
	m.spAt = now
	return slices.Clone(m.spReasons), m.spErr
}

func (m *Monitor) spiderPigReasons(ctx context.Context) ([]Reason, error) {
	st, err := m.o.SpiderPig.JobrunnerStatus(ctx)
	if err != nil {
		return nil, err
	}
	jobs, err := m.o.SpiderPig.Jobs(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out []Reason
	seen := map[int64]bool{}
	runningID, statusRunning := runningJobID(st.Status)
	add := func(j Job, awaiting bool) {
		if seen[j.ID] {
			return
		}
		seen[j.ID] = true
		r := Reason{Source: SourceSpiderPig, Who: j.User, JobID: j.ID}
		kind := ""
		if j.Type != "" {
			kind = j.Type + " "
		}
		switch {
		case j.Busy() || statusRunning && j.ID == runningID:
			r.What = fmt.Sprintf("SpiderPig %sjob %d running", kind, j.ID)
			if j.StartedAt != nil {
				r.Since = *j.StartedAt
			}
		default:
			r.What = fmt.Sprintf("SpiderPig %sjob %d queued", kind, j.ID)
			if j.QueuedAt != nil {
				r.Since = *j.QueuedAt
			}
		}
		// Only stable states go into What: the procedure sends a new notice
		// whenever a blocker's text changes, and scap's sub-statuses
		// ("Syncing to canaries", …) change every few seconds.
		if awaiting || j.Status.Text() == "Awaiting user interaction" {
			r.What += ", awaiting user interaction"
		}
		if sum := j.Summary(); sum != "" {
			r.What += ": " + sum
		}
		out = append(out, r)
	}
	if st.Job != nil && (st.Job.Busy() || st.Job.Queued()) {
		add(*st.Job, st.AwaitingInteraction())
	}
	for _, j := range jobs {
		if j.Busy() || j.Queued() {
			add(j, false)
		}
	}
	// The job runner's status says "Running job <id>" for as long as it
	// runs that job, also when it sends "job": null or the job looks
	// finished in the list (the two answers are not one snapshot): busy.
	switch {
	case statusRunning && runningID == 0:
		out = append(out, Reason{Source: SourceSpiderPig, What: "SpiderPig job runner: " + sanitizeText(st.Status, 100)})
	case statusRunning && !seen[runningID]:
		j := Job{ID: runningID}
		if i := slices.IndexFunc(jobs, func(j Job) bool { return j.ID == runningID }); i >= 0 {
			j = jobs[i]
		}
		if st.Job != nil && st.Job.ID == runningID {
			j = *st.Job
		}
		add(j, st.AwaitingInteraction())
	}
	slices.SortStableFunc(out, func(a, b Reason) int { return a.Since.Compare(b.Since) })
	return out, nil
}

// runningJobID reads SpiderPig's job runner status "Running job <id>"
// (optionally followed by ", awaiting user interaction"). ok is true for
// any status starting with "Running job", id 0 when no id follows.
func runningJobID(status string) (id int64, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(status), "Running job")
	if !ok {
		return 0, false
	}
	rest = strings.TrimLeft(rest, " ")
	n := 0
	for n < len(rest) && n < 18 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	id, _ = strconv.ParseInt(rest[:n], 10, 64)
	return id, true
}
