package scap

import (
	"bytes"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessInfo is best-effort information about a lock holder from /proc. A
// shared holder of the global lock writes nothing into the file, so this is
// the only way to tell an operator who is deploying and since when. Every
// field may be empty (the process exited, or lives in another PID
// namespace).
type ProcessInfo struct {
	// User owns the process (a user name, or "uid N").
	User string
	// Command is the command line, without a leading python interpreter.
	Command string
	// Started is when the process started (zero when unknown).
	Started time.Time
}

// userHZ is the unit of /proc/<pid>/stat's starttime. Linux fixes USER_HZ at
// 100 on every architecture it exports to user space.
const userHZ = 100

// readProcess reads what /proc says about pid; boot returns the boot time.
func readProcess(procRoot string, pid int, boot func() (time.Time, bool)) ProcessInfo {
	var p ProcessInfo
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid := strconv.FormatUint(uint64(st.Uid), 10)
			if u, err := user.LookupId(uid); err == nil {
				p.User = u.Username
			} else {
				p.User = "uid " + uid
			}
		}
	}
	if b, err := readBounded(filepath.Join(dir, "cmdline"), 4096); err == nil {
		p.Command = commandLine(b)
	}
	if b, err := readBounded(filepath.Join(dir, "stat"), 4096); err == nil {
		if ticks, ok := startTicks(b); ok {
			if bt, ok := boot(); ok {
				p.Started = bt.Add(time.Duration(ticks) * time.Second / userHZ)
			}
		}
	}
	return p
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, max)
	n, err := f.Read(buf)
	if n > 0 {
		return buf[:n], nil
	}
	return nil, err
}

// commandLine turns /proc/<pid>/cmdline into "scap sync-world msg": NULs
// become spaces, a python interpreter in front is dropped, the program is
// shown by its base name.
func commandLine(b []byte) string {
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) > 1 && strings.HasPrefix(filepath.Base(args[0]), "python") {
		args = args[1:]
		for len(args) > 1 && strings.HasPrefix(args[0], "-") { // python flags such as -u, -E
			args = args[1:]
		}
	}
	if len(args) == 0 || args[0] == "" {
		return ""
	}
	args[0] = filepath.Base(args[0])
	return sanitizeText(strings.Join(args, " "), 200)
}

// startTicks returns field 22 (starttime) of /proc/<pid>/stat. The command
// name (field 2) may contain spaces and parentheses, so fields are counted
// after the last ')'.
func startTicks(stat []byte) (uint64, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	const idx = 22 - 3 // fields after ')' start at field 3 (state)
	if len(f) <= idx {
		return 0, false
	}
	n, err := strconv.ParseUint(f[idx], 10, 64)
	return n, err == nil
}

func bootTime(procRoot string) (time.Time, bool) {
	b, err := readBounded(filepath.Join(procRoot, "stat"), 64<<10)
	if err != nil {
		return time.Time{}, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(n, 0).UTC(), true
		}
	}
	return time.Time{}, false
}
