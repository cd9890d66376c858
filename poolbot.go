// Package poolbot holds the domain of poolbot: what an operator can ask for
// (a Request to pool, depool or restart a service), the states a request
// moves through, and the audit Events recorded on the way.
//
// Everything that talks to the outside world lives in its own package:
// chat adapters in bot/, the command grammar in commands/, the SQLite store
// in store/, and one package per outside system under integrations/. Those
// packages depend on this one, never the other way round.
package poolbot

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// RequestID identifies a request; it is shown to users as "#<id>".
type RequestID int64

// String renders the id the way every reply and SAL line names it.
func (id RequestID) String() string { return fmt.Sprintf("#%d", int64(id)) }

// Action is what a request does.
type Action string

// The actions an operator can request.
const (
	// ActionDepool sets the service's discovery record pooled=false in a
	// datacenter, then restarts the registry instances that use it.
	ActionDepool Action = "depool"
	// ActionPool sets pooled=true in a datacenter, then restarts.
	ActionPool Action = "pool"
	// ActionRestart only restarts, e.g. after someone changed the pooled
	// state by hand.
	ActionRestart Action = "restart"
)

// Valid reports whether a is one of the known actions.
func (a Action) Valid() bool {
	switch a {
	case ActionDepool, ActionPool, ActionRestart:
		return true
	}
	return false
}

// Pooled is the pooled state the action sets; ok is false for restarts,
// which do not touch conftool.
func (a Action) Pooled() (pooled, ok bool) {
	switch a {
	case ActionDepool:
		return false, true
	case ActionPool:
		return true, true
	}
	return false, false
}

// State is where a request is in its life:
//
//	queued → waiting → blocking-deploys → switching → dns → restarting → done
//
// or one of the terminal states failed, cancelled, expired. A service
// without a dns section goes from switching straight to restarting.
type State string

// The states of a request, in lifecycle order.
const (
	StateQueued          State = "queued"
	StateWaiting         State = "waiting"
	StateBlockingDeploys State = "blocking-deploys"
	StateSwitching       State = "switching"
	// StateDNS waits for the discovery record to follow the conftool
	// change (authoritative servers, then the recursors' caches) before
	// any host is restarted.
	StateDNS        State = "dns"
	StateRestarting State = "restarting"
	StateDone       State = "done"
	StateFailed     State = "failed"
	StateCancelled  State = "cancelled"
	StateExpired    State = "expired"
)

// States lists every state, in lifecycle order. It is used for metrics
// labels and validation.
var states = [...]State{
	StateQueued, StateWaiting, StateBlockingDeploys, StateSwitching, StateDNS,
	StateRestarting, StateDone, StateFailed, StateCancelled, StateExpired,
}

// AllStates returns every state in lifecycle order.
func AllStates() []State { s := states; return s[:] }

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, k := range states {
		if s == k {
			return true
		}
	}
	return false
}

// Terminal reports whether a request in state s is finished for good.
func (s State) Terminal() bool {
	switch s {
	case StateDone, StateFailed, StateCancelled, StateExpired:
		return true
	}
	return false
}

// Running reports whether a request in state s has started acting on the
// world (it holds, or is taking, the deploy block). Cancelling a running
// request stops it before the next host rather than at once.
func (s State) Running() bool {
	switch s {
	case StateBlockingDeploys, StateSwitching, StateDNS, StateRestarting:
		return true
	}
	return false
}

// Pending reports whether a request in state s has not started yet.
func (s State) Pending() bool { return s == StateQueued || s == StateWaiting }

// Origin says where a request or command came from, for the audit trail.
type Origin struct {
	// Network is "irc", "slack", "console", or "poolbot" for requests the
	// bot queued itself (the drift watch).
	Network string
	// Account is the verified account on that network.
	Account string
	// Nick is the display name at the time, for humans reading the trail.
	Nick string
	// Channel is where it was said; empty for a private message.
	Channel string
}

// NetworkPoolbot is the Origin.Network of requests poolbot queued itself
// (the drift watch's restarts).
const NetworkPoolbot = "poolbot"

// Request is one operation an operator asked for.
type Request struct {
	ID         RequestID
	Action     Action
	Service    string
	Datacenter string // empty for ActionRestart
	Reason     string
	// Task is the first Phabricator task named in Reason (e.g. "T422166").
	Task string
	// Operator is the operator name (from config) of whoever asked.
	Operator string
	Origin   Origin
	State    State
	// Step says where within State the request is, e.g. "host 2/4
	// registry2004.codfw.wmnet", or why it waits. Free text for humans.
	Step string
	// Forced is set by !force: the calendar and scap gates are skipped.
	Forced      bool
	ForcedBy    string
	ForceReason string
	// ConfirmedBy is the second operator who confirmed a !force.
	ConfirmedBy string
	// CancelRequested is set by !cancel on a running request: it stops
	// before the next host.
	CancelRequested bool
	CancelledBy     string
	// Parked is set on a request interrupted by a crash when poolbot is
	// configured to wait for an operator's !resume.
	Parked bool
	// Error is why a request failed or expired.
	Error      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	StartedAt  time.Time // zero until it left the queue
	FinishedAt time.Time // zero until terminal
}

// Summary is a one-line description: "depool apus in codfw".
func (r *Request) Summary() string {
	if r.Action == ActionRestart {
		return fmt.Sprintf("restart %s", r.Service)
	}
	return fmt.Sprintf("%s %s in %s", r.Action, r.Service, r.Datacenter)
}

// Event is one entry in a request's audit trail: who did what, when, from
// where.
type Event struct {
	ID        int64
	RequestID RequestID
	At        time.Time
	// Actor is an operator name, or "poolbot" for the bot's own steps.
	Actor  string
	Origin Origin
	// Kind names the event: "created", "state", "cancel", "force",
	// "confirm", "host", ...
	Kind      string
	FromState State
	ToState   State
	Detail    string
}

// DNSStep is what the DNS step of a request has seen so far, stored so
// that a restarted poolbot resumes the cache wait with the time left.
type DNSStep struct {
	RequestID RequestID
	// OldTTL is the discovery record's TTL before the change: the longest
	// a recursor may keep the old answer.
	OldTTL time.Duration
	// ConvergedAt is when every authoritative server answered the new
	// state; zero until then.
	ConvergedAt time.Time
	// Moved is the report of the authoritative servers, e.g.
	// "apus.discovery.wmnet answers eqiad for codfw clients on 3/3
	// authoritative servers".
	Moved string
	// Flushed is set when the recursor caches were flushed (and checked)
	// instead of waited out.
	Flushed bool
}

// CachesClearAt is when the last cached old answer expires.
func (s DNSStep) CachesClearAt() time.Time { return s.ConvergedAt.Add(s.OldTTL) }

// HostState is where one host of a restart plan is.
type HostState string

// The states of a host step.
const (
	HostPending    HostState = "pending"
	HostRestarting HostState = "restarting"
	HostDone       HostState = "done"
	HostFailed     HostState = "failed"
)

// HostStep is one host of a request's restart plan.
type HostStep struct {
	RequestID  RequestID
	Position   int // 1-based
	Host       string
	State      HostState
	StartedAt  time.Time
	FinishedAt time.Time
	Detail     string
	// Drained are the load-balancer node objects poolbot depooled before
	// restarting the host, each with the pooled value to restore once the
	// host is healthy. Stored before the depool, so a crash mid-host
	// restores what the host had, not the "no" it finds.
	Drained []DrainedNode
	// Silences are the Alertmanager silences created for the host's
	// restart, stored so that a crash, a cancel or a failure removes them
	// (or reports them with their expiry).
	Silences []HostSilence
}

// DrainedNode is one conftool node object of a host (tags dc, cluster,
// service) with the pooled value it had before poolbot depooled it.
type DrainedNode struct {
	DC      string `json:"dc"`
	Cluster string `json:"cluster"`
	Service string `json:"service"`
	Pooled  string `json:"pooled"` // yes, no or inactive
}

// HostSilence is an Alertmanager silence poolbot created for a host.
type HostSilence struct {
	ID     string    `json:"id"`
	EndsAt time.Time `json:"ends_at"`
}

// DryRunMark starts what dry-run mode says and records instead of acting:
// notices, and the detail of host steps that restarted nothing (which the
// store leaves out of the time estimate's history).
const DryRunMark = "DRY-RUN"

// ActorPoolbot is the Actor of events the bot records on its own behalf.
const ActorPoolbot = "poolbot"

var taskRE = regexp.MustCompile(`\bT[1-9][0-9]{0,7}\b`)

// TaskFromReason returns the first Phabricator task (T123…) mentioned in a
// reason, or "".
func TaskFromReason(reason string) string { return taskRE.FindString(reason) }

// FormatDuration formats like scap's SAL lines: "02m 15s", or
// "1h 02m 15s" from an hour on. It is the one way poolbot says a duration
// to people (a timeout, an age, an estimate). Under a second it keeps the
// fraction that matters, "00m 00.05s", rather than say "00m 00s".
func FormatDuration(d time.Duration) string {
	if d > 0 && d < time.Second {
		d = d.Round(time.Millisecond)
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("00m %06.3fs", d.Seconds()), "0s"), ".") + "s"
	}
	d = d.Round(time.Second)
	if d < 0 {
		d = 0
	}
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	if h > 0 {
		return fmt.Sprintf("%dh %02dm %02ds", h, m, s)
	}
	return fmt.Sprintf("%02dm %02ds", m, s)
}
