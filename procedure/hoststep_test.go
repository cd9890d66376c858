package procedure

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"poolbot"
	"poolbot/integrations/alertmanager"
	"poolbot/integrations/conftool"
	"poolbot/integrations/spicerack"
	amtest "poolbot/internal/testenv/alertmanager"
	"poolbot/store"
)

// guarded is a world with the per-host guards on real servers: node
// objects in etcd, a real Alertmanager, spicerack's locks in etcd.
type guarded struct {
	*harness
	am    *amtest.Server
	pools []conftool.Pool
}

var apusPool = conftool.Pool{DC: "codfw", Cluster: "apus", Service: "apus"}

func nodeKey(p conftool.Pool, host string) string {
	return "/conftool/v1/pools/" + p.DC + "/" + p.Cluster + "/" + p.Service + "/" + host
}

// amURL "" starts a real Alertmanager; "down" points at a closed port.
func newGuarded(t *testing.T, nHosts int, cfg Config, amURL string, more ...guardOption) *guarded {
	t.Helper()
	g := &guarded{pools: []conftool.Pool{apusPool, {DC: "codfw", Cluster: "apus", Service: "apus-https"}}}
	if amURL == "" {
		g.am = amtest.Start(t)
		amURL = g.am.URL
	} else if amURL == "down" {
		amURL = closedURL(t)
	}
	// A test that fails mid-host would otherwise hang in its cleanup: the
	// engine finishes the host (its drain wait is on the fake clock)
	// before it stops. The clock runs on while the world stops.
	stopTicking := make(chan struct{})
	t.Cleanup(func() { close(stopTicking) }) // runs after the world stopped
	defer t.Cleanup(func() {                 // runs before the world stops
		go func() {
			for {
				select {
				case <-stopTicking:
					return
				case <-time.After(10 * time.Millisecond):
					g.clock.Advance(time.Second)
				}
			}
		}()
	})
	g.harness = newHarnessWith(t, nHosts, cfg, nil, func(l *harness, d *Deps, c *Config, svc *Service) {
		for i := 1; i <= nHosts; i++ {
			host := fmt.Sprintf("registry%d", i)
			l.etcd.Put(t, nodeKey(apusPool, host), `{"pooled": "yes", "weight": 10}`)
			// Not in service: never touched.
			l.etcd.Put(t, nodeKey(g.pools[1], host), `{"pooled": "inactive", "weight": 10}`)
		}
		kv, err := conftool.NewEtcd(conftool.EtcdConfig{Endpoints: []string{l.etcd.ClientURL}}, conftool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d.Nodes = kv
		svc.Drain = Drain{Pools: g.pools}
		// The silences are real: Alertmanager refuses an end in the past,
		// so its client runs on the real clock.
		am, err := alertmanager.New(alertmanager.Config{URLs: []string{amURL}, Margin: time.Minute}, alertmanager.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d.Silencer = am
		c.SilenceFailClosed = true
		locks, err := spicerack.New(kv, spicerack.Options{Owner: "poolbot@deploy1003 [4242]", Clock: l.clock})
		if err != nil {
			t.Fatal(err)
		}
		d.Locks = locks
		c.Locks = LockSpecs{ServiceRoute: spicerack.ServiceRouteRW, RegistryRestart: spicerack.RegistryRollRestart}
		for _, m := range more {
			m(l, d, c, svc)
		}
	})
	return g
}

func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func (g *guarded) node(p conftool.Pool, host string) string {
	g.t.Helper()
	n, ok := g.etcd.Get(g.t, nodeKey(p, host))
	if !ok {
		g.t.Fatalf("node %s/%s missing", p.Service, host)
	}
	var v struct{ Pooled string }
	if err := json.Unmarshal([]byte(n.Value), &v); err != nil {
		g.t.Fatal(err)
	}
	return v.Pooled
}

// silences lists poolbot's silences in the real Alertmanager.
func (g *guarded) silences() []alertmanager.Silence {
	g.t.Helper()
	resp, err := http.Get(g.am.URL + "/api/v2/silences")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var all []alertmanager.Silence
	if err := json.Unmarshal(body, &all); err != nil {
		g.t.Fatalf("%v: %s", err, body)
	}
	return slices.DeleteFunc(all, func(s alertmanager.Silence) bool { return s.CreatedBy != "poolbot" })
}

func indexOf(lines []string, sub string) int {
	return slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, sub) })
}

// Each host is silenced and drained (its pooled=yes node depooled, the
// inactive one left alone), restarted after the drain period, then
// repooled and unsilenced; the SAL lines use confctl's wording.
func TestHostDrainedSilencedRestored(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 2, Config{}, "")
	id := g.queue(poolbot.ActionRestart, "")
	// The drain waits 5 s on the fake clock.
	r := g.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	sal := g.sal(id)
	for _, h := range []string{"registry1", "registry2"} {
		depool := indexOf(sal, "conftool action : set/pooled=no; selector: dc=codfw,cluster=apus,service=apus,name="+h)
		restarted := indexOf(sal, "on "+h+" (")
		repool := indexOf(sal, "conftool action : set/pooled=yes; selector: dc=codfw,cluster=apus,service=apus,name="+h)
		// The host's line is written once it is back and repooled.
		if depool < 0 || repool < depool || restarted < repool {
			t.Fatalf("%s: depool %d, restart %d, repool %d in SAL:\n%s", h, depool, restarted, repool, strings.Join(sal, "\n"))
		}
		if !strings.Contains(sal[restarted], "drained 00m 05s, repooled; silenced until") {
			t.Errorf("host line %q", sal[restarted])
		}
		if got := g.node(apusPool, h); got != "yes" {
			t.Errorf("%s apus node %s after success", h, got)
		}
		if got := g.node(g.pools[1], h); got != "inactive" {
			t.Errorf("%s inactive node became %s", h, got)
		}
	}
	if indexOf(sal, "apus-https") >= 0 {
		t.Fatalf("touched the inactive node:\n%s", strings.Join(sal, "\n"))
	}
	sil := g.silences()
	if len(sil) != 2 {
		t.Fatalf("silences %+v", sil)
	}
	for _, s := range sil {
		if s.State() != alertmanager.StateExpired || !strings.Contains(s.Comment, "#1") ||
			!strings.Contains(s.Comment, "alice") || !strings.Contains(s.Comment, "T422166") {
			t.Errorf("silence %+v", s)
		}
	}
	steps, _ := g.store.HostSteps(context.Background(), id)
	for _, s := range steps {
		if s.Drained != nil || s.Silences != nil {
			t.Errorf("step %d keeps %+v %+v", s.Position, s.Drained, s.Silences)
		}
	}
	if end := sal[len(sal)-1]; !strings.Contains(end, "END (PASS) - restart apus: 2/2 hosts restarted - T422166 (duration: ") {
		t.Fatalf("END %q", end)
	}
	if v, ok := g.etcd.Get(t, spicerack.ServiceRouteRW.Key()); ok && v.Value != "" {
		t.Fatalf("service-route lock left: %q", v.Value)
	}
}

// A host that does not come back stays depooled, and END says so with
// the way back; its silence is removed. !resume after the fix repools it.
func TestFailedHostStaysDepooled(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 2, Config{}, "")
	g.systemctl.Fail("registry1", true)
	id := g.queue(poolbot.ActionRestart, "")
	r := g.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateFailed {
		t.Fatalf("ended %s", r.State)
	}
	if got := g.node(apusPool, "registry1"); got != "no" {
		t.Fatalf("failed host's node is %s, want it left depooled", got)
	}
	if got := g.node(apusPool, "registry2"); got != "yes" {
		t.Fatalf("untouched host's node is %s", got)
	}
	end := g.sal(id)[len(g.sal(id))-1]
	for _, want := range []string{"END (FAIL) - restart apus: host 1/2 registry1:",
		"registry1 STAYS DEPOOLED (dc=codfw,cluster=apus,service=apus,name=registry1)", "set/pooled=yes", "not touched: registry2"} {
		if !strings.Contains(end, want) {
			t.Errorf("END %q lacks %q", end, want)
		}
	}
	if !strings.Contains(r.Error, "STAYS DEPOOLED") { // what !status shows
		t.Errorf("request error %q", r.Error)
	}
	if sil := g.silences(); len(sil) != 1 || sil[0].State() != alertmanager.StateExpired {
		t.Fatalf("silences %+v", sil)
	}
	steps, _ := g.store.HostSteps(context.Background(), id)
	if len(steps[0].Drained) != 1 || steps[0].Drained[0].Pooled != "yes" || steps[0].Silences != nil {
		t.Fatalf("failed step %+v", steps[0])
	}

	g.systemctl.Fail("registry1", false)
	if err := g.regs["registry1"].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := g.engine.Resume(context.Background(), id, "bob", poolbot.Origin{Network: "irc", Account: "bob"}); err != nil {
		t.Fatal(err)
	}
	if r := g.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("after resume: %s %s", r.State, r.Error)
	}
	if got := g.node(apusPool, "registry1"); got != "yes" {
		t.Fatalf("resumed host's node is %s", got)
	}
}

// A crash mid-host left the node depooled and a silence: the next run
// removes the old silence, restarts the host and restores the stored
// value (not the "no" it reads).
func TestCrashMidHostRestoresStoredValue(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 1, Config{}, "")
	g.stop()
	ctx := context.Background()
	am, err := alertmanager.New(alertmanager.Config{URLs: []string{g.am.URL}}, alertmanager.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := am.SilenceHost(ctx, "registry1", time.Minute, alertmanager.Reason{Text: "restart apus", RequestID: 1, Operator: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	g.etcd.Put(t, nodeKey(apusPool, "registry1"), `{"pooled": "no", "weight": 10}`)
	var id poolbot.RequestID
	err = g.store.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionRestart, Service: "apus", Reason: "T422166 test",
			Task: "T422166", Operator: "alice", Origin: poolbot.Origin{Network: "irc", Account: "alice"}})
		if err != nil {
			return err
		}
		id = r.ID
		r.State = poolbot.StateRestarting
		if _, err := tx.UpdateRequest(r, poolbot.StateQueued); err != nil {
			return err
		}
		if err := tx.InsertHostSteps(id, []string{"registry1"}); err != nil {
			return err
		}
		if err := tx.UpdateHostStep(id, 1, poolbot.HostRestarting, ""); err != nil {
			return err
		}
		if err := tx.SetHostDrained(id, 1, []poolbot.DrainedNode{{DC: "codfw", Cluster: "apus", Service: "apus", Pooled: "yes"}}); err != nil {
			return err
		}
		return tx.SetHostSilences(id, 1, []poolbot.HostSilence{{ID: old.ID, EndsAt: old.EndsAt}})
	})
	if err != nil {
		t.Fatal(err)
	}
	g.start()
	g.engine.Notify("apus")
	if r := g.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if got := g.node(apusPool, "registry1"); got != "yes" {
		t.Fatalf("node %s after the resumed host", got)
	}
	s, err := am.Get(ctx, old.ID)
	if err != nil || s.State() != alertmanager.StateExpired {
		t.Fatalf("old silence %+v %v", s, err)
	}
}

// Alertmanager down: by default the host is not restarted and nothing is
// changed; with fail_closed false it is restarted with a loud notice.
func TestAlertmanagerDown(t *testing.T) {
	t.Parallel()
	t.Run("fail closed", func(t *testing.T) {
		g := newGuarded(t, 1, Config{}, "down")
		id := g.queue(poolbot.ActionRestart, "")
		r := g.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed)
		if r.State != poolbot.StateFailed || !strings.Contains(r.Error, "not restarted") ||
			!strings.Contains(r.Error, "no Alertmanager reachable") {
			t.Fatalf("%s: %s", r.State, r.Error)
		}
		if len(g.restarted()) != 0 || g.node(apusPool, "registry1") != "yes" {
			t.Fatalf("acted: restarts %v, node %s", g.restarted(), g.node(apusPool, "registry1"))
		}
	})
	t.Run("fail open", func(t *testing.T) {
		g := newGuarded(t, 1, Config{}, "down", func(_ *harness, _ *Deps, c *Config, _ *Service) { c.SilenceFailClosed = false })
		id := g.queue(poolbot.ActionRestart, "")
		if r := g.waitState(id, time.Second, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
			t.Fatalf("%s: %s", r.State, r.Error)
		}
		if len(g.notices.Matching("WITHOUT an Alertmanager silence")) != 1 {
			t.Fatalf("notices %q", g.notices.All())
		}
		if sal := g.sal(id); indexOf(sal, "NOT silenced (Alertmanager unreachable)") < 0 {
			t.Fatalf("SAL %q", sal)
		}
	})
}

// A cookbook run holding the service-route lock is a gate naming its
// owner and expiry; the request proceeds when the lock expires. poolbot
// holds the lock itself while it changes conftool.
func TestServiceRouteLockGate(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 1, Config{}, "")
	created := g.clock.Now().Add(-9 * time.Minute) // expires at t0 + 1m
	g.etcd.Put(t, spicerack.ServiceRouteRW.Key(), fmt.Sprintf(
		`{"4e2677c7-541a-4f9e-afbb-cfdb69c440a1": {"concurrency": 1, "created": %q, "owner": "jdoe@cumin1003 [12345]", "ttl": 600}}`,
		created.UTC().Format("2006-01-02 15:04:05.000000+00:00")))
	id := g.queue(poolbot.ActionDepool, "codfw")
	r := g.waitState(id, 0, poolbot.StateWaiting)
	want := "spicerack lock /spicerack/locks/cookbooks/sre.discovery.service-route:rw held by jdoe@cumin1003 [12345] until 14:11:00 UTC"
	if !strings.Contains(r.Step, want) || !strings.Contains(r.Step, "estimated start 14:11:00 UTC") {
		t.Fatalf("step %q", r.Step)
	}
	// The wake-up at its expiry lets it through.
	r = g.waitState(id, 10*time.Second, poolbot.StateDone, poolbot.StateFailed)
	if r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if g.pooled("codfw") {
		t.Fatal("not depooled")
	}
}

// A malformed lock value keeps the gate closed with an error naming the
// key; a restart-only request checks the registry cookbook's lock.
func TestMalformedLockKeepsGateClosed(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 1, Config{}, "")
	g.etcd.Put(t, spicerack.RegistryRollRestart.Key(), `{"x": "not a holder"}`)
	id := g.queue(poolbot.ActionRestart, "")
	r := g.waitState(id, 0, poolbot.StateWaiting)
	if !strings.Contains(r.Step, "gate closed: spicerack lock /spicerack/locks/cookbooks/sre.misc-clusters.roll-restart-reboot-docker-registry holds a malformed value") {
		t.Fatalf("step %q", r.Step)
	}
	g.clock.Advance(time.Hour)
	time.Sleep(100 * time.Millisecond)
	if g.request(id).State != poolbot.StateWaiting || len(g.restarted()) != 0 {
		t.Fatal("went through a malformed lock")
	}
}

// The registry roll-restart cookbook starts while poolbot is on host 1:
// poolbot waits before host 2, naming the holder, and goes on when the
// cookbook's lock expires.
func TestRestartLockWaitsBeforeNextHost(t *testing.T) {
	t.Parallel()
	g := newGuarded(t, 2, Config{}, "")
	proceed := g.systemctl.Hold("registry1")
	id := g.queue(poolbot.ActionRestart, "")
	deadline := time.Now().Add(30 * time.Second)
	for len(g.restarted()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("host 1 never started")
		}
		g.clock.Advance(time.Second) // the drain wait
		time.Sleep(20 * time.Millisecond)
	}
	created := g.clock.Now()
	g.etcd.Put(t, spicerack.RegistryRollRestart.Key(), fmt.Sprintf(
		`{"0b7d0c4e-8f43-4a3b-9d36-2f6f0c1b9e11": {"concurrency": 20, "created": %q, "owner": "jdoe@cumin2002 [999]", "ttl": 600}}`,
		created.UTC().Format("2006-01-02 15:04:05.000000+00:00")))
	proceed()
	// The drain wait of host 1 needs the clock; then the lock is seen.
	g.waitNotice("waits before the next host: spicerack lock /spicerack/locks/cookbooks/sre.misc-clusters.roll-restart-reboot-docker-registry held by jdoe@cumin2002 [999] until", 100*time.Millisecond)
	if got := strings.Join(g.restarted(), ","); got != "registry1" {
		t.Fatalf("restarted %s while the cookbook's lock was held", got)
	}
	if r := g.waitState(id, 30*time.Second, poolbot.StateDone, poolbot.StateFailed); r.State != poolbot.StateDone {
		t.Fatalf("ended %s: %s", r.State, r.Error)
	}
	if !g.clock.Now().After(created.Add(10 * time.Minute)) {
		t.Fatalf("went on at %s, before the lock expired", g.clock.Now())
	}
}
