package apus

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// HostsFile gives one registry host its own answer for the discovery name
// without DNS and without touching the machine's /etc/hosts: the registry
// runs in a private mount namespace (util-linux unshare, as root) where
// the file is bind-mounted over /etc/hosts. Point rewrites the file in
// place, so a running process sees the change (Go's resolver re-reads
// /etc/hosts when its mtime changes, at most every 5 s).
//
// It stands in for the lab DNS in tests of the storage alone; the lab
// stories use gdnsd and pdns-recursor instead.
type HostsFile struct {
	// Path is the file bind-mounted over /etc/hosts.
	Path string

	mu sync.Mutex
}

// NewHostsFile creates dir/hosts-<host> answering name with addr.
func NewHostsFile(dir, host, name, addr string) (*HostsFile, error) {
	if strings.ContainsAny(host, "/\x00") {
		return nil, fmt.Errorf("apus hosts file: bad host %q", host)
	}
	h := &HostsFile{Path: filepath.Join(dir, "hosts-"+host)}
	if err := h.Point(name, addr); err != nil {
		return nil, err
	}
	return h, nil
}

// Point makes name resolve to addr (written in place: the bind mount
// follows the inode, not the name).
func (h *HostsFile) Point(name, addr string) error {
	if strings.ContainsAny(name+addr, " \t\r\n\x00#") {
		return fmt.Errorf("apus hosts file: bad entry %q %q", name, addr)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	content := fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s\n", addr, name)
	if err := os.WriteFile(h.Path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("apus hosts file: %w", err)
	}
	return nil
}

// Wrapper is the command line to run a registry under (see
// registry.Options.Wrapper): unshare's private mount namespace, the bind
// mount, then exec of the registry, so the registry keeps the PID.
func (h *HostsFile) Wrapper() []string {
	return []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount --bind "$0" /etc/hosts && exec "$@"`, h.Path}
}

// CheckNamespaces reports whether this process may run Wrapper (root with
// mount namespaces), trying a harmless one.
func CheckNamespaces() error {
	h, err := os.CreateTemp("", "poolbot-hosts-check-")
	if err != nil {
		return err
	}
	h.Close()
	defer os.Remove(h.Name())
	hf := &HostsFile{Path: h.Name()}
	argv := append(hf.Wrapper(), "/bin/true")
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("per-host /etc/hosts needs root and mount namespaces (unshare --mount): %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
