package bot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"poolbot/chat"
)

// Console is a chat adapter on a terminal: each input line is a message
// from one operator, named on poolbot's command line, said in a channel;
// replies and channel lines are printed. It exists for trying poolbot
// without an IRC server and for the lab. The operator name is trusted the
// way a shell on the poolbot host is: whoever can run the binary with the
// config and database can do anything anyway.
type Console struct {
	in       io.Reader
	out      io.Writer
	operator string
	channel  string
	botNick  string

	mu sync.Mutex // serialises writes to out
}

// NewConsole returns a console adapter reading in and writing out.
// Messages appear said by operator in channel.
func NewConsole(in io.Reader, out io.Writer, operator, channel, botNick string) *Console {
	return &Console{in: in, out: out, operator: operator, channel: channel, botNick: botNick}
}

// Run feeds each input line to h, in order, until the input ends or ctx
// is done. A line that starts with "/msg " is a private message.
func (c *Console) Run(ctx context.Context, h chat.Handler) error {
	lines := make(chan string)
	errc := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(c.in)
		sc.Buffer(make([]byte, 0, 4096), 64*1024)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		errc <- sc.Err()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("console: read: %w", err)
			}
			return nil
		case line := <-lines:
			if strings.TrimSpace(line) == "" {
				continue
			}
			m := chat.Message{Network: "console", Channel: c.channel, Nick: c.operator, Account: c.operator,
				AccountKnown: true, Text: line, Time: time.Now()}
			if rest, ok := strings.CutPrefix(line, "/msg "); ok {
				m.Channel, m.Text = "", rest
			}
			h.HandleMessage(ctx, m, consoleReplier{c: c, m: m})
		}
	}
}

// Say implements Sayer: it prints the line as said in target.
func (c *Console) Say(_ context.Context, target, text string) error {
	return c.print(target, chat.Sanitize(text))
}

func (c *Console) print(target, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintf(c.out, "[%s] <%s> %s\n", chat.Sanitize(target), c.botNick, text); err != nil {
		return fmt.Errorf("console: write: %w", err)
	}
	return nil
}

type consoleReplier struct {
	c *Console
	m chat.Message
}

// Reply answers in the channel addressed to the operator, or privately.
func (r consoleReplier) Reply(_ context.Context, text string) error {
	if r.m.Private() {
		return r.c.print(r.m.Nick, chat.Sanitize(text))
	}
	return r.c.print(r.m.Channel, chat.Sanitize(r.m.Nick+": "+text))
}
