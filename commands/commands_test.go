package commands

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/jonboulle/clockwork"

	"poolbot"
	"poolbot/chat"
	"poolbot/store"
)

type replies struct {
	mu    sync.Mutex
	lines []string
}

func (r *replies) Reply(_ context.Context, text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, text)
	return nil
}

func (r *replies) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lines
	r.lines = nil
	return l
}

type notifier struct{ services []string }

func (n *notifier) Notify(s string) { n.services = append(n.services, s) }

type fixture struct {
	t      *testing.T
	router *Router
	store  *store.Store
	clock  *clockwork.FakeClock
	notes  *notifier
	out    *replies
	// salWakes counts SALWritten calls.
	salWakes int
}

func newFixture(t *testing.T, confirm bool) *fixture {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 22, 14, 0, 0, 0, time.UTC))
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "p.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ops, err := NewOperators([]Operator{
		{Name: "alice", IRCAccounts: []string{"alice"}, SlackUserIDs: []string{"U0ALICE"}},
		{Name: "bob", IRCAccounts: []string{"bob", "bob-alt"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifier{}
	f := &fixture{t: t, store: st, clock: clock, notes: n, out: &replies{}}
	f.router = NewRouter(Options{Prefix: "!", Nick: func() string { return "poolbot" },
		Services: map[string][]string{"apus": {"eqiad", "codfw"}}, ForceNeedsConfirm: confirm,
		SALWritten: func() { f.salWakes++ }},
		ops, st, Backends{Notifier: n}, clock, nil)
	return f
}

// say sends text as account on IRC (account "" = not logged in) and
// returns the replies.
func (f *fixture) say(account, text string) []string {
	f.t.Helper()
	f.router.HandleMessage(context.Background(), chat.Message{Network: "irc", Channel: "#ops",
		Nick: "somenick", Account: account, AccountKnown: true, Text: text, Time: f.clock.Now()}, f.out)
	return f.out.take()
}

func one(t *testing.T, lines []string) string {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("want one reply, got %q", lines)
	}
	return lines[0]
}

func TestDepoolQueuedAndStored(t *testing.T) {
	f := newFixture(t, true)
	// Bold codes are removed and the operator is told (TestReasonChangesAreSaid).
	got := f.say("alice", "!depool apus codfw T422166 switchover \x02test\x02")
	if len(got) != 2 || got[0] != "#1 queued: depool apus in codfw (T422166), position 1 in the apus queue" ||
		got[1] != "reason: removed 2 IRC formatting codes; stored as: T422166 switchover test" {
		t.Fatalf("replies %q", got)
	}
	req, err := f.store.Request(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if req.Operator != "alice" || req.Reason != "T422166 switchover test" || req.State != poolbot.StateQueued ||
		req.Origin.Account != "alice" || req.Origin.Channel != "#ops" {
		t.Fatalf("stored %+v", req)
	}
	if len(f.notes.services) != 1 || f.notes.services[0] != "apus" {
		t.Fatalf("notified %v", f.notes.services)
	}
	// Same request again is refused with the open one's id.
	if got := one(t, f.say("alice", "poolbot: depool apus codfw again")); !strings.Contains(got, "already open as #1") {
		t.Fatalf("duplicate: %q", got)
	}
	// Addressed by nick, and restart has no datacenter.
	if got := one(t, f.say("bob-alt", "poolbot, restart apus stale S3 connections")); !strings.HasPrefix(got, "#2 queued: restart apus") {
		t.Fatalf("restart: %q", got)
	}
	r2, _ := f.store.Request(context.Background(), 2)
	if r2.Operator != "bob" {
		t.Fatalf("bob-alt maps to %q", r2.Operator)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	f := newFixture(t, true)
	cases := map[string]string{
		"!depool":                                      "missing service (usage: !depool <service> <dc> <reason>)",
		"!depool nope codfw x":                         `unknown service "nope" (known: apus)`,
		"!depool apus":                                 "missing datacenter",
		"!depool apus ulsfo because":                   `unknown datacenter "ulsfo" for apus (known: eqiad, codfw)`,
		"!depool apus codfw":                           "a reason is required",
		"!depool apus codfw \x03\r\n":                  "a reason is required",
		"!pool apus codfw " + strings.Repeat("x", 300): "reason too long",
		"!restart apus":                                "a reason is required (usage: !restart <service> <reason>)",
		"!cancel":                                      "missing request id",
		"!cancel abc":                                  `"abc" is not a request id`,
		"!cancel 99":                                   "no request #99",
		"!history 500":                                 "n must be a number from 1 to 20",
		"poolbot: frobnik":                             `unknown command "frobnik"`,
	}
	for in, want := range cases {
		got := one(t, f.say("alice", in))
		if !strings.Contains(got, want) {
			t.Errorf("%q → %q, want it to contain %q", in, got, want)
		}
	}
	if reqs, _ := f.store.List(context.Background(), store.Filter{}); len(reqs) != 0 {
		t.Fatalf("bad input stored %d requests", len(reqs))
	}
	// Other bots' commands in the channel are not ours to answer.
	for _, l := range []string{"!log alice@cumin1003 restarted something", "!frobnik", "hello poolbot"} {
		if got := f.say("alice", l); len(got) != 0 {
			t.Errorf("%q got replies %q", l, got)
		}
	}
}

func TestAuthorization(t *testing.T) {
	f := newFixture(t, true)
	// Not logged in: the nick does not matter.
	if got := one(t, f.say("", "!depool apus codfw x")); !strings.Contains(got, "not logged in") {
		t.Fatalf("anonymous: %q", got)
	}
	if got := one(t, f.say("mallory", "!depool apus codfw x")); !strings.Contains(got, `"mallory" is not a poolbot operator`) {
		t.Fatalf("non-operator: %q", got)
	}
	// account-tag not acknowledged: identity unknown, fail closed, even
	// with what looks like an operator's account.
	f.router.HandleMessage(context.Background(), chat.Message{Network: "irc", Channel: "#ops", Nick: "alice",
		Account: "alice", AccountKnown: false, Text: "!depool apus codfw x"}, f.out)
	if got := one(t, f.out.take()); !strings.Contains(got, "did not confirm who you are") {
		t.Fatalf("unknown identity: %q", got)
	}
	// A Slack user ID is not an IRC account.
	f.router.HandleMessage(context.Background(), chat.Message{Network: "irc", Channel: "#ops", Nick: "x",
		Account: "U0ALICE", AccountKnown: true, Text: "!depool apus codfw x"}, f.out)
	if got := one(t, f.out.take()); !strings.Contains(got, "not a poolbot operator") {
		t.Fatalf("cross-network account: %q", got)
	}
	// Read-only commands work for anyone.
	if got := f.say("", "!status"); len(got) != 1 || !strings.Contains(got[0], "no active or queued requests") {
		t.Fatalf("status: %q", got)
	}
	if reqs, _ := f.store.List(context.Background(), store.Filter{}); len(reqs) != 0 {
		t.Fatalf("refused commands stored %d requests", len(reqs))
	}
	// Refusals are in the audit trail, with the account that tried.
	ev, err := f.store.RecentEvents(context.Background(), 10)
	if err != nil || len(ev) != 4 || ev[3].Kind != "refused" || ev[3].Origin.Account != "" || ev[2].Origin.Account != "mallory" {
		t.Fatalf("audit trail %+v, %v", ev, err)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t, true)
	f.say("alice", "!depool apus codfw maint")
	if got := one(t, f.say("bob", "!cancel #1 changed my mind")); got != "#1 cancelled: depool apus in codfw" {
		t.Fatalf("cancel: %q", got)
	}
	r, _ := f.store.Request(context.Background(), 1)
	if r.State != poolbot.StateCancelled || r.CancelledBy != "bob" || r.FinishedAt.IsZero() {
		t.Fatalf("cancelled request %+v", r)
	}
	if got := one(t, f.say("bob", "!cancel 1")); !strings.Contains(got, "already cancelled") {
		t.Fatalf("second cancel: %q", got)
	}
	// A running request gets a cancel flag instead.
	f.say("alice", "!pool apus codfw back")
	_ = f.store.Tx(context.Background(), func(tx *store.Tx) error {
		r, _ := tx.Request(2)
		r.State = poolbot.StateRestarting
		_, err := tx.UpdateRequest(r, poolbot.StateQueued)
		return err
	})
	if got := one(t, f.say("alice", "!cancel 2")); !strings.Contains(got, "stops before the next host") {
		t.Fatalf("running cancel: %q", got)
	}
	r2, _ := f.store.Request(context.Background(), 2)
	if r2.State != poolbot.StateRestarting || !r2.CancelRequested {
		t.Fatalf("running request after cancel %+v", r2)
	}
	ev, _ := f.store.Events(context.Background(), 1)
	if len(ev) != 2 || ev[1].Kind != "cancel" || ev[1].Actor != "bob" || ev[1].Detail != "cancelled: changed my mind" {
		t.Fatalf("events %+v", ev)
	}
}

func TestForceNeedsSecondOperator(t *testing.T) {
	f := newFixture(t, true)
	f.say("alice", "!depool apus codfw maint")
	if got := one(t, f.say("alice", "!force 1")); !strings.Contains(got, "a reason is required") {
		t.Fatalf("force without reason: %q", got)
	}
	if got := one(t, f.say("alice", "!force 1 registry broken, T1")); !strings.Contains(got, "needs !confirm 1 from another operator") {
		t.Fatalf("force: %q", got)
	}
	if got := one(t, f.say("alice", "!confirm 1")); !strings.Contains(got, "different operator") {
		t.Fatalf("self-confirm: %q", got)
	}
	// bob's other account is still bob, but alice on another network is alice:
	// one person across networks.
	f.router.HandleMessage(context.Background(), chat.Message{Network: "slack", Nick: "Alice",
		Account: "U0ALICE", AccountKnown: true, Text: "!confirm 1"}, f.out)
	if got := one(t, f.out.take()); !strings.Contains(got, "different operator") {
		t.Fatalf("alice via slack confirming: %q", got)
	}
	if got := one(t, f.say("bob", "!confirm 1")); !strings.Contains(got, "FORCE confirmed by bob") {
		t.Fatalf("confirm: %q", got)
	}
	r, _ := f.store.Request(context.Background(), 1)
	if !r.Forced || r.ForcedBy != "alice" || r.ConfirmedBy != "bob" {
		t.Fatalf("forced request %+v", r)
	}
	if n, _ := f.store.SALBacklog(context.Background()); n != 2 || f.salWakes < 2 {
		t.Fatalf("SAL backlog %d (sender woken %d times), want force + confirm", n, f.salWakes)
	}
	// An expired force request cannot be confirmed.
	f.say("alice", "!pool apus codfw back")
	f.say("alice", "!force 2 hurry")
	f.clock.Advance(11 * time.Minute)
	if got := one(t, f.say("bob", "!confirm 2")); !strings.Contains(got, "expired") {
		t.Fatalf("late confirm: %q", got)
	}
}

func TestHelpAndUnavailable(t *testing.T) {
	f := newFixture(t, true)
	got := one(t, f.say("", "!help"))
	for _, c := range []string{"!depool", "!windows*", "!check*", "!resume*", "!status "} {
		if !strings.Contains(got, c) {
			t.Errorf("help %q lacks %q", got, c)
		}
	}
	if got := one(t, f.say("", "!help depool")); got != "!depool <service> <dc> <reason> — queue a depool of <service> in <dc> plus its follow-up restarts (operators only)" {
		t.Fatalf("help depool: %q", got)
	}
	if got := one(t, f.say("", "!windows")); got != "!windows is not available: no deployment calendar is configured" {
		t.Fatalf("windows: %q", got)
	}
}

func TestStatusAndHistory(t *testing.T) {
	f := newFixture(t, true)
	f.say("alice", "!depool apus codfw T422166 maint")
	f.say("bob", "!restart apus stale")
	got := f.say("", "!status")
	if len(got) != 3 || !strings.HasPrefix(got[1], "#1 depool apus in codfw by alice: queued") {
		t.Fatalf("status %q", got)
	}
	got = f.say("", "!status #1")
	if len(got) != 2 || !strings.Contains(got[1], "task T422166") {
		t.Fatalf("status #1 %q", got)
	}
	got = f.say("", "!history 1")
	if len(got) != 1 || !strings.HasPrefix(got[0], "#2 restart apus by bob: queued") {
		t.Fatalf("history %q", got)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		text    string
		private bool
		name    string
		rest    string
		ok      bool
	}{
		{"!status", false, "status", "", true},
		{"  !Depool apus codfw  why  not ", false, "depool", "apus codfw  why  not", true},
		{"PoolBot: help depool", false, "help", "depool", true},
		{"poolbot,status", false, "status", "", true},
		{"poolbotx: status", false, "", "", false},
		{"status", true, "status", "", true},
		{"status", false, "", "", false},
		{"!", false, "", "", false},
		{"!!!", false, "", "", false},
		{"!ünïcode", false, "", "", false},
	} {
		inv, ok := Parse(tc.text, "!", "poolbot", tc.private)
		if ok != tc.ok || inv.Name != tc.name || inv.Rest != tc.rest {
			t.Errorf("Parse(%q) = %+v %v", tc.text, inv, ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"!depool apus codfw x", "poolbot: status", "!", "poolbot:", "\x00!x", "!a\r\nb"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, text string, private bool) {
		inv, ok := Parse(text, "!", "poolbot", private)
		if !ok {
			return
		}
		if inv.Name == "" || !isWord(inv.Name) {
			t.Fatalf("name %q", inv.Name)
		}
		if strings.TrimSpace(inv.Rest) != inv.Rest {
			t.Fatalf("rest %q not trimmed", inv.Rest)
		}
		if _, ok := ParseID(inv.Rest); ok && strings.ContainsAny(inv.Rest, " \t") {
			t.Fatalf("id with space %q", inv.Rest)
		}
	})
}

func FuzzCleanReason(f *testing.F) {
	for _, s := range []string{"T1 ok", "a\r\nPRIVMSG #x :y", "\x02bold\x0f \x0304red", "\u202eevil", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := CleanReason(s)
		for _, r := range c {
			if unicode.IsControl(r) || isBidiControl(r) || r == '\uFFFD' && !strings.ContainsRune(s, '\uFFFD') {
				t.Fatalf("CleanReason(%q) = %q keeps %U", s, c, r)
			}
		}
		if strings.TrimSpace(c) != c || strings.Contains(c, "  ") {
			t.Fatalf("CleanReason(%q) = %q has stray spaces", s, c)
		}
		if CleanReason(c) != c {
			t.Fatalf("not idempotent: %q → %q → %q", s, c, CleanReason(c))
		}
	})
}

// While the deploy block is being taken, a cancel stops the request before
// conftool is changed, and the reply says so.
func TestCancelWhileTakingTheBlockSaysWhere(t *testing.T) {
	f := newFixture(t, true)
	f.say("alice", "!depool apus codfw T1 test")
	_ = f.store.Tx(context.Background(), func(tx *store.Tx) error {
		r, _ := tx.Request(1)
		r.State = poolbot.StateBlockingDeploys
		_, err := tx.UpdateRequest(r, poolbot.StateQueued)
		return err
	})
	if got := one(t, f.say("bob", "!cancel 1")); !strings.Contains(got, "stops before conftool is changed") {
		t.Fatalf("cancel reply %q", got)
	}
}

// "<command> failed: …" is for internal errors only: an answer the user
// can act on is said plainly.
func TestAnswersAreNotInternalErrors(t *testing.T) {
	f := newFixture(t, true)
	if got := one(t, f.say("alice", "!cancel 99")); got != "no request #99" {
		t.Errorf("!cancel 99 → %q, want %q", got, "no request #99")
	}
	one(t, f.say("alice", "!depool apus codfw T1 first"))
	got := one(t, f.say("bob", "!depool apus codfw T1 again"))
	if !strings.HasPrefix(got, "depool apus in codfw is already open as #1 (queued, requested by alice)") {
		t.Errorf("second depool → %q", got)
	}
}

// A reason is stored as meant and the operator is told what was changed:
// bytes that are not UTF-8 and IRC formatting codes are removed, control
// characters become spaces. A clean reason gets no note; a command that
// fails says only its error.
func TestReasonChangesAreSaid(t *testing.T) {
	f := newFixture(t, true)
	got := f.say("alice", "!depool apus codfw bad\xff\xfe\xfd T1 \x0304,01red\x03 tab\there")
	want := []string{"#1 queued: depool apus in codfw (T1), position 1 in the apus queue",
		"reason: removed 3 invalid bytes (not UTF-8), removed 2 IRC formatting codes, replaced 1 control character by a space; stored as: bad T1 red tab here"}
	if !slices.Equal(got, want) {
		t.Fatalf("replies %q, want %q", got, want)
	}
	if req, err := f.store.Request(context.Background(), 1); err != nil || req.Reason != "bad T1 red tab here" {
		t.Fatalf("stored %q, %v", req.Reason, err)
	}
	if got := f.say("alice", "!pool apus eqiad T2 plain reason"); len(got) != 1 {
		t.Errorf("a clean reason got a note: %q", got)
	}
	// Refused: the error alone, no note, nothing stored.
	if got := f.say("alice", "!depool apus codfw again\xff"); len(got) != 1 || !strings.Contains(got[0], "already open") {
		t.Errorf("failed command: %q", got)
	}
	// Nothing left after cleaning is a missing reason.
	if got := f.say("alice", "!restart apus \x02\xff\x0f"); len(got) != 1 || !strings.Contains(got[0], "a reason is required") {
		t.Errorf("empty after cleaning: %q", got)
	}
	// Cancel's reason is optional: what was removed is said.
	if got := f.say("alice", "!cancel 1 \xff"); len(got) != 2 || got[1] != "reason: removed 1 invalid byte (not UTF-8); nothing was left, so none was stored" {
		t.Errorf("cancel: %q", got)
	}
}

func TestCleanReasonChanges(t *testing.T) {
	for in, want := range map[string]struct {
		out string
		ch  ReasonChanges
	}{
		"T1 ok":                      {"T1 ok", ReasonChanges{}},
		"  many   spaces\u00a0here ": {"many spaces here", ReasonChanges{}},
		"\x0312,04blue\x03,5 text":   {"blue,5 text", ReasonChanges{Formatting: 2}},
		"\x04ff00ffpink\x0f":         {"pink", ReasonChanges{Formatting: 2}},
		"a\r\nPRIVMSG #x :y":         {"a PRIVMSG #x :y", ReasonChanges{Controls: 2}},
		"\u202eevil":                 {"evil", ReasonChanges{Controls: 1}},
		"caf\xc3":                    {"caf", ReasonChanges{InvalidBytes: 1}},
		"literal \ufffd stays":       {"literal \ufffd stays", ReasonChanges{}},
	} {
		out, ch := CleanReasonChanges(in)
		if out != want.out || ch != want.ch {
			t.Errorf("CleanReasonChanges(%q) = %q, %+v; want %q, %+v", in, out, ch, want.out, want.ch)
		}
	}
}
