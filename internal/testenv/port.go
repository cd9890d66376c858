package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowestPort is the bottom of the range Port picks from: above the ports
// system services commonly use.
const lowestPort = 10000

// Port returns a TCP port on host that is free now, for a test server to
// listen on. It lies below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), from which FreePort-style port 0 picks
// come: a server the tests restart (a registry, etcd, a gateway) leaves
// its port unbound for a moment, and a port from the ephemeral range can
// meanwhile become the local port of some outgoing connection, failing the
// restart with "address already in use" (seen in the 100-host benchmark).
// Another test may still take the port between this check and the
// server's bind; servers retry with a new one on "address in use".
func Port(host string) (int, error) {
	high := ephemeralLow()
	var lastErr error
	for range 64 {
		p := lowestPort + rand.IntN(high-lowestPort)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			lastErr = err
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port on %s below %d: %w", host, high, lastErr)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 by
// default, and when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= lowestPort+1000 {
		return 32768
	}
	return lo
}
