package poolbot

import (
	"context"
	"strings"
	"time"
)

// Notice is one thing poolbot says in the operations channel, as data.
// The procedure and the watchers make Notices; each chat integration
// renders them its own way: IRC and the console say String(), the Slack
// mirror reads the fields to keep a request's status message up to date.
// Nothing downstream reads state back out of the wording, so rewording a
// notice changes only what people read.
//
// A SAL line is described by a Notice too (the store's outbox keeps it
// beside the rendered line, see SALLine), so that it carries its request
// and progress as data.
type Notice struct {
	// Request is the request the notice is about; 0 for notices about no
	// request (a failing registry probe, a drift proposed to operators).
	Request RequestID
	// Kind says what the notice reports; the Slack status message shows
	// some kinds (proceeding) as a step of their own.
	Kind NoticeKind
	// State is the request's state this notice reports ("" when it does
	// not report one, e.g. a retry, or a SAL line about a !force).
	State State
	// Title is what the request does, "depool apus in codfw: T1 maint",
	// on the notice or SAL line that starts it (START).
	Title string
	// Operator is who the line is attributed to: on a SAL line the name
	// after "#<id>", on a notice the operator who asked.
	Operator string
	// To is who must see the notice (it starts "<To>: " on IRC, pinging
	// them): the operator of a request that failed, the deployers of a
	// window that poolbot's deploy block holds up. Empty for none.
	To string
	// Blockers are what a waiting request waits for (State waiting), and
	// ETA its estimated start (zero: unknown).
	Blockers []string
	ETA      time.Time
	// Host and Hosts are restart progress: host Host of Hosts finished.
	// Zero when the notice is not about a host.
	Host, Hosts int
	// DryRun marks notices of a dry run; they start with DryRunMark.
	DryRun bool
	// Text is the sentence as operators read it, without the "<To>: " and
	// "DRY-RUN " that String adds.
	Text string
	// FollowsSAL, when set, is the outbox id of the SAL line the notice
	// follows in the channel (sal.OrderedAnnouncer): the request's last
	// line stored with the change the notice reports. Zero: the request's
	// last undelivered line when the notice is said, which a line queued
	// meanwhile (an operator's !resume right after END) would move.
	FollowsSAL int64 `json:"-"`
}

// NoticeKind names what a notice reports.
type NoticeKind string

// The kinds of notice.
const (
	// NoticeInfo is anything else: a retry, an interruption, a window
	// told about the deploy block.
	NoticeInfo NoticeKind = ""
	// NoticeWaiting: the request waits for its gates (Blockers, ETA).
	NoticeWaiting NoticeKind = "waiting"
	// NoticeProceeding: the gates opened; the request takes the deploy
	// block next.
	NoticeProceeding NoticeKind = "proceeding"
	// NoticeStarted: the request took the deploy block and runs (SAL
	// START and "deploy block taken", the "deploys are blocked" notice).
	NoticeStarted NoticeKind = "started"
	// NoticeSwitched: the discovery record was set (SAL "conftool: …").
	NoticeSwitched NoticeKind = "switched"
	// NoticeDNS: the DNS step, waiting for the discovery record to follow
	// the switch (State dns), or DNS has moved (SAL "DNS: …").
	NoticeDNS NoticeKind = "dns"
	// NoticeHost: one host was restarted (Host of Hosts).
	NoticeHost NoticeKind = "host"
	// NoticeEnded: the request ended; State says how (done, failed,
	// cancelled, expired).
	NoticeEnded NoticeKind = "ended"
	// NoticeDrift: a pooled change made outside poolbot.
	NoticeDrift NoticeKind = "drift"
	// NoticeProbe: the periodic registry probe failed or recovered.
	NoticeProbe NoticeKind = "probe"
)

// String renders the notice for a chat line: "<To>: <Text>", marked
// "DRY-RUN " in a dry run.
func (n Notice) String() string {
	s := n.Text
	if n.To != "" {
		s = n.To + ": " + s
	}
	if n.DryRun && !strings.HasPrefix(s, DryRunMark) {
		s = DryRunMark + " " + s
	}
	return s
}

// SALLine renders a notice as a SAL line: "poolbot #12 alice: <Text>" for a line
// about a request (see SALLine), "poolbot <Text>" for one attributed to
// no operator.
func (n Notice) SALLine() string {
	if n.Request == 0 || n.Operator == "" {
		return SALPrefix + " " + n.Text
	}
	return SALLine(n.Request, n.Operator, n.Text)
}

// Announcer says notices. The chat side renders them (IRC: one line of
// String(); the Slack mirror: the request's status message). Notices are
// not durable; SAL lines are, through the store's outbox.
type Announcer interface {
	Announce(ctx context.Context, n Notice)
}

// AnnouncerFunc adapts a function to Announcer.
type AnnouncerFunc func(ctx context.Context, n Notice)

// Announce calls f.
func (f AnnouncerFunc) Announce(ctx context.Context, n Notice) { f(ctx, n) }
