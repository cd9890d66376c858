// Package cumin sets up Wikimedia's cumin (Debian's `cumin` package, 4.2.0
// on bookworm, with python3-clustershell) for tests: a set of named hosts,
// each a real OpenSSH server (internal/testenv/sshd) with its own host key
// and client key, and a cumin configuration in the test's temporary
// directory that reaches them through cumin's ClusterShell transport over
// SSH. Nothing is read from /etc/cumin, ~/.cumin or ~/.ssh: every run is
// hermetic, so tests using it run in parallel.
//
// What it writes (Env.Dir):
//
//	config.yaml   transport: clustershell; log_file in Dir; default_backend:
//	              direct (no PuppetDB); clustershell.ssh_options: [-F <ssh_config>]
//	aliases.yaml  the aliases given in Options (cumin reads aliases.yaml next
//	              to the config), e.g. docker-registry: D{registry[1001-1003].eqiad.test}
//	ssh_config    one "Host <name>" block per host: HostName 127.0.0.1, that
//	              host's sshd port, the user, its client key, the shared
//	              known_hosts file, StrictHostKeyChecking yes
//	known_hosts   every host's ed25519 key as "[127.0.0.1]:<port> ssh-ed25519 ..."
//
// Host names are resolved by ssh through ssh_config (as production names
// resolve through DNS), so hosts can be called registry1001.eqiad.test and
// cumin's folded node sets look as they do in production. A host named by
// a loopback address (127.0.0.3) gets its sshd on that address, so that a
// command knows which host it runs on from $SSH_CONNECTION. A host listed in
// Options.Unreachable points at 127.0.0.1 port 1, where nothing listens:
// ssh gets "Connection refused", as for a host that is down.
//
// Start is for tests (the servers stop with the test); Launch, for the lab,
// leaves that to Env.Stop.
//
// Env.Command is the argv prefix that runs cumin with that config. As root
// (USER=root) cumin insists on knowing the real user from SUDO_USER, which
// it logs; the prefix sets both as `sudo cumin` would in production, along
// with HOME and XDG_CONFIG_HOME (where ClusterShell looks for per-user
// defaults) pointing into Dir.
package cumin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"poolbot/internal/testenv"
	"poolbot/internal/testenv/sshd"
)

// Options describe the hosts and aliases of the environment.
type Options struct {
	// Hosts get one sshd each. Names are plain host names
	// ("registry1001.eqiad.test"), whose sshd listens on 127.0.0.1, or
	// loopback addresses ("127.0.0.3", a lab world's hosts), whose sshd
	// listens on that address.
	Hosts []string
	// Unreachable hosts are known to ssh_config but nothing listens there.
	Unreachable []string
	// Aliases are written to aliases.yaml: name -> cumin query.
	Aliases map[string]string
}

// Env is a ready cumin configuration and its hosts.
type Env struct {
	// Dir holds config.yaml, aliases.yaml, ssh_config, known_hosts and
	// cumin's log file (cumin.log).
	Dir           string
	ConfigPath    string
	SSHConfigPath string
	// KnownHostsPath pins every host's key; ssh checks it strictly.
	KnownHostsPath string
	LogPath        string
	// Command runs cumin with this configuration: append cumin's options,
	// the query and the command.
	Command []string
	// Hosts are Options.Hosts in order; Servers their sshd.
	Hosts   []string
	Servers map[string]*sshd.Server
	// Binary is the cumin executable.
	Binary string
}

// Start starts an sshd per host and writes the configuration. It skips the
// test when cumin is not installed (fails in CI).
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	bin := testenv.Need(t, "cumin")
	servers := map[string]*sshd.Server{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range o.Hosts {
		wg.Go(func() {
			srv := sshd.Start(t, hostOptions(h)...)
			mu.Lock()
			servers[h] = srv
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Skipped() || t.Failed() {
		t.FailNow()
	}
	e, err := write(bin, t.TempDir(), o, servers)
	if err != nil {
		t.Fatalf("cumin: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(e.LogPath); err == nil {
				t.Logf("cumin log (%s):\n%s", e.LogPath, b)
			}
		}
	})
	return e
}

// Launch is Start for programs that are not tests (the lab): the files
// and each host's sshd go under dir; Stop stops the servers.
func Launch(dir string, o Options) (*Env, error) {
	bin, err := testenv.Lookup("cumin")
	if err != nil {
		return nil, fmt.Errorf("cumin: %w", err)
	}
	servers := map[string]*sshd.Server{}
	stop := func() {
		for _, s := range servers {
			s.Stop()
		}
	}
	for _, h := range o.Hosts {
		d := filepath.Join(dir, "sshd-"+h)
		if err := os.MkdirAll(d, 0o700); err != nil {
			stop()
			return nil, err
		}
		srv, err := sshd.Launch(d, hostOptions(h)...)
		if err != nil {
			stop()
			return nil, fmt.Errorf("cumin: host %s: %w", h, err)
		}
		servers[h] = srv
	}
	e, err := write(bin, dir, o, servers)
	if err != nil {
		stop()
		return nil, fmt.Errorf("cumin: %w", err)
	}
	return e, nil
}

// Stop stops the hosts' sshd.
func (e *Env) Stop() {
	for _, s := range e.Servers {
		s.Stop()
	}
}

// hostOptions puts the sshd of a host named by a loopback address on that
// address.
func hostOptions(h string) []sshd.Option {
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() && ip.To4() != nil {
		return []sshd.Option{sshd.WithHost(h)}
	}
	return nil
}

// write writes the configuration for the running servers into dir.
func write(bin, dir string, o Options, servers map[string]*sshd.Server) (*Env, error) {
	e := &Env{
		Dir:            dir,
		ConfigPath:     filepath.Join(dir, "config.yaml"),
		SSHConfigPath:  filepath.Join(dir, "ssh_config"),
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
		LogPath:        filepath.Join(dir, "cumin.log"),
		Hosts:          append([]string(nil), o.Hosts...),
		Servers:        servers,
		Binary:         bin,
	}
	var kh, sc strings.Builder
	sc.WriteString("# Written by internal/testenv/cumin: the only ssh config cumin's ssh reads (-F).\n")
	for _, h := range o.Hosts {
		srv := servers[h]
		kh.WriteString(knownhosts.Line([]string{srv.Addr}, srv.HostKey) + "\n")
		fmt.Fprintf(&sc, "\nHost %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n", h, srv.Host, srv.Port, srv.User, srv.ClientKeyPath)
	}
	for _, h := range o.Unreachable {
		fmt.Fprintf(&sc, "\nHost %s\n  HostName 127.0.0.1\n  Port 1\n", h)
	}
	fmt.Fprintf(&sc, `
Host *
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  PasswordAuthentication no
  KbdInteractiveAuthentication no
  LogLevel ERROR
`, e.KnownHostsPath)
	files := []struct{ path, content string }{
		{e.KnownHostsPath, kh.String()},
		{e.SSHConfigPath, sc.String()},
		// cumin's config (see /usr/share/doc/cumin/examples/config.yaml).
		{e.ConfigPath, fmt.Sprintf(`# Written by internal/testenv/cumin.
transport: clustershell
log_file: %s
default_backend: direct
clustershell:
  ssh_options: ['-F', %s]
  fanout: 16
`, yamlQuote(e.LogPath), yamlQuote(e.SSHConfigPath))},
	}
	if len(o.Aliases) > 0 {
		names := make([]string, 0, len(o.Aliases))
		for n := range o.Aliases {
			names = append(names, n)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "%s: %s\n", n, yamlQuote(o.Aliases[n]))
		}
		files = append(files, struct{ path, content string }{filepath.Join(dir, "aliases.yaml"), b.String()})
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return nil, err
		}
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	e.Command = []string{"/usr/bin/env", "USER=root", "SUDO_USER=poolbot-test", "HOME=" + home, "XDG_CONFIG_HOME=" + home,
		bin, "-c", e.ConfigPath}
	return e, nil
}

// Version returns `cumin --version` ("cumin 4.2.0").
func (e *Env) Version(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(e.Command[0], append(e.Command[1:], "--version")...).CombinedOutput()
	if err != nil {
		t.Fatalf("cumin --version: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// yamlQuote writes s as a single-quoted YAML scalar.
func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
