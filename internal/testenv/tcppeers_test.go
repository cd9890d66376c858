package testenv

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
)

func TestEstablishedPeers(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 35CDCB7F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3038599 1 0000000011c2b611 100 0 0 10 0
   1: 0100007F:D3A2 01E2927F:AACB 01 00000000:00000000 00:00000000 00000000     0        0 4100001 1 0000000011c2b611 20 4 30 10 -1
   2: 0100007F:D3A4 02E2927F:AACB 01 00000000:00000000 00:00000000 00000000     0        0 4100002 1 0000000011c2b611 20 4 30 10 -1
   3: 0100007F:D3A6 02E2927F:AACB 06 00000000:00000000 03:00000000 00000000     0        0 4100003 1 0000000011c2b611 20 4 30 10 -1
`
	got, err := establishedPeers(table, map[string]bool{"4100001": true, "4100003": true})
	want := []netip.AddrPort{netip.MustParseAddrPort("127.146.226.1:43723")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("establishedPeers = %v, %v; want %v", got, err, want)
	}
}

// TCPPeers of this process sees a connection it holds.
func TestTCPPeers(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("no /proc/self/net/tcp")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peers, err := TCPPeers(os.Getpid())
	if err != nil || !slices.Contains(peers, netip.MustParseAddrPort(l.Addr().String())) {
		t.Fatalf("TCPPeers = %v, %v; want it to hold %s", peers, err, l.Addr())
	}
}
