package testenv

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCPPeers returns the remote addresses of process pid's established
// IPv4 TCP connections: the sockets among its file descriptors, looked up
// in its network namespace's /proc/<pid>/net/tcp. It shows, for example,
// which S3 site a registry's connection pool leads to.
func TCPPeers(pid int) ([]netip.AddrPort, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, fmt.Errorf("tcp peers of %d: %w", pid, err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	table, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, fmt.Errorf("tcp peers of %d: %w", pid, err)
	}
	return establishedPeers(string(table), inodes)
}

// establishedPeers reads a /proc/net/tcp table: the remote address of each
// ESTABLISHED (st 01) connection whose socket inode is in inodes.
func establishedPeers(table string, inodes map[string]bool) ([]netip.AddrPort, error) {
	var peers []netip.AddrPort
	lines := strings.Split(strings.TrimSpace(table), "\n")
	for _, line := range lines[1:] {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
			continue
		}
		ip, port, ok := strings.Cut(f[2], ":")
		b, err := hex.DecodeString(ip)
		if !ok || err != nil || len(b) != 4 {
			return nil, fmt.Errorf("/proc/net/tcp: bad remote address %q", f[2])
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("/proc/net/tcp: bad remote port %q", f[2])
		}
		// The address is the kernel's 32-bit word printed in host order
		// (little-endian here).
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], binary.LittleEndian.Uint32(b))
		peers = append(peers, netip.AddrPortFrom(netip.AddrFrom4(a), uint16(p)))
	}
	return peers, nil
}
