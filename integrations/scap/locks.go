package scap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// Holder is what kind of lock fcntl(F_GETLK) found on a scap lock file.
type Holder int

const (
	// HolderNone: nobody holds a lock (a body left in the file is stale).
	HolderNone Holder = iota
	// HolderShared: a read lock (F_RDLCK). On the global lock file this is a
	// running scap command; scap takes the global file shared.
	HolderShared
	// HolderExclusive: a write lock (F_WRLCK). On the global lock file this
	// is `scap lock --all` (or poolbot's own deploy block); on a per-repo
	// file it is the scap command deploying that repo.
	HolderExclusive
)

func (h Holder) String() string {
	switch h {
	case HolderNone:
		return "none"
	case HolderShared:
		return "shared"
	case HolderExclusive:
		return "exclusive"
	}
	return fmt.Sprintf("Holder(%d)", int(h))
}

// LockStatus is what a probe of one lock file found.
type LockStatus struct {
	// Path is the probed file.
	Path string
	// Exists is false when the file does not exist (which means no holder).
	Exists bool
	// Holder is the kind of lock held by another process, per fcntl.
	Holder Holder
	// PID is the holder's PID as the kernel reports it: 0 without a holder,
	// -1 for an open-file-description (OFD) lock, whose owner Linux does
	// not report.
	PID int
	// Info is the JSON body (nil when empty or {}). It is only a hint: see
	// InfoMatches and StaleInfo.
	Info *LockInfo
	// RawInfo is a non-JSON body's first line (old scap wrote the bare reason).
	RawInfo string
	// Own is true when the lock is poolbot's own deploy block (this process).
	Own bool
	// Process is best-effort information about PID from /proc.
	Process ProcessInfo
}

// Held reports whether some process holds a lock on the file.
func (s LockStatus) Held() bool { return s.Holder != HolderNone }

// InfoMatches reports whether the body was written by the current holder.
func (s LockStatus) InfoMatches() bool {
	return s.Info != nil && s.Held() && s.PID > 0 && s.Info.PID == s.PID
}

// StaleInfo reports a body that does not describe the current holder: left
// behind by a holder that was killed (nobody holds the lock now), or by an
// earlier holder than the one holding it now.
func (s LockStatus) StaleInfo() bool { return s.Info != nil && !s.InfoMatches() }

func (s LockStatus) String() string {
	var b strings.Builder
	b.WriteString(s.Path)
	switch {
	case !s.Exists:
		b.WriteString(": missing (no holder)")
	case !s.Held():
		b.WriteString(": free")
	default:
		fmt.Fprintf(&b, ": held %s by %s", s.Holder, holderName(s.PID))
		if s.Own {
			b.WriteString(" (poolbot's own deploy block)")
		}
	}
	if s.Info != nil {
		stale := ""
		if s.StaleInfo() {
			stale = "stale "
		}
		fmt.Fprintf(&b, "; %sinfo: %s (pid %d) since %s: %q", stale, s.Info.Locker, s.Info.PID, s.Info.TimestampUTC, s.Info.Reason)
	} else if s.RawInfo != "" {
		fmt.Fprintf(&b, "; body: %q", s.RawInfo)
	}
	return b.String()
}

// ErrLockHeld is matched (errors.Is) by a *HeldError: the deploy block could
// not be taken because another process holds the lock. The caller goes back
// to waiting.
var ErrLockHeld = errors.New("scap lock is held by another process")

// HeldError says who holds the lock poolbot tried to take.
type HeldError struct {
	Status LockStatus
}

func (e *HeldError) Error() string {
	s := e.Status
	var what string
	switch s.Holder {
	case HolderShared:
		what = fmt.Sprintf("held shared by %s (a scap command is running)", holderName(s.PID))
	case HolderExclusive:
		what = fmt.Sprintf("held exclusively by %s", holderName(s.PID))
	default:
		what = "held by another process a moment ago (released since; try again)"
	}
	msg := fmt.Sprintf("scap: cannot block deploys: %s is %s", s.Path, what)
	if s.InfoMatches() {
		msg += fmt.Sprintf("; locker %s since %s, reason %q", s.Info.Locker, s.Info.TimestampUTC, s.Info.Reason)
	} else if s.Process.Command != "" {
		msg += fmt.Sprintf("; process %q of %s", s.Process.Command, s.Process.User)
	}
	return msg
}

// holderName names the holder F_GETLK reported.
func holderName(pid int) string {
	switch {
	case pid > 0:
		return fmt.Sprintf("pid %d", pid)
	case pid == -1:
		return "an open-file-description lock (Linux does not report its pid)"
	}
	return "a process outside poolbot's pid namespace"
}

// Is makes errors.Is(err, ErrLockHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrLockHeld }

// Release lifts a deploy block. It is safe to call more than once and from
// a deferred call: once it has succeeded, further calls return nil. It does
// not give up when ctx is already cancelled (a cancelled request must still
// release the block); ctx only carries values and deadlines for commands.
type Release func(ctx context.Context) error

// Blocker keeps new deployments from starting. Block either returns a
// Release (and the block is in place) or an error (and nothing is held). An
// error matching ErrLockHeld means a deployment got there first.
//
//	release, err := blocker.Block(ctx, "poolbot #42: depool apus in codfw (T422166)")
//	if err != nil { /* back to waiting */ }
//	defer release(ctx)
type Blocker interface {
	Block(ctx context.Context, reason string) (Release, error)
}

// LocksOptions configures NewLocks.
type LocksOptions struct {
	// GlobalLock is the file Block locks (default DefaultGlobalLock).
	GlobalLock string
	// Locker is written as "locker" (default DefaultLocker).
	Locker string
	Clock  clockwork.Clock
	Logger *slog.Logger
	// ProcRoot is where /proc is mounted (default "/proc").
	ProcRoot string
}

// Locks probes scap's lock files and implements the "lockfile" deploy
// block: both in one type because of two properties of POSIX record locks
// (the kind scap's fcntl.lockf takes):
//
//  1. F_GETLK does not report locks held by the calling process. A probe of
//     the file poolbot itself holds would say "free".
//  2. Closing ANY descriptor of a file drops ALL of the process's locks on
//     that file. A probe that opened and closed the global lock file while
//     poolbot holds it would silently lift the deploy block.
//
// So Probe first stats the path and, when it is the file (same device and
// inode) poolbot holds, answers from memory without opening it; a mutex
// keeps a probe from opening the file while Block takes the lock. No other
// code in the process may open the global lock file. The lock's descriptor
// is a raw fd held for the whole block (no *os.File whose finalizer could
// close it). If poolbot dies the kernel drops the lock and the JSON stays
// behind, exactly as when scap is killed. Use a single Locks per process
// (New makes one): a second one would not know the first one's lock.
type Locks struct {
	globalLock string
	locker     string
	clock      clockwork.Clock
	log        *slog.Logger
	procRoot   string

	mu   sync.Mutex
	held *heldLock

	// bootTime is read from /proc/stat once: it is constant and the file
	// is large.
	bootTime func() (time.Time, bool)
}

type heldLock struct {
	path     string
	fd       int
	dev, ino uint64
	info     LockInfo
	since    time.Time
	// extra are descriptors of the held file that a probe opened by
	// accident (the path was swapped to our file between stat and open);
	// closing them would drop the lock, so they are closed at release.
	extra []int
}

// NewLocks returns a Locks for the given options.
func NewLocks(o LocksOptions) *Locks {
	if o.GlobalLock == "" {
		o.GlobalLock = DefaultGlobalLock
	}
	if o.Locker == "" {
		o.Locker = DefaultLocker
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	procRoot := o.ProcRoot
	return &Locks{
		globalLock: o.GlobalLock, locker: o.Locker, clock: o.Clock, log: o.Logger, procRoot: procRoot,
		bootTime: sync.OnceValues(func() (time.Time, bool) { return bootTime(procRoot) }),
	}
}

// GlobalLock is the file Block locks.
func (l *Locks) GlobalLock() string { return l.globalLock }

// Probe reports who holds a lock on path. A missing file has no holder. An
// error means the file could not be probed (unreadable counts as closed).
func (l *Locks) Probe(ctx context.Context, path string) (LockStatus, error) {
	if err := ctx.Err(); err != nil {
		return LockStatus{Path: path}, fmt.Errorf("scap: probe %s: %w", path, err)
	}
	l.mu.Lock()
	st, err := l.probeLocked(path)
	l.mu.Unlock()
	if err == nil && st.Held() && !st.Own && st.PID > 0 {
		st.Process = readProcess(l.procRoot, st.PID, l.bootTime)
	}
	return st, err
}

// ProbeAll probes every path; the statuses are in the order of paths and
// the error joins the failures (a failed path keeps Path set only).
func (l *Locks) ProbeAll(ctx context.Context, paths []string) ([]LockStatus, error) {
	out := make([]LockStatus, len(paths))
	var errs []error
	for i, p := range paths {
		st, err := l.Probe(ctx, p)
		out[i] = st
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

func (l *Locks) probeLocked(path string) (LockStatus, error) {
	st := LockStatus{Path: path}
	var fi unix.Stat_t
	if err := unix.Stat(path, &fi); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st, nil
		}
		return st, fmt.Errorf("scap: probe %s: stat: %w", path, err)
	}
	st.Exists = true
	if l.isHeld(uint64(fi.Dev), fi.Ino) {
		return l.ownStatusLocked(path), nil
	}
	if fi.Mode&unix.S_IFMT != unix.S_IFREG {
		return st, fmt.Errorf("scap: probe %s: not a regular file (mode %#o)", path, fi.Mode)
	}

	// O_NONBLOCK: a FIFO planted at the path must not hang the probe.
	fd, err := openRetry(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY)
	readable := true
	if errors.Is(err, unix.EACCES) {
		// F_GETLK needs any descriptor; without read access there is no hint.
		fd, err = openRetry(path, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY)
		readable = false
	}
	if errors.Is(err, unix.ENOENT) {
		st.Exists = false
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("scap: probe %s: open: %w", path, err)
	}
	if err := unix.Fstat(fd, &fi); err != nil {
		unix.Close(fd)
		return st, fmt.Errorf("scap: probe %s: fstat: %w", path, err)
	}
	if l.isHeld(uint64(fi.Dev), fi.Ino) {
		// The path was swapped to our own lock file between stat and open.
		// Closing fd now would drop the deploy block: keep it until release.
		l.held.extra = append(l.held.extra, fd)
		return l.ownStatusLocked(path), nil
	}
	defer unix.Close(fd)
	if fi.Mode&unix.S_IFMT != unix.S_IFREG {
		return st, fmt.Errorf("scap: probe %s: not a regular file (mode %#o)", path, fi.Mode)
	}

	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 0}
	if err := fcntlRetry(fd, unix.F_GETLK, &lk); err != nil {
		return st, fmt.Errorf("scap: probe %s: fcntl(F_GETLK): %w", path, err)
	}
	switch lk.Type {
	case unix.F_UNLCK:
		st.Holder = HolderNone
	case unix.F_RDLCK:
		st.Holder, st.PID = HolderShared, int(lk.Pid)
	case unix.F_WRLCK:
		st.Holder, st.PID = HolderExclusive, int(lk.Pid)
	default:
		return st, fmt.Errorf("scap: probe %s: fcntl(F_GETLK) returned lock type %d", path, lk.Type)
	}
	if readable {
		body, err := preadAll(fd, maxHintBytes)
		if err != nil {
			return st, fmt.Errorf("scap: probe %s: read: %w", path, err)
		}
		st.Info, st.RawInfo = ParseLockBody(body)
	}
	return st, nil
}

func (l *Locks) isHeld(dev, ino uint64) bool {
	return l.held != nil && l.held.dev == dev && l.held.ino == ino
}

func (l *Locks) ownStatusLocked(path string) LockStatus {
	info := l.held.info
	return LockStatus{Path: path, Exists: true, Holder: HolderExclusive, PID: os.Getpid(), Info: &info, Own: true}
}

// Held returns the status of poolbot's own deploy block, if one is held.
func (l *Locks) Held() (LockStatus, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		return LockStatus{}, false
	}
	return l.ownStatusLocked(l.held.path), true
}

// Block takes an exclusive lock on the global lock file exactly as
// `scap lock --all` does: a non-blocking F_SETLK F_WRLCK over the whole file,
// then the file is truncated and scap's JSON (locker, pid, timestamp_utc,
// reason) written. Any other holder (a running scap holds the file shared)
// makes it fail at once with a *HeldError naming the holder's PID and
// reason. The reason is sanitised (control characters become spaces) and
// cut to 400 bytes. Only one block per process: a second Block before
// Release fails.
func (l *Locks) Block(ctx context.Context, reason string) (Release, error) {
	reason, err := normalizeReason(reason)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("scap: block deploys: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	path := l.globalLock
	if l.held != nil {
		return nil, fmt.Errorf("scap: block deploys: poolbot already holds %s since %s", l.held.path, l.held.info.TimestampUTC)
	}

	created := true
	fd, err := openRetry(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY)
	if errors.Is(err, unix.EEXIST) {
		created = false
		fd, err = openRetry(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY)
	}
	if err != nil {
		return nil, fmt.Errorf("scap: block deploys: open %s: %w", path, err)
	}
	var fi unix.Stat_t
	if err := unix.Fstat(fd, &fi); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("scap: block deploys: fstat %s: %w", path, err)
	}
	if fi.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("scap: block deploys: %s is not a regular file (mode %#o)", path, fi.Mode)
	}
	if created {
		// scap's lock files are 0666 so every deployer can lock them.
		if err := unix.Fchmod(fd, 0o666); err != nil {
			l.log.Warn("scap: could not make new lock file world-writable", "path", path, "err", err)
		}
	}

	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart, Start: 0, Len: 0}
	if err := fcntlRetry(fd, unix.F_SETLK, &lk); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			// We hold no lock on this file, so probing with and closing
			// this descriptor cannot drop anything of ours.
			st := LockStatus{Path: path, Exists: true}
			q := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
			if fcntlRetry(fd, unix.F_GETLK, &q) == nil {
				switch q.Type {
				case unix.F_RDLCK:
					st.Holder, st.PID = HolderShared, int(q.Pid)
				case unix.F_WRLCK:
					st.Holder, st.PID = HolderExclusive, int(q.Pid)
				}
			}
			if body, err := preadAll(fd, maxHintBytes); err == nil {
				st.Info, st.RawInfo = ParseLockBody(body)
			}
			unix.Close(fd)
			if st.PID > 0 {
				st.Process = readProcess(l.procRoot, st.PID, l.bootTime)
			}
			return nil, &HeldError{Status: st}
		}
		unix.Close(fd)
		return nil, fmt.Errorf("scap: block deploys: fcntl(F_SETLK) %s: %w", path, err)
	}

	now := l.clock.Now()
	info := LockInfo{
		Locker:       l.locker,
		PID:          os.Getpid(),
		TimestampUTC: now.UTC().Format(AsctimeLayout),
		Reason:       reason,
	}
	if err := rewrite(fd, info.MarshalScap()); err != nil {
		unlock := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart}
		_ = fcntlRetry(fd, unix.F_SETLK, &unlock)
		unix.Close(fd)
		return nil, fmt.Errorf("scap: block deploys: write %s: %w", path, err)
	}
	h := &heldLock{path: path, fd: fd, dev: uint64(fi.Dev), ino: fi.Ino, info: info, since: now}
	l.held = h
	l.log.Info("scap: deploy block taken", "path", path, "pid", info.PID, "reason", reason)
	return func(context.Context) error { return l.release(h) }, nil
}

// release writes {} (as scap does on a clean release), unlocks and closes.
func (l *Locks) release(h *heldLock) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != h {
		return nil // already released
	}
	var errs []error
	var fi unix.Stat_t
	if err := unix.Stat(h.path, &fi); err != nil || uint64(fi.Dev) != h.dev || fi.Ino != h.ino {
		// Someone removed or replaced the file while we held it: a scap
		// started since then locked the new file and was never blocked.
		errs = append(errs, fmt.Errorf("scap: release deploy block: %s was removed or replaced while poolbot held it; the block was not effective since then", h.path))
	}
	if err := rewrite(h.fd, []byte("{}")); err != nil {
		errs = append(errs, fmt.Errorf("scap: release deploy block: write {} to %s: %w", h.path, err))
	}
	unlock := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart}
	if err := fcntlRetry(h.fd, unix.F_SETLK, &unlock); err != nil {
		errs = append(errs, fmt.Errorf("scap: release deploy block: unlock %s: %w", h.path, err))
	}
	// Closing drops the lock anyway, so a failed unlock above is harmless.
	if err := unix.Close(h.fd); err != nil {
		errs = append(errs, fmt.Errorf("scap: release deploy block: close %s: %w", h.path, err))
	}
	for _, fd := range h.extra {
		unix.Close(fd)
	}
	l.held = nil
	l.log.Info("scap: deploy block released", "path", h.path, "held_for", l.clock.Since(h.since).Round(time.Second).String())
	return errors.Join(errs...)
}

// maxReasonBytes bounds a deploy block's reason (scap shows it to deployers).
const maxReasonBytes = 400

// normalizeReason makes a reason safe to write into the lock file and to
// pass to a command: control characters (IRC formatting codes included)
// become spaces and it is cut to maxReasonBytes. Only an empty reason is
// an error: the reason comes from an operator's command line, and a
// cosmetic problem in it must not fail the operation.
func normalizeReason(reason string) (string, error) {
	r := sanitizeText(reason, maxReasonBytes)
	if r == "" {
		return "", errors.New("scap: block deploys: a reason is required")
	}
	return r, nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0o666)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func fcntlRetry(fd int, cmd int, lk *unix.Flock_t) error {
	for {
		err := unix.FcntlFlock(uintptr(fd), cmd, lk)
		if err != unix.EINTR {
			return err
		}
	}
}

// preadAll reads at most max bytes from the start of the file.
func preadAll(fd int, max int) ([]byte, error) {
	buf := make([]byte, 0, 512)
	for len(buf) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		chunk := buf[len(buf):min(cap(buf), max)]
		n, err := unix.Pread(fd, chunk, int64(len(buf)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}

// rewrite replaces the file's content with data, like scap's
// truncate-then-write.
func rewrite(fd int, data []byte) error {
	if err := unix.Ftruncate(fd, 0); err != nil {
		return err
	}
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}
