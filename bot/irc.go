package bot

// The IRC adapter. poolbot sits in #wikimedia-operations on Libera.Chat
// (Solanum ircd, Atheme services). What it relies on from the network:
//
//   - SASL PLAIN logs the bot into its NickServ account during registration.
//   - IRCv3 account-tag: the server tags every PRIVMSG with the sender's
//     services account ("@account=alice"), and strips that tag from clients'
//     own lines, so it cannot be forged. The tag is absent when the sender is
//     not logged in — but only if the server acknowledged the capability;
//     otherwise absence means "unknown" and chat.Message.AccountKnown is false.
//   - server-time gives each message's time; echo-message lets the bot see
//     its own lines come back, which is how Say knows the server took them.
//   - The server relays ":nick!user@host PRIVMSG target :text" CR LF in at
//     most 512 bytes, so the text of one line must leave room for a prefix
//     with a host of up to 63 bytes.
//   - Flood control: too many lines too fast gets the bot killed ("Excess
//     Flood"), so every line the adapter sends goes through one chat.Pacer.
//
// The client library is github.com/ergochat/irc-go's ircevent. Each
// connection attempt uses a fresh ircevent.Connection that lives for one
// session; the adapter reconnects by itself with exponential backoff,
// because ircevent's Loop reconnects only at a fixed interval and never
// retries a first Connect that failed.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ergochat/irc-go/ircevent"
	"github.com/ergochat/irc-go/ircmsg"
	"github.com/jonboulle/clockwork"

	"poolbot/chat"
)

// Errors Say and Reply return (wrapped); the SAL outbox retries on them.
var (
	// ErrNotConnected means the bot is not registered on the network right
	// now (or the connection changed while sending).
	ErrNotConnected = errors.New("irc: not connected")
	// ErrNotConfirmed means the line was sent but the server did not echo
	// it back in time, or echoed a later line first (so it dropped this one).
	ErrNotConfirmed = errors.New("irc: server did not confirm the line")
	// ErrBadTarget means the target is not a channel or nick that can be
	// put on a line by itself.
	ErrBadTarget = errors.New("irc: bad target")
)

const (
	// maxHostLen is the longest host the server may show in our prefix.
	maxHostLen = 63
	// quitGrace bounds the wait for the server to close after QUIT.
	quitGrace = 3 * time.Second
)

// foldEqual compares nicks or channel names under rfc1459 casemapping,
// which Libera.Chat and InspIRCd use ([]\~ are the upper case of {}|^).
func foldEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldByte(a[i]) != foldByte(b[i]) {
			return false
		}
	}
	return true
}

func foldByte(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	case c == '[':
		return '{'
	case c == ']':
		return '}'
	case c == '\\':
		return '|'
	case c == '~':
		return '^'
	}
	return c
}

// IRC is the IRC chat adapter. Create it with NewIRC, start it with Run. Its
// methods are safe for concurrent use.
type IRC struct {
	cfg     IRCConfig // with defaults
	handler chat.Handler
	log     *slog.Logger
	clock   clockwork.Clock
	pacer   *chat.Pacer
	inbox   chan delivery

	running atomic.Bool

	mu      sync.Mutex
	sess    *session // the registered, joined session; nil while down
	onReady []func() // called when a session becomes current (OnReady)
}

// IRCOption customises NewIRC.
type IRCOption func(*IRC)

// WithClock sets the clock for backoff, timeouts and pacing (tests).
func WithClock(c clockwork.Clock) IRCOption { return func(i *IRC) { i.clock = c } }

// NewIRC returns an IRC adapter for cfg (which should have passed Validate) that
// hands every message to handler. A nil logger discards logs.
func NewIRC(cfg IRCConfig, handler chat.Handler, logger *slog.Logger, opts ...IRCOption) *IRC {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	i := &IRC{cfg: cfg, handler: handler, log: logger.With("adapter", "irc"), clock: clockwork.NewRealClock()}
	for _, o := range opts {
		o(i)
	}
	i.pacer = chat.NewPacer(cfg.Rate, cfg.Burst, i.clock)
	i.inbox = make(chan delivery, cfg.HandlerQueue)
	return i
}

var (
	_ chat.Sayer         = (*IRC)(nil)
	_ chat.Replier       = (*ircReplier)(nil)
	_ chat.ReadyNotifier = (*IRC)(nil)
)

// OnReady registers f to be called each time a connection is registered
// and has sent its JOINs, i.e. each time Say starts to work again (see
// chat.ReadyNotifier). f runs on the session's goroutine and must not block.
func (i *IRC) OnReady(f func()) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.onReady = append(i.onReady, f)
}

// Run connects and stays connected until ctx ends: it retries the first
// connection and every later one with exponential backoff (with jitter,
// between reconnect_min and reconnect_max), rejoins the channels after
// each reconnect, and hands received messages to the chat.Handler on its own
// goroutine. On ctx's end it sends QUIT with quit_message, waits briefly
// for the server to close, and returns nil once every goroutine it started
// has stopped. It returns an error only if it cannot start.
func (i *IRC) Run(ctx context.Context) error {
	if i.handler == nil {
		return errors.New("irc: no handler")
	}
	if err := i.cfg.Validate(); err != nil {
		return err
	}
	if !i.running.CompareAndSwap(false, true) {
		return errors.New("irc: Run is already running")
	}
	defer i.running.Store(false)
	tlsConf, err := i.tlsConfig()
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { i.dispatch(ctx) })

	chat.Reconnect(ctx, i.clock, i.cfg.ReconnectMin, i.cfg.ReconnectMax,
		func(ctx context.Context) (bool, error) { return i.runSession(ctx, tlsConf) },
		func(registered bool, err error, wait time.Duration) {
			if registered {
				i.log.Warn("irc: disconnected; reconnecting", "err", err, "in", wait)
			} else {
				i.log.Error("irc: connect failed; retrying", "server", i.cfg.Server, "err", err, "in", wait)
			}
		})
	return nil
}

func (i *IRC) tlsConfig() (*tls.Config, error) {
	if !i.cfg.TLS {
		return nil, nil
	}
	host, _, _ := net.SplitHostPort(i.cfg.Server)
	conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if i.cfg.TLSCAFile != "" {
		pool, err := loadCAFile(i.cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("irc: tls_ca_file: %w", err)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Connected reports whether the bot is registered on the network and has
// sent its JOINs, i.e. whether Say can succeed now.
func (i *IRC) Connected() bool { return i.current() != nil }

// AccountTagAcked reports whether the server acknowledged account-tag on
// the current connection. When false, messages have AccountKnown false and
// state-changing commands must be refused.
func (i *IRC) AccountTagAcked() bool {
	s := i.current()
	return s != nil && s.hasCap("account-tag")
}

// Nick is the bot's current nick ("" while disconnected).
func (i *IRC) Nick() string {
	if s := i.current(); s != nil {
		return s.conn.CurrentNick()
	}
	return ""
}

func (i *IRC) current() *session {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.sess
}

func (i *IRC) setCurrent(s *session) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.sess = s
}

// clearCurrent forgets s if it is the current session.
func (i *IRC) clearCurrent(s *session) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.sess == s {
		i.sess = nil
	}
}

// Say sends text to target (a channel or a nick) as PRIVMSG: sanitised
// (see chat.Sanitize), split into lines that the server can relay whole (see
// chat.Split), and paced. One call is one logical line: CR and LF in text never
// start a new IRC line; call Say once per line to send several.
//
// Say returns nil only when every piece was delivered. With echo-message
// (requested on every connection; Libera.Chat and InspIRCd offer it)
// delivered means the server echoed the line back, so it reached the
// channel; if the server did not acknowledge echo-message, it means the
// line was written to the server's socket while registered. Otherwise Say
// returns an error wrapping ErrNotConnected (not connected, or the
// connection dropped), ErrNotConfirmed (no echo within confirm_timeout, or
// the server rejected the line), ErrBadTarget, or ctx's error — and the
// caller may retry; a retry may repeat a line the server did get.
func (i *IRC) Say(ctx context.Context, target, text string) error {
	if !validTarget(target) {
		return fmt.Errorf("%w: %q", ErrBadTarget, target)
	}
	return i.send(ctx, "PRIVMSG", target, "", text)
}

// send is the one path every chat line takes.
func (i *IRC) send(ctx context.Context, command, target, prefix, text string) error {
	s := i.current()
	if s == nil {
		return fmt.Errorf("%s to %s: %w", command, target, ErrNotConnected)
	}
	pieces := i.pieces(s.conn.CurrentNick(), command, target, prefix, text)
	if len(pieces) == 0 {
		return nil // nothing printable to say
	}
	sent := make([]*pendingLine, 0, len(pieces))
	err := i.pacer.Pace(ctx, len(pieces), func(k int) error {
		if i.current() != s {
			return ErrNotConnected
		}
		p, err := s.submit(command, target, prefix+pieces[k])
		if err != nil {
			return err
		}
		sent = append(sent, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s to %s: %w", command, target, err)
	}
	timer := i.clock.NewTimer(i.cfg.ConfirmTimeout)
	defer timer.Stop()
	for n, p := range sent {
		select {
		case err := <-p.done:
			if err != nil {
				return fmt.Errorf("%s to %s (line %d of %d): %w", command, target, n+1, len(sent), err)
			}
		case <-timer.Chan():
			return fmt.Errorf("%s to %s (line %d of %d): not confirmed within %v: %w",
				command, target, n+1, len(sent), i.cfg.ConfirmTimeout, ErrNotConfirmed)
		case <-ctx.Done():
			return fmt.Errorf("%s to %s: %w", command, target, ctx.Err())
		}
	}
	return nil
}

// pieces is what send puts on the wire for text, one element per line
// (each gets prefix in front): text sanitised and split to the budget of
// a line sent with nick.
func (i *IRC) pieces(nick, command, target, prefix, text string) []string {
	return chat.Split(chat.Sanitize(text), i.budgetFor(nick, command, target)-len(prefix))
}

// budgetFor is how many text bytes one line to target may carry: what is
// left of 512 once the server has put ":nick!~user@host COMMAND target :"
// in front and CR LF behind, with the longest host, and at most
// max_line_bytes.
func (i *IRC) budgetFor(nick, command, target string) int {
	n := max(len(nick), len(i.cfg.Nick))
	prefix := 1 + n + 1 + 1 + len(i.cfg.User) + 1 + maxHostLen + 1 // ":nick!~user@host "
	line := len(command) + 1 + len(target) + 2                     // "PRIVMSG #chan :"
	return min(512-2-prefix-line, i.cfg.MaxLineBytes)
}

// nickSuffixRoom is room for the "_N" ircevent appends to the nick when it
// is taken at registration (the nick of the next connection is unknown).
const nickSuffixRoom = len("_99")

// LineBudget is how many bytes of sanitised text (see chat.Sanitize) Say puts
// on one line to target: longer text is split into several lines. A caller
// that must keep a line whole (the SAL sink: stashbot logs each line as
// its own entry) shortens its text to this first. It allows for the nick
// the bot has now, or may get on reconnecting, so it is never more than
// what Say will use.
func (i *IRC) LineBudget(target string) int {
	nick := i.cfg.Nick + strings.Repeat("_", nickSuffixRoom)
	if s := i.current(); s != nil && len(s.conn.CurrentNick()) > len(nick) {
		nick = s.conn.CurrentNick()
	}
	return i.budgetFor(nick, "PRIVMSG", target)
}

// delivery is one received message waiting for the chat.Handler.
type delivery struct {
	msg chat.Message
	r   chat.Replier
}

// dispatch hands queued messages to the chat.Handler, one at a time, in order.
func (i *IRC) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-i.inbox:
			i.handle(ctx, d)
		}
	}
}

func (i *IRC) handle(ctx context.Context, d delivery) {
	defer func() {
		if r := recover(); r != nil {
			i.log.Error("irc: handler panicked", "panic", r, "nick", d.msg.Nick, "channel", d.msg.Channel)
		}
	}()
	i.handler.HandleMessage(ctx, d.msg, d.r)
}

// ircReplier answers in a channel as "nick: text" (PRIVMSG), and in
// private by NOTICE: a bot must never answer a NOTICE, so two bots
// replying to each other by NOTICE cannot loop, and poolbot itself ignores
// NOTICEs.
type ircReplier struct {
	irc     *IRC
	command string
	target  string
	prefix  string
}

func (r *ircReplier) Reply(ctx context.Context, text string) error {
	return r.irc.send(ctx, r.command, r.target, r.prefix, text)
}

// session is one connection, from dial to disconnect.
type session struct {
	irc    *IRC
	conn   *ircevent.Connection
	ctx    context.Context // ends when the session ends
	cancel context.CancelFunc

	echo atomic.Bool    // echo-message acknowledged: confirm lines by their echo
	wg   sync.WaitGroup // goroutines the session started (rejoins)

	mu      sync.Mutex
	sock    net.Conn       // set once dialed
	pending []*pendingLine // sent, not yet confirmed, in send order
	dead    error          // why the session ended; nil while alive
	joined  map[string]bool
}

// pendingLine is a line waiting for its confirmation.
type pendingLine struct {
	command, target string
	raw             []byte     // exactly what ircevent writes to the socket
	done            chan error // buffered: nil when delivered, else why not
}

// maxPending bounds lines kept for confirmation (abandoned ones included).
const maxPending = 256

// runSession makes one connection and returns when it ends; registered
// tells whether it got as far as registration.
func (i *IRC) runSession(ctx context.Context, tlsConf *tls.Config) (registered bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &session{irc: i, ctx: sctx, cancel: cancel, joined: map[string]bool{}}
	s.conn = &ircevent.Connection{
		Server:       i.cfg.Server,
		Nick:         i.cfg.Nick,
		User:         i.cfg.User,
		RealName:     i.cfg.RealName,
		RequestCaps:  slices.Clone(i.cfg.caps),
		SASLLogin:    i.cfg.SASLAccount,
		SASLPassword: i.cfg.Password,
		SASLMech:     "PLAIN",
		QuitMessage:  i.cfg.QuitMessage,
		Version:      "poolbot",
		Timeout:      i.cfg.ConnectTimeout,
		KeepAlive:    max(4*time.Minute, i.cfg.ConnectTimeout),
		// Loop never reconnects: the disconnect callback calls Quit.
		ReconnectFreq: time.Hour,
		MaxLineLen:    512,
		// Debug stays off: it would log every line, AUTHENTICATE included.
		Log: log.New(libLogWriter{i.log}, "", 0),
		DialContext: func(dctx context.Context, network, addr string) (net.Conn, error) {
			return s.dial(dctx, network, addr, tlsConf)
		},
	}
	s.addCallbacks()

	// ctx ending during registration: close the socket so Connect returns.
	connecting := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			s.closeSocket()
		case <-connecting:
		}
	}()
	err = s.conn.Connect()
	close(connecting)
	if err != nil {
		s.closeSocket()
		return false, fmt.Errorf("irc: connect to %s: %w", i.cfg.Server, err)
	}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.conn.Loop()
	}()
	_, echo := s.conn.AcknowledgedCaps()["echo-message"]
	s.echo.Store(echo)
	i.log.Info("irc: registered", "server", i.cfg.Server, "nick", s.conn.CurrentNick(),
		"caps", slices.Sorted(maps.Keys(s.conn.AcknowledgedCaps())))
	if !s.hasCap("account-tag") {
		i.log.Error("irc: server did not acknowledge account-tag: senders' accounts are unknown, state-changing commands will be refused")
	}
	if err := s.afterRegistration(); err != nil {
		i.log.Warn("irc: after registration", "err", err)
	}

	defer s.wg.Wait() // after die has cancelled s.ctx
	select {
	case <-loopDone:
		s.die(ErrNotConnected)
		return true, s.deadErr()
	case <-ctx.Done():
		s.die(fmt.Errorf("%w: shutting down", ErrNotConnected))
		s.conn.Quit() // QUIT quit_message; the server closes the connection
		select {
		case <-loopDone:
		case <-i.clock.After(quitGrace):
			s.closeSocket()
			<-loopDone
		}
		return true, nil
	}
}

// afterRegistration joins the channels (one JOIN line for all, through the
// pacer), asks NickServ to give the nick back if it was taken, and then
// makes the session current so Say can use it. The server processes lines
// in order, so a PRIVMSG sent after the JOIN reaches a joined channel.
func (s *session) afterRegistration() error {
	i := s.irc
	// Ahead of everything queued while the bot was away: the lines wait
	// for the JOIN.
	ctx := chat.WithPriority(s.ctx, chat.PrioritySAL)
	if chans := i.cfg.joinList(); len(chans) > 0 {
		err := i.pacer.PaceCost(ctx, chat.JoinCost, 1, func(int) error {
			return s.conn.Send("JOIN", strings.Join(chans, ","))
		})
		if err != nil {
			return err
		}
	}
	if nick := s.conn.CurrentNick(); i.cfg.SASLAccount != "" && !foldEqual(nick, i.cfg.Nick) {
		// Logged in by SASL, so NickServ (Atheme's REGAIN, as on Libera)
		// can free our nick; ircevent also retries NICK every keepalive.
		i.log.Warn("irc: nick taken; asking NickServ to regain it", "nick", i.cfg.Nick, "using", nick)
		err := i.pacer.Pace(ctx, 1, func(int) error { return s.conn.Send("PRIVMSG", "NickServ", "REGAIN "+i.cfg.Nick) })
		if err != nil {
			return err
		}
	}
	// Under s.mu, so die (which sets dead under s.mu, then clears current)
	// cannot slip in between the check and the set.
	s.mu.Lock()
	ready := s.dead == nil
	if ready {
		i.setCurrent(s)
	}
	s.mu.Unlock()
	if ready {
		i.mu.Lock()
		callbacks := slices.Clone(i.onReady)
		i.mu.Unlock()
		for _, f := range callbacks {
			f()
		}
	}
	return nil
}

func (s *session) dial(ctx context.Context, network, addr string, tlsConf *tls.Config) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c = quickAck(c) // quickack_linux.go
	// TLS is done here rather than by ircevent so that trackedConn sees
	// plaintext lines.
	if tlsConf != nil {
		tc := tls.Client(c, tlsConf.Clone())
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		c = tc
	}
	tc := &trackedConn{Conn: c, onWrite: s.written}
	s.mu.Lock()
	s.sock = tc
	dead := s.dead
	s.mu.Unlock()
	if dead != nil || s.ctx.Err() != nil {
		tc.Close()
		return nil, ErrNotConnected
	}
	return tc, nil
}

func (s *session) closeSocket() {
	s.mu.Lock()
	sock := s.sock
	s.mu.Unlock()
	if sock != nil {
		sock.Close()
	}
}

// die ends the session: it is no longer current, Say calls waiting on its
// lines fail, and ircevent's Loop is told not to reconnect.
func (s *session) die(why error) {
	s.mu.Lock()
	if s.dead != nil {
		s.mu.Unlock()
		return
	}
	s.dead = why
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.irc.clearCurrent(s)
	s.cancel()
	for _, p := range pending {
		p.done <- why
	}
}

func (s *session) deadErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

func (s *session) hasCap(c string) bool {
	_, ok := s.conn.AcknowledgedCaps()[c]
	return ok
}

// submit sends one line and records it for confirmation.
func (s *session) submit(command, target, text string) (*pendingLine, error) {
	msg, raw, err := encodeLine(command, target, text)
	if err != nil {
		// chat.Sanitize and budget make this unreachable for text; a target
		// ircmsg refuses is a bad target.
		return nil, fmt.Errorf("%w: %v", ErrBadTarget, err)
	}
	p := &pendingLine{command: command, target: target, raw: raw, done: make(chan error, 1)}
	s.mu.Lock()
	if s.dead != nil {
		s.mu.Unlock()
		return nil, s.dead
	}
	if len(s.pending) >= maxPending { // abandoned lines the server never answered
		s.pending[0].done <- ErrNotConfirmed
		s.pending = s.pending[1:]
	}
	s.pending = append(s.pending, p)
	s.mu.Unlock()
	// Validated send (never SendRaw); the same bytes as raw.
	if err := s.conn.SendIRCMessage(msg); err != nil {
		s.forget(p)
		return nil, fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	return p, nil
}

// encodeLine is the message submit sends for one line, and its bytes.
func encodeLine(command, target, text string) (ircmsg.Message, []byte, error) {
	msg := ircmsg.MakeMessage(nil, "", command, target, text)
	raw, err := msg.LineBytesStrict(true, 512)
	return msg, raw, err
}

func (s *session) forget(p *pendingLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := slices.Index(s.pending, p); k >= 0 {
		s.pending = slices.Delete(s.pending, k, k+1)
	}
}

// written is called with every line ircevent writes to the socket. Without
// echo-message, a tracked line counts as delivered once written.
func (s *session) written(b []byte) {
	if s.echo.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, p := range s.pending {
		if bytes.Equal(p.raw, b) {
			p.done <- nil
			s.pending = slices.Delete(s.pending, k, k+1)
			return
		}
	}
}

// echoed handles the server's echo of one of our lines. The server handles
// our lines in order and echoes each one it accepts, so the echo confirms
// the first pending line to the same target, and any line before it got
// no echo: the server dropped or refused it.
func (s *session) echoed(command, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, p := range s.pending {
		if p.command == command && foldEqual(p.target, target) {
			for _, skipped := range s.pending[:k] {
				skipped.done <- fmt.Errorf("%w: the server skipped it", ErrNotConfirmed)
			}
			p.done <- nil
			s.pending = slices.Delete(s.pending, 0, k+1)
			return
		}
	}
}

// refused handles an error numeric about target (no such nick or channel,
// cannot send to channel): with echo-message, it settles the first line
// pending for that target.
func (s *session) refused(target, reason string) {
	s.irc.log.Warn("irc: server refused a line", "target", target, "reason", reason)
	if !s.echo.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, p := range s.pending {
		if foldEqual(p.target, target) {
			p.done <- fmt.Errorf("%w: %s: %s", ErrNotConfirmed, target, reason)
			s.pending = slices.Delete(s.pending, k, k+1)
			return
		}
	}
}

func (s *session) isSelf(nick string) bool { return foldEqual(nick, s.conn.CurrentNick()) }

func (s *session) addCallbacks() {
	c, i := s.conn, s.irc
	c.AddCallback("PRIVMSG", s.onPrivmsg)
	c.AddCallback("NOTICE", func(m ircmsg.Message) {
		if len(m.Params) == 2 && s.isSelf(m.Nick()) {
			if s.echo.Load() {
				s.echoed("NOTICE", m.Params[0])
			}
			return
		}
		// Never answered (NOTICEs must not be); services' notices are logged.
		if n := m.Nick(); n == "NickServ" || n == "SaslServ" {
			text := chat.Sanitize(m.Params[len(m.Params)-1])
			if strings.Contains(strings.ToLower(text), "password") {
				text = "[not logged: mentions a password]"
			}
			i.log.Info("irc: services notice", "from", n, "text", text)
		}
	})
	// 401 no such nick, 403 no such channel, 404 cannot send to channel.
	for _, numeric := range []string{"401", "403", "404"} {
		c.AddCallback(numeric, func(m ircmsg.Message) {
			if len(m.Params) >= 3 {
				s.refused(m.Params[1], m.Params[2])
			}
		})
	}
	c.AddCallback("JOIN", func(m ircmsg.Message) {
		if len(m.Params) >= 1 && s.isSelf(m.Nick()) {
			s.setJoined(m.Params[0], true)
			i.log.Info("irc: joined", "channel", m.Params[0])
		}
	})
	c.AddCallback("PART", func(m ircmsg.Message) {
		if len(m.Params) >= 1 && s.isSelf(m.Nick()) {
			s.setJoined(m.Params[0], false)
		}
	})
	c.AddCallback("KICK", func(m ircmsg.Message) {
		if len(m.Params) >= 2 && s.isSelf(m.Params[1]) {
			ch := m.Params[0]
			s.setJoined(ch, false)
			i.log.Warn("irc: kicked; will rejoin", "channel", ch, "by", m.Nick(),
				"reason", chat.Sanitize(m.Params[len(m.Params)-1]), "in", i.cfg.ReconnectMin)
			s.wg.Go(func() { s.rejoin(ch) })
		}
	})
	c.AddCallback("NICK", func(m ircmsg.Message) {
		// ircevent's own NICK handler has already updated CurrentNick.
		if len(m.Params) >= 1 && foldEqual(m.Params[0], c.CurrentNick()) {
			i.log.Info("irc: nick changed", "nick", m.Params[0])
		}
	})
	c.AddDisconnectCallback(func(ircmsg.Message) {
		s.die(ErrNotConnected)
		// Make Loop return instead of reconnecting at its fixed interval;
		// Run reconnects with backoff. (Nothing is sent: the link is down.)
		c.Quit()
	})
}

// rejoin joins ch again after reconnect_min, unless the session ends
// first: SAL lines must not pile up because someone kicked the bot.
func (s *session) rejoin(ch string) {
	select {
	case <-s.ctx.Done():
		return
	case <-s.irc.clock.After(s.irc.cfg.ReconnectMin):
	}
	if !validChannel(ch) {
		return
	}
	ctx := chat.WithPriority(s.ctx, chat.PrioritySAL)
	err := s.irc.pacer.PaceCost(ctx, chat.JoinCost, 1, func(int) error { return s.conn.Send("JOIN", ch) })
	if err != nil {
		s.irc.log.Warn("irc: rejoin failed", "channel", ch, "err", err)
	}
}

func (s *session) setJoined(ch string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.joined {
		if foldEqual(k, ch) {
			delete(s.joined, k)
		}
	}
	if on {
		s.joined[ch] = true
	}
}

// Channels lists the channels the bot is in now.
func (i *IRC) Channels() []string {
	s := i.current()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.joined))
}

// onPrivmsg turns a PRIVMSG into a chat.Message for the chat.Handler. It runs on
// ircevent's read goroutine, so it only queues.
func (s *session) onPrivmsg(m ircmsg.Message) {
	if len(m.Params) != 2 {
		return
	}
	i := s.irc
	target, text, nick := m.Params[0], m.Params[1], m.Nick()
	if s.isSelf(nick) {
		if s.echo.Load() {
			s.echoed("PRIVMSG", target)
		}
		return // our own line: never a command
	}
	if strings.HasPrefix(text, "\x01") {
		return // CTCP, /me included: not addressed to the bot as a command
	}
	msg := chat.Message{Network: "irc", Nick: nick, Source: m.Source, Text: text}
	var r *ircReplier
	if ch, ok := s.channelTarget(target); ok {
		msg.Channel = ch
		r = &ircReplier{irc: i, command: "PRIVMSG", target: ch, prefix: chat.Sanitize(nick) + ": "}
	} else if s.isSelf(target) {
		r = &ircReplier{irc: i, command: "NOTICE", target: nick}
	} else {
		return
	}
	if !validTarget(r.target) {
		return
	}
	// Only an acknowledged account-tag makes a missing tag mean "not
	// logged in"; the server strips the tag from clients' own lines.
	msg.AccountKnown = s.hasCap("account-tag")
	if msg.AccountKnown {
		if ok, acct := m.GetTag("account"); ok && acct != "*" {
			msg.Account = acct
		}
	}
	msg.Time = i.clock.Now()
	if ok, ts := m.GetTag("time"); ok {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			msg.Time = t
		}
	}
	select {
	case i.inbox <- delivery{msg: msg, r: r}:
	default:
		i.log.Warn("irc: handler queue full; message dropped", "nick", nick, "account", msg.Account,
			"channel", msg.Channel, "queue", cap(i.inbox))
	}
}

// channelTarget reports whether target is a channel, also when it carries
// a STATUSMSG prefix ("@#chan": sent to the channel's ops).
func (s *session) channelTarget(target string) (string, bool) {
	is := s.conn.ISupport()
	chantypes, statusmsg := "#&", "@+"
	if v, ok := is["CHANTYPES"]; ok {
		chantypes = v
	}
	if v, ok := is["STATUSMSG"]; ok {
		statusmsg = v
	}
	t := strings.TrimLeft(target, statusmsg)
	if t != "" && strings.IndexByte(chantypes, t[0]) >= 0 {
		return t, true
	}
	return "", false
}

// trackedConn reports every successful write (ircevent writes one whole
// line per Write) so unechoed lines can be confirmed as written.
type trackedConn struct {
	net.Conn
	onWrite func([]byte)
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && n == len(b) {
		c.onWrite(b)
	}
	return n, err
}

// libLogWriter sends ircevent's own log lines (it logs little with Debug
// off: server ERRORs, FAIL replies, recovered panics) to slog.
type libLogWriter struct{ log *slog.Logger }

func (w libLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	switch {
	case strings.Contains(msg, "panic"):
		level = slog.LevelError
	case strings.Contains(msg, "ERROR"), strings.Contains(msg, "FAIL"):
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, "ircevent: "+chat.Sanitize(msg))
	return len(p), nil
}
