package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	slackapi "github.com/slack-go/slack"

	"poolbot"
)

// Poster is the part of the Slack Web API a Mirror uses; *slackapi.Client
// implements it.
type Poster interface {
	PostMessageContext(ctx context.Context, channelID string, options ...slackapi.MsgOption) (string, string, error)
	UpdateMessageContext(ctx context.Context, channelID, timestamp string, options ...slackapi.MsgOption) (string, string, string, error)
}

var _ Poster = (*slackapi.Client)(nil)

// Mirror copies poolbot's notices and SAL lines to one Slack channel. It is
// a courtesy copy, not the record: SAL lives on IRC (stashbot), so a line
// the mirror drops or fails to post is logged and forgotten, and callers
// never wait for Slack. Lines queue (mirror_queue) and are posted in order
// by Run; when the queue is full the line is dropped.
//
// Lines about one request are folded into one status message that is
// edited in place (chat.update) rather than posting dozens of lines during
// an operation. Notices and SAL lines arrive as poolbot.Notice values, so
// the mirror reads what a line is about from its fields (Request, Kind,
// State, Blockers, ETA, Host/Hosts, Title, To), never from its wording.
// The first line about a request posts the status message (Block Kit: the
// request, its state, the hosts restarted n/N, the last step); later ones
// update it. With mirror_thread each line is also posted as a reply in
// that message's thread, for the full history. A notice addressed to
// someone (To: the operator of a request that failed) is something a
// person must see, so it is also posted in the thread and broadcast to the
// channel. Lines about no request are posted as they are.
//
// All text is escaped (see Escape): notices carry reasons typed by
// users, and must not ping <!channel> or draw links.
type Mirror struct {
	api     Poster
	channel string
	thread  bool
	timeout time.Duration
	log     *slog.Logger
	clock   clockwork.Clock
	queue   chan mirrorLine
	dropped atomic.Uint64

	// Only Run's goroutine touches these.
	requests map[int64]*mirrorRequest
	order    []int64 // tracked request IDs, oldest first
}

// mirrorMaxRequests bounds how many requests keep a status message to
// update; older ones get a fresh message if they speak again.
const mirrorMaxRequests = 64

// mirrorDrainTimeout bounds posting what is still queued at shutdown.
const mirrorDrainTimeout = 3 * time.Second

// mirrorLine is a notice, or a SAL line with the notice that describes it.
type mirrorLine struct {
	sal    bool
	notice poolbot.Notice
	line   string // a SAL line as logged
}

// text is the line as the channel shows it.
func (l mirrorLine) text() string {
	if l.sal {
		return l.line
	}
	return l.notice.String()
}

// MirrorOption customises NewMirror.
type MirrorOption func(*Mirror)

// WithMirrorClock sets the clock for the "updated" time (tests).
func WithMirrorClock(c clockwork.Clock) MirrorOption { return func(m *Mirror) { m.clock = c } }

// NewMirror returns a mirror posting to cfg.MirrorChannel through api
// (usually the Slack adapter's Client). A nil logger discards logs.
func NewMirror(api Poster, cfg Config, logger *slog.Logger, opts ...MirrorOption) *Mirror {
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Mirror{api: api, channel: cfg.MirrorChannel, thread: cfg.MirrorThread, timeout: cfg.RequestTimeout,
		log: logger, clock: clockwork.NewRealClock(),
		queue: make(chan mirrorLine, cfg.MirrorQueue), requests: map[int64]*mirrorRequest{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Announce queues a notice (it implements poolbot.Announcer). It never
// blocks.
func (m *Mirror) Announce(_ context.Context, n poolbot.Notice) { m.enqueue(mirrorLine{notice: n}) }

// SAL queues a SAL line (without "!log ") and the notice that describes
// it, to be called once the line was delivered to its durable sink. It
// never blocks.
func (m *Mirror) SAL(_ context.Context, n poolbot.Notice, line string) {
	m.enqueue(mirrorLine{sal: true, notice: n, line: line})
}

// Dropped is how many lines were dropped because the queue was full.
func (m *Mirror) Dropped() uint64 { return m.dropped.Load() }

func (m *Mirror) enqueue(l mirrorLine) {
	if m.channel == "" {
		return
	}
	select {
	case m.queue <- l:
	default:
		n := m.dropped.Add(1)
		m.log.Warn("slack mirror: queue full; line dropped", "queue", cap(m.queue), "dropped_total", n)
	}
}

// Run posts queued lines in order until ctx ends, then spends at most a
// few seconds posting what is left. It always returns nil.
func (m *Mirror) Run(ctx context.Context) error {
	for {
		select {
		case l := <-m.queue:
			// A line being posted is finished even if ctx ends meanwhile
			// (each call is bounded by request_timeout).
			m.process(context.WithoutCancel(ctx), l)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mirrorDrainTimeout)
			defer cancel()
			for dctx.Err() == nil {
				select {
				case l := <-m.queue:
					m.process(dctx, l)
				default:
					return nil
				}
			}
			return nil
		}
	}
}

func (m *Mirror) process(ctx context.Context, l mirrorLine) {
	id := int64(l.notice.Request)
	addressed := !l.sal && l.notice.To != ""
	if id <= 0 {
		if _, err := m.post(ctx, "", false, slackapi.MsgOptionText(Escape(truncateRunes(l.text(), slackMaxReplyBytes)), false)); err != nil {
			m.log.Warn("slack mirror: notice not posted", "err", err)
		}
		return
	}
	r := m.requests[id]
	if r == nil {
		r = &mirrorRequest{id: id}
		m.track(r)
	}
	r.apply(l, m.clock.Now())
	if err := m.show(ctx, r); err != nil {
		m.log.Warn("slack mirror: request status not posted", "request", id, "err", err)
	}
	if r.ts != "" && (m.thread || addressed) {
		text := slackapi.MsgOptionText(Escape(truncateRunes(l.text(), slackMaxReplyBytes)), false)
		if _, err := m.post(ctx, r.ts, addressed, text); err != nil {
			m.log.Warn("slack mirror: thread reply not posted", "request", id, "err", err)
		}
	}
}

// show posts r's status message, or updates it in place.
func (m *Mirror) show(ctx context.Context, r *mirrorRequest) error {
	opts := []slackapi.MsgOption{slackapi.MsgOptionText(r.fallback(), false), slackapi.MsgOptionBlocks(r.blocks()...)}
	if r.ts != "" {
		uctx, cancel := context.WithTimeout(ctx, m.timeout)
		_, _, _, err := m.api.UpdateMessageContext(uctx, m.channel, r.ts, opts...)
		cancel()
		if err == nil {
			return nil
		}
		var se slackapi.SlackErrorResponse
		if !errors.As(err, &se) || (se.Err != "message_not_found" && se.Err != "cant_update_message" && se.Err != "edit_window_closed") {
			return fmt.Errorf("chat.update: %w", err)
		}
		// The message is gone or can no longer be edited: start a new one.
		m.log.Info("slack mirror: status message cannot be updated; posting a new one", "request", r.id, "err", err)
		r.ts = ""
	}
	ts, err := m.post(ctx, "", false, opts...)
	if err != nil {
		return err
	}
	r.ts = ts
	return nil
}

func (m *Mirror) post(ctx context.Context, threadTS string, broadcast bool, opts ...slackapi.MsgOption) (string, error) {
	pctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	opts = append(opts, slackapi.MsgOptionDisableLinkUnfurl(), slackapi.MsgOptionDisableMediaUnfurl())
	if threadTS != "" {
		opts = append(opts, slackapi.MsgOptionTS(threadTS))
		if broadcast {
			opts = append(opts, slackapi.MsgOptionBroadcast())
		}
	}
	_, ts, err := m.api.PostMessageContext(pctx, m.channel, opts...)
	if err != nil {
		return "", fmt.Errorf("chat.postMessage to %s: %w", m.channel, err)
	}
	return ts, nil
}

// track remembers r, forgetting the oldest request beyond the bound.
func (m *Mirror) track(r *mirrorRequest) {
	m.requests[r.id] = r
	m.order = append(m.order, r.id)
	for len(m.order) > mirrorMaxRequests {
		delete(m.requests, m.order[0])
		m.order = m.order[1:]
	}
}

// mirrorRequest is what the status message of one request shows.
type mirrorRequest struct {
	id          int64
	ts          string // the status message; "" until posted
	title       string
	operator    string
	state       string
	last        string
	done, total int
	updated     time.Time
	// blockers and eta are what a waiting request waits for and its
	// estimated start ("unknown" when the engine cannot tell); cleared
	// when it proceeds.
	blockers []string
	eta      string
}

// apply folds one line into the status.
func (r *mirrorRequest) apply(l mirrorLine, now time.Time) {
	n := l.notice
	r.updated = now
	r.last = l.text()
	if l.sal {
		// The status shows what the SAL line says after its attribution.
		r.last = n.Text
		if n.Operator != "" {
			r.operator = n.Operator
		}
	}
	if st := displayState(n); st != "" {
		r.state = st
		r.blockers, r.eta = nil, ""
		if st == string(poolbot.StateWaiting) {
			r.blockers = slices.Clone(n.Blockers)
			if n.Kind == poolbot.NoticeWaiting {
				r.eta = "unknown"
				if !n.ETA.IsZero() {
					r.eta = poolbot.FormatClock(n.ETA, now) // never earlier than the real start
				}
			}
		}
	}
	if n.Title != "" {
		r.title = n.Title
	}
	if n.Hosts > 0 {
		r.done, r.total = n.Host, n.Hosts
	}
}

// displayState is the word the status message shows for where the
// request is after n; "" means n does not change it. Steps of the run
// get their own words (the request's stored state moves on before the
// line that reports the step is logged).
func displayState(n poolbot.Notice) string {
	switch n.Kind {
	case poolbot.NoticeProceeding:
		return "proceeding"
	case poolbot.NoticeStarted:
		return "running"
	case poolbot.NoticeSwitched:
		return "switching"
	case poolbot.NoticeDNS:
		return "dns"
	case poolbot.NoticeHost:
		return "restarting"
	}
	if n.State == poolbot.StateBlockingDeploys {
		return "running"
	}
	return string(n.State)
}

var stateEmoji = map[string]string{
	"waiting": ":hourglass_flowing_sand:", "proceeding": ":arrow_forward:", "running": ":arrows_counterclockwise:",
	"switching": ":twisted_rightwards_arrows:", "dns": ":globe_with_meridians:", "restarting": ":arrows_counterclockwise:",
	"done": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:", "expired": ":no_entry_sign:",
}

// mirrorMaxText keeps every text object under Block Kit's 3,000
// characters.
const mirrorMaxText = 2900

func (r *mirrorRequest) blocks() []slackapi.Block {
	title := r.title
	if title == "" {
		title = "request"
	}
	head := fmt.Sprintf("*poolbot #%d* %s", r.id, Escape(truncateRunes(title, mirrorMaxText)))
	var facts []string
	if r.state != "" {
		facts = append(facts, strings.TrimSpace(stateEmoji[r.state]+" *"+r.state+"*"))
	}
	if r.total > 0 {
		facts = append(facts, fmt.Sprintf("hosts %d/%d", r.done, r.total))
	}
	if r.eta != "" {
		facts = append(facts, "estimated start "+Escape(r.eta))
	}
	if r.operator != "" {
		facts = append(facts, "by "+Escape(r.operator))
	}
	facts = append(facts, "updated "+r.updated.UTC().Format("15:04:05 UTC"))
	blocks := []slackapi.Block{
		slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType, head, false, false), nil, nil),
		slackapi.NewContextBlock("", slackapi.NewTextBlockObject(slackapi.MarkdownType, strings.Join(facts, "  ·  "), false, false)),
	}
	if len(r.blockers) > 0 {
		var b strings.Builder
		b.WriteString("*waiting for:*")
		for _, x := range r.blockers {
			b.WriteString("\n• " + Escape(x))
		}
		blocks = append(blocks, slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType,
			truncateRunes(b.String(), mirrorMaxText), false, false), nil, nil))
	}
	// The last line stays visible: a SAL line such as a !force request
	// does not change the state or the blockers.
	return append(blocks, slackapi.NewSectionBlock(slackapi.NewTextBlockObject(slackapi.MarkdownType,
		"last: "+Escape(truncateRunes(r.last, mirrorMaxText)), false, false), nil, nil))
}

// fallback is the message's plain text (notifications, clients without
// blocks).
func (r *mirrorRequest) fallback() string {
	s := fmt.Sprintf("poolbot #%d", r.id)
	if r.state != "" {
		s += " " + r.state
	}
	if r.total > 0 {
		s += fmt.Sprintf(" (hosts %d/%d)", r.done, r.total)
	}
	return Escape(truncateRunes(s+": "+r.last, slackMaxReplyBytes))
}
