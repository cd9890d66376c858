package procedure

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"

	"poolbot"
	"poolbot/integrations/calendar"
	"poolbot/integrations/conftool"
	"poolbot/integrations/registry"
	"poolbot/integrations/restart"
	"poolbot/integrations/scap"
	etcdenv "poolbot/internal/testenv/etcd"
	regenv "poolbot/internal/testenv/registry"
	"poolbot/store"
)

// The test binary doubles as two small programs, chosen by environment:
//
//   - POOLBOT_TEST_CTL=<url>: the "systemctl" the local executor runs on
//     each "host". It forwards its argv to the test's control server,
//     which restarts the real registry process standing for that host.
//   - POOLBOT_TEST_HOLD_LOCK=<path>:<shared|exclusive>: holds an fcntl
//     lock on path, as a running scap does, until its stdin closes.
func TestMain(m *testing.M) {
	if url := os.Getenv("POOLBOT_TEST_CTL"); url != "" {
		os.Exit(ctlClient(url, os.Args[1:]))
	}
	if spec := os.Getenv("POOLBOT_TEST_HOLD_LOCK"); spec != "" {
		os.Exit(holdLock(spec))
	}
	if path := os.Getenv("POOLBOT_TEST_PROBE_LOCK"); path != "" {
		os.Exit(probeLock(path))
	}
	os.Exit(m.Run())
}

type ctlRequest struct {
	Host string   `json:"host"`
	Argv []string `json:"argv"`
}

type ctlResponse struct {
	Exit   int    `json:"exit"`
	Output string `json:"output"`
}

func ctlClient(url string, args []string) int {
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: ctl <host> <argv>...")
		return 2
	}
	body, _ := json.Marshal(ctlRequest{Host: args[0], Argv: args[1:]})
	resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	var r ctlResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print(r.Output)
	return r.Exit
}

func holdLock(spec string) int {
	path, mode, _ := strings.Cut(spec, ":")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	typ := int16(unix.F_RDLCK)
	if mode == "exclusive" {
		typ = unix.F_WRLCK
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// probeLock prints who holds an fcntl lock on path: "none", "shared" or
// "exclusive".
func probeLock(path string) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println("none")
		return 0
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch lk.Type {
	case unix.F_UNLCK:
		fmt.Println("none")
	case unix.F_RDLCK:
		fmt.Println("shared")
	default:
		fmt.Println("exclusive")
	}
	return 0
}

// lab is a small world of real parts: etcd holding apus' discovery
// objects, one real registry per "host", scap lock files, a store, and an
// engine on a fake clock.
type lab struct {
	t        *testing.T
	clock    *clockwork.FakeClock
	store    *store.Store
	etcd     *etcdenv.Server
	conftool conftool.Client
	scap     *scap.Scap
	lockDir  string
	hosts    []string
	regs     map[string]*regenv.Instance
	cal      *fakeCalendar
	engine   *Engine
	notices  *notices
	cancel   context.CancelFunc
	done     chan struct{}

	mu          sync.Mutex
	failRestart map[string]bool // hosts whose restart fails
	restarts    []string        // hosts restarted, in order
}

type notices struct {
	mu    sync.Mutex
	lines []string
}

func (n *notices) Announce(_ context.Context, text string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, text)
}

func (n *notices) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.lines)
}

func (n *notices) matching(sub string) []string {
	var out []string
	for _, l := range n.all() {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// fakeCalendar is the calendar as the cache would hand it over. The
// fetching and parsing of wikitech's page is tested in the calendar
// package against its real wire format.
type fakeCalendar struct {
	mu    sync.Mutex
	sched calendar.Schedule
	err   error
}

func (c *fakeCalendar) Schedule() (calendar.Schedule, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sched, c.sched.FetchedAt, c.err
}

func (c *fakeCalendar) set(s calendar.Schedule, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sched, c.err = s, err
}

var t0 = time.Date(2026, 11, 23, 14, 10, 0, 0, time.UTC)

func newLab(t *testing.T, nHosts int, cfg Config) *lab {
	t.Helper()
	ctx := context.Background()
	l := &lab{t: t, clock: clockwork.NewFakeClockAt(t0), lockDir: t.TempDir(),
		regs: map[string]*regenv.Instance{}, failRestart: map[string]bool{}, notices: &notices{}}

	// Real registries, started in parallel.
	for i := 1; i <= nHosts; i++ {
		l.hosts = append(l.hosts, fmt.Sprintf("registry%d", i))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, h := range l.hosts {
		wg.Go(func() {
			inst := regenv.Start(t, regenv.Options{})
			mu.Lock()
			l.regs[h] = inst
			mu.Unlock()
		})
	}
	l.etcd = etcdenv.Start(t)
	wg.Wait()
	l.etcd.PutDiscovery(t, "apus", "eqiad", true)
	l.etcd.PutDiscovery(t, "apus", "codfw", true)
	var err error
	l.conftool, err = conftool.New(conftool.Config{Backend: conftool.BackendEtcd,
		Etcd: conftool.EtcdConfig{Endpoints: []string{l.etcd.ClientURL}}}, conftool.Options{})
	if err != nil {
		t.Fatal(err)
	}

	l.store, err = store.Open(ctx, filepath.Join(t.TempDir(), "poolbot.db"), l.clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.store.Close() })

	// scap's lock files, probed and taken for real.
	global := filepath.Join(l.lockDir, "scap-global-lock")
	staging := filepath.Join(l.lockDir, "scap.srv_mediawiki-staging.lock")
	for _, f := range []string{global, staging} {
		// scap leaves its lock files behind; on a deploy host they exist.
		if err := os.WriteFile(f, []byte("{}"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	scfg := scap.DefaultConfig()
	scfg.Locks.Files = []string{global, staging}
	scfg.DeployBlock.GlobalLock = global
	scfg.Channel.Enabled = boolPtr(false)
	l.scap, err = scap.New(scfg, scap.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// The local executor runs this test binary as "systemctl" per host.
	ctl := l.startControl()
	t.Setenv("POOLBOT_TEST_CTL", ctl)
	exec, err := restart.NewLocal(restart.LocalConfig{Command: []string{os.Args[0], "{host}", "{argv}"}}, restart.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rcfg := registry.DefaultConfig()
	rcfg.Health.Interval, rcfg.Health.WaitTimeout, rcfg.Health.Consecutive = 100*time.Millisecond, 10*time.Second, 1
	regClient, err := registry.New(rcfg, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Name: "apus", Datacenters: []string{"eqiad", "codfw"},
		Plan: restart.Plan{Hosts: l.hosts, Units: []string{"docker-registry-restricted.service"},
			PerHostTimeout: 20 * time.Second, RestartCommand: restart.DefaultRestartCommand(),
			CheckCommand: restart.DefaultCheckCommand()},
		Executor: exec, Registry: regClient, Probe: true,
		Instances: func(host string) []registry.Instance {
			r := l.regs[host]
			return []registry.Instance{{Name: "restricted", Host: "127.0.0.1", Port: r.Port, DebugPort: r.DebugPort}}
		},
	}
	l.cal = &fakeCalendar{}
	l.cal.set(calendar.NewSchedule(t0, t0.Add(30*24*time.Hour), nil), nil)
	if cfg.PerHostEstimate == 0 {
		cfg.PerHostEstimate = time.Minute
	}
	if cfg.LeadMargin == 0 && cfg.TailMargin == 0 {
		cfg.LeadMargin, cfg.TailMargin = 5*time.Minute, 5*time.Minute
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 24 * time.Hour
	}
	l.engine, err = New(cfg, Deps{Store: l.store, Calendar: l.cal, Scap: l.scap.Monitor, Blocker: l.scap.Blocker,
		Conftool: l.conftool, Announce: l.notices, Clock: l.clock}, []*Service{svc})
	if err != nil {
		t.Fatal(err)
	}
	l.start()
	return l
}

func boolPtr(b bool) *bool { return &b }

// start runs the engine; stop ends it as a shutdown would.
func (l *lab) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	go func() { defer close(l.done); _ = l.engine.Run(ctx) }()
	l.t.Cleanup(l.stop)
}

func (l *lab) stop() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		l.cancel = nil
	}
}

// startControl serves the "systemctl" of every host: restart stops and
// starts the host's registry process on the same ports and storage.
func (l *lab) startControl() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ctlRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		_ = json.NewEncoder(w).Encode(l.systemctl(r.Context(), req))
	})}
	go func() { _ = srv.Serve(ln) }()
	l.t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func (l *lab) systemctl(ctx context.Context, req ctlRequest) ctlResponse {
	inst := l.regs[req.Host]
	if inst == nil || len(req.Argv) < 2 || req.Argv[0] != "systemctl" {
		return ctlResponse{Exit: 2, Output: fmt.Sprintf("unknown host or command %q %q\n", req.Host, req.Argv)}
	}
	switch req.Argv[1] {
	case "restart":
		l.mu.Lock()
		fail := l.failRestart[req.Host]
		l.restarts = append(l.restarts, req.Host)
		l.mu.Unlock()
		if fail {
			// The unit stops and does not come back, as when its start job
			// fails.
			_ = inst.Kill()
			return ctlResponse{Exit: 1, Output: "Job for docker-registry-restricted.service failed because the control process exited with error code.\n"}
		}
		if err := inst.Restart(ctx); err != nil {
			return ctlResponse{Exit: 1, Output: err.Error() + "\n"}
		}
		return ctlResponse{}
	case "is-active":
		if inst.PID() != 0 && syscall.Kill(inst.PID(), 0) == nil {
			return ctlResponse{}
		}
		return ctlResponse{Exit: 3}
	}
	return ctlResponse{Exit: 2, Output: "unsupported\n"}
}

func (l *lab) restarted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.restarts)
}

// queue stores a request as the command layer does and wakes the engine.
func (l *lab) queue(action poolbot.Action, dc string) poolbot.RequestID {
	l.t.Helper()
	var r poolbot.Request
	err := l.store.Tx(context.Background(), func(tx *store.Tx) error {
		var err error
		r, err = tx.InsertRequest(poolbot.Request{Action: action, Service: "apus", Datacenter: dc,
			Reason: "T422166 test", Task: "T422166", Operator: "alice",
			Origin: poolbot.Origin{Network: "irc", Account: "alice", Nick: "alice"}})
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.engine.Notify("apus")
	return r.ID
}

func (l *lab) request(id poolbot.RequestID) poolbot.Request {
	l.t.Helper()
	r, err := l.store.Request(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	return r
}

// waitState waits (real time) until the request is in one of states,
// advancing the fake clock by tick each round when tick > 0.
func (l *lab) waitState(id poolbot.RequestID, tick time.Duration, states ...poolbot.State) poolbot.Request {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := l.request(id)
		if slices.Contains(states, r.State) {
			return r
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s is %s (%s), want %v; notices:\n%s", id, r.State, r.Step, states, strings.Join(l.notices.all(), "\n"))
		}
		if tick > 0 {
			l.clock.Advance(tick)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *lab) sal(id poolbot.RequestID) []string {
	l.t.Helper()
	lines, err := l.store.SALLines(context.Background(), id)
	if err != nil {
		l.t.Fatal(err)
	}
	return lines
}

func (l *lab) pooled(dc string) bool {
	l.t.Helper()
	st, err := l.conftool.Get(context.Background(), "apus", dc)
	if err != nil {
		l.t.Fatal(err)
	}
	return st.Pooled
}

// globalLock says who holds scap's global lock, probed from another
// process: F_GETLK does not report the caller's own locks, and opening and
// closing the file in the engine's process would drop its deploy block.
func (l *lab) globalLock() string {
	l.t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "POOLBOT_TEST_PROBE_LOCK="+filepath.Join(l.lockDir, "scap-global-lock"), "POOLBOT_TEST_CTL=")
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("probe: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// holdScapLock makes a child process hold a lock on a scap lock file, as
// a running scap command does; release ends it.
func (l *lab) holdScapLock(name, mode string) (release func()) {
	l.t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "POOLBOT_TEST_HOLD_LOCK="+filepath.Join(l.lockDir, name)+":"+mode, "POOLBOT_TEST_CTL=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		l.t.Fatalf("lock holder: %q %v", line, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			_ = cmd.Wait()
		})
	}
	l.t.Cleanup(release)
	return release
}
