// Package hostns gives a test "host" (the lab's registry hosts are
// processes on 127.0.0.x) its own /etc/resolv.conf, so that the host's
// processes resolve through its datacenter's recursor: `getent ahosts` and
// Go's resolver read /etc/resolv.conf, which has no port, and each
// datacenter's recursor listens on port 53 of its own loopback address.
//
// A Host is a private mount namespace held open by a `sleep infinity`
// started under `unshare --mount --propagation private`; inside it the
// resolv.conf is bind-mounted over /etc/resolv.conf (and an nsswitch.conf
// whose hosts are "files dns" over /etc/nsswitch.conf), and Command runs
// argv in it with `nsenter --target <pid> --mount`. Everything is exec argv, no
// shell. The machine's own /etc/resolv.conf is never touched: the bind
// mount is made only after checking that the holder's mount namespace is
// not the test's. Needs root (CAP_SYS_ADMIN) and util-linux.
package hostns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// nsswitchConf makes host names come from /etc/hosts and DNS only.
const nsswitchConf = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"

// Host is a private mount namespace with its own /etc/resolv.conf.
type Host struct {
	// Name is the host's name, for messages.
	Name string
	// ResolvConf is the file bind-mounted over /etc/resolv.conf.
	ResolvConf string

	nsenter string
	holder  *exec.Cmd
	done    chan struct{}
}

// Start makes a Host for the test, removed when it ends. It skips (fails
// under CI) when unshare or nsenter is missing or the test is not root.
func Start(t testing.TB, name, resolvConf string) *Host {
	t.Helper()
	testenv.Need(t, "unshare")
	testenv.Need(t, "nsenter")
	if os.Geteuid() != 0 && !testenv.InCI() {
		t.Skip("a private mount namespace needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := Launch(ctx, name, resolvConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// Launch is Start for TestMain and the lab; the caller Closes the Host.
func Launch(ctx context.Context, name, resolvConf string) (*Host, error) {
	unshare, err := testenv.Lookup("unshare")
	if err != nil {
		return nil, fmt.Errorf("hostns: %w (Debian package util-linux)", err)
	}
	nsenter, err := testenv.Lookup("nsenter")
	if err != nil {
		return nil, fmt.Errorf("hostns: %w (Debian package util-linux)", err)
	}
	if _, err := os.Stat(resolvConf); err != nil {
		return nil, fmt.Errorf("hostns: host %s: %w", name, err)
	}
	h := &Host{Name: name, ResolvConf: resolvConf, nsenter: nsenter, done: make(chan struct{})}
	h.holder = exec.Command(unshare, "--mount", "--propagation", "private", "--", "sleep", "infinity")
	h.holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := h.holder.Start(); err != nil {
		return nil, fmt.Errorf("hostns: host %s: %w", name, err)
	}
	go func() { _ = h.holder.Wait(); close(h.done) }()

	// unshare execs sleep in the same process once the namespace exists;
	// until then /proc/<pid>/ns/mnt is still ours.
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("hostns: %w", err)
	}
	for {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(h.holder.Process.Pid) + "/ns/mnt")
		if err == nil && ns != own {
			break
		}
		select {
		case <-h.done:
			return nil, fmt.Errorf("hostns: host %s: unshare exited: %v", name, h.holder.ProcessState)
		case <-ctx.Done():
			h.Close()
			return nil, fmt.Errorf("hostns: host %s: no private mount namespace: %w", name, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	// nsswitch.conf too: a machine whose hosts line goes to
	// systemd-resolved (nss-resolve) would not read resolv.conf at all.
	nsswitch := filepath.Join(filepath.Dir(resolvConf), "nsswitch.conf."+name)
	if err := os.WriteFile(nsswitch, []byte(nsswitchConf), 0o644); err != nil {
		h.Close()
		return nil, fmt.Errorf("hostns: host %s: %w", name, err)
	}
	for _, m := range [][2]string{{resolvConf, "/etc/resolv.conf"}, {nsswitch, "/etc/nsswitch.conf"}} {
		if out, err := h.Command(ctx, "mount", "--bind", m[0], m[1]).CombinedOutput(); err != nil {
			h.Close()
			return nil, fmt.Errorf("hostns: host %s: bind-mount %s on %s: %w: %s", name, m[0], m[1], err, out)
		}
	}
	return h, nil
}

// Prefix is the argv that runs what follows it inside the host's mount
// namespace (nsenter --target <pid> --mount --), e.g. for the local
// executor's command template: append(h.Prefix(), "{argv}").
func (h *Host) Prefix() []string {
	return []string{h.nsenter, "--target", strconv.Itoa(h.holder.Process.Pid), "--mount", "--"}
}

// Command returns argv to run inside the host's mount namespace.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	p := h.Prefix()
	return exec.CommandContext(ctx, p[0], append(p[1:], argv...)...)
}

// Run runs argv in the host and returns its standard output; a non-zero
// exit is an error carrying the exit status and standard error. host must
// be the Host's name (it is the signature of dns.Runner).
func (h *Host) Run(ctx context.Context, host string, argv []string) ([]byte, error) {
	if host != h.Name {
		return nil, fmt.Errorf("hostns: asked to run on %s, this is %s", host, h.Name)
	}
	if len(argv) == 0 {
		return nil, errors.New("hostns: empty command")
	}
	cmd := h.Command(ctx, argv...)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if s := stderr.String(); s != "" {
			return out, fmt.Errorf("%w: %s", err, s)
		}
		return out, err
	}
	return out, nil
}

// Close ends the namespace (its bind mount goes with it).
func (h *Host) Close() {
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.holder.Process.Kill()
	<-h.done
}
