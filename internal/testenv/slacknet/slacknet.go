// Package slacknet runs a local Slack for tests: the Web API of
// github.com/slack-go/slack's slacktest server, plus a Socket Mode
// WebSocket endpoint that speaks Slack's real envelope format, records the
// app's acknowledgements, and can drop the connection from the server side.
//
// Slack itself cannot run here, so this is a fake, but one that follows
// Slack's wire format: apps.connections.open with the app-level token in
// an Authorization: Bearer header returns a wss URL; the socket opens with
// {"type":"hello",…}; Events API and slash command envelopes look like the
// ones Slack documents (see MessageEvent and SlashCommand); Slack pings
// the socket every few seconds; the app answers each envelope with
// {"envelope_id":…[,"payload":…]}. Web API calls (auth.test, users.info,
// chat.postMessage, chat.update, chat.postEphemeral) are form posts with
// the bot token in the "token" field, answered with {"ok":…}.
//
// What slacktest's own handlers are replaced, and why:
//   - /ws: slacktest relays every server message through one unbuffered
//     channel per server, read by a goroutine per WebSocket that never
//     ends, so after a reconnect the dead connection's goroutine swallows
//     about half of what the test sends; it also cannot close a socket
//     from the server side, and it never pings.
//   - /chat.postMessage: slacktest echoes each post back as an RTM
//     "message" frame over the socket, which a Socket Mode client reports
//     as a bad message, and it returns second-resolution timestamps that
//     collide (Slack's ts identifies a message, so two posts in one second
//     would look like one).
//   - /chat.update does not exist in slacktest.
//   - /auth.test and /users.info: slacktest answers with fixed users; here
//     the bot and the people are the test's.
//
// Registering these first matters: slacktest ignores a later
// registration of a path, so custom handlers take precedence.
package slacknet

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack/slacktest"
)

// Defaults for Options.
const (
	DefaultAppToken  = "xapp-1-A0POOLBOT-1-test"
	DefaultBotToken  = "xoxb-1-test"
	DefaultBotUserID = "U0POOLBOT"
	DefaultBotID     = "B0POOLBOT"
	DefaultTeamID    = "T0WMF"
	DefaultAppID     = "A0POOLBOT"
)

// Options configure a Server.
type Options struct {
	AppToken, BotToken string
	BotUserID, BotID   string
	// Users maps user IDs to display names for users.info.
	Users map[string]string
	// PingInterval is how often the server pings each socket (Slack: a
	// few seconds); default 500ms.
	PingInterval time.Duration
}

// Server is a running local Slack.
type Server struct {
	t    testing.TB
	opts Options
	srv  *slacktest.Server

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	conns       []*wsConn     // every accepted socket, in order
	current     *wsConn
	acks        []Ack
	posts       []Post
	openCalls   int
	failOpen    int
	failOpenErr string
	badTokens   []string
	seq         int // message ts counter
}

// Ack is an acknowledgement the app sent over the socket.
type Ack struct {
	EnvelopeID string
	Payload    json.RawMessage // absent: nil
	At         time.Time
}

// Post is one Web API call that posts or edits a message.
type Post struct {
	Method    string // chat.postMessage, chat.update, chat.postEphemeral
	Channel   string
	TS        string // the message's ts (new for postMessage, the edited one for update)
	ThreadTS  string
	Text      string
	Blocks    string // JSON, as sent
	User      string // chat.postEphemeral
	Broadcast bool
	At        time.Time
}

type wsConn struct {
	ws     *websocket.Conn
	wmu    sync.Mutex
	closed chan struct{}
}

// Start runs a local Slack until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.AppToken == "" {
		opts.AppToken = DefaultAppToken
	}
	if opts.BotToken == "" {
		opts.BotToken = DefaultBotToken
	}
	if opts.BotUserID == "" {
		opts.BotUserID = DefaultBotUserID
	}
	if opts.BotID == "" {
		opts.BotID = DefaultBotID
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 500 * time.Millisecond
	}
	s := &Server{t: t, opts: opts, changed: make(chan struct{})}
	s.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/apps.connections.open", s.handleOpen)
		c.Handle("/ws", s.handleWS)
		c.Handle("/auth.test", s.handleAuthTest)
		c.Handle("/users.info", s.handleUsersInfo)
		c.Handle("/chat.postMessage", s.handlePost("chat.postMessage"))
		c.Handle("/chat.update", s.handlePost("chat.update"))
		c.Handle("/chat.postEphemeral", s.handlePost("chat.postEphemeral"))
	})
	s.srv.Start()
	t.Cleanup(func() {
		s.mu.Lock()
		conns := slices.Clone(s.conns)
		s.mu.Unlock()
		for _, c := range conns {
			_ = c.ws.NetConn().Close()
		}
		s.srv.Stop()
	})
	return s
}

// APIURL is the Web API base URL to configure (api_url).
func (s *Server) APIURL() string { return s.srv.GetAPIURL() }

// Options returns the server's options with defaults filled in.
func (s *Server) Options() Options { return s.opts }

func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Wait polls cond (called with no lock held) until it is true or timeout
// passes, waking on every change the server sees, and every few
// milliseconds for conditions about the app's side.
func (s *Server) Wait(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("slacknet: timed out after %v waiting for %s", timeout, what)
		}
	}
}

// FailConnectionsOpen makes the next n apps.connections.open calls fail
// with Slack error code errCode (e.g. "invalid_auth", which the client
// library treats as fatal).
func (s *Server) FailConnectionsOpen(n int, errCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failOpen, s.failOpenErr = n, errCode
}

// ConnectionsOpened is how many times apps.connections.open was called.
func (s *Server) ConnectionsOpened() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openCalls
}

// Connections is how many sockets were accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitConnections waits until n sockets were accepted in all and the
// last one is still open.
func (s *Server) WaitConnections(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	s.Wait(t, fmt.Sprintf("%d socket connection(s)", n), timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) >= n && s.current != nil
	})
}

// BadTokens lists tokens the server refused (wrong kind in the wrong place).
func (s *Server) BadTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.badTokens)
}

// Send writes one frame to the current socket and returns when it was
// written.
func (s *Server) Send(t testing.TB, frame string) time.Time {
	t.Helper()
	s.mu.Lock()
	c := s.current
	s.mu.Unlock()
	if c == nil {
		t.Fatalf("slacknet: no socket to send to")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	at := time.Now()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatalf("slacknet: send: %v", err)
	}
	return at
}

// Drop closes the current socket from the server side without a close
// frame, as a network failure or a Slack restart would.
func (s *Server) Drop() {
	s.mu.Lock()
	c := s.current
	s.current = nil
	s.changedLocked()
	s.mu.Unlock()
	if c != nil {
		_ = c.ws.NetConn().Close()
	}
}

// Disconnect sends Slack's "disconnect" envelope (the app must reconnect).
func (s *Server) Disconnect(t testing.TB) {
	t.Helper()
	s.Send(t, `{"type":"disconnect","reason":"refresh_requested","debug_info":{"host":"slacknet"}}`)
}

// Acks returns every acknowledgement received so far.
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acks)
}

// AckCount is how many acknowledgements were received so far.
func (s *Server) AckCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acks)
}

// WaitAck waits for the acknowledgement of envelopeID.
func (s *Server) WaitAck(t testing.TB, envelopeID string, timeout time.Duration) Ack {
	t.Helper()
	var got Ack
	s.Wait(t, "ack of "+envelopeID, timeout, func() bool {
		for _, a := range s.Acks() {
			if a.EnvelopeID == envelopeID {
				got = a
				return true
			}
		}
		return false
	})
	return got
}

// Posts returns every post and update so far, in order.
func (s *Server) Posts() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.posts)
}

// WaitPosts waits until at least n posts and updates were made and
// returns them all.
func (s *Server) WaitPosts(t testing.TB, n int, timeout time.Duration) []Post {
	t.Helper()
	s.Wait(t, fmt.Sprintf("%d post(s)", n), timeout, func() bool { return len(s.Posts()) >= n })
	return s.Posts()
}

func (s *Server) handleOpen(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.openCalls++
	fail := s.failOpen > 0
	if fail {
		s.failOpen--
	}
	code := s.failOpenErr
	auth := r.Header.Get("Authorization")
	if auth != "Bearer "+s.opts.AppToken {
		s.badTokens = append(s.badTokens, "apps.connections.open: "+auth)
		fail, code = true, "invalid_auth"
	}
	s.changedLocked()
	s.mu.Unlock()
	if fail {
		writeJSON(w, map[string]any{"ok": false, "error": code})
		return
	}
	writeJSON(w, map[string]any{"ok": true, "url": slacktest.ServerWSFromContext(r.Context())})
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &wsConn{ws: ws, closed: make(chan struct{})}
	defer func() {
		close(c.closed)
		_ = ws.Close()
		s.mu.Lock()
		if s.current == c {
			s.current = nil
		}
		s.changedLocked()
		s.mu.Unlock()
	}()
	c.wmu.Lock()
	err = ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(
		`{"type":"hello","num_connections":1,"debug_info":{"host":"slacknet","build_number":1,"approximate_connection_time":18060},"connection_info":{"app_id":%q}}`,
		DefaultAppID)))
	c.wmu.Unlock()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.current = c
	s.changedLocked()
	s.mu.Unlock()

	go func() { // Slack pings the socket; the client's dead-man timer relies on it.
		tick := time.NewTicker(s.opts.PingInterval)
		defer tick.Stop()
		for {
			select {
			case <-c.closed:
				return
			case <-tick.C:
				if ws.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var a struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &a) != nil {
			continue
		}
		s.mu.Lock()
		s.acks = append(s.acks, Ack{EnvelopeID: a.EnvelopeID, Payload: a.Payload, At: time.Now()})
		s.changedLocked()
		s.mu.Unlock()
	}
}

func (s *Server) form(w http.ResponseWriter, r *http.Request, method string) (url.Values, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	if v.Get("token") != s.opts.BotToken {
		s.mu.Lock()
		s.badTokens = append(s.badTokens, method+": "+v.Get("token"))
		s.changedLocked()
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_auth"})
		return nil, false
	}
	return v, true
}

func (s *Server) handleAuthTest(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.form(w, r, "auth.test"); !ok {
		return
	}
	writeJSON(w, map[string]any{"ok": true, "url": "https://wikimedia.slack.com/", "team": "Wikimedia",
		"user": "poolbot", "team_id": DefaultTeamID, "user_id": s.opts.BotUserID, "bot_id": s.opts.BotID,
		"is_enterprise_install": false})
}

func (s *Server) handleUsersInfo(w http.ResponseWriter, r *http.Request) {
	v, ok := s.form(w, r, "users.info")
	if !ok {
		return
	}
	id := v.Get("user")
	name, known := s.opts.Users[id]
	if !known {
		writeJSON(w, map[string]any{"ok": false, "error": "user_not_found"})
		return
	}
	writeJSON(w, map[string]any{"ok": true, "user": map[string]any{
		"id": id, "team_id": DefaultTeamID, "name": strings.ToLower(name), "real_name": name,
		"profile": map[string]any{"real_name": name, "display_name": name},
	}})
}

func (s *Server) handlePost(method string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok := s.form(w, r, method)
		if !ok {
			return
		}
		p := Post{Method: method, Channel: v.Get("channel"), ThreadTS: v.Get("thread_ts"), Text: v.Get("text"),
			Blocks: v.Get("blocks"), User: v.Get("user"), Broadcast: v.Get("reply_broadcast") == "true", At: time.Now()}
		s.mu.Lock()
		switch method {
		case "chat.update":
			p.TS = v.Get("ts")
			found := slices.ContainsFunc(s.posts, func(q Post) bool {
				return q.Method == "chat.postMessage" && q.Channel == p.Channel && q.TS == p.TS
			})
			if !found {
				s.mu.Unlock()
				writeJSON(w, map[string]any{"ok": false, "error": "message_not_found"})
				return
			}
		default:
			s.seq++
			p.TS = fmt.Sprintf("1790000000.%06d", s.seq)
		}
		s.posts = append(s.posts, p)
		s.changedLocked()
		s.mu.Unlock()
		resp := map[string]any{"ok": true, "channel": p.Channel, "ts": p.TS, "text": p.Text}
		if method == "chat.postEphemeral" {
			resp = map[string]any{"ok": true, "message_ts": p.TS}
		} else if method == "chat.postMessage" {
			resp["message"] = map[string]any{"type": "message", "user": s.opts.BotUserID, "bot_id": s.opts.BotID,
				"text": p.Text, "ts": p.TS}
		}
		writeJSON(w, resp)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
