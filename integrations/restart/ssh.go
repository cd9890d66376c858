package restart

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"poolbot"
	"poolbot/internal/secret"
)

// SSHConfig configures the ssh executor.
type SSHConfig struct {
	// User is the remote login. Required.
	User string `yaml:"user"`
	// Port is the remote sshd port; default 22.
	Port int `yaml:"port"`
	// KeyFile is a private key in OpenSSH, PKCS#1/PKCS#8 or SEC1 PEM form.
	KeyFile string `yaml:"key_file"`
	// Passphrase is the key's passphrase, read from a file or an
	// environment variable. Only for an encrypted KeyFile.
	Passphrase secret.Ref `yaml:"passphrase"`
	// UseAgent authenticates with the keys of the SSH agent at
	// $SSH_AUTH_SOCK (tried after KeyFile when both are set).
	UseAgent bool `yaml:"use_agent"`
	// KnownHosts is the known_hosts file that pins every host's key.
	// Required: there is no way to skip host key checking.
	KnownHosts string `yaml:"known_hosts"`
	// ConnectTimeout bounds TCP connect plus the SSH handshake and
	// authentication; default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// DefaultConnectTimeout bounds connect plus handshake when
// ssh.connect_timeout is not set.
const DefaultConnectTimeout = 10 * time.Second

// Validate checks the ssh section; key names are given as prefix+key.
// It reads nothing but checks that the named files exist, since a missing
// known_hosts or key file is a configuration mistake best reported at
// start-up.
func (c SSHConfig) Validate(prefix string) error {
	var errs []error
	if c.User == "" {
		errs = append(errs, fmt.Errorf("%suser: required", prefix))
	} else if err := validateUser(c.User); err != nil {
		errs = append(errs, fmt.Errorf("%suser: %w", prefix, err))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("%sport: %d is not a TCP port", prefix, c.Port))
	}
	if c.KeyFile == "" && !c.UseAgent {
		errs = append(errs, fmt.Errorf("%skey_file: required unless %suse_agent is true", prefix, prefix))
	}
	if c.KeyFile != "" {
		if err := fileExists(c.KeyFile); err != nil {
			errs = append(errs, fmt.Errorf("%skey_file: %w", prefix, err))
		}
	}
	if c.Passphrase.IsSet() {
		if c.KeyFile == "" {
			errs = append(errs, fmt.Errorf("%spassphrase: set without %skey_file", prefix, prefix))
		}
		if err := c.Passphrase.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%spassphrase: %w", prefix, err))
		}
		if c.Passphrase.File != "" {
			if err := fileExists(c.Passphrase.File); err != nil {
				errs = append(errs, fmt.Errorf("%spassphrase.file: %w", prefix, err))
			}
		}
	}
	if c.KnownHosts == "" {
		errs = append(errs, fmt.Errorf("%sknown_hosts: required (host keys are always checked)", prefix))
	} else if err := fileExists(c.KnownHosts); err != nil {
		errs = append(errs, fmt.Errorf("%sknown_hosts: %w", prefix, err))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("%sconnect_timeout: must not be negative", prefix))
	}
	return errors.Join(errs...)
}

func fileExists(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

func validateUser(u string) error {
	if len(u) > 64 || u[0] == '-' {
		return fmt.Errorf("invalid user name %q", u)
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("invalid user name %q", u)
		}
	}
	return nil
}

// SSH runs commands over SSH with golang.org/x/crypto/ssh.
//
// Each Run dials a new connection, runs one session and closes the
// connection. Reusing connections would save a handshake (tens of
// milliseconds) per command, but a restart touches a host a handful of times
// minutes apart, and a fresh connection per command means no stale or
// half-dead connection state, no keepalive logic, and a host key checked on
// every command.
type SSH struct {
	cfg         SSHConfig
	opts        Options
	signers     []ssh.Signer
	agentSocket string
	hostKeys    ssh.HostKeyCallback
	// dial replaces the TCP dial in tests; nil dials with net.Dialer.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewSSH loads the key, passphrase and known_hosts files named in cfg. The
// agent socket is taken from $SSH_AUTH_SOCK now, when cfg.UseAgent is set;
// the agent itself is asked for keys on each Run.
func NewSSH(cfg SSHConfig, opts Options) (*SSH, error) {
	if err := cfg.Validate("ssh."); err != nil {
		return nil, fmt.Errorf("restart: %w", err)
	}
	if cfg.Port == 0 {
		cfg.Port = 22
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	s := &SSH{cfg: cfg, opts: opts.withDefaults()}

	if cfg.KeyFile != "" {
		signer, err := loadSigner(cfg.KeyFile, cfg.Passphrase)
		if err != nil {
			return nil, fmt.Errorf("restart: ssh.key_file: %w", err)
		}
		s.signers = append(s.signers, signer)
	}
	if cfg.UseAgent {
		s.agentSocket = os.Getenv("SSH_AUTH_SOCK")
		if s.agentSocket == "" {
			return nil, errors.New("restart: ssh.use_agent: SSH_AUTH_SOCK is not set")
		}
	}
	cb, err := knownhosts.New(cfg.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("restart: ssh.known_hosts: %w", err)
	}
	s.hostKeys = cb
	return s, nil
}

func loadSigner(keyFile string, passphrase secret.Ref) (ssh.Signer, error) {
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	if !passphrase.IsSet() {
		signer, err := ssh.ParsePrivateKey(pemBytes)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("%s is encrypted: set ssh.passphrase", keyFile)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		return signer, nil
	}
	pass, err := passphrase.Read()
	if err != nil {
		return nil, fmt.Errorf("passphrase (%s): %w", passphrase, err)
	}
	signer, err := ssh.ParsePrivateKeyWithPassphrase(pemBytes, []byte(pass))
	if err != nil {
		// The error never contains the passphrase.
		return nil, fmt.Errorf("%s with passphrase from ssh.passphrase (%s): %w", keyFile, passphrase, err)
	}
	return signer, nil
}

// Run runs argv on host as one shell-quoted command string (see ShellJoin).
func (s *SSH) Run(ctx context.Context, host string, argv []string) (Result, error) {
	start := s.opts.Clock.Now()
	res := Result{Host: host, Argv: argv, ExitCode: -1}
	fail := func(op string, err error) (Result, error) {
		res.Duration = s.opts.Clock.Since(start)
		s.opts.Logger.Debug("ssh run failed", "host", host, "argv", argv, "op", op, "err", err, "duration", res.Duration)
		return res, &RunError{Host: host, Via: "ssh", Op: op, Err: err}
	}
	if err := ValidateHost(host); err != nil {
		return fail("validate", err)
	}
	if err := validateArgv(argv); err != nil {
		return fail("validate", err)
	}
	ctx, cancel := s.opts.runContext(ctx)
	defer cancel()

	addr := net.JoinHostPort(host, strconv.Itoa(s.cfg.Port))
	// One deadline for connect, handshake and authentication together, as
	// ConnectTimeout promises: the handshake gets what the connect left.
	connectBy := time.Now().Add(s.cfg.ConnectTimeout) // network deadlines are wall-clock time
	dial := s.dial
	if dial == nil {
		dialer := net.Dialer{Deadline: connectBy}
		dial = dialer.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return fail("connect", fmt.Errorf("%s: %w", addr, ctxError(ctx)))
		}
		return fail("connect", err)
	}

	// Cancellation: once the session runs, ask the remote process to stop,
	// then close the connection, which ends every blocked read. The signal
	// is best effort: a process without a tty is left running when the
	// connection drops, and OpenSSH's sshd honours "signal" requests only in
	// privilege-separated sessions, which root logins are not; then the
	// remote command runs to its end while Run reports the cancellation.
	var session atomic.Pointer[ssh.Session]
	var closeOnce sync.Once
	closeConn := func() { closeOnce.Do(func() { conn.Close() }) }
	stop := context.AfterFunc(ctx, func() {
		if sess := session.Load(); sess != nil {
			_ = sess.Signal(ssh.SIGTERM)
		}
		closeConn()
	})
	defer stop()
	defer closeConn()

	// ssh.ClientConfig.Timeout only covers the TCP connect of ssh.Dial, which
	// is not used here; a server that accepts and never speaks would hang
	// the handshake forever without this deadline.
	_ = conn.SetDeadline(connectBy)

	auth := []ssh.AuthMethod{}
	if len(s.signers) > 0 {
		auth = append(auth, ssh.PublicKeys(s.signers...))
	}
	if s.agentSocket != "" {
		var ad net.Dialer
		ac, err := ad.DialContext(ctx, "unix", s.agentSocket)
		if err != nil {
			return fail("connect", fmt.Errorf("ssh agent at SSH_AUTH_SOCK: %w", err))
		}
		defer ac.Close()
		auth = append(auth, ssh.PublicKeysCallback(agent.NewClient(ac).Signers))
	}
	clientConfig := &ssh.ClientConfig{
		User:              s.cfg.User,
		Auth:              auth,
		HostKeyCallback:   s.hostKeys,
		HostKeyAlgorithms: s.hostKeyAlgorithms(addr),
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, clientConfig)
	if err != nil {
		if ctx.Err() != nil {
			return fail("handshake", ctxError(ctx))
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fail("handshake", fmt.Errorf("%s: no SSH handshake within %s of dialing: %w", addr, poolbot.FormatDuration(s.cfg.ConnectTimeout), ErrTimeout))
		}
		return fail("handshake", err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()

	sess, err := client.NewSession()
	if err != nil {
		if ctx.Err() != nil {
			return fail("session", ctxError(ctx))
		}
		return fail("session", err)
	}
	defer sess.Close()
	out := newTailBuffer(s.opts.MaxOutput)
	sess.Stdout = out
	sess.Stderr = out
	session.Store(sess)
	if ctx.Err() != nil {
		// Cancelled between the handshake and storing the session: the
		// AfterFunc has already run and closed the connection.
		return fail("session", ctxError(ctx))
	}

	runErr := sess.Run(ShellJoin(argv))
	res.Output = out.Bytes()
	res.OutputBytes = out.Total()
	res.Duration = s.opts.Clock.Since(start)

	var exitErr *ssh.ExitError
	switch {
	case runErr == nil:
		// Exit status 0 arrived: the command succeeded, even if the context
		// ended just afterwards.
		res.ExitCode = 0
	case ctx.Err() != nil:
		// Killed or cut off by our own cancellation: the outcome is unknown.
		return fail("run", ctxError(ctx))
	case errors.As(runErr, &exitErr):
		res.ExitCode = exitErr.ExitStatus()
		if sig := exitErr.Signal(); sig != "" {
			res.Detail = "killed by signal " + sig
		}
	default:
		var missing *ssh.ExitMissingError
		if errors.As(runErr, &missing) {
			return fail("run", errors.New("session closed without an exit status"))
		}
		return fail("run", fmt.Errorf("connection lost: %w", runErr))
	}
	s.opts.Logger.Debug("ssh run", "host", host, "argv", argv, "exit", res.ExitCode, "duration", res.Duration)
	return res, nil
}

// hostKeyAlgorithms restricts the handshake to the key types pinned for addr
// in known_hosts. Without it the client offers x/crypto's default
// preference (ECDSA and RSA before ed25519), and a host with several host
// keys whose pinned key is, say, ed25519 would present its ECDSA key and
// fail as a "key mismatch". It asks the known_hosts
// callback about a key no host can have: the resulting KeyError lists every
// key known for the address. nil (the library default) when the host is
// not in the file, so the handshake fails with "key is unknown".
func (s *SSH) hostKeyAlgorithms(addr string) []string {
	var keyErr *knownhosts.KeyError
	err := s.hostKeys(addr, probeAddr(addr), probeKey{})
	if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range keyErr.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			// An RSA key signs with SHA-2 in modern servers.
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
			add(ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

// probeAddr is a net.Addr for the host key probe.
type probeAddr string

func (a probeAddr) Network() string { return "tcp" }
func (a probeAddr) String() string  { return string(a) }

// probeKey is a public key that matches nothing in any known_hosts file.
type probeKey struct{}

func (probeKey) Type() string    { return "poolbot-probe" }
func (probeKey) Marshal() []byte { return []byte("\x00\x00\x00\x0dpoolbot-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error {
	return errors.New("probe key verifies nothing")
}
