package ircnet

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// A port taken between picking and binding is detected (Launch then picks
// new ports) rather than a client reaching whatever holds it.
func TestBindFailureDetected(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := &Net{dir: t.TempDir(), linkPass: "x", opts: Options{
		Flood: LiberaLike(), StartTimeout: 10 * time.Second,
		Inspircd: testenv.Need(t, "inspircd"), Atheme: testenv.Need(t, "atheme-services"),
	}}
	if err := n.prepareDir(); err != nil {
		t.Fatal(err)
	}
	if err := n.pickPorts(); err != nil {
		t.Fatal(err)
	}
	n.floodPort = l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = n.start(ctx)
	defer n.Close()
	if !errors.Is(err, errBind) {
		t.Fatalf("start with a taken port: %v\n%s", err, n.LogTails(20))
	}
}
