package conftool

import (
	"errors"
	"reflect"
	"testing"

	etcdtest "poolbot/internal/testenv/etcd"
)

// Node objects as conftool stores them (reference §4): a host in the apus
// pool of codfw, depooled and restored with its other fields kept.
func TestEtcdNodesDepoolAndRestore(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	const host = "moss-fe2001.codfw.wmnet"
	key := "/conftool/v1/pools/codfw/apus/apus/" + host
	srv.Put(t, key, `{"pooled": "yes", "weight": 10, "note": "keep <me>"}`)
	srv.Put(t, "/conftool/v1/pools/codfw/apus/apus/moss-fe2002.codfw.wmnet", `{"pooled": "yes", "weight": 10}`)
	c := etcdClientFor(t, srv)
	ctx := testCtx(t)
	pools := []Pool{{DC: "codfw", Cluster: "apus", Service: "apus"}, {DC: "codfw", Cluster: "apus", Service: "apus-https"}}

	nodes, err := c.Nodes(ctx, pools, host)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Pooled != "yes" || nodes[0].Weight != 10 || nodes[0].Pool != pools[0] {
		t.Fatalf("Nodes = %+v", nodes)
	}
	n, err := c.SetNodePooled(ctx, pools[0], host, NodePooledNo)
	if err != nil || n.Pooled != "no" {
		t.Fatalf("depool: %+v %v", n, err)
	}
	fields, idx := storedFields(t, srv, key)
	want := map[string]any{"pooled": "no", "weight": float64(10), "note": "keep <me>"}
	if !reflect.DeepEqual(fields, want) || idx != n.ModifiedIndex {
		t.Fatalf("stored %v at %d, want %v at %d", fields, idx, want, n.ModifiedIndex)
	}
	// The other host is untouched.
	if other, _ := storedFields(t, srv, "/conftool/v1/pools/codfw/apus/apus/moss-fe2002.codfw.wmnet"); other["pooled"] != "yes" {
		t.Fatalf("other node %v", other)
	}
	if _, err := c.SetNodePooled(ctx, pools[0], host, NodePooledYes); err != nil {
		t.Fatal(err)
	}
	if fields, _ := storedFields(t, srv, key); fields["pooled"] != "yes" {
		t.Fatalf("restored %v", fields)
	}
}

func TestEtcdNodesBadInput(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	c := etcdClientFor(t, srv)
	ctx := testCtx(t)
	p := Pool{DC: "codfw", Cluster: "apus", Service: "apus"}

	if _, err := c.Nodes(ctx, []Pool{p}, "nowhere.codfw.wmnet"); !errors.Is(err, ErrNoNode) ||
		err.Error() != "no conftool node object matches: dc=codfw,cluster=apus,service=apus,name=nowhere.codfw.wmnet" {
		t.Fatalf("absent host: %v", err)
	}
	if _, err := c.Nodes(ctx, []Pool{p}, "Evil/../x"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad host: %v", err)
	}
	if _, err := c.Nodes(ctx, []Pool{{DC: "codfw", Cluster: "a.*", Service: "apus"}}, "h.wmnet"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad pool: %v", err)
	}
	key := "/conftool/v1/pools/codfw/apus/apus/h1.codfw.wmnet"
	srv.Put(t, key, `{"pooled": true, "weight": 1}`)
	if _, err := c.Nodes(ctx, []Pool{p}, "h1.codfw.wmnet"); err == nil {
		t.Fatal("a boolean pooled (a discovery value) read as a node")
	}
	if _, err := c.SetNodePooled(ctx, p, "h1.codfw.wmnet", NodePooledNo); err == nil {
		t.Fatal("overwrote a value it cannot read")
	}
	if v, _ := srv.Get(t, key); v.Value != `{"pooled": true, "weight": 1}` {
		t.Fatalf("unreadable value changed: %q", v.Value)
	}
	if _, err := c.SetNodePooled(ctx, p, "h1.codfw.wmnet", "maybe"); err == nil {
		t.Fatal("accepted pooled=maybe")
	}
}

// BenchmarkNodeDepoolRepool is a host's drain and restore as the procedure
// does them, without the drain wait: read its node, set pooled=no, set
// pooled=yes (each a read plus a compare-and-swap write).
func BenchmarkNodeDepoolRepool(b *testing.B) {
	srv := etcdtest.Start(b)
	const host = "registry2004.codfw.wmnet"
	p := Pool{DC: "codfw", Cluster: "apus", Service: "apus"}
	srv.Put(b, "/conftool/v1/pools/codfw/apus/apus/"+host, `{"pooled": "yes", "weight": 10}`)
	c := newEtcdClient(b, EtcdConfig{Endpoints: []string{srv.ClientURL}})
	c.logger = testLoggerDiscard()
	ctx := testCtx(b)
	for b.Loop() {
		if _, err := c.Nodes(ctx, []Pool{p}, host); err != nil {
			b.Fatal(err)
		}
		if _, err := c.SetNodePooled(ctx, p, host, NodePooledNo); err != nil {
			b.Fatal(err)
		}
		if _, err := c.SetNodePooled(ctx, p, host, NodePooledYes); err != nil {
			b.Fatal(err)
		}
	}
}

// The same through confctl (the stand-in speaks confctl's node argv and
// output, over the real etcd): argv, values and the exactly-one check.
func TestConfctlNodesDepoolAndRestore(t *testing.T) {
	srv := etcdtest.Start(t)
	const host = "moss-fe2001.codfw.wmnet"
	key := "/conftool/v1/pools/codfw/apus/apus/" + host
	srv.Put(t, key, `{"pooled": "yes", "weight": 10}`)
	// A name the host's regex dots would also match: never selected.
	srv.Put(t, "/conftool/v1/pools/codfw/apus/apus/moss-fe2001Xcodfw.wmnet", `{"pooled": "yes", "weight": 10}`)
	fake := newFakeConfctl(t, srv)
	c := fake.client(t, nil)
	ctx := testCtx(t)
	pools := []Pool{{DC: "codfw", Cluster: "apus", Service: "apus"}, {DC: "codfw", Cluster: "apus", Service: "apus-https"}}

	nodes, err := c.Nodes(ctx, pools, host)
	if err == nil {
		t.Fatalf("two nodes matched the host's regex, yet Nodes = %+v", nodes)
	}
	srv.Delete(t, "/conftool/v1/pools/codfw/apus/apus/moss-fe2001Xcodfw.wmnet")
	nodes, err = c.Nodes(ctx, pools, host)
	if err != nil || len(nodes) != 1 || nodes[0].Pooled != "yes" || nodes[0].Weight != 10 {
		t.Fatalf("Nodes = %+v, %v", nodes, err)
	}
	fake.calls(t) // reset
	if _, err := c.SetNodePooled(ctx, pools[0], host, NodePooledNo); err != nil {
		t.Fatal(err)
	}
	sel := "dc=codfw,cluster=apus,service=apus,name=" + host
	argv := func(action string) []string {
		return []string{"--config", fake.config, "--quiet", "--object-type", "node", "select", sel, action}
	}
	want := []fakeRecord{{Argv: argv("get")}, {Argv: argv("set/pooled=no")}, {Argv: argv("get")}}
	if got := fake.calls(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("argv\n got %q\nwant %q", got, want)
	}
	if fields, _ := storedFields(t, srv, key); fields["pooled"] != "no" || fields["weight"] != float64(10) {
		t.Fatalf("stored %v", fields)
	}
	if _, err := c.SetNodePooled(ctx, pools[0], host, NodePooledYes); err != nil {
		t.Fatal(err)
	}
	if fields, _ := storedFields(t, srv, key); fields["pooled"] != "yes" {
		t.Fatalf("restored %v", fields)
	}
	if _, err := c.Nodes(ctx, pools[1:], host); !errors.Is(err, ErrNoNode) {
		t.Fatalf("absent: %v", err)
	}
}
