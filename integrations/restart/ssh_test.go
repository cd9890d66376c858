package restart

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"poolbot/internal/secret"
	"poolbot/internal/testenv"
	"poolbot/internal/testenv/sshd"
)

// sshConfigFor is an ssh executor config for the test sshd.
func sshConfigFor(srv *sshd.Server) SSHConfig {
	return SSHConfig{
		User:           srv.User,
		Port:           srv.Port,
		KeyFile:        srv.ClientKeyPath,
		KnownHosts:     srv.KnownHostsPath,
		ConnectTimeout: 5 * time.Second,
	}
}

func newTestSSH(t testing.TB, cfg SSHConfig) *SSH {
	t.Helper()
	e, err := NewSSH(cfg, Options{DefaultTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustRunError(t *testing.T, err error, op string) *RunError {
	t.Helper()
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RunError", err, err)
	}
	if re.Op != op {
		t.Fatalf("RunError.Op = %q, want %q (%v)", re.Op, op, err)
	}
	return re
}

func TestSSHRunIDUN(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e := newTestSSH(t, sshConfigFor(srv))
	res, err := e.Run(context.Background(), srv.Host, []string{"id", "-un"})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, srv.Logs())
	}
	if res.ExitCode != 0 || !res.OK() {
		t.Fatalf("exit %d, output %q", res.ExitCode, res.Output)
	}
	if got := strings.TrimSpace(string(res.Output)); got != srv.User {
		t.Fatalf("id -un = %q, want %q", got, srv.User)
	}
	if res.Duration <= 0 || res.Host != srv.Host {
		t.Fatalf("result %+v", res)
	}
}

func TestSSHExitCodeAndStderr(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e := newTestSSH(t, sshConfigFor(srv))
	res, err := e.Run(context.Background(), srv.Host, []string{"sh", "-c", "echo to-stdout; echo oops >&2; exit 3"})
	if err != nil {
		t.Fatalf("a non-zero exit must not be an error: %v", err)
	}
	if res.ExitCode != 3 {
		t.Fatalf("exit %d, want 3", res.ExitCode)
	}
	if !strings.Contains(string(res.Output), "oops") || !strings.Contains(string(res.Output), "to-stdout") {
		t.Fatalf("output %q lacks stdout or stderr", res.Output)
	}
	// stdout and stderr are separate SSH channel streams, so the order in
	// which their bytes reach the shared buffer is not defined: either is
	// a correct summary.
	if got := res.Summary(100); got != "exit 3: to-stdout | oops" && got != "exit 3: oops | to-stdout" {
		t.Fatalf("summary %q, want exit 3 with both lines", got)
	}

	// Killed by a signal: 128+15, with the signal named.
	res, err = e.Run(context.Background(), srv.Host, []string{"sh", "-c", "kill -TERM $$"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 143 || res.Detail != "killed by signal TERM" {
		t.Fatalf("exit %d detail %q, want 143 / killed by signal TERM", res.ExitCode, res.Detail)
	}
}

// nastyArgs are argv elements that would do harm if the remote shell
// interpreted them.
func nastyArgs(dir string) []string {
	return []string{
		"'; touch " + filepath.Join(dir, "pwned") + "; echo '",
		"$(touch " + filepath.Join(dir, "pwned2") + ")",
		"`id`",
		"a b\tc",
		"line1\nline2",
		"",
		"--help",
		"*",
		`\'"\\`,
		"it's",
		"; rm -rf /nonexistent-poolbot",
		"ünïcødé",
	}
}

// TestSSHQuoting sends argv elements full of shell syntax and checks each
// arrives as exactly one literal argument and nothing was executed.
func TestSSHQuoting(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e := newTestSSH(t, sshConfigFor(srv))
	dir := t.TempDir()
	args := nastyArgs(dir)
	argv := append([]string{"printf", `[%s]\n`}, args...)
	res, err := e.Run(context.Background(), srv.Host, argv)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v exit %d output %q", err, res.ExitCode, res.Output)
	}
	var want strings.Builder
	for _, a := range args {
		want.WriteString("[" + a + "]\n")
	}
	if string(res.Output) != want.String() {
		t.Fatalf("remote saw\n%q\nwant\n%q", res.Output, want.String())
	}
	for _, f := range []string{"pwned", "pwned2"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Fatalf("%s was created: the remote shell ran injected text", f)
		}
	}
}

func TestSSHWrongHostKey(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	other, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := ssh.NewPublicKey(other)
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{srv.Addr}, otherPub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := sshConfigFor(srv)
	cfg.KnownHosts = kh
	_, err = newTestSSH(t, cfg).Run(context.Background(), srv.Host, []string{"true"})
	mustRunError(t, err, "handshake")
	if !strings.Contains(err.Error(), "handshake failed") || !strings.Contains(err.Error(), "key mismatch") {
		t.Fatalf("error %q does not say handshake failed / key mismatch", err)
	}

	// A known_hosts without the host at all: "key is unknown".
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{"[127.0.0.1]:1"}, otherPub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = newTestSSH(t, cfg).Run(context.Background(), srv.Host, []string{"true"})
	mustRunError(t, err, "handshake")
	if !strings.Contains(err.Error(), "key is unknown") {
		t.Fatalf("error %q does not say the key is unknown", err)
	}
}

// TestSSHHostKeyAlgorithms pins only the ed25519 host key of a server that
// also has an ECDSA one, which x/crypto prefers by default: the handshake
// must ask for the pinned type, or it would fail as a key mismatch. The
// pin is written hashed, as Debian's ssh writes known_hosts.
func TestSSHHostKeyAlgorithms(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t, sshd.WithECDSAHostKey())
	cfg := sshConfigFor(srv)
	cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	hashed := knownhosts.HashHostname(knownhosts.Normalize(srv.Addr)) + " " + string(ssh.MarshalAuthorizedKey(srv.HostKey))
	if err := os.WriteFile(cfg.KnownHosts, []byte(hashed), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newTestSSH(t, cfg)
	if got := e.hostKeyAlgorithms(srv.Addr); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("algorithms for a pinned ed25519 key: %v", got)
	}
	if got := e.hostKeyAlgorithms("127.0.0.1:1"); got != nil {
		t.Fatalf("algorithms for an unknown host: %v, want nil (library default)", got)
	}
	res, err := e.Run(context.Background(), srv.Host, []string{"true"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run against the ed25519 pin: %v", err)
	}

	// And the other way round: only the ECDSA key pinned.
	if err := os.WriteFile(cfg.KnownHosts, []byte(knownhosts.Line([]string{srv.Addr}, srv.ECDSAHostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = newTestSSH(t, cfg).Run(context.Background(), srv.Host, []string{"true"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run against the ECDSA pin: %v", err)
	}
}

func TestSSHMissingKnownHosts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	sshd.NewKey(t, key, nil)
	_, err := NewSSH(SSHConfig{User: "root", KeyFile: key, KnownHosts: filepath.Join(dir, "nope")}, Options{})
	if err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Fatalf("missing known_hosts: err %v", err)
	}
	_, err = NewSSH(SSHConfig{User: "root", KeyFile: key}, Options{})
	if err == nil || !strings.Contains(err.Error(), "ssh.known_hosts: required") {
		t.Fatalf("empty known_hosts: err %v", err)
	}
}

// TestSSHHandshakeTimeout connects to a socket that accepts and never
// sends the SSH banner: the handshake deadline must end it.
func TestSSHHandshakeTimeout(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, silent
		}
	}()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	sshd.NewKey(t, key, nil)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := SSHConfig{User: "root", Port: l.Addr().(*net.TCPAddr).Port, KeyFile: key, KnownHosts: kh, ConnectTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err = newTestSSH(t, cfg).Run(context.Background(), "127.0.0.1", []string{"true"})
	elapsed := time.Since(start)
	mustRunError(t, err, "handshake")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v does not wrap ErrTimeout", err)
	}
	if elapsed > 3*time.Second {
		t.Fatalf("handshake timeout took %s", elapsed)
	}
	select {
	case c := <-accepted:
		held = append(held, c)
	default:
		t.Fatal("the blackhole never saw a connection")
	}

	// The context's deadline is honoured as well when it is the shorter.
	cfg.ConnectTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = newTestSSH(t, cfg).Run(ctx, "127.0.0.1", []string{"true"})
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 3*time.Second {
		t.Fatalf("context deadline: err %v after %s", err, time.Since(start))
	}
}

// TestSSHConnectTimeoutCoversConnectAndHandshake: connect_timeout bounds
// the connect and the handshake together. A connect that takes nearly all
// of it leaves the handshake (to a server that never speaks) only the rest,
// not a fresh connect_timeout of its own.
func TestSSHConnectTimeoutCoversConnectAndHandshake(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, silent
		}
	}()
	defer func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	}()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	sshd.NewKey(t, key, nil)
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const timeout = 2 * time.Second
	cfg := SSHConfig{User: "root", Port: l.Addr().(*net.TCPAddr).Port, KeyFile: key, KnownHosts: kh, ConnectTimeout: timeout}
	e := newTestSSH(t, cfg)
	slowConnect := timeout * 95 / 100
	e.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		select {
		case <-time.After(slowConnect):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	start := time.Now()
	_, err = e.Run(context.Background(), "127.0.0.1", []string{"true"})
	elapsed := time.Since(start)
	mustRunError(t, err, "handshake")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v does not wrap ErrTimeout", err)
	}
	// One timeout is 2s; a fresh one for the handshake would make it 3.9s
	// at least.
	if elapsed > timeout*18/10 {
		t.Fatalf("connect (%s) and handshake took %s, more than connect_timeout %s allows", slowConnect, elapsed, timeout)
	}
}

func TestSSHConnectRefused(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	cfg := sshConfigFor(srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = newTestSSH(t, cfg).Run(context.Background(), "127.0.0.1", []string{"true"})
	mustRunError(t, err, "connect")
	if !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error %q", err)
	}
}

func TestSSHAuthFailure(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	cfg := sshConfigFor(srv)
	cfg.KeyFile = filepath.Join(t.TempDir(), "stranger")
	sshd.NewKey(t, cfg.KeyFile, nil)
	_, err := newTestSSH(t, cfg).Run(context.Background(), srv.Host, []string{"true"})
	mustRunError(t, err, "handshake")
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("error %q", err)
	}
}

// TestSSHCancel cancels a running `sleep` and checks that Run returns long
// before the sleep would end, with the cancellation, and that the remote
// process got SIGTERM.
func TestSSHCancel(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e := newTestSSH(t, sshConfigFor(srv))
	marker := uniqueSleep()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := e.Run(ctx, srv.Host, []string{"sleep", marker})
		done <- outcome{res, err}
	}()
	pid := waitForProcess(t, "sleep\x00"+marker+"\x00", 10*time.Second)
	cancel()
	// The remote sleep has most of its 29 s to go: a Run back within 10 s
	// was cut short by the cancel (and says so below), on a slow machine too.
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return within 10s of cancel")
	}
	mustRunError(t, o.err, "run")
	if !errors.Is(o.err, context.Canceled) || o.res.ExitCode != -1 {
		t.Fatalf("err %v exit %d, want context.Canceled and -1", o.err, o.res.ExitCode)
	}
	if os.Geteuid() == 0 {
		// sshd honours "signal" requests only in a privilege-separated
		// session, which a root login does not get: the remote command
		// runs on. Stop it here so it does not outlive the test.
		t.Logf("logged in as root: sshd ignores signal requests, remote sleep %d left running; killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return
	}
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("remote sleep (pid %d) to end after cancel", pid), func() bool { return !processAlive(pid) })
}

// TestSSHDefaultTimeout: a Run whose context has no deadline gets the
// executor's default. It covers connect and handshake too, so on a slow
// machine it may end before the remote sleep starts.
func TestSSHDefaultTimeout(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e, err := NewSSH(sshConfigFor(srv), Options{DefaultTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	marker := uniqueSleep()
	start := time.Now()
	_, err = e.Run(context.Background(), srv.Host, []string{"sleep", marker})
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a timeout", err)
	}
	// The sleep lasts 29 s: back well before, the default timeout ended it.
	if took > 15*time.Second {
		t.Fatalf("took %s", took)
	}
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a *RunError", err, err)
	}
	if os.Geteuid() == 0 && re.Op == "run" {
		// See TestSSHCancel: the remote sleep of a root login runs on. The
		// exec request may have been cut off too, so none may have started.
		if pid, ok := findProcess("sleep\x00"+marker+"\x00", 5*time.Second); ok {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		} else {
			t.Logf("no remote sleep started before the timeout (%v)", err)
		}
	}
}

// uniqueSleep is a sleep duration of about 30 s that no other process
// uses, to find a remote sleep in /proc (the "remote" host is this one).
func uniqueSleep() string {
	return "29." + strconv.Itoa(100000+int(time.Now().UnixNano()%800000))
}

func TestSSHOutputBounded(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e, err := NewSSH(sshConfigFor(srv), Options{MaxOutput: 1000})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background(), srv.Host, []string{"sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo; echo last-line"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v exit %d", err, res.ExitCode)
	}
	if len(res.Output) != 1000 || res.OutputBytes != 300000+1+10 || !res.Truncated() {
		t.Fatalf("len %d total %d", len(res.Output), res.OutputBytes)
	}
	if !strings.HasSuffix(string(res.Output), "x\nlast-line\n") {
		t.Fatalf("tail %q", res.Output[len(res.Output)-20:])
	}
}

func TestSSHPassphraseKey(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	dir := t.TempDir()
	cfg := sshConfigFor(srv)
	cfg.KeyFile = filepath.Join(dir, "enc_key")
	// ssh-keygen with one KDF round (-a 1): the default 16 bcrypt rounds
	// take seconds per parse under the race detector.
	keygen := testenv.Need(t, "ssh-keygen")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-a", "1", "-N", "correct horse", "-C", "poolbot-test", "-f", cfg.KeyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pubBytes, err := os.ReadFile(cfg.KeyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes)
	if err != nil {
		t.Fatal(err)
	}
	srv.AuthorizeKey(t, pub)

	if _, err := NewSSH(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "is encrypted: set ssh.passphrase") {
		t.Fatalf("encrypted key without passphrase: err %v", err)
	}
	cfg.Passphrase = secret.Ref{File: filepath.Join(dir, "pass")}
	if err := os.WriteFile(cfg.Passphrase.File, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSSH(cfg, Options{}); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong passphrase: err %v (must fail and not echo the passphrase)", err)
	}
	if err := os.WriteFile(cfg.Passphrase.File, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := newTestSSH(t, cfg).Run(context.Background(), srv.Host, []string{"true"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run with passphrase key: %v exit %d", err, res.ExitCode)
	}
}

// TestSSHAgent authenticates through a real ssh-agent holding a key that
// is not on disk.
func TestSSHAgent(t *testing.T) {
	srv := sshd.Start(t)
	agentBin := testenv.Need(t, "ssh-agent")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(agentBin, "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	var conn net.Conn
	for {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent socket: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer conn.Close()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	srv.AuthorizeKey(t, signer.PublicKey())

	t.Setenv("SSH_AUTH_SOCK", sock)
	cfg := sshConfigFor(srv)
	cfg.KeyFile = ""
	cfg.UseAgent = true
	res, err := newTestSSH(t, cfg).Run(context.Background(), srv.Host, []string{"id", "-un"})
	if err != nil || strings.TrimSpace(string(res.Output)) != srv.User {
		t.Fatalf("run through agent: %v output %q", err, res.Output)
	}

	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := NewSSH(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Fatalf("use_agent without SSH_AUTH_SOCK: err %v", err)
	}
}

func TestSSHRejectsBadInput(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e := newTestSSH(t, sshConfigFor(srv))
	for _, host := range []string{"-oProxyCommand=touch x", "host name", "a;b", "", "UPPER.example", "h:22", ".lead"} {
		_, err := e.Run(context.Background(), host, []string{"true"})
		mustRunError(t, err, "validate")
	}
	for _, argv := range [][]string{nil, {""}, {"echo", "a\x00b"}} {
		_, err := e.Run(context.Background(), srv.Host, argv)
		mustRunError(t, err, "validate")
	}
}

// TestRestartHostSSH runs a plan's steps over SSH and reports a failing
// check as a StepError with the host, the step and the output tail.
func TestRestartHostSSH(t *testing.T) {
	t.Parallel()
	srv := sshd.Start(t)
	e := newTestSSH(t, sshConfigFor(srv))
	dir := t.TempDir()
	plan := Plan{
		Hosts:          []string{srv.Host},
		Units:          []string{"a.service", "b.service"},
		PerHostTimeout: 30 * time.Second,
		// "restart" records the units it got; "check" fails for b.
		RestartCommand: []string{"sh", "-c", `printf '%s\n' "$@" > "$0"/restarted`, dir, "{units}"},
		CheckCommand:   []string{"sh", "-c", `test "$0" = a.service || { echo "$0 is inactive" >&2; exit 3; }`, "{unit}"},
	}
	if err := plan.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := RestartHost(context.Background(), e, plan, srv.Host)
	var se *StepError
	if !errors.As(err, &se) || !se.Ran() || se.Step != "check b.service" || se.Host != srv.Host {
		t.Fatalf("err %v (%#v)", err, se)
	}
	if want := "host 127.0.0.1: check b.service: exit 3: b.service is inactive"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if res.ExitCode != 3 {
		t.Fatalf("result exit %d", res.ExitCode)
	}
	got, err := os.ReadFile(filepath.Join(dir, "restarted"))
	if err != nil || string(got) != "a.service\nb.service\n" {
		t.Fatalf("restart saw %q (%v)", got, err)
	}

	// A transport failure names the host, the step and the cause.
	bad := sshConfigFor(srv)
	bad.KnownHosts = filepath.Join(dir, "empty_known_hosts")
	if err := os.WriteFile(bad.KnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = RestartHost(context.Background(), newTestSSH(t, bad), plan, srv.Host)
	if !errors.As(err, &se) || se.Ran() || se.Step != "restart" {
		t.Fatalf("err %v", err)
	}
	if !strings.HasPrefix(err.Error(), "host 127.0.0.1: restart: ssh: handshake: ssh: handshake failed: knownhosts: key is unknown") {
		t.Fatalf("error %q", err)
	}
}

// BenchmarkSSHRunTrue measures one Run of `true`: TCP connect, SSH
// handshake and authentication, one session, the exit status.
func BenchmarkSSHRunTrue(b *testing.B) {
	srv := sshd.Start(b)
	e := newTestSSH(b, sshConfigFor(srv))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Run(ctx, srv.Host, []string{"true"})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("run: %v exit %d", err, res.ExitCode)
		}
	}
}

// waitForProcess finds the pid of a process whose /proc cmdline contains
// needle, polling until timeout.
func waitForProcess(t *testing.T, needle string, timeout time.Duration) int {
	t.Helper()
	pid, ok := findProcess(needle, timeout)
	if !ok {
		t.Fatalf("no process with cmdline %q within %s", needle, timeout)
	}
	return pid
}

// findProcess is waitForProcess that reports instead of failing.
func findProcess(needle string, timeout time.Duration) (int, bool) {
	deadline := time.Now().Add(timeout)
	for {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.Contains(string(cmdline)+"\x00", needle) && processAlive(pid) {
				return pid, true
			}
		}
		if time.Now().After(deadline) {
			return 0, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool { return labAlive(pid) }
