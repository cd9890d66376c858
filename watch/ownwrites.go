package watch

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/integrations/conftool"
)

// Bounds of OwnWrites: writes kept per discovery object, and how long an
// etcd write's index is remembered.
const (
	maxOwnWritesPerObject = 16
	ownIndexMemory        = 24 * time.Hour
)

// OwnWrites remembers poolbot's own conftool writes so the drift watch does
// not take them for changes made outside poolbot. The procedure calls
// Intend right before each SetPooled and Record when it knows what the
// write left (its answer, or a read-back after the answer was lost), or
// Forget when the read-back shows the write did not land.
//
// With the etcd backend a settled write is identified exactly by the
// modifiedIndex SetPooled returns, which is the index the watch reports for
// that write. Before it is settled (the watch can see the write before
// SetPooled returns, and an answer can be lost altogether), the first change
// to the intended value seen within Window of the intent is poolbot's own,
// and its index is remembered. confctl reports no index, so a polled change
// is matched by value and time instead: an unused record of the same pooled
// value within Window of the poll that saw it. Safe for concurrent use.
type OwnWrites struct {
	clock  clockwork.Clock
	window time.Duration

	mu     sync.Mutex
	writes map[objectKey][]ownWrite
}

type objectKey struct{ service, datacenter string }

type ownWrite struct {
	at     time.Time
	pooled bool
	index  uint64
	used   bool // a polled change was matched to it
	// open: recorded by Intend and not yet settled by Record, so the
	// index of the write is not known from its answer.
	open bool
}

// NewOwnWrites returns an empty record. window bounds the value-and-time
// match of polled changes and of writes not yet settled
// (DriftConfig.OwnWriteWindow); nil clock means the real clock.
func NewOwnWrites(clock clockwork.Clock, window time.Duration) *OwnWrites {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &OwnWrites{clock: clock, window: window, writes: map[objectKey][]ownWrite{}}
}

// Intend notes that poolbot is about to set service's object in
// datacenter to pooled. It is called before the write, so that the write
// is known as poolbot's own whatever happens to its answer.
func (o *OwnWrites) Intend(service, datacenter string, pooled bool) {
	if o == nil {
		return
	}
	o.add(objectKey{service, datacenter}, ownWrite{at: o.clock.Now(), pooled: pooled, open: true})
}

// Record notes that poolbot itself wrote st (as SetPooled returned it, or
// as read back after its answer was lost) to service's object in
// datacenter. It settles the latest open intent of that value.
func (o *OwnWrites) Record(service, datacenter string, st conftool.State) {
	if o == nil {
		return
	}
	k := objectKey{service, datacenter}
	o.mu.Lock()
	ws := o.writes[k]
	for i := len(ws) - 1; i >= 0; i-- {
		w := &ws[i]
		if !w.open || w.pooled != st.Pooled {
			continue
		}
		if w.index != 0 && st.ModifiedIndex != 0 && w.index != st.ModifiedIndex {
			break // the watch matched another change to it: keep both
		}
		w.open = false
		if st.ModifiedIndex != 0 {
			w.index = st.ModifiedIndex
		}
		if w.index == 0 {
			// confctl: matched by value and time from now on, as before.
			w.at = o.clock.Now()
		}
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	o.add(k, ownWrite{at: o.clock.Now(), pooled: st.Pooled, index: st.ModifiedIndex})
}

// Forget drops the latest open intent to set pooled: the read-back showed
// that the write did not land, so a later change to that value is not
// poolbot's.
func (o *OwnWrites) Forget(service, datacenter string, pooled bool) {
	if o == nil {
		return
	}
	k := objectKey{service, datacenter}
	o.mu.Lock()
	defer o.mu.Unlock()
	ws := o.writes[k]
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i].open && ws[i].pooled == pooled && !ws[i].used {
			o.writes[k] = append(ws[:i:i], ws[i+1:]...)
			return
		}
	}
}

func (o *OwnWrites) add(k objectKey, nw ownWrite) {
	now := o.clock.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	ws := append(o.writes[k], nw)
	// Drop what can no longer match, and bound the rest.
	kept := ws[:0]
	for _, w := range ws {
		if now.Sub(w.at) <= max(ownIndexMemory, o.window) {
			kept = append(kept, w)
		}
	}
	if len(kept) > maxOwnWritesPerObject {
		kept = kept[len(kept)-maxOwnWritesPerObject:]
	}
	o.writes[k] = kept
}

// Owns reports whether c is poolbot's own write, c having been observed at
// seen. A deletion or an undecodable value is never poolbot's (it never
// deletes objects).
func (o *OwnWrites) Owns(c conftool.Change, seen time.Time) bool { return o.owns(c, seen, true) }

// mayOwn is Owns without using up a match: for reports.
func (o *OwnWrites) mayOwn(c conftool.Change, seen time.Time) bool { return o.owns(c, seen, false) }

func (o *OwnWrites) owns(c conftool.Change, seen time.Time, consume bool) bool {
	if o == nil || c.New == nil {
		return false
	}
	index := c.ModifiedIndex
	if index == 0 {
		index = c.New.ModifiedIndex
	}
	k := objectKey{c.Service, c.Datacenter}
	o.mu.Lock()
	defer o.mu.Unlock()
	ws := o.writes[k]
	if index != 0 {
		for _, w := range ws {
			if w.index == index {
				return true
			}
		}
		// A write not settled yet: the first change to its value since
		// the intent is the write (compare-and-swap: nobody else's write
		// can land between poolbot's read and its write unnoticed).
		for i := range ws {
			w := &ws[i]
			if !w.open || w.used || w.pooled != c.New.Pooled {
				continue
			}
			if d := seen.Sub(w.at); d >= 0 && d <= o.window {
				if consume {
					w.used, w.index = true, index
				}
				return true
			}
		}
		return false
	}
	for i := range ws {
		w := &ws[i]
		if w.index != 0 || w.used || w.pooled != c.New.Pooled {
			continue
		}
		if d := seen.Sub(w.at); d <= o.window && d >= -o.window {
			if consume {
				w.used = true
			}
			return true
		}
	}
	return false
}
