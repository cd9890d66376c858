package ircnet

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
)

// Line is one line a Client received: the raw text (without CR LF), its
// parse, and when the client read it.
type Line struct {
	Raw  string
	Msg  ircmsg.Message
	Time time.Time
}

// ClientOptions describe a test client's registration.
type ClientOptions struct {
	Nick string // required
	User string // default: Nick
	// SASLAccount and SASLPassword log in with SASL PLAIN during registration.
	SASLAccount, SASLPassword string
	// Caps are IRCv3 capabilities to request (sasl is added for SASL).
	Caps []string
	// TLS, when set, speaks TLS (for TLSAddr; see Net.ClientTLS).
	TLS *tls.Config
}

// Client is a minimal raw IRC client for tests: it registers, answers PING,
// and records every line it receives, so a test can assert on exactly what
// the server relayed. Safe for concurrent use.
type Client struct {
	conn net.Conn
	nick string

	writeMu sync.Mutex

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced whenever lines grows or the reader stops
	readErr error         // set when the reader stops
}

// Dial connects a client to addr and waits until it is registered (001),
// including SASL if asked for. ctx bounds the registration.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	if opts.Nick == "" {
		return nil, errors.New("ircnet: client needs a nick")
	}
	if opts.User == "" {
		opts.User = opts.Nick
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ircnet: dial %s: %w", addr, err)
	}
	if opts.TLS != nil {
		tc := tls.Client(conn, opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ircnet: dial %s: tls: %w", addr, err)
		}
		conn = tc
	}
	c := &Client{conn: conn, nick: opts.Nick, changed: make(chan struct{})}
	go c.readLoop()
	if err := c.register(ctx, opts); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ircnet: %s: register: %w", opts.Nick, err)
	}
	return c, nil
}

// ClientTLS is a TLS config that trusts the network's CA, for TLSAddr.
func (n *Net) ClientTLS() (*tls.Config, error) {
	pemData, err := os.ReadFile(n.CAFile())
	if err != nil {
		return nil, fmt.Errorf("ircnet: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("ircnet: no certificate in %s", n.CAFile())
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

// Dial connects a test client to the relaxed port (Addr).
func (n *Net) Dial(ctx context.Context, opts ClientOptions) (*Client, error) {
	return Dial(ctx, n.Addr(), opts)
}

func (c *Client) register(ctx context.Context, o ClientOptions) error {
	caps := append([]string(nil), o.Caps...)
	if o.SASLAccount != "" {
		caps = append(caps, "sasl")
	}
	if len(caps) > 0 {
		if err := c.SendRaw("CAP LS 302"); err != nil {
			return err
		}
	}
	if err := c.Send("NICK", o.Nick); err != nil {
		return err
	}
	if err := c.Send("USER", o.User, "0", "*", o.Nick); err != nil {
		return err
	}
	if len(caps) > 0 {
		if err := c.Send("CAP", "REQ", strings.Join(caps, " ")); err != nil {
			return err
		}
		l, err := c.WaitFor(ctx, func(l Line) bool {
			return l.Msg.Command == "CAP" && len(l.Msg.Params) >= 2 && (l.Msg.Params[1] == "ACK" || l.Msg.Params[1] == "NAK")
		})
		if err != nil {
			return err
		}
		if l.Msg.Params[1] == "NAK" {
			return fmt.Errorf("server refused caps: %s", l.Raw)
		}
		if o.SASLAccount != "" {
			if err := c.Send("AUTHENTICATE", "PLAIN"); err != nil {
				return err
			}
			if _, err := c.WaitFor(ctx, func(l Line) bool { return l.Msg.Command == "AUTHENTICATE" }); err != nil {
				return err
			}
			creds := base64.StdEncoding.EncodeToString([]byte(o.SASLAccount + "\x00" + o.SASLAccount + "\x00" + o.SASLPassword))
			if err := c.Send("AUTHENTICATE", creds); err != nil {
				return err
			}
			l, err := c.WaitFor(ctx, func(l Line) bool {
				switch l.Msg.Command {
				case "903", "904", "905", "906", "908":
					return true
				}
				return false
			})
			if err != nil {
				return err
			}
			if l.Msg.Command != "903" {
				return fmt.Errorf("SASL failed: %s", l.Raw)
			}
		}
		if err := c.Send("CAP", "END"); err != nil {
			return err
		}
	}
	l, err := c.WaitFor(ctx, func(l Line) bool {
		switch l.Msg.Command {
		case "001", "432", "433", "465", "ERROR":
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	if l.Msg.Command != "001" {
		return fmt.Errorf("refused: %s", l.Raw)
	}
	return nil
}

func (c *Client) readLoop() {
	r := bufio.NewReaderSize(c.conn, 16*1024)
	var err error
	for {
		var raw string
		raw, err = r.ReadString('\n')
		if err != nil {
			break
		}
		raw = strings.TrimRight(raw, "\r\n")
		msg, perr := ircmsg.ParseLine(raw)
		if perr != nil {
			continue
		}
		if msg.Command == "PING" {
			_ = c.Send("PONG", msg.Params...)
		}
		c.mu.Lock()
		c.lines = append(c.lines, Line{Raw: raw, Msg: msg, Time: time.Now()})
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.readErr = err
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Nick is the nick the client registered with.
func (c *Client) Nick() string { return c.nick }

// Send writes one command; ircmsg refuses parameters that would break the
// line (CR, LF, NUL, or a space in a middle parameter).
func (c *Client) Send(command string, params ...string) error {
	msg := ircmsg.MakeMessage(nil, "", command, params...)
	b, err := msg.LineBytesStrict(true, 512)
	if err != nil {
		return fmt.Errorf("ircnet: %s: %w", command, err)
	}
	return c.write(b)
}

// SendRaw writes line plus CR LF without any check — for tests that must
// send what a well-behaved client would not (floods, odd lines).
func (c *Client) SendRaw(line string) error { return c.write([]byte(line + "\r\n")) }

func (c *Client) write(b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("ircnet: write: %w", err)
	}
	return nil
}

// Privmsg sends a PRIVMSG.
func (c *Client) Privmsg(target, text string) error { return c.Send("PRIVMSG", target, text) }

// Join joins channel and waits for the end of its NAMES list.
func (c *Client) Join(ctx context.Context, channel string) error {
	if err := c.Send("JOIN", channel); err != nil {
		return err
	}
	_, err := c.WaitFor(ctx, func(l Line) bool {
		return l.Msg.Command == "366" && len(l.Msg.Params) >= 2 && strings.EqualFold(l.Msg.Params[1], channel)
	})
	return err
}

// Lines returns a copy of every line received so far.
func (c *Client) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...)
}

// WaitFor returns the first received line (from the start of the
// connection) for which match is true, waiting for more lines until ctx is
// done or the connection closes.
func (c *Client) WaitFor(ctx context.Context, match func(Line) bool) (Line, error) {
	seen := 0
	for {
		c.mu.Lock()
		lines, changed, readErr := c.lines[seen:], c.changed, c.readErr
		c.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l, nil
			}
		}
		seen += len(lines)
		if readErr != nil {
			return Line{}, fmt.Errorf("ircnet: %s: connection closed before the line arrived: %w", c.nick, readErr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Line{}, fmt.Errorf("ircnet: %s: waiting for a line: %w", c.nick, ctx.Err())
		}
	}
}

// Closed waits until the server closes the connection and returns the
// reason the reader stopped.
func (c *Client) Closed(ctx context.Context) error {
	for {
		c.mu.Lock()
		changed, readErr := c.changed, c.readErr
		c.mu.Unlock()
		if readErr != nil {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("ircnet: %s: still connected: %w", c.nick, ctx.Err())
		}
	}
}

// Quit sends QUIT and closes the connection.
func (c *Client) Quit() {
	_ = c.Send("QUIT", "bye")
	c.Close()
}

// Close closes the connection.
func (c *Client) Close() { c.conn.Close() }

// Account is a NickServ account to register.
type Account struct{ Name, Password string }

// Register registers a NickServ account the way a user does: connect with
// the account name as nick and send "REGISTER <password> <email>" to
// NickServ. It returns once NickServ confirms, or NickServ's reason.
func (n *Net) Register(ctx context.Context, account, password string) error {
	c, err := n.Dial(ctx, ClientOptions{Nick: account})
	if err != nil {
		return err
	}
	defer c.Quit()
	// Atheme checks the address's shape only; auth = none sends no mail.
	if err := c.Privmsg("NickServ", "REGISTER "+password+" ircnet-test@example.com"); err != nil {
		return err
	}
	l, err := c.WaitFor(ctx, func(l Line) bool {
		if l.Msg.Command != "NOTICE" || l.Msg.Nick() != "NickServ" || len(l.Msg.Params) < 2 {
			return false
		}
		// The ownership hint a registered nick gets on connect is not an answer.
		return !strings.HasPrefix(l.Msg.Params[1], "This nickname is registered")
	})
	if err != nil {
		return fmt.Errorf("ircnet: register %s: %w", account, err)
	}
	if !strings.Contains(l.Msg.Params[1], "is now registered") {
		return fmt.Errorf("ircnet: register %s: NickServ: %s", account, l.Msg.Params[1])
	}
	return nil
}

// RegisterAll registers accounts in parallel (each connection takes about
// a second to register on InspIRCd) and returns every failure.
func (n *Net) RegisterAll(ctx context.Context, accounts ...Account) error {
	errs := make([]error, len(accounts))
	var wg sync.WaitGroup
	for i, a := range accounts {
		wg.Go(func() { errs[i] = n.Register(ctx, a.Name, a.Password) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
