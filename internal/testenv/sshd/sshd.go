// Package sshd starts a real OpenSSH server (Debian openssh-server's
// /usr/sbin/sshd) on 127.0.0.1 for tests: a fresh ed25519 host key and
// client key, a config that only allows that client key, and a known_hosts
// file pinning the host key, all in the test's temporary directory. The
// server is stopped when the test ends.
//
// As root, sshd needs the privilege separation user `sshd` (created by the
// openssh-server package) and the directory /run/sshd, which Start creates
// when it is missing.
package sshd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"poolbot/internal/testenv"
)

// Server is a running sshd.
type Server struct {
	// Host is "127.0.0.1" (or WithHost's address); Port the port sshd
	// listens on; Addr both.
	Host string
	Port int
	Addr string
	// User is the current user, the one sshd lets in.
	User string
	// ClientKeyPath is an unencrypted OpenSSH private key authorized to log
	// in as User; ClientSigner is the same key.
	ClientKeyPath string
	ClientSigner  ssh.Signer
	// KnownHostsPath pins HostKey (ed25519) for "[127.0.0.1]:<Port>".
	KnownHostsPath string
	HostKey        ssh.PublicKey
	// ECDSAHostKey is the server's second host key, ECDSA P-256, when
	// started WithECDSAHostKey; nil otherwise. It is not in KnownHostsPath.
	ECDSAHostKey ssh.PublicKey
	// Dir holds the config, keys and files above.
	Dir string

	authorizedKeys string
	logs           logBuffer
	stop           func()
}

// Logs returns what sshd has written to stderr (-e) so far.
func (s *Server) Logs() string { return s.logs.String() }

// logBuffer keeps the first MiB of sshd's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 1<<20 {
		l.buf.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// AuthorizeKey lets another public key log in; sshd reads the authorized
// keys file on each connection.
func (s *Server) AuthorizeKey(t testing.TB, pub ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(s.authorizedKeys, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatalf("sshd: authorize key: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		t.Fatalf("sshd: authorize key: %v", err)
	}
}

// Option changes how Start sets the server up.
type Option func(*options)

type options struct {
	ecdsaHostKey bool
	host         string
}

// WithECDSAHostKey gives the server an ECDSA P-256 host key besides the
// ed25519 one, for tests of host key algorithm negotiation.
func WithECDSAHostKey() Option { return func(o *options) { o.ecdsaHostKey = true } }

// WithHost makes the server listen on another loopback address than
// 127.0.0.1 (e.g. 127.0.0.3, one of a test world's "hosts"), so that a
// command can tell which host it runs on from the server address in
// $SSH_CONNECTION.
func WithHost(addr string) Option { return func(o *options) { o.host = addr } }

// NewKey generates an ed25519 key pair and writes the private key, in
// OpenSSH format, to path (encrypted when passphrase is not empty).
func NewKey(t testing.TB, path string, passphrase []byte) ssh.Signer {
	t.Helper()
	signer, err := newKey(path, passphrase)
	if err != nil {
		t.Fatalf("sshd: %v", err)
	}
	return signer
}

func newKey(path string, passphrase []byte) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	var block *pem.Block
	if len(passphrase) > 0 {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "poolbot-test", passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "poolbot-test")
	}
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return signer, nil
}

func newECDSAHostKey(path string) (ssh.PublicKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "poolbot-test")
	if err != nil {
		return nil, fmt.Errorf("marshal ECDSA key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write ECDSA key: %w", err)
	}
	pub, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ECDSA public key: %w", err)
	}
	return pub, nil
}

// Start starts sshd on a free loopback port and waits until it accepts
// connections; it stops with the test. It skips the test when sshd is not
// installed (fails in CI).
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := testenv.Need(t, "sshd")
	s, err := launch(bin, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("sshd: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.Logs())
		}
	})
	return s
}

// Launch is Start for programs that are not tests (the lab): the files go
// to dir, and the caller stops the server with Stop.
func Launch(dir string, opts ...Option) (*Server, error) {
	bin, err := testenv.Lookup("sshd")
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s, err := launch(bin, dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	return s, nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s).
func (s *Server) Stop() {
	if s.stop != nil {
		s.stop()
	}
}

func launch(bin, dir string, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if !filepath.IsAbs(bin) {
		// sshd re-executes itself and refuses a relative path.
		abs, err := filepath.Abs(bin)
		if err != nil {
			return nil, err
		}
		bin = abs
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("sshd"); err != nil {
			return nil, fmt.Errorf("running as root needs the privilege separation user sshd (installed by openssh-server): %w", err)
		}
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("create /run/sshd: %w", err)
		}
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}

	host := "127.0.0.1"
	if o.host != "" {
		if ip := net.ParseIP(o.host); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return nil, fmt.Errorf("WithHost(%q): want an IPv4 loopback address", o.host)
		}
		host = o.host
	}
	s := &Server{
		Host:           host,
		User:           u.Username,
		Dir:            dir,
		ClientKeyPath:  filepath.Join(dir, "client_key"),
		KnownHostsPath: filepath.Join(dir, "known_hosts"),
		authorizedKeys: filepath.Join(dir, "authorized_keys"),
	}
	hostSigner, err := newKey(filepath.Join(dir, "host_key"), nil)
	if err != nil {
		return nil, err
	}
	s.HostKey = hostSigner.PublicKey()
	if o.ecdsaHostKey {
		if s.ECDSAHostKey, err = newECDSAHostKey(filepath.Join(dir, "host_key_ecdsa")); err != nil {
			return nil, err
		}
	}
	if s.ClientSigner, err = newKey(s.ClientKeyPath, nil); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.authorizedKeys, ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()), 0o600); err != nil {
		return nil, err
	}

	// OpenSSH 9.8 added PerSourcePenalties, which would lock the loopback
	// address out after the port probes and the deliberate handshake
	// failures of the tests; older versions reject the keyword, so it is
	// only kept when `sshd -t` accepts it.
	penalties := true
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfgPath := filepath.Join(dir, "sshd_config")
		for {
			if err := os.WriteFile(cfgPath, []byte(s.config(port, penalties)), 0o600); err != nil {
				return nil, err
			}
			out, err := exec.Command(bin, "-t", "-f", cfgPath).CombinedOutput()
			if err == nil {
				break
			}
			if penalties && strings.Contains(string(out), "PerSourcePenalties") {
				penalties = false
				continue
			}
			return nil, fmt.Errorf("config rejected by sshd -t: %v\n%s", err, out)
		}
		if err := s.start(bin, cfgPath, port); err != nil {
			lastErr = err
			continue
		}
		line := knownhosts.Line([]string{s.Addr}, s.HostKey)
		if err := os.WriteFile(s.KnownHostsPath, []byte(line+"\n"), 0o600); err != nil {
			s.Stop()
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("could not start: %v\n%s", lastErr, s.Logs())
}

// freePort is a TCP port that was free on 127.0.0.1 a moment ago (see
// testenv.FreePort); start retries when it is taken meanwhile.
func freePort() (int, error) {
	return testenv.Port("127.0.0.1")
}

func (s *Server) config(port int, penalties bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Port %d\n", port)
	fmt.Fprintf(&b, "ListenAddress %s\n", s.Host)
	fmt.Fprintf(&b, "HostKey %s\n", filepath.Join(s.Dir, "host_key"))
	if s.ECDSAHostKey != nil {
		fmt.Fprintf(&b, "HostKey %s\n", filepath.Join(s.Dir, "host_key_ecdsa"))
	}
	b.WriteString("PidFile none\n")
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", s.authorizedKeys)
	// The test directory is under /tmp, whose permissions StrictModes
	// would refuse.
	b.WriteString("StrictModes no\n")
	b.WriteString("PasswordAuthentication no\n")
	b.WriteString("KbdInteractiveAuthentication no\n")
	b.WriteString("UsePAM no\n")
	b.WriteString("PermitRootLogin prohibit-password\n")
	fmt.Fprintf(&b, "AllowUsers %s\n", s.User)
	if penalties {
		b.WriteString("PerSourcePenalties no\n")
	}
	return b.String()
}

// start runs sshd in the foreground (-D) with logs on stderr (-e) and
// waits for the port; it returns an error when sshd exits first (e.g. the
// port was taken meanwhile).
func (s *Server) start(bin, cfgPath string, port int) error {
	cmd := exec.Command(bin, "-D", "-e", "-f", cfgPath)
	cmd.Stdout = &s.logs
	cmd.Stderr = &s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	addr := net.JoinHostPort(s.Host, strconv.Itoa(port))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := testenv.WaitListening(ctx, addr, 10*time.Second)
	cancel()
	select {
	case <-exited:
		return fmt.Errorf("sshd exited: %v", waitErr)
	default:
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return err
	}
	s.Port = port
	s.Addr = addr
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	return nil
}
