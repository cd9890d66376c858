package spicerack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"poolbot/integrations/conftool"
)

// writerLockDir is where python-etcd's Lock(client, "etcd") keeps its queue
// under spicerack's forced lock_prefix.
const writerLockDir = KeysBasePath + "/etcd"

// writerLockTTL is the lock_ttl spicerack passes: a writer that dies blocks
// the others for at most this long.
const writerLockTTL = 15 * time.Second

// ErrWriterLockBusy: the short writer lock stayed taken through every try.
type WriterLockBusyError struct {
	Tries  int
	Holder string // the key that sorted first at the last try
}

func (e *WriterLockBusyError) Error() string {
	return fmt.Sprintf("spicerack writer lock %s still taken after %d tries (first in queue: %s)", writerLockDir, e.Tries, e.Holder)
}

// writerLock is one held python-etcd lock.
type writerLock struct {
	key   string
	index uint64
}

// acquireWriterLock is python-etcd's Lock.acquire(blocking=False,
// lock_ttl=15) retried like spicerack's _acquire_etcd_lock: the k-th retry
// waits k × writerDelay.
func (l *Locks) acquireWriterLock(ctx context.Context) (writerLock, error) {
	var first string
	for try := 1; ; try++ {
		wl, holder, err := l.tryWriterLock(ctx)
		if err != nil {
			return writerLock{}, err
		}
		if holder == "" {
			return wl, nil
		}
		first = holder
		if try >= l.writerTries {
			return writerLock{}, &WriterLockBusyError{Tries: try, Holder: first}
		}
		l.log.Debug("spicerack writer lock taken, retrying", "first_in_queue", first, "try", try)
		select {
		case <-ctx.Done():
			return writerLock{}, fmt.Errorf("waiting for spicerack writer lock %s: %w", writerLockDir, ctx.Err())
		case <-l.clock.After(time.Duration(try) * l.writerDelay):
		}
	}
}

// tryWriterLock queues one in-order key and reports whether it sorts first.
// When it does not, the key is deleted again (python-etcd's release) and
// holder names the first key.
func (l *Locks) tryWriterLock(ctx context.Context) (wl writerLock, holder string, err error) {
	node, err := l.kv.CreateInOrderKey(ctx, writerLockDir, newHexUUID(), writerLockTTL)
	if err != nil {
		return writerLock{}, "", fmt.Errorf("spicerack writer lock: %w", err)
	}
	wl = writerLock{key: node.Key, index: node.ModifiedIndex}
	dir, err := l.kv.GetKey(ctx, writerLockDir, true)
	if err != nil {
		l.releaseWriterLock(wl)
		return writerLock{}, "", fmt.Errorf("spicerack writer lock: %w", err)
	}
	first := ""
	for _, n := range dir.Nodes {
		if !n.Dir && (first == "" || n.Key < first) {
			first = n.Key
		}
	}
	if first == wl.key {
		return wl, "", nil
	}
	if first == "" {
		// Our own key vanished between write and read: it expired (a
		// 15 s stall) or someone removed it. Not held.
		return writerLock{}, "", fmt.Errorf("spicerack writer lock: own key %s vanished before it could be checked", wl.key)
	}
	l.releaseWriterLock(wl)
	return writerLock{}, first, nil
}

// releaseWriterLock deletes the writer key, best effort: it expires anyway.
// It uses its own short context so that a cancelled request still releases.
func (l *Locks) releaseWriterLock(wl writerLock) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.kv.DeleteKey(ctx, wl.key, 0); err != nil && !conftool.IsEtcdCode(err, conftool.EtcdCodeKeyNotFound) {
		l.log.Warn("could not release spicerack writer lock (it expires by itself)", "key", wl.key, "err", err)
	}
}

// newHexUUID is Python's uuid.uuid4().hex: python-etcd's lock value.
func newHexUUID() string {
	return strings.ReplaceAll(NewUUID4(), "-", "")
}

// NewUUID4 is a random RFC 4122 version 4 uuid, as str(uuid.uuid4()).
func NewUUID4() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
