package sal

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"poolbot"
	"poolbot/store"
)

// transcript is one channel: SAL lines (as the sink says them) and
// notices, in the order they were said.
type transcript struct {
	mu    sync.Mutex
	lines []string
}

func (c *transcript) add(s string) { c.mu.Lock(); c.lines = append(c.lines, s); c.mu.Unlock() }

func (c *transcript) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

func (c *transcript) Send(_ context.Context, m string) error { c.add("!log " + m); return nil }

func (c *transcript) Announce(_ context.Context, n poolbot.Notice) { c.add(n.String()) }

// newRequests stores n requests (SAL lines refer to them); their IDs are
// 1..n.
func newRequests(t *testing.T, st *store.Store, n int) {
	t.Helper()
	for range n {
		err := st.Tx(context.Background(), func(tx *store.Tx) error {
			_, err := tx.InsertRequest(poolbot.Request{Action: poolbot.ActionRestart, Service: "apus", Reason: "T1",
				Operator: "alice", State: poolbot.StateQueued})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The end of a request as the procedure writes it: the last host, the
// release and END in one transaction, then the DONE notice. DONE is said
// after END although the notice is made before the sender has even looked
// at the outbox; notices that wait for nothing, or about another request,
// are said at once.
func TestOrderedAnnouncerKeepsNoticesBehindTheirSALLines(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	newRequests(t, st, 5)
	channel := &transcript{}
	sender := NewSender(st, channel, nil, nil)
	ordered := NewOrderedAnnouncer(st, channel, nil)
	sender.Delivered = ordered.Delivered

	about := func(id poolbot.RequestID, text string) poolbot.Notice {
		return poolbot.Notice{Request: id, Operator: "alice", Text: text}
	}
	ordered.Announce(ctx, about(4, "#4 depool apus in codfw (alice) proceeding: all gates open"))
	err = st.Tx(ctx, func(tx *store.Tx) error {
		for _, n := range []poolbot.Notice{
			about(4, "restarted docker-registry-ml.service on registry2002 (2/2): healthy"),
			about(4, "deploy block released"),
			about(4, "END (PASS) - depool apus in codfw: 2/2 hosts restarted (duration: 01m00s)"),
		} {
			if err := tx.QueueSALNotice(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done := about(4, "#4 depool apus in codfw DONE: 2/2 hosts restarted")
	done.To = "alice"
	ordered.Announce(ctx, done)
	ordered.Announce(ctx, about(4, "#4 a later notice waits behind DONE"))
	ordered.Announce(ctx, about(5, "#5 restart apus (bob) waiting: one operation at a time"))
	ordered.Announce(ctx, poolbot.Notice{Text: "registry probe failed"})
	if got, held := channel.all(), ordered.Held(); len(got) != 3 || held != 2 {
		t.Fatalf("before the SAL lines went out: said %q, %d held; want 3 said, 2 held", got, held)
	}
	if err := sender.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"#4 depool apus in codfw (alice) proceeding: all gates open",
		"#5 restart apus (bob) waiting: one operation at a time",
		"registry probe failed",
		"!log poolbot #4 alice: restarted docker-registry-ml.service on registry2002 (2/2): healthy",
		"!log poolbot #4 alice: deploy block released",
		"!log poolbot #4 alice: END (PASS) - depool apus in codfw: 2/2 hosts restarted (duration: 01m00s)",
		"alice: #4 depool apus in codfw DONE: 2/2 hosts restarted",
		"#4 a later notice waits behind DONE",
	}
	if got := channel.all(); !slices.Equal(got, want) {
		t.Fatalf("channel:\n%q\nwant\n%q", got, want)
	}
	if ordered.Held() != 0 {
		t.Fatalf("%d notices still held", ordered.Held())
	}
}

// At shutdown, notices held behind lines that could not be delivered are
// said anyway.
func TestOrderedAnnouncerReleaseSaysHeldNotices(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	newRequests(t, st, 7)
	channel := &transcript{}
	ordered := NewOrderedAnnouncer(st, channel, nil)
	if err := st.Tx(ctx, func(tx *store.Tx) error {
		return tx.QueueSALNotice(poolbot.Notice{Request: 7, Operator: "alice", Text: "START - restart apus: T1"})
	}); err != nil {
		t.Fatal(err)
	}
	ordered.Announce(ctx, poolbot.Notice{Request: 7, Text: "#7 deploys are blocked while restart apus runs"})
	if len(channel.all()) != 0 {
		t.Fatalf("said before its SAL line: %q", channel.all())
	}
	ordered.Release(ctx)
	if got := channel.all(); len(got) != 1 || ordered.Held() != 0 {
		t.Fatalf("after Release: %q, %d held", got, ordered.Held())
	}
}

// The operator reads END (FAIL) and types !resume before the procedure has
// said FAILED: the FAILED notice follows the END line it was stored with,
// not the RESUME line queued after it (the lab's scenario showed RESUME
// before FAILED).
func TestOrderedAnnouncerNoticeFollowsItsOwnLine(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	newRequests(t, st, 3)
	channel := &transcript{}
	sender := NewSender(st, channel, nil, nil)
	ordered := NewOrderedAnnouncer(st, channel, nil)
	sender.Delivered = ordered.Delivered
	queue := func(text string) (last int64) {
		t.Helper()
		err := st.Tx(ctx, func(tx *store.Tx) error {
			if err := tx.QueueSALNotice(poolbot.Notice{Request: 3, Operator: "alice", Text: text}); err != nil {
				return err
			}
			last, _, err = tx.LastUnsentSAL(3)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	end := queue("END (FAIL) - restart apus: host 2/4 registry2")
	queue("RESUME by alice - restart apus from host 2/4 registry2") // !resume, before FAILED is said
	failed := poolbot.Notice{Request: 3, To: "alice", Text: "#3 restart apus FAILED: host 2/4 registry2", FollowsSAL: end}
	ordered.Announce(ctx, failed)
	if err := sender.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"!log poolbot #3 alice: END (FAIL) - restart apus: host 2/4 registry2",
		"alice: #3 restart apus FAILED: host 2/4 registry2",
		"!log poolbot #3 alice: RESUME by alice - restart apus from host 2/4 registry2",
	}
	if got := channel.all(); !slices.Equal(got, want) {
		t.Fatalf("channel:\n%q\nwant\n%q", got, want)
	}
}
