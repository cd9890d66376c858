package procedure

import (
	"context"
	"slices"
	"time"

	"poolbot"
)

// Notices: what the lifecycle tells the channel, and the memory that
// keeps a waiting request from repeating itself (one notice per change of
// blockers, none again after a scap run beats the deploy block).

func (e *Engine) announce(ctx context.Context, n poolbot.Notice) {
	n.DryRun = n.DryRun || e.cfg.DryRun
	e.log.Info("notice", "text", n.String())
	if e.deps.Announce != nil {
		e.deps.Announce.Announce(ctx, n)
	}
}

// about is a notice (or SAL line) about r of kind, reporting state
// ("" for none).
func about(r poolbot.Request, kind poolbot.NoticeKind, state poolbot.State, text string) poolbot.Notice {
	return poolbot.Notice{Request: r.ID, Operator: r.Operator, Kind: kind, State: state, Text: text}
}

// toOperator is a notice about r that r's operator must see: it is
// addressed to them.
func toOperator(r poolbot.Request, kind poolbot.NoticeKind, state poolbot.State, text string) poolbot.Notice {
	n := about(r, kind, state, text)
	n.To = r.Operator
	return n
}

// noteChanged records sig as the last blocker signature announced for r
// and reports whether it differs from the previous one.
func (e *Engine) noteChanged(r poolbot.Request, sig string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := e.noticed[r.Service][r.ID] != sig
	e.noticed[r.Service][r.ID] = sig
	return changed
}

// forgetNotices drops what was announced for requests of service that are
// no longer in its queue (cancelled or expired while waiting).
func (e *Engine) forgetNotices(service string, queue []poolbot.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.noticed[service] {
		if !slices.ContainsFunc(queue, func(r poolbot.Request) bool { return r.ID == id }) {
			delete(e.noticed[service], id)
			delete(e.slips, id)
		}
	}
}

// slipBackoff is how long to wait before request r tries the deploy
// block again after a scap run beat it: ScapPoll, doubling with each
// attempt in a row, at most 30 s. A wake-up (a "Finished scap" line, a
// cancel) cuts it short.
func (e *Engine) slipBackoff(r poolbot.Request) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.slips[r.ID]
	e.slips[r.ID] = n + 1
	d := e.cfg.ScapPoll << min(n, 10)
	return min(d, 30*time.Second)
}
