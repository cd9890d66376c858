package scap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// lockDir returns a directory with scap-named lock files paths (not created).
func lockDir(t testing.TB) (global, staging string) {
	dir := t.TempDir()
	return filepath.Join(dir, "scap-global-lock"), filepath.Join(dir, "scap.srv_mediawiki-staging.lock")
}

func currentUserName(t testing.TB) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestProbeMissingFileHasNoHolder(t *testing.T) {
	global, _ := lockDir(t)
	st, err := NewLocks(LocksOptions{}).Probe(context.Background(), global)
	if err != nil {
		t.Fatal(err)
	}
	if st.Exists || st.Held() || st.Info != nil {
		t.Fatalf("missing file: %+v", st)
	}
}

func TestProbeFreeFiles(t *testing.T) {
	global, _ := lockDir(t)
	for _, body := range []string{"", "{}", "{}\n"} {
		if err := os.WriteFile(global, []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
		st, err := NewLocks(LocksOptions{}).Probe(context.Background(), global)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Exists || st.Held() || st.Info != nil || st.RawInfo != "" || st.StaleInfo() {
			t.Fatalf("body %q: %+v", body, st)
		}
	}
}

func TestProbeRefusesNonRegularFile(t *testing.T) {
	global, _ := lockDir(t)
	if err := unix.Mkfifo(global, 0o600); err != nil {
		t.Fatal(err)
	}
	// A FIFO would block a plain open(O_RDONLY) forever.
	_, err := NewLocks(LocksOptions{}).Probe(context.Background(), global)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}

func TestProbeSharedHolderIsARunningScap(t *testing.T) {
	global, _ := lockDir(t)
	before := time.Now()
	c := startHolder(t, "hold-shared", global)

	st, err := NewLocks(LocksOptions{}).Probe(context.Background(), global)
	if err != nil {
		t.Fatal(err)
	}
	if st.Holder != HolderShared || st.PID != c.pid || st.Own {
		t.Fatalf("want shared holder pid %d, got %+v", c.pid, st)
	}
	if st.Info != nil || st.StaleInfo() {
		t.Fatalf("shared holders write nothing: %+v", st)
	}
	// Who and since come from /proc for a shared holder.
	if st.Process.User != currentUserName(t) {
		t.Errorf("process user %q, want %q", st.Process.User, currentUserName(t))
	}
	if !strings.Contains(st.Process.Command, filepath.Base(os.Args[0])) || !strings.Contains(st.Process.Command, "hold-shared") {
		t.Errorf("process command %q", st.Process.Command)
	}
	if st.Process.Started.Before(before.Add(-2*time.Second)) || st.Process.Started.After(time.Now().Add(2*time.Second)) {
		t.Errorf("process started %v, test started %v", st.Process.Started, before)
	}
}

func TestProbeExclusiveHolderWithScapJSON(t *testing.T) {
	global, _ := lockDir(t)
	c := startHolder(t, "hold-exclusive", global, "jdoe", "Investigating T123456 before the train")

	st, err := NewLocks(LocksOptions{}).Probe(context.Background(), global)
	if err != nil {
		t.Fatal(err)
	}
	if st.Holder != HolderExclusive || st.PID != c.pid {
		t.Fatalf("want exclusive holder pid %d, got %+v", c.pid, st)
	}
	if !st.InfoMatches() || st.StaleInfo() {
		t.Fatalf("the body should describe the holder: %+v", st)
	}
	if st.Info.Locker != "jdoe" || st.Info.Reason != "Investigating T123456 before the train" || st.Info.PID != c.pid {
		t.Fatalf("info %+v", st.Info)
	}
	if ts, ok := st.Info.Time(); !ok || time.Since(ts) > time.Minute {
		t.Fatalf("timestamp %q", st.Info.TimestampUTC)
	}

	c.stop() // clean release: scap writes {}
	st, err = NewLocks(LocksOptions{}).Probe(context.Background(), global)
	if err != nil {
		t.Fatal(err)
	}
	if st.Held() || st.Info != nil {
		t.Fatalf("after clean release: %+v", st)
	}
}

func TestProbeAfterHolderSIGKILLedIsFreeWithStaleHint(t *testing.T) {
	global, staging := lockDir(t)
	c := startHolder(t, "hold-exclusive", staging, "jdoe", "Backport for [[gerrit:42|testwikis to 1.44.0-wmf.8 (T123123)]]")
	if err := os.WriteFile(global, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	c.kill9()

	locks := NewLocks(LocksOptions{})
	st, err := locks.Probe(context.Background(), staging)
	if err != nil {
		t.Fatal(err)
	}
	if st.Held() || st.PID != 0 {
		t.Fatalf("the kernel drops a killed holder's lock: %+v", st)
	}
	if st.Info == nil || st.Info.PID != c.pid || st.Info.Locker != "jdoe" {
		t.Fatalf("the killed holder's JSON stays behind: %+v", st)
	}
	if !st.StaleInfo() || st.InfoMatches() {
		t.Fatalf("that JSON must read as stale, not as a holder: %+v", st)
	}
	if !strings.Contains(st.String(), "free") || !strings.Contains(st.String(), "stale info") {
		t.Errorf("String() = %q", st.String())
	}

	// The Monitor does not count a stale body as activity.
	m := NewMonitor(MonitorOptions{Locks: locks, LockFiles: []string{global, staging}, GlobalLock: global})
	act, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !act.Clear() || act.Busy || len(act.Reasons) != 0 {
		t.Fatalf("stale hint made activity: %+v", act)
	}
}

// This documents the two POSIX record lock traps Locks exists for.
func TestOwnProcessLocksAreInvisibleAndAnyCloseDropsThem(t *testing.T) {
	global, _ := lockDir(t)
	fd, err := unix.Open(global, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if st := childProbe(t, global); st.Holder != HolderExclusive || st.PID != os.Getpid() {
		t.Fatalf("another process sees our lock: %+v", st)
	}

	// A Locks that does not know about this lock: F_GETLK in the holding
	// process reports nothing…
	st, err := NewLocks(LocksOptions{}).Probe(context.Background(), global)
	if err != nil {
		t.Fatal(err)
	}
	if st.Held() {
		t.Fatalf("F_GETLK reported the calling process's own lock: %+v", st)
	}
	// …and closing its own descriptor dropped our lock, held on another fd.
	if st := childProbe(t, global); st.Held() {
		t.Fatalf("the probe's close should have dropped the lock: %+v", st)
	}
}

func TestBlockFailsAgainstRunningScap(t *testing.T) {
	global, _ := lockDir(t)
	c := startHolder(t, "hold-shared", global)
	locks := NewLocks(LocksOptions{GlobalLock: global})

	release, err := locks.Block(context.Background(), "poolbot #7: pool apus in eqiad")
	if err == nil {
		release(context.Background())
		t.Fatal("Block succeeded while scap holds the global lock shared")
	}
	if !errors.Is(err, ErrLockHeld) {
		t.Fatalf("err = %v, want ErrLockHeld", err)
	}
	var held *HeldError
	if !errors.As(err, &held) || held.Status.PID != c.pid || held.Status.Holder != HolderShared {
		t.Fatalf("err = %#v, want the shared holder pid %d", err, c.pid)
	}
	if !strings.Contains(err.Error(), "pid "+strconv.Itoa(c.pid)) || !strings.Contains(err.Error(), "scap command is running") {
		t.Errorf("error text %q", err)
	}
	if _, ok := locks.Held(); ok {
		t.Fatal("a failed Block holds nothing")
	}
	if b, _ := os.ReadFile(global); len(b) != 0 {
		t.Fatalf("a failed Block must not write: %q", b)
	}
}

func TestBlockFailsAgainstScapLockAll(t *testing.T) {
	global, _ := lockDir(t)
	c := startHolder(t, "hold-exclusive", global, "jdoe", "Emergency: investigating outage T999")
	_, err := NewLocks(LocksOptions{GlobalLock: global}).Block(context.Background(), "poolbot #8: depool apus in codfw")
	var held *HeldError
	if !errors.As(err, &held) || held.Status.PID != c.pid || held.Status.Holder != HolderExclusive {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"pid " + strconv.Itoa(c.pid), "jdoe", "Emergency: investigating outage T999"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestBlockHoldsLikeScapLockAllAndReleases(t *testing.T) {
	global, staging := lockDir(t)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 4, 2, 14, 9, 39, 0, time.UTC))
	locks := NewLocks(LocksOptions{GlobalLock: global, Locker: "poolbot", Clock: clock})
	const reason = "poolbot #42: depool apus in codfw (T422166), ask in #wikimedia-operations"

	release, err := locks.Block(context.Background(), reason)
	if err != nil {
		t.Fatal(err)
	}
	defer release(context.Background())

	// Read the body from another process: opening and closing the file
	// here would drop the very lock under test.
	want := fmt.Sprintf("{\n    \"locker\": \"poolbot\",\n    \"pid\": %d,\n    \"timestamp_utc\": \"Thu Apr  2 14:09:39 2026\",\n    \"reason\": %q\n}", os.Getpid(), reason)
	if b := runHelperOnce(t, "cat", global); b != want {
		t.Fatalf("lock file body\n got %q\nwant %q", b, want)
	}
	if fi, err := os.Stat(global); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("a created lock file is 0666 like scap's: %v %v", fi.Mode(), err)
	}

	// Another process sees poolbot as the exclusive holder, with its JSON.
	st := childProbe(t, global)
	if st.Holder != HolderExclusive || st.PID != os.Getpid() || !st.InfoMatches() {
		t.Fatalf("child probe: %+v", st)
	}
	if st.Info.Locker != "poolbot" || st.Info.Reason != reason || st.Info.TimestampUTC != "Thu Apr  2 14:09:39 2026" {
		t.Fatalf("child probe info: %+v", st.Info)
	}
	// scap, which takes the global lock shared, is kept out.
	if out := runHelperOnce(t, "try-shared", global); out != "blocked "+strconv.Itoa(os.Getpid()) {
		t.Fatalf("try-shared while blocked: %q", out)
	}

	// Probing the held file in this process (directly, via a symlink, and
	// through the Monitor) must neither report it free nor drop the lock.
	link := filepath.Join(filepath.Dir(global), "link-to-global")
	if err := os.Symlink(global, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{global, link} {
		own, err := locks.Probe(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if !own.Own || own.Holder != HolderExclusive || own.PID != os.Getpid() || own.Info.Reason != reason {
			t.Fatalf("own probe of %s: %+v", p, own)
		}
	}
	if err := os.WriteFile(staging, []byte("{}"), 0o666); err != nil {
		t.Fatal(err)
	}
	m := NewMonitor(MonitorOptions{Locks: locks, LockFiles: []string{global, staging}, GlobalLock: global, Clock: clock})
	act, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if act.Busy || !act.Clear() || len(act.Own) != 1 || act.Own[0].PID != os.Getpid() {
		t.Fatalf("poolbot's own block is not a deployment: %+v", act)
	}
	if st := childProbe(t, global); st.Holder != HolderExclusive || st.PID != os.Getpid() {
		t.Fatalf("in-process probes dropped the deploy block: %+v", st)
	}

	if _, err := locks.Block(context.Background(), "second"); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("second Block: %v", err)
	}

	if err := release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(global); string(b) != "{}" {
		t.Fatalf("after release the body is %q, want {}", b)
	}
	if st := childProbe(t, global); st.Held() || st.Info != nil {
		t.Fatalf("after release: %+v", st)
	}
	if out := runHelperOnce(t, "try-shared", global); out != "ok" {
		t.Fatalf("try-shared after release: %q", out)
	}
	if err := release(context.Background()); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, ok := locks.Held(); ok {
		t.Fatal("Held after release")
	}
}

func TestReleaseWorksWithCancelledContext(t *testing.T) {
	global, _ := lockDir(t)
	locks := NewLocks(LocksOptions{GlobalLock: global})
	release, err := locks.Block(context.Background(), "poolbot #1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := release(ctx); err != nil {
		t.Fatal(err)
	}
	if st := childProbe(t, global); st.Held() {
		t.Fatalf("still held: %+v", st)
	}
}

func TestReleaseReportsReplacedLockFile(t *testing.T) {
	global, _ := lockDir(t)
	locks := NewLocks(LocksOptions{GlobalLock: global})
	release, err := locks.Block(context.Background(), "poolbot #2")
	if err != nil {
		t.Fatal(err)
	}
	// Someone replaces the file: a new scap would lock the new inode.
	tmp := global + ".new"
	if err := os.WriteFile(tmp, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, global); err != nil {
		t.Fatal(err)
	}
	// The probe now sees the new file, which nobody holds; opening and
	// closing it cannot affect our lock on the old inode.
	st, err := locks.Probe(context.Background(), global)
	if err != nil || st.Own || st.Held() {
		t.Fatalf("probe of the replaced path: %+v %v", st, err)
	}
	err = release(context.Background())
	if err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("release: %v", err)
	}
}

func TestBlockSanitizesReasons(t *testing.T) {
	global, _ := lockDir(t)
	locks := NewLocks(LocksOptions{GlobalLock: global})
	for _, r := range []string{"", "   ", "\x02\x03"} {
		if rel, err := locks.Block(context.Background(), r); err == nil {
			rel(context.Background())
			t.Errorf("empty reason %q accepted", r)
		}
	}
	if _, err := os.Stat(global); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a rejected reason must not touch the lock file: %v", err)
	}
	// Operator text is cleaned, not refused: a refused reason would fail
	// the operation over cosmetics.
	cases := map[string]string{
		"line\nbreak":                  "line break",
		"\x02bold\x02 and \x0304red":   "bold  and  04red",
		"bad \xff utf8":                "bad   utf8",
		strings.Repeat("x", 500):       strings.Repeat("x", 400-len("…")) + "…",
		"poolbot #1: depool (T422166)": "poolbot #1: depool (T422166)",
	}
	for in, want := range cases {
		rel, err := locks.Block(context.Background(), in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		own, _ := locks.Held()
		rel(context.Background())
		if own.Info.Reason != want {
			t.Errorf("reason %q stored as %q, want %q", in, own.Info.Reason, want)
		}
	}
}
