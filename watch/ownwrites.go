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
// Record right after each successful SetPooled.
//
// With the etcd backend a write is identified exactly by the modifiedIndex
// SetPooled returns, which is the index the watch reports for that write.
// confctl reports no index, so a polled change is matched by value and time
// instead: an unused record of the same pooled value within Window of the
// poll that saw it. Safe for concurrent use.
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
}

// NewOwnWrites returns an empty record. window bounds the value-and-time
// match of polled changes (DriftConfig.OwnWriteWindow); nil clock means the
// real clock.
func NewOwnWrites(clock clockwork.Clock, window time.Duration) *OwnWrites {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &OwnWrites{clock: clock, window: window, writes: map[objectKey][]ownWrite{}}
}

// Record notes that poolbot itself wrote st (as SetPooled returned it) to
// service's object in datacenter.
func (o *OwnWrites) Record(service, datacenter string, st conftool.State) {
	if o == nil {
		return
	}
	now := o.clock.Now()
	k := objectKey{service, datacenter}
	o.mu.Lock()
	defer o.mu.Unlock()
	ws := append(o.writes[k], ownWrite{at: now, pooled: st.Pooled, index: st.ModifiedIndex})
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
func (o *OwnWrites) Owns(c conftool.Change, seen time.Time) bool {
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
		return false
	}
	for i := range ws {
		w := &ws[i]
		if w.index != 0 || w.used || w.pooled != c.New.Pooled {
			continue
		}
		if d := seen.Sub(w.at); d <= o.window && d >= -o.window {
			w.used = true
			return true
		}
	}
	return false
}
