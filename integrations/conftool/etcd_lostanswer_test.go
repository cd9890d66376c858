package conftool

import (
	"testing"

	etcdtest "poolbot/internal/testenv/etcd"
)

// TestEtcdLostWriteAnswerIsNotWrittenTwice: a compare-and-swap that etcd
// applied but whose answer never came back is retried on the next endpoint,
// which answers 101 (the index moved: by that very write). The re-read
// finds the value already stored, so poolbot does not write it a second
// time: one operation is one change, one watch event, and the index it
// reports is the one etcd holds.
func TestEtcdLostWriteAnswerIsNotWrittenTwice(t *testing.T) {
	t.Parallel()
	srv := startApus(t)
	lossy := etcdtest.StartProxy(t, srv)
	lossy.LoseWriteAnswers(true)
	other := etcdtest.StartProxy(t, srv)
	c := newEtcdClient(t, EtcdConfig{Endpoints: []string{lossy.URL, other.URL}})
	watch := startWatch(t, etcdClientFor(t, srv), "apus")
	initialChanges(t, watch, 2)
	ctx := testCtx(t)
	key := etcdtest.DiscoveryKey("apus", "codfw")

	st, err := c.SetPooled(ctx, "apus", "codfw", false)
	if err != nil {
		t.Fatal(err)
	}
	written := lossy.LostIndex()
	if lossy.Puts() != 1 || written == 0 {
		t.Fatalf("the lossy endpoint saw %d PUTs (dropped answer at index %d), want 1", lossy.Puts(), written)
	}
	if n := other.Puts(); n != 1 {
		t.Fatalf("the other endpoint saw %d PUTs, want 1 (the retry, refused with 101)", n)
	}
	fields, idx := storedFields(t, srv, key)
	if fields["pooled"] != false || idx != written {
		t.Fatalf("etcd holds %v at index %d, want pooled=false at %d (the one write)", fields, idx, written)
	}
	if st.Pooled || st.ModifiedIndex != written {
		t.Fatalf("SetPooled returned %+v, want pooled=false at index %d", st, written)
	}

	// The watch sees that one write, and next the marker written after
	// SetPooled returned: no second event for codfw in between.
	if got := nextChange(t, watch); got.Source != SourceEvent || got.Datacenter != "codfw" || got.ModifiedIndex != written {
		t.Fatalf("change %s, want the event of codfw's write at %d", got, written)
	}
	marker := srv.PutDiscovery(t, "apus", "eqiad", true)
	if got := nextChange(t, watch); got.Datacenter != "eqiad" || got.ModifiedIndex != marker {
		t.Fatalf("change %s, want the marker write of eqiad at %d (codfw written twice?)", got, marker)
	}
}
