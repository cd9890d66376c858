package sshd_test

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"poolbot/internal/testenv/sshd"
)

// TestStart logs in to the started sshd with the client key, checking the
// host key against the written known_hosts file, and runs a command.
func TestStart(t *testing.T) {
	srv := sshd.Start(t)
	if srv.Port == 0 || srv.Addr != net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port)) {
		t.Fatalf("bad address %q port %d", srv.Addr, srv.Port)
	}
	kh, err := os.ReadFile(srv.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(kh), "[127.0.0.1]:"+strconv.Itoa(srv.Port)+" ssh-ed25519 ") {
		t.Fatalf("known_hosts line %q", kh)
	}
	cb, err := knownhosts.New(srv.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{
		User:            srv.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(srv.ClientSigner)},
		HostKeyCallback: cb,
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, srv.Logs())
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Run("id -un"); err != nil {
		t.Fatalf("id -un: %v", err)
	}
	if got := strings.TrimSpace(out.String()); got != srv.User {
		t.Fatalf("id -un = %q, want %q", got, srv.User)
	}
}

// TestWithHost: the server listens on the given loopback address, and a
// session sees that address in $SSH_CONNECTION.
func TestWithHost(t *testing.T) {
	srv := sshd.Start(t, sshd.WithHost("127.0.0.7"))
	if srv.Host != "127.0.0.7" || srv.Addr != net.JoinHostPort("127.0.0.7", strconv.Itoa(srv.Port)) {
		t.Fatalf("host %q addr %q", srv.Host, srv.Addr)
	}
	cb, err := knownhosts.New(srv.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{User: srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(srv.ClientSigner)},
		HostKeyCallback: cb, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, srv.Logs())
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo $SSH_CONNECTION")
	if f := strings.Fields(string(out)); err != nil || len(f) != 4 || f[2] != "127.0.0.7" {
		t.Fatalf("SSH_CONNECTION %q %v", out, err)
	}
}
