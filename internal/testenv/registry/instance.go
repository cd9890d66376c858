// Package registry runs real CNCF distribution registries (the software behind
// WMF's docker-registry units) on loopback for tests and for the lab.
//
// The binary is built from the repository's separate tools module
// (tools/go.mod pins github.com/distribution/distribution/v3 v3.1.2), so the
// main module does not inherit its hundred dependencies. Build caches it
// under the user cache directory; CI prebuilds it and sets
// $POOLBOT_REGISTRY_BIN.
//
// Options.S3 puts an instance on distribution's s3 driver instead (WMF's
// registries use apus, Ceph RGW; see testenv/apus and S3Storage), and
// Options.Wrapper runs it under a command that gives the host its own view
// of DNS.
//
// Each instance gets a filesystem storage root, a main listener and a debug
// listener (which serves /debug/health and /metrics), a shared http.secret
// (as WMF configures all instances, so upload-state tokens from one instance
// verify on another) and a storage-driver health check with a short interval
// so that a broken storage shows up as 503 within a fraction of a second.
//
// An instance can be stopped and started again on the same ports and
// storage, like `systemctl restart`, and its storage can be broken and fixed
// while it runs. Breaking works as root too: the storage root lives one
// directory below the instance's storage directory, and BreakStorage swaps
// that directory for a regular file, so the driver's stat of the root fails
// with ENOTDIR (a permission change would not stop root, and a missing root
// counts as healthy because the driver reports it as PathNotFound).
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"poolbot/internal/testenv"
)

// DefaultSecret is the http.secret every instance shares unless Options says
// otherwise, mirroring WMF's shared secret across registry instances.
const DefaultSecret = "poolbot-testenv-shared-http-secret"

// Options configure an instance. The zero value is a healthy single instance
// on free ports with its own temporary storage.
type Options struct {
	// Binary is the registry executable; empty means Build/Binary.
	Binary string
	// Dir holds the config, the log and (by default) the storage. Empty: a
	// new temporary directory (t.TempDir() under Start; removed by Close
	// under Launch).
	Dir string
	// StorageDir is the storage directory; instances given the same one
	// share blobs and upload sessions (one datacenter). Default Dir/storage.
	StorageDir string
	// Secret is http.secret; default DefaultSecret.
	Secret string
	// Host is the loopback address to listen on (default 127.0.0.1). Other
	// 127.0.0.0/8 addresses let several "hosts" use the same ports, as
	// registry hosts do in production.
	Host string
	// Port and DebugPort are the loopback ports; 0 picks free ones.
	Port, DebugPort int
	// HealthInterval and HealthThreshold configure the storagedriver health
	// check (default 250ms and 1; WMF uses 10s and 3).
	HealthInterval  time.Duration
	HealthThreshold int
	// DisableDelete turns storage.delete off, so blob DELETE answers 405.
	DisableDelete bool
	// Users enables htpasswd basic auth with these user → password pairs.
	Users map[string]string
	// StartTimeout bounds waiting for the listeners; default 20s.
	StartTimeout time.Duration
	// S3 switches the storage from the filesystem to distribution's s3
	// driver, as WMF's registries on apus; nil keeps the filesystem.
	S3 *S3Storage
	// Wrapper is a command line the registry command is appended to, e.g.
	// one that enters a host's namespace with its own resolver config. It
	// must exec the registry (not fork it), so that signals reach it.
	Wrapper []string
	// Env is added to the registry's environment.
	Env []string
}

// S3Storage is the registry's s3 storage driver configuration (the keys of
// `storage: s3:`), as in WMF's config-<instance>.yml.
//
// How distribution v3.1.2's s3 driver keeps its connections
// (registry/storage/driver/s3-aws/s3.go, New): unless skipverify is set it
// gives aws-sdk-go no HTTP client, so the SDK uses http.DefaultClient, that
// is Go's http.DefaultTransport: keep-alive on, up to 2 idle connections
// per host kept for 90 s, and no request timeout (only the incoming
// request's context bounds an S3 call; the storage health check has none).
// The endpoint's name is resolved only when a new connection is dialled. A
// registry whose health check (every 10 s at WMF) or traffic touches S3
// more often than every 90 s therefore keeps its idle connections to the
// address it resolved at its last dial, through any DNS change, until it
// restarts; only requests that find no idle connection (more than 2 at
// once) dial again and reach the new address. testenv/apus's
// TestS3RegistryKeepsTheOldSite shows it.
type S3Storage struct {
	// RegionEndpoint is the S3 URL, e.g. http://apus.discovery.wmnet:7480.
	// The registry resolves its host name itself, whenever its HTTP client
	// opens a new connection.
	RegionEndpoint string
	// Region is required by the driver and ignored by Ceph; default
	// us-west-1, as WMF's ("useless but required").
	Region string
	// Bucket must exist.
	Bucket string
	// AccessKey and SecretKey are the S3 credentials.
	AccessKey, SecretKey string
	// RootDirectory is the key prefix of everything the registry stores;
	// empty means the bucket's root.
	RootDirectory string
}

// Instance is one running (or stopped) registry process.
type Instance struct {
	// Addr and DebugAddr are host:port of the main and debug listeners.
	Addr, DebugAddr string
	// Port and DebugPort are their ports.
	Port, DebugPort int
	// Dir holds config.yml and registry.log.
	Dir string
	// StorageDir is the storage directory (the registry root is StorageDir/registry).
	StorageDir string
	// ConfigPath and LogPath are the config file and the process log.
	ConfigPath, LogPath string

	binary       string
	startTimeout time.Duration
	ownsDir      bool
	s3           *S3Storage
	wrapper, env []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	logFile *os.File
}

// Start builds (or finds) the binary and launches an instance that is killed
// when the test ends. On test failure the tail of its log is printed.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Build(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inst, err := Launch(ctx, opts)
	if err != nil {
		t.Fatalf("start docker registry: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry %s log tail:\n%s", inst.Addr, inst.LogTail(4096))
		}
		if err := inst.Close(); err != nil {
			t.Logf("registry %s close: %v", inst.Addr, err)
		}
	})
	return inst
}

// StartPair starts two instances in parallel with the same options except
// ports, directories and storage (each gets its own unless opts.StorageDir
// is set): two datacenters whose storage does not see each other's writes.
func StartPair(t testing.TB, opts Options) (a, b *Instance) {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Build(t)
	}
	oa, ob := opts, opts
	oa.Dir, ob.Dir = t.TempDir(), t.TempDir()
	var wg sync.WaitGroup
	var errA, errB error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wg.Go(func() { a, errA = Launch(ctx, oa) })
	wg.Go(func() { b, errB = Launch(ctx, ob) })
	wg.Wait()
	for _, inst := range []*Instance{a, b} {
		if inst != nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("registry %s log tail:\n%s", inst.Addr, inst.LogTail(4096))
				}
				_ = inst.Close()
			})
		}
	}
	if err := errors.Join(errA, errB); err != nil {
		t.Fatalf("start docker registry pair: %v", err)
	}
	return a, b
}

// Launch writes the config and starts the registry, for programs that are not
// tests. The caller must Close the instance.
func Launch(ctx context.Context, opts Options) (*Instance, error) {
	if opts.Binary == "" {
		bin, err := Binary(ctx)
		if err != nil {
			return nil, err
		}
		opts.Binary = bin
	}
	inst := &Instance{binary: opts.Binary, startTimeout: opts.StartTimeout}
	if inst.startTimeout <= 0 {
		inst.startTimeout = 20 * time.Second
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "poolbot-registry-")
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		opts.Dir, inst.ownsDir = dir, true
	}
	inst.Dir = opts.Dir
	inst.StorageDir = opts.StorageDir
	if inst.StorageDir == "" {
		inst.StorageDir = filepath.Join(opts.Dir, "storage")
	}
	inst.ConfigPath = filepath.Join(opts.Dir, "config.yml")
	inst.LogPath = filepath.Join(opts.Dir, "registry.log")
	if opts.S3 != nil {
		if err := opts.S3.validate(); err != nil {
			inst.cleanupDir()
			return nil, err
		}
		inst.s3 = opts.S3
	}
	inst.wrapper, inst.env = opts.Wrapper, opts.Env
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		inst.cleanupDir()
		return nil, fmt.Errorf("registry dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(inst.StorageDir, "registry"), 0o755); err != nil {
		inst.cleanupDir()
		return nil, fmt.Errorf("registry storage: %w", err)
	}

	// Ports chosen here may be taken by someone else before the registry
	// binds them; then retry with fresh ones. Fixed ports are tried once.
	attempts := 1
	if opts.Port == 0 || opts.DebugPort == 0 {
		attempts = 3
	}
	var lastErr error
	for range attempts {
		o := opts
		if o.Port == 0 {
			o.Port = freePort()
		}
		if o.DebugPort == 0 {
			o.DebugPort = freePort()
		}
		if o.Port == 0 || o.DebugPort == 0 {
			lastErr = errors.New("registry: no free loopback port")
			continue
		}
		inst.Port, inst.DebugPort = o.Port, o.DebugPort
		host := o.Host
		if host == "" {
			host = "127.0.0.1"
		}
		inst.Addr = net.JoinHostPort(host, strconv.Itoa(o.Port))
		inst.DebugAddr = net.JoinHostPort(host, strconv.Itoa(o.DebugPort))
		if err := inst.writeConfig(o); err != nil {
			inst.cleanupDir()
			return nil, err
		}
		lastErr = inst.Start(ctx)
		if lastErr == nil {
			return inst, nil
		}
		if !strings.Contains(lastErr.Error(), "address already in use") {
			break
		}
	}
	inst.cleanupDir()
	return nil, lastErr
}

func freePort() int {
	p, _ := testenv.Port("127.0.0.1")
	return p
}

func (i *Instance) writeConfig(o Options) error {
	secret := o.Secret
	if secret == "" {
		secret = DefaultSecret
	}
	interval := o.HealthInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	threshold := o.HealthThreshold
	if threshold <= 0 {
		threshold = 1
	}
	var b strings.Builder
	// Strings are written as JSON-style double-quoted scalars (%q), which
	// YAML reads back verbatim for the paths and secrets used here.
	fmt.Fprintf(&b, `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
%s  delete:
    enabled: %t
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: %q
  draintimeout: 2s
  debug:
    addr: %q
    prometheus:
      enabled: true
      path: /metrics
health:
  storagedriver:
    enabled: true
    interval: %s
    threshold: %d
`, i.storageConfig(), !o.DisableDelete, i.Addr, secret, i.DebugAddr, interval, threshold)
	if len(o.Users) > 0 {
		htpasswd := filepath.Join(i.Dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, o.Users); err != nil {
			return err
		}
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: %q\n    path: %q\n", "poolbot-test", htpasswd)
	}
	if err := os.WriteFile(i.ConfigPath, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("registry config: %w", err)
	}
	return nil
}

func writeHtpasswd(path string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, u := range names {
		if strings.ContainsAny(u, ":\n") {
			return fmt.Errorf("registry htpasswd: bad user name %q", u)
		}
		// MinCost keeps test start fast; distribution accepts any bcrypt cost.
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("registry htpasswd: %w", err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("registry htpasswd: %w", err)
	}
	return nil
}

// Start (re)starts the process with the existing config, ports and storage
// and waits until both listeners accept connections.
func (i *Instance) Start(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.runningLocked() {
		return fmt.Errorf("registry %s: already running", i.Addr)
	}
	logf, err := os.OpenFile(i.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("registry log: %w", err)
	}
	// Not CommandContext: the process must outlive the ctx that bounds startup.
	argv := append(slices.Clone(i.wrapper), i.binary, "serve", i.ConfigPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = i.Dir
	cmd.Env = append(registryEnv(), i.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Kill the registry if the test process dies without cleanup. Its own
	// process group: a Ctrl-C at the lab's terminal is for the lab, which
	// stops poolbot before the registries it restarts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	logOffset, _ := logf.Seek(0, io.SeekEnd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("registry %s: start %s: %w", i.Addr, i.binary, err)
	}
	exited := make(chan struct{})
	i.cmd, i.exited, i.logFile = cmd, exited, logf
	go func() {
		_ = cmd.Wait() // the exit status of a killed test server says nothing useful
		close(exited)
	}()

	if err := i.waitListening(ctx, exited); err != nil {
		i.killLocked()
		return fmt.Errorf("registry %s: %w\nlog:\n%s", i.Addr, err, i.logSince(logOffset))
	}
	return nil
}

func (i *Instance) waitListening(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, i.startTimeout)
	defer cancel()
	errc := make(chan error, 2)
	for _, addr := range []string{i.Addr, i.DebugAddr} {
		go func() { errc <- testenv.WaitListening(ctx, addr, i.startTimeout) }()
	}
	for range 2 {
		select {
		case err := <-errc:
			if err != nil {
				return err
			}
		case <-exited:
			return errors.New("process exited during startup")
		}
	}
	// The port could belong to a process that raced us for it; make sure ours
	// is still alive after binding.
	select {
	case <-exited:
		return errors.New("process exited during startup")
	default:
		return nil
	}
}

func registryEnv() []string {
	env := make([]string, 0, 32)
	for _, kv := range os.Environ() {
		// REGISTRY_* variables override the config file; OTEL_* would make it
		// try to export telemetry.
		if strings.HasPrefix(kv, "REGISTRY_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none")
}

// Stop sends SIGTERM (a clean `systemctl stop`) and waits for the exit; after
// 10 s it kills. Stopping a stopped instance does nothing.
func (i *Instance) Stop() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return nil
	}
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	_ = i.cmd.Process.Signal(syscall.SIGCONT) // a paused process handles SIGTERM only once continued
	return i.waitExitLocked(10 * time.Second)
}

// Kill sends SIGKILL (a crash) and waits for the exit.
func (i *Instance) Kill() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.killLocked()
}

func (i *Instance) killLocked() error {
	if !i.runningLocked() {
		i.closeLogLocked()
		return nil
	}
	_ = i.cmd.Process.Kill()
	return i.waitExitLocked(10 * time.Second)
}

// waitExitLocked waits for the Wait goroutine, releasing the lock it needs.
func (i *Instance) waitExitLocked(timeout time.Duration) error {
	exited := i.exited
	i.mu.Unlock()
	var err error
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = i.cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			err = fmt.Errorf("registry %s: process %d did not exit", i.Addr, i.cmd.Process.Pid)
		}
	}
	i.mu.Lock()
	i.closeLogLocked()
	return err
}

func (i *Instance) closeLogLocked() {
	if i.logFile != nil {
		i.logFile.Close()
		i.logFile = nil
	}
}

// Pause freezes the process (SIGSTOP): connections are still accepted by
// the kernel but never answered, like a wedged daemon. Resume undoes it.
func (i *Instance) Pause() error { return i.signal(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (i *Instance) Resume() error { return i.signal(syscall.SIGCONT) }

func (i *Instance) signal(sig syscall.Signal) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return fmt.Errorf("registry %s: not running", i.Addr)
	}
	if err := i.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("registry %s: %v: %w", i.Addr, sig, err)
	}
	return nil
}

// Restart is Stop then Start on the same ports and storage.
func (i *Instance) Restart(ctx context.Context) error {
	if err := i.Stop(); err != nil {
		return err
	}
	return i.Start(ctx)
}

// Close kills the process and removes the directory Launch created.
func (i *Instance) Close() error {
	err := i.Kill()
	i.cleanupDir()
	return err
}

func (i *Instance) cleanupDir() {
	if i.ownsDir {
		_ = os.RemoveAll(i.Dir)
	}
}

// Running reports whether the process is alive.
func (i *Instance) Running() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runningLocked()
}

func (i *Instance) runningLocked() bool {
	if i.cmd == nil {
		return false
	}
	select {
	case <-i.exited:
		return false
	default:
		return true
	}
}

// PID is the process id of the current (or last) process, 0 before the first start.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cmd == nil || i.cmd.Process == nil {
		return 0
	}
	return i.cmd.Process.Pid
}

// URL is the base URL of the main listener.
func (i *Instance) URL() string { return "http://" + i.Addr }

// brokenSuffix is where BreakStorage parks the real storage directory.
const brokenSuffix = ".parked-by-BreakStorage"

// BreakStorage makes the storage fail while the process runs: the storage
// directory is moved aside and a regular file takes its place, so every
// access below it, including the health check's stat of the root, fails
// with "not a directory" — as root too. Instances sharing the storage
// directory all break.
func (i *Instance) BreakStorage() error {
	if err := i.errS3("BreakStorage"); err != nil {
		return err
	}
	parked := i.StorageDir + brokenSuffix
	if _, err := os.Lstat(parked); err == nil {
		return fmt.Errorf("registry storage %s: already broken", i.StorageDir)
	}
	if err := os.Rename(i.StorageDir, parked); err != nil {
		return fmt.Errorf("registry break storage: %w", err)
	}
	if err := os.WriteFile(i.StorageDir, []byte("storage broken by test\n"), 0o644); err != nil {
		return fmt.Errorf("registry break storage: %w", err)
	}
	return nil
}

// FixStorage undoes BreakStorage.
func (i *Instance) FixStorage() error {
	if err := i.errS3("FixStorage"); err != nil {
		return err
	}
	parked := i.StorageDir + brokenSuffix
	if _, err := os.Lstat(parked); err != nil {
		return fmt.Errorf("registry storage %s: not broken: %w", i.StorageDir, err)
	}
	if err := os.Remove(i.StorageDir); err != nil {
		return fmt.Errorf("registry fix storage: %w", err)
	}
	if err := os.Rename(parked, i.StorageDir); err != nil {
		return fmt.Errorf("registry fix storage: %w", err)
	}
	return nil
}

// RepointStorage atomically points the storage directory, which must be a
// symlink (Options.StorageDir), at target: like apus.discovery.wmnet
// flipping to the other datacenter under a running registry, whose next
// storage access lands in target while upload sessions it started live in
// the old one.
func (i *Instance) RepointStorage(target string) error {
	if err := i.errS3("RepointStorage"); err != nil {
		return err
	}
	st, err := os.Lstat(i.StorageDir)
	if err != nil {
		return fmt.Errorf("registry repoint storage: %w", err)
	}
	if st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("registry repoint storage: %s is not a symlink", i.StorageDir)
	}
	tmp := i.StorageDir + ".repoint"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("registry repoint storage: %w", err)
	}
	if err := os.Rename(tmp, i.StorageDir); err != nil {
		return fmt.Errorf("registry repoint storage: %w", err)
	}
	return nil
}

// RootDir is the registry's storage root (rootdirectory in its config);
// blobs live under RootDir/docker/registry/v2.
func (i *Instance) RootDir() string { return filepath.Join(i.StorageDir, "registry") }

// LogTail returns up to the last n bytes of the process log.
func (i *Instance) LogTail(n int64) string {
	f, err := os.Open(i.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(b)
}

func (i *Instance) logSince(off int64) string {
	f, err := os.Open(i.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(io.NewSectionReader(f, off, 1<<20), 8<<10))
	return string(b)
}

// LogErrors returns the process log's error and warning lines since the
// given time, at most max (the last ones): where distribution says what
// its storage driver answered, e.g. "unknown error completing upload:
// InternalError: ...".
func (i *Instance) LogErrors(since time.Time, max int) []string {
	return testenv.LastLines(i.LogPath, max, func(line string) bool {
		if !strings.Contains(line, " level=error ") && !strings.Contains(line, " level=warning ") {
			return false
		}
		// The text formatter starts each line with time="<RFC 3339>".
		ts, ok := strings.CutPrefix(line, `time="`)
		if !ok {
			return false
		}
		ts, _, _ = strings.Cut(ts, `"`)
		at, err := time.Parse(time.RFC3339Nano, ts)
		return err == nil && !at.Before(since)
	})
}
