// Package ceph runs one small real Ceph cluster per apus datacenter for
// tests and the lab: a monitor, one OSD and a RADOS Gateway (radosgw, the
// S3 server apus runs), from Debian's ceph-mon, ceph-osd and radosgw
// packages, all on one loopback address.
//
// Why Ceph and not a Go S3 library: apus is Ceph RGW, and the registry's s3
// driver then talks to the same S3 implementation as in production (its
// multipart uploads, listing and error codes). A site comes up in about 2 s
// on a busy 2-core machine and weighs about 140 MiB RSS (monitor, OSD and
// gateway; measured by BenchmarkSiteStart), so two sites fit in the tests.
//
// The cluster is the smallest that works, in the spirit of Ceph's own
// src/vstart.sh: one monitor, no manager (RGW and pool creation do not need
// one), one OSD on memstore (objects in the OSD's memory: nothing on disk to
// clean up and nothing to fsync), replication size 1, few placement groups,
// and no cephx (auth none), so there are no keys to distribute. Every path
// (data, sockets, logs, pid files) is inside the site's directory.
//
// Each site has data of its own and nothing replicates between sites: the
// worst case of apus' asynchronous replication. Sites share one gateway
// port on different loopback addresses, so that a DNS name moving from one
// site's address to the other's is all that changes for a client, as for
// apus.discovery.wmnet.
package ceph

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// Binaries are the programs a site needs (Debian packages ceph-mon,
// ceph-osd, radosgw and ceph-common).
var Binaries = []string{"ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool"}

const (
	// DefaultAccessKey and DefaultSecretKey are the S3 credentials of the
	// site's one user, "registry".
	DefaultAccessKey = "POOLBOTREGISTRYKEY00"
	DefaultSecretKey = "poolbot-testenv-registry-s3-secret-key"
	// user is the RGW user the credentials belong to.
	user = "registry"
	// defaultStartTimeout bounds a cold start on a busy 2-core machine.
	defaultStartTimeout = 90 * time.Second
)

// Options configure a site. The zero value is a site named "site" on
// 127.0.0.1 with free ports and the default credentials.
type Options struct {
	// Name is the datacenter (eqiad, codfw); it names logs and errors.
	Name string
	// Host is the loopback address every daemon of the site listens on.
	Host string
	// Port is the gateway's (S3) port on Host; 0 picks a free one.
	Port int
	// Dir holds the cluster (config, monitor store, logs). Empty: a new
	// temporary directory (t.TempDir() under Start; removed by Close under
	// Launch).
	Dir string
	// AccessKey and SecretKey are the S3 user's credentials; empty means
	// the defaults.
	AccessKey, SecretKey string
	// Buckets are created when the site starts.
	Buckets []string
	// StartTimeout bounds the whole start; default 90 s.
	StartTimeout time.Duration
}

// Site is one running Ceph cluster with its S3 gateway.
type Site struct {
	// Name is Options.Name.
	Name string
	// Host and Port are where the gateway listens; Addr is both.
	Host string
	Port int
	Addr string
	// AccessKey and SecretKey are the S3 credentials.
	AccessKey, SecretKey string
	// Dir holds ceph.conf, the daemons' data and logs (Dir/log).
	Dir string

	conf    string
	ownsDir bool
	http    *http.Client

	mon, osd, rgw *daemon
}

// Start launches a site that is stopped when the test ends. It skips the
// test when Ceph is not installed, and fails it under CI.
func Start(t testing.TB, opts Options) *Site {
	t.Helper()
	for _, b := range Binaries {
		testenv.Need(t, b)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Launch(context.Background(), opts)
	if err != nil {
		t.Fatalf("start ceph site: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ceph site %s gateway log tail:\n%s", s.Name, s.rgw.tail())
		}
		s.Close()
	})
	return s
}

// Launch starts a site for programs that are not tests; the caller must
// Close it. Every daemon is killed if the caller dies.
func Launch(ctx context.Context, opts Options) (*Site, error) {
	for _, b := range Binaries {
		if _, err := testenv.Lookup(b); err != nil {
			return nil, fmt.Errorf("ceph: %w (Debian packages ceph-mon ceph-osd radosgw)", err)
		}
	}
	s := &Site{Name: opts.Name, Host: opts.Host, Port: opts.Port, AccessKey: opts.AccessKey, SecretKey: opts.SecretKey, Dir: opts.Dir}
	if s.Name == "" {
		s.Name = "site"
	}
	if s.Host == "" {
		s.Host = "127.0.0.1"
	}
	if s.AccessKey == "" || s.SecretKey == "" {
		s.AccessKey, s.SecretKey = DefaultAccessKey, DefaultSecretKey
	}
	if s.Dir == "" {
		dir, err := os.MkdirTemp("", "poolbot-ceph-")
		if err != nil {
			return nil, fmt.Errorf("ceph site %s: %w", s.Name, err)
		}
		s.Dir, s.ownsDir = dir, true
	}
	// No keep-alive: the helpers' own connections must not outlive a
	// gateway restart or hide a stopped gateway.
	s.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.start(ctx, opts.Buckets); err != nil {
		s.Close()
		return nil, fmt.Errorf("ceph site %s: %w", s.Name, err)
	}
	return s, nil
}

func (s *Site) start(ctx context.Context, buckets []string) error {
	if s.Port == 0 {
		p, err := freePort(s.Host)
		if err != nil {
			return err
		}
		s.Port = p
	}
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	monPort, err := freePort(s.Host)
	if err != nil {
		return err
	}
	for _, d := range []string{"mon", "osd", "run", "log", "rgw"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return err
		}
	}
	fsid, err := uuid()
	if err != nil {
		return err
	}
	s.conf = filepath.Join(s.Dir, "ceph.conf")
	monAddr := fmt.Sprintf("[v2:%s]", net.JoinHostPort(s.Host, strconv.Itoa(monPort)))
	if err := os.WriteFile(s.conf, []byte(s.config(fsid, monAddr)), 0o644); err != nil {
		return err
	}
	keyring := filepath.Join(s.Dir, "keyring")
	// The monitor's mkfs wants a mon. key even with auth none.
	if err := s.run(ctx, "ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"); err != nil {
		return err
	}
	monmap := filepath.Join(s.Dir, "monmap")
	if err := s.run(ctx, "monmaptool", "--create", "--fsid", fsid, "--addv", "a", monAddr, monmap); err != nil {
		return err
	}
	if err := s.run(ctx, "ceph-mon", "-c", s.conf, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", keyring); err != nil {
		return err
	}
	if s.mon, err = s.spawn("mon", "ceph-mon", "-c", s.conf, "-i", "a", "-f"); err != nil {
		return err
	}
	// Register the OSD with the monitor (this waits for the monitor to
	// form its quorum of one), then make its store and start it.
	osdUUID, err := uuid()
	if err != nil {
		return err
	}
	if err := s.run(ctx, "ceph", "-c", s.conf, "--connect-timeout", "30", "osd", "new", osdUUID); err != nil {
		return err
	}
	if err := s.run(ctx, "ceph-osd", "-c", s.conf, "-i", "0", "--mkfs", "--osd-uuid", osdUUID); err != nil {
		return err
	}
	if s.osd, err = s.spawn("osd", "ceph-osd", "-c", s.conf, "-i", "0", "-f"); err != nil {
		return err
	}
	// The gateway creates its pools on first start and listens once they
	// are usable, so waiting for its HTTP answer waits for the OSD too.
	if err := s.StartGateway(ctx); err != nil {
		return err
	}
	if err := s.run(ctx, "radosgw-admin", "-c", s.conf, "user", "create", "--uid="+user, "--display-name="+user,
		"--access-key="+s.AccessKey, "--secret-key="+s.SecretKey); err != nil {
		return err
	}
	for _, b := range buckets {
		if err := s.CreateBucket(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// config is the cluster's ceph.conf. Why each setting is there:
//   - auth none everywhere: no keys to create and hand to each daemon;
//     radosgw defaults its monitor connection to "secure" mode, which auth
//     none cannot provide, hence ms_mon_client_mode crc for it.
//   - msgr2 only on the site's address: one port per monitor.
//   - size 1, 8 PGs per pool, no autoscaler: one OSD holds everything.
//   - mon_data_avail_*: a nearly full disk on a shared test machine must not
//     make the monitor shut down.
//   - memstore: objects in memory; memstore_device_bytes caps it.
//   - paxos_propose_interval: the monitor batches map changes for 1 s by
//     default; the gateway's first start creates about six pools one after
//     another, each waiting for a map change.
func (s *Site) config(fsid, monAddr string) string {
	d := s.Dir
	return fmt.Sprintf(`[global]
fsid = %s
mon host = %s
public addr = %s
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = %s/keyring
run dir = %s/run
admin socket = %s/run/$name.asok
pid file = %s/run/$name.pid
log file = %s/log/$name.log
log to stderr = false
err to stderr = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.05
paxos min wait = 0.01
[mon]
mon data = %s/mon
mon cluster log file = %s/log/cluster.log
[osd]
osd data = %s/osd
osd objectstore = memstore
memstore device bytes = 1073741824
[client.rgw]
ms mon client mode = crc secure
rgw data = %s/rgw
rgw frontends = beast endpoint=%s
rgw enable ops log = false
rgw enable usage log = false
rgw dynamic resharding = false
`, fsid, monAddr, s.Host, d, d, d, d, d, d, d, d, d, net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
}

// Endpoint is the gateway's URL, e.g. http://127.0.0.5:7480.
func (s *Site) Endpoint() string { return "http://" + s.Addr }

// StartGateway starts radosgw (after StopGateway) and waits until it
// answers HTTP.
func (s *Site) StartGateway(ctx context.Context) error {
	if s.rgw != nil && s.rgw.running() {
		return fmt.Errorf("gateway %s already running", s.Addr)
	}
	rgw, err := s.spawn("rgw", "radosgw", "-c", s.conf, "-n", "client.rgw", "-f")
	if err != nil {
		return err
	}
	s.rgw = rgw
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint()+"/", nil)
		resp, err := s.http.Do(req)
		if err == nil {
			resp.Body.Close()
			// Another server on the address (the port was taken between
			// choosing and binding it; radosgw then exits) answers
			// without RGW's request id.
			if resp.Header.Get("X-Amz-Request-Id") == "" || !rgw.running() {
				_ = rgw.kill()
				return fmt.Errorf("something other than radosgw answers on %s (address already in use?)", s.Addr)
			}
			return nil
		}
		select {
		case <-rgw.exited:
			return fmt.Errorf("radosgw exited during startup:\n%s", rgw.tail())
		case <-ctx.Done():
			return fmt.Errorf("radosgw not answering on %s: %w (last: %v)\n%s", s.Addr, ctx.Err(), err, rgw.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopGateway stops radosgw: the site's S3 endpoint refuses connections,
// and connections a client holds to it are closed. The cluster and its
// data stay.
func (s *Site) StopGateway() error { return s.rgw.stop() }

// FreezeGateway stops radosgw with SIGSTOP: the kernel still accepts
// connections, but no request is answered, like an overloaded or wedged
// S3 frontend. ThawGateway resumes it.
func (s *Site) FreezeGateway() error {
	if err := s.rgw.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// kill(2) returns before every thread has stopped: a request sent
	// right after could still be answered (seen once on a loaded machine).
	return waitStopped(s.rgw.cmd.Process.Pid, 5*time.Second)
}

// waitStopped waits until every thread of pid is stopped by a signal
// (state T in /proc/<pid>/task/*/stat).
func waitStopped(pid int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		running, err := runningThreads(pid)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ceph: %d threads of pid %d still running %s after SIGSTOP", running, pid, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runningThreads counts pid's threads that are not stopped.
func runningThreads(pid int) (int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("ceph: threads of pid %d: %w", pid, err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return 0, fmt.Errorf("ceph: /proc/%d/task/%s/stat: unexpected %q", pid, task.Name(), b)
		}
		if st := b[i+2]; st != 'T' && st != 't' {
			n++
		}
	}
	return n, nil
}

// ThawGateway resumes a frozen gateway (SIGCONT).
func (s *Site) ThawGateway() error { return s.rgw.signal(syscall.SIGCONT) }

// PIDs are the process ids of the site's running daemons.
func (s *Site) PIDs() []int {
	var pids []int
	for _, d := range []*daemon{s.mon, s.osd, s.rgw} {
		if d != nil && d.running() {
			pids = append(pids, d.cmd.Process.Pid)
		}
	}
	return pids
}

// GatewayLog returns the tail of radosgw's output and log file.
func (s *Site) GatewayLog() string { return s.rgw.tail() }

// Close kills every daemon and removes the directory Launch created.
func (s *Site) Close() {
	var wg sync.WaitGroup
	for _, d := range []*daemon{s.rgw, s.osd, s.mon} {
		if d != nil {
			wg.Go(func() { d.kill() })
		}
	}
	wg.Wait()
	if s.ownsDir {
		_ = os.RemoveAll(s.Dir)
	}
}

// run executes a setup command and returns its output in the error.
func (s *Site) run(ctx context.Context, name string, args ...string) error {
	path, err := testenv.Lookup(name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = cephEnv()
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tailOf(out, 4096))
	}
	return nil
}

// spawn starts a daemon in the foreground (-f), in its own process group,
// killed if we die.
func (s *Site) spawn(role, name string, args ...string) (*daemon, error) {
	path, err := testenv.Lookup(name)
	if err != nil {
		return nil, err
	}
	out := &testenv.SyncBuffer{}
	cmd := exec.Command(path, args...)
	cmd.Env = cephEnv()
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{role: role, cmd: cmd, out: out, exited: make(chan struct{}), log: filepath.Join(s.Dir, "log", logName(role))}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	return d, nil
}

func logName(role string) string {
	switch role {
	case "mon":
		return "mon.a.log"
	case "osd":
		return "osd.0.log"
	}
	return "client.rgw.log"
}

// cephEnv drops CEPH_* variables, which would change which cluster and
// config the daemons use.
func cephEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CEPH_") {
			env = append(env, kv)
		}
	}
	return env
}

// daemon is one long-running process of the site.
type daemon struct {
	role   string
	cmd    *exec.Cmd
	out    *testenv.SyncBuffer
	log    string
	exited chan struct{}
}

func (d *daemon) running() bool {
	if d == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

func (d *daemon) signal(sig syscall.Signal) error {
	if !d.running() {
		return errors.New("daemon is not running")
	}
	return syscall.Kill(-d.cmd.Process.Pid, sig)
}

// stop sends SIGTERM (and SIGCONT, in case it is frozen), then SIGKILL
// after 10 s.
func (d *daemon) stop() error {
	if !d.running() {
		return nil
	}
	if err := testenv.StopGroup(d.cmd.Process.Pid, d.exited, 10*time.Second); err != nil {
		return fmt.Errorf("%s: %w", d.role, err)
	}
	return nil
}

func (d *daemon) kill() error {
	if !d.running() {
		return nil
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-d.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit", d.role, d.cmd.Process.Pid)
	}
}

// tail is the end of the daemon's output and of its log file.
func (d *daemon) tail() string {
	if d == nil {
		return ""
	}
	b, _ := os.ReadFile(d.log)
	return d.out.String() + string(tailOf(b, 4096))
}

func tailOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freePort(host string) (int, error) {
	p, err := testenv.Port(host)
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	return p, nil
}

func uuid() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/uuid")
	if err != nil {
		return "", errors.New("uuid: " + err.Error())
	}
	return strings.TrimSpace(string(b)), nil
}
