package slack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	slackapi "github.com/slack-go/slack"
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
// an operation. A line is about request <id> when it is a SAL line of the
// shape "poolbot #<id> <operator>: …" (the SAL package's Line), or a notice
// that starts with "#<id> ", optionally after "DRY-RUN " and/or
// "<operator>: ". The first such line posts the status message (Block
// Kit: the request, its state, the hosts restarted n/N, the last step);
// later ones update it. With mirror_thread each line is also posted as a
// reply in that message's thread, for the full history. A notice addressed
// to an operator ("alice: #12 … FAILED: …") is something a person must
// see, so it is also posted in the thread and broadcast to the channel.
// Other notices are posted as they are.
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

type mirrorLine struct {
	sal  bool
	text string
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

// Announce queues a notice (it implements the procedure's Announcer). It
// never blocks.
func (m *Mirror) Announce(_ context.Context, text string) { m.enqueue(mirrorLine{text: text}) }

// SAL queues a SAL line (without "!log "), to be called once the line was
// delivered to its durable sink. It never blocks.
func (m *Mirror) SAL(_ context.Context, line string) { m.enqueue(mirrorLine{sal: true, text: line}) }

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
	var (
		id        int64
		addressed bool
		ok        bool
	)
	if l.sal {
		id, ok = salRequestID(l.text)
	} else {
		id, addressed, ok = noticeRequestID(l.text)
	}
	if !ok {
		if _, err := m.post(ctx, "", false, slackapi.MsgOptionText(Escape(truncateRunes(l.text, slackMaxReplyBytes)), false)); err != nil {
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
		text := slackapi.MsgOptionText(Escape(truncateRunes(l.text, slackMaxReplyBytes)), false)
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
	// blockers and eta are what a waiting request waits for, from the
	// engine's notice "… waiting: <blocker>; <blocker>; estimated start
	// 15:05 UTC"; cleared when it proceeds.
	blockers []string
	eta      string
}

var hostsRE = regexp.MustCompile(`\((\d+)/(\d+)\)`)

// apply folds one line into the status.
func (r *mirrorRequest) apply(l mirrorLine, now time.Time) {
	text := l.text
	r.updated = now
	if l.sal {
		// "poolbot #12 alice: START - depool apus in codfw: T1 maint"
		_, rest, _ := strings.Cut(text, " ") // "#12 alice: …"
		_, rest, _ = strings.Cut(rest, " ")  // "alice: …"
		op, body, found := strings.Cut(rest, ": ")
		if found && op != "" && !strings.Contains(op, " ") {
			r.operator, text = op, body
		}
	}
	r.last = text
	if st := lineState(text); st != "" {
		r.state = st
		r.blockers, r.eta = nil, ""
		if st == "waiting" {
			r.blockers, r.eta = waitingBlockers(text)
		}
	}
	if t, ok := strings.CutPrefix(text, "START - "); ok {
		r.title = t
	}
	if strings.HasPrefix(text, "restarted ") {
		if m := hostsRE.FindStringSubmatch(text); m != nil {
			r.done, _ = strconv.Atoi(m[1])
			r.total, _ = strconv.Atoi(m[2])
		}
	}
}

// waitingBlockers splits the engine's waiting notice into its blockers
// and the estimated start.
func waitingBlockers(text string) (blockers []string, eta string) {
	_, rest, ok := strings.Cut(text, " waiting: ")
	if !ok {
		return nil, ""
	}
	for _, b := range strings.Split(rest, "; ") {
		switch {
		case strings.HasPrefix(b, "estimated start "):
			eta = strings.TrimPrefix(b, "estimated start ")
		case b == "start time unknown":
			eta = "unknown"
		case b != "":
			blockers = append(blockers, b)
		}
	}
	return blockers, eta
}

// lineState guesses the request's state from a SAL line or notice, in
// the words the procedure uses; "" means the line does not change it.
func lineState(text string) string {
	switch {
	case strings.HasPrefix(text, "END ("):
		outcome, _, _ := strings.Cut(strings.TrimPrefix(text, "END ("), ")")
		switch outcome {
		case "PASS":
			return "done"
		case "FAIL":
			return "failed"
		}
		return strings.ToLower(outcome)
	case strings.HasPrefix(text, "START - "), strings.HasPrefix(text, "deploy block taken"),
		strings.HasPrefix(text, "deploy block re-taken"), strings.Contains(text, " deploys are blocked while "):
		return "running"
	case strings.HasPrefix(text, "conftool: "):
		return "switching"
	case strings.HasPrefix(text, "restarted "):
		return "restarting"
	case strings.Contains(text, " DONE: "):
		return "done"
	case strings.Contains(text, " FAILED: "):
		return "failed"
	case strings.Contains(text, " CANCELLED: "):
		return "cancelled"
	case strings.Contains(text, " EXPIRED"):
		return "expired"
	case strings.Contains(text, " waiting: "), strings.Contains(text, " back to waiting: "):
		return "waiting"
	case strings.Contains(text, " proceeding: "):
		return "proceeding"
	}
	return ""
}

var stateEmoji = map[string]string{
	"waiting": ":hourglass_flowing_sand:", "proceeding": ":arrow_forward:", "running": ":arrows_counterclockwise:",
	"switching": ":twisted_rightwards_arrows:", "restarting": ":arrows_counterclockwise:",
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

// salRequestID reads the request ID of a SAL line "poolbot #<id> …".
func salRequestID(line string) (int64, bool) {
	rest, ok := strings.CutPrefix(line, "poolbot #")
	if !ok {
		return 0, false
	}
	return leadingID(rest, false)
}

// noticeRequestID reads the request ID a notice is about: "#<id> …",
// optionally after "DRY-RUN " and/or "<operator>: ". addressed reports
// the "<operator>: " form.
func noticeRequestID(text string) (id int64, addressed, ok bool) {
	text = strings.TrimPrefix(text, "DRY-RUN ")
	if !strings.HasPrefix(text, "#") {
		word, rest, found := strings.Cut(text, ": ")
		if !found || word == "" || len(word) > 64 || strings.ContainsAny(word, " #") {
			return 0, false, false
		}
		text, addressed = rest, true
	}
	rest, found := strings.CutPrefix(text, "#")
	if !found {
		return 0, false, false
	}
	id, ok = leadingID(rest, true)
	return id, addressed && ok, ok
}

// leadingID parses the digits at the start of s, which must be followed
// by a space (or, when colonOK, a colon) or end s. IDs are written
// without leading zeros ("#7", never "#07").
func leadingID(s string, colonOK bool) (int64, bool) {
	if s == "" || s[0] == '0' {
		return 0, false
	}
	n := 0
	for n < len(s) && n < 19 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	if n == 0 || (n < len(s) && s[n] != ' ' && (!colonOK || s[n] != ':')) {
		return 0, false
	}
	id, err := strconv.ParseInt(s[:n], 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}
