package ircnet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Why the network has a pacemaker.
//
// InspIRCd 3 does a client's registration (and drains every client's flood
// penalty) only in its once-a-second pass over all users, which it runs on
// the first turn of its event loop in a new wall-clock second. An idle ircd
// sleeps in epoll_wait for up to 1000 ms after the last event, so a client
// that sends NICK and USER (or CAP END) to an otherwise quiet server gets
// 001 exactly one second later, whatever it does itself: every start-up
// figure measured against the test network had a fixed 1.00 s in it. The
// resolver is not the cause (resolvehostnames="no" in every class; a
// configuration without <dns> or with no module at all waits the same
// second), and InspIRCd 3 has no setting for it (InspIRCd 4 registers at
// once).
//
// A busy server is never idle, and Libera.Chat's are busy. The pacemaker is
// a client on the relaxed port that sends a PING every pacemakerPeriod, so
// the loop turns at least that often: registration then completes at the
// next wall-clock second boundary (within pacemakerPeriod) after the
// client's last registration line, and the penalty of the flood class
// drains at each boundary, as the class says, rather than up to a second
// late. What is left of the wait is the ircd's own rule, not a timeout.
const pacemakerPeriod = 10 * time.Millisecond

// pacemaker is the connection that keeps the ircd's loop turning.
type pacemaker struct {
	conn net.Conn
	stop chan struct{}
	wg   sync.WaitGroup
}

// startPacemaker connects to addr, registers as nick and starts sending
// PINGs. It does not wait for 001: the PINGs wake the loop that registers
// it, and a line the server refuses before registration wakes it as well.
func startPacemaker(ctx context.Context, addr, nick string) (*pacemaker, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ircnet: pacemaker: %w", err)
	}
	if _, err := fmt.Fprintf(conn, "NICK %s\r\nUSER %s 0 * :keeps the test ircd's event loop turning\r\n", nick, nick); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ircnet: pacemaker: %w", err)
	}
	p := &pacemaker{conn: conn, stop: make(chan struct{})}
	var writeMu sync.Mutex
	write := func(b []byte) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Write(b)
		return err
	}
	// Everything the server sends is dropped, except that its own PING
	// (every pingfreq) is answered, or it would quit the pacemaker.
	p.wg.Go(func() {
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if rest, ok := strings.CutPrefix(line, "PING "); ok {
				_ = write([]byte("PONG " + rest))
			}
		}
	})
	p.wg.Go(func() {
		t := time.NewTicker(pacemakerPeriod)
		defer t.Stop()
		ping := []byte("PING :beat\r\n")
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			if err := write(ping); err != nil {
				return // the ircd stopped; Restart starts a new pacemaker
			}
		}
	})
	return p, nil
}

// close stops the pacemaker and waits for its goroutines. Safe on nil.
func (p *pacemaker) close() {
	if p == nil {
		return
	}
	close(p.stop)
	p.conn.Close()
	p.wg.Wait()
}
