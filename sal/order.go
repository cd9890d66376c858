package sal

import (
	"context"
	"log/slog"
	"sync"

	"poolbot"
	"poolbot/store"
)

// maxHeldNotices bounds the notices held behind undelivered SAL lines. A
// SAL sink that fails for hours must not make poolbot hoard notices: past
// the bound, notices are said at once (out of order, but said).
const maxHeldNotices = 1000

// PendingLines is the part of the store an OrderedAnnouncer needs.
type PendingLines interface {
	LastUnsentSAL(ctx context.Context, requestID poolbot.RequestID) (id int64, ok bool, err error)
}

// OrderedAnnouncer keeps each request's notices behind its SAL lines: a
// notice about a request is said only once every SAL line about that
// request queued before it has been delivered, so the channel shows one
// ordered stream per request ("DONE: 4/4 hosts restarted" after the host
// 4/4 line, "deploy block released" and "END (PASS)"), although notices
// are said directly and SAL lines go through the outbox and the Sender.
//
// A notice that names the line it follows (Notice.FollowsSAL) waits for
// that one; the others for the request's last line undelivered when they
// are said. A notice that waits for nothing is said at once, on the caller's
// goroutine, as before. One that must wait is held (in memory: notices are
// not durable) and said on the Sender's goroutine right after the line it
// waits for (Delivered). Notices about no request are never held. The
// Sender delivers lines strictly in outbox order, so "delivered up to id
// N" is one number.
type OrderedAnnouncer struct {
	lines PendingLines
	next  poolbot.Announcer
	log   *slog.Logger

	mu        sync.Mutex
	delivered int64 // highest outbox id delivered since start
	held      map[poolbot.RequestID][]*heldNotice
	nHeld     int
}

type heldNotice struct {
	after   int64 // the outbox line it waits for
	notice  poolbot.Notice
	sending bool // being said by Delivered; still first in its queue
}

// NewOrderedAnnouncer returns an announcer that says notices through next
// in order with the SAL lines in lines (nil next: notices are dropped).
// Wire its Delivered into the Sender's Delivered.
func NewOrderedAnnouncer(lines PendingLines, next poolbot.Announcer, log *slog.Logger) *OrderedAnnouncer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if next == nil { // no channel to say notices in
		next = poolbot.AnnouncerFunc(func(context.Context, poolbot.Notice) {})
	}
	return &OrderedAnnouncer{lines: lines, next: next, log: log, held: map[poolbot.RequestID][]*heldNotice{}}
}

// Announce implements poolbot.Announcer.
func (o *OrderedAnnouncer) Announce(ctx context.Context, n poolbot.Notice) {
	if n.Request == 0 {
		o.next.Announce(ctx, n)
		return
	}
	o.mu.Lock()
	// Under the lock, so that Delivered cannot pass the line between the
	// query and the check.
	after, pending := n.FollowsSAL, n.FollowsSAL > 0
	if !pending {
		var err error
		if after, pending, err = o.lines.LastUnsentSAL(ctx, n.Request); err != nil {
			o.log.Warn("notice said without waiting for its SAL lines", "request", int64(n.Request), "err", err)
			pending = false
		}
	}
	wait := pending && after > o.delivered
	if !wait && len(o.held[n.Request]) == 0 || o.nHeld >= maxHeldNotices {
		if o.nHeld >= maxHeldNotices {
			o.log.Warn("too many notices wait for SAL lines; saying this one now", "request", int64(n.Request), "held", o.nHeld)
		}
		o.mu.Unlock()
		o.next.Announce(ctx, n)
		return
	}
	// Behind the line it follows, or behind the notices held before it.
	o.held[n.Request] = append(o.held[n.Request], &heldNotice{after: after, notice: n})
	o.nHeld++
	o.mu.Unlock()
}

// Delivered records that the SAL line was delivered and says the notices
// that waited for it (sal.Sender.Delivered).
func (o *OrderedAnnouncer) Delivered(ctx context.Context, line store.OutboxLine) {
	o.mu.Lock()
	o.delivered = max(o.delivered, line.ID)
	o.mu.Unlock()
	o.release(ctx, func(h *heldNotice) bool { return h.after <= line.ID })
}

// Release says every held notice, whatever it waits for: at shutdown,
// once the outbox was flushed as far as it could be, a notice said late
// is better than none.
func (o *OrderedAnnouncer) Release(ctx context.Context) {
	o.release(ctx, func(*heldNotice) bool { return true })
}

// release says, request by request and in order, the held notices that
// may go.
func (o *OrderedAnnouncer) release(ctx context.Context, may func(*heldNotice) bool) {
	o.mu.Lock()
	ids := make([]poolbot.RequestID, 0, len(o.held))
	for id := range o.held {
		ids = append(ids, id)
	}
	o.mu.Unlock()
	for _, id := range ids {
		for {
			o.mu.Lock()
			q := o.held[id]
			if len(q) == 0 || q[0].sending || !may(q[0]) && q[0].after > o.delivered {
				o.mu.Unlock()
				break
			}
			h := q[0]
			h.sending = true // a notice announced meanwhile queues behind it
			o.mu.Unlock()
			o.next.Announce(ctx, h.notice)
			o.mu.Lock()
			if q := o.held[id]; len(q) > 0 && q[0] == h {
				if len(q) == 1 {
					delete(o.held, id)
				} else {
					o.held[id] = q[1:]
				}
				o.nHeld--
			}
			o.mu.Unlock()
		}
	}
}

// Held is how many notices wait for SAL lines.
func (o *OrderedAnnouncer) Held() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nHeld
}
