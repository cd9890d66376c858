// Package etcd runs a real etcd server (Debian's etcd-server, 3.4) for tests,
// with the v2 keys API enabled: conftool and python-etcd speak only v2, so
// poolbot's conftool integration does too, and its tests need a server that
// answers /v2/keys exactly as production does.
//
// Each Server is a separate etcd process on 127.0.0.1 with a data directory
// in the test's temporary directory. Stop and Restart simulate an outage while
// keeping the client URL and the data. The helpers that write keys use plain
// HTTP against the v2 API, so they also act as "another writer" that changes
// a key behind the code under test, the way an operator running confctl would.
package etcd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"poolbot/internal/testenv"
)

// DefaultPrefix is conftool's key prefix (namespace "/conftool" plus API
// version "v1"), under which discovery objects live.
const DefaultPrefix = "/conftool/v1"

// startTimeout bounds how long Start and Restart wait for etcd to answer.
const startTimeout = 30 * time.Second

// Option changes how the server is started.
type Option func(*options)

type options struct {
	snapshotCount int
	tls           bool
	extraArgs     []string
}

// WithSnapshotCount sets etcd's --snapshot-count (committed transactions
// between snapshots). A small value makes a restart replay a snapshot rather
// than the whole WAL.
func WithSnapshotCount(n int) Option { return func(o *options) { o.snapshotCount = n } }

// WithTLS serves the client URL over HTTPS with a certificate for 127.0.0.1
// signed by a throwaway CA written to Server.CAFile.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithArgs appends raw etcd command-line flags.
func WithArgs(args ...string) Option {
	return func(o *options) { o.extraArgs = append(o.extraArgs, args...) }
}

// Server is one running (or stopped) etcd process.
type Server struct {
	// ClientURL is the URL clients use, e.g. http://127.0.0.1:41234. It stays
	// the same across Stop/Restart.
	ClientURL string
	// CAFile is the PEM CA that signed the server certificate (WithTLS only).
	CAFile string
	// DataDir is etcd's data directory.
	DataDir string

	t      testing.TB
	binary string
	args   []string
	http   *http.Client

	mu   sync.Mutex
	cmd  *exec.Cmd
	done <-chan struct{} // closed when cmd has exited
	logs *tailBuffer
	auth *url.Userinfo
}

// Start runs etcd with the v2 API enabled and waits until it answers. The
// server is killed when the test ends. Start skips the test when etcd is not
// installed, and fails it under CI. It is Launch in a test's temporary
// directory.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	binary := testenv.Need(t, "etcd")
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	s, err := launch(ctx, binary, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	s.t = t
	t.Cleanup(s.http.CloseIdleConnections)
	t.Cleanup(s.Stop)
	return s
}

// Launch runs etcd with the v2 API enabled, its data and certificates in
// dir (which must exist), and waits until it answers; ctx bounds the start
// only. It is Start for programs that are not tests (the lab): the caller
// must Stop the server. The process is killed if the caller dies.
func Launch(ctx context.Context, dir string, opts ...Option) (*Server, error) {
	binary, err := testenv.Lookup("etcd")
	if err != nil {
		return nil, fmt.Errorf("etcd: %w (Debian package etcd-server)", err)
	}
	return launch(ctx, binary, dir, opts...)
}

func launch(ctx context.Context, binary, dir string, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{binary: binary, DataDir: filepath.Join(dir, "data"), logs: newTailBuffer(64 << 10)}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http"
	var certFile, keyFile string
	if o.tls {
		scheme = "https"
		var pool *x509.CertPool
		var err error
		if s.CAFile, certFile, keyFile, pool, err = writeCerts(dir); err != nil {
			return nil, fmt.Errorf("etcd: test certificates: %w", err)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s.http = &http.Client{Transport: transport, Timeout: 10 * time.Second}

	// A port found free may be taken before etcd binds it; try a few times.
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		clientPort, peerPort := freePort(), freePort()
		if clientPort == 0 || peerPort == 0 || clientPort == peerPort {
			lastErr = errors.New("no free loopback port")
			continue
		}
		s.ClientURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, clientPort)
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
		s.args = []string{
			"--name", "poolbot-test",
			"--data-dir", s.DataDir,
			"--listen-client-urls", s.ClientURL,
			"--advertise-client-urls", s.ClientURL,
			"--listen-peer-urls", peerURL,
			"--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "poolbot-test=" + peerURL,
			"--initial-cluster-state", "new",
			"--enable-v2=true",
			"--logger=zap", "--log-level=warn",
		}
		if o.tls {
			s.args = append(s.args, "--cert-file", certFile, "--key-file", keyFile)
		}
		if o.snapshotCount > 0 {
			s.args = append(s.args, "--snapshot-count", strconv.Itoa(o.snapshotCount))
		}
		s.args = append(s.args, o.extraArgs...)
		s.logs = newTailBuffer(64 << 10)
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		_ = os.RemoveAll(s.DataDir)
		if !strings.Contains(s.logs.String(), "address already in use") {
			break
		}
	}
	transport.CloseIdleConnections()
	return nil, fmt.Errorf("etcd did not start: %w\netcd output:\n%s", lastErr, s.logs.String())
}

func freePort() int {
	p, _ := testenv.Port("127.0.0.1")
	return p
}

func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	cmd := exec.Command(s.binary, s.args...)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	done, err := testenv.StartGroup(cmd)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("exec %s: %w", s.binary, err)
	}
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("etcd exited during startup (%v): %w", cmd.ProcessState, err)
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("etcd not ready after %s: %w", startTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready reports whether /health says healthy and the v2 keys API answers.
func (s *Server) ready(ctx context.Context) error {
	var health struct {
		Health string `json:"health"`
	}
	body, status, err := s.do(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK || json.Unmarshal(body, &health) != nil || health.Health != "true" {
		return fmt.Errorf("/health: %d %s", status, body)
	}
	body, status, err = s.do(ctx, http.MethodGet, "/v2/keys/", nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("/v2/keys/: %d %s", status, body)
	}
	return nil
}

// Stop terminates etcd (SIGTERM, then SIGKILL after 10 s) and waits for it
// to exit. The data directory is kept, so Restart brings the same data back.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := testenv.StopGroup(cmd.Process.Pid, done, 10*time.Second); err != nil {
		<-done // a process that outlives SIGKILL is stuck in the kernel; waiting is all there is
	}
}

// Restart stops etcd if it runs and starts it again on the same ports with
// the same data directory. It fails the test that started the server; for a
// server from Launch, see Relaunch.
func (s *Server) Restart() {
	if s.t == nil {
		panic("etcd: Restart on a server from Launch; use Relaunch")
	}
	s.t.Helper()
	if err := s.Relaunch(context.Background()); err != nil {
		s.t.Fatalf("%v", err)
	}
}

// Relaunch is Restart returning the error.
func (s *Server) Relaunch(ctx context.Context) error {
	s.Stop()
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("etcd restart: %w\netcd output:\n%s", err, s.logs.String())
	}
	return nil
}

// Freeze stops etcd with SIGSTOP: it keeps its connections but answers
// nothing, like a server that hangs. The returned function resumes it
// (SIGCONT); it is also called when the test ends.
func (s *Server) Freeze(t testing.TB) (thaw func()) {
	t.Helper()
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		t.Fatal("etcd: Freeze on a stopped server")
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("etcd: SIGSTOP: %v", err)
	}
	var once sync.Once
	thaw = func() { once.Do(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT) }) }
	t.Cleanup(thaw)
	return thaw
}

// Logs returns the tail of etcd's output, for failure messages.
func (s *Server) Logs() string { return s.logs.String() }

// HTTPClient returns an HTTP client that trusts the server's certificate.
func (s *Server) HTTPClient() *http.Client { return s.http }

// Node is a v2 key as etcd returns it.
type Node struct {
	Key           string `json:"key"`
	Value         string `json:"value"`
	Dir           bool   `json:"dir"`
	Nodes         []Node `json:"nodes"`
	ModifiedIndex uint64 `json:"modifiedIndex"`
	CreatedIndex  uint64 `json:"createdIndex"`
}

// Put sets key (absolute, e.g. /conftool/v1/discovery/apus/codfw) to value
// unconditionally and returns the new modifiedIndex.
func (s *Server) Put(t testing.TB, key, value string) uint64 {
	t.Helper()
	idx, err := s.PutValue(context.Background(), key, value)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// PutValue is Put returning the error, for programs that are not tests.
func (s *Server) PutValue(ctx context.Context, key, value string) (uint64, error) {
	form := url.Values{"value": {value}}
	body, status, err := s.do(ctx, http.MethodPut, "/v2/keys"+key, strings.NewReader(form.Encode()))
	if err != nil || (status != http.StatusOK && status != http.StatusCreated) {
		return 0, fmt.Errorf("etcd put %s: status %d, err %v: %s", key, status, err, body)
	}
	var resp struct {
		Node Node `json:"node"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return 0, fmt.Errorf("etcd put %s: decode %q: %w", key, body, err)
	}
	return resp.Node.ModifiedIndex, nil
}

// Get returns key's node; ok is false when the key does not exist.
func (s *Server) Get(t testing.TB, key string) (node Node, ok bool) {
	t.Helper()
	body, status, err := s.do(context.Background(), http.MethodGet, "/v2/keys"+key+"?quorum=true", nil)
	if err != nil {
		t.Fatalf("etcd get %s: %v", key, err)
	}
	if status == http.StatusNotFound {
		return Node{}, false
	}
	var resp struct {
		Node Node `json:"node"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &resp) != nil {
		t.Fatalf("etcd get %s: status %d: %s", key, status, body)
	}
	return resp.Node, true
}

// Delete removes key (recursively, so it also removes directories).
func (s *Server) Delete(t testing.TB, key string) {
	t.Helper()
	body, status, err := s.do(context.Background(), http.MethodDelete, "/v2/keys"+key+"?recursive=true", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("etcd delete %s: status %d, err %v: %s", key, status, err, body)
	}
}

// FillHistory makes n writes to a scratch key (/poolbot-test/fill), eight at
// a time. etcd's v2 store remembers only the last 1000 events, so after
// FillHistory(t, 1001) a watch from an older index gets errorCode 401 ("The
// event in requested index is outdated and cleared"). It returns the index
// of the last write.
func (s *Server) FillHistory(t testing.TB, n int) uint64 {
	t.Helper()
	const workers = 8
	jobs := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				form := url.Values{"value": {strconv.Itoa(i)}}
				body, status, err := s.do(context.Background(), http.MethodPut, "/v2/keys/poolbot-test/fill", strings.NewReader(form.Encode()))
				if err == nil && status != http.StatusOK && status != http.StatusCreated {
					err = fmt.Errorf("status %d: %s", status, body)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case jobs <- i:
		case err := <-errs:
			close(jobs)
			wg.Wait()
			t.Fatalf("etcd fill history: %v", err)
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("etcd fill history: %v", err)
	default:
	}
	node, _ := s.Get(t, "/poolbot-test/fill")
	return node.ModifiedIndex
}

// DiscoveryKey is the key conftool uses for a discovery object under the
// default prefix: /conftool/v1/discovery/<service>/<dc>.
func DiscoveryKey(service, dc string) string {
	return DefaultPrefix + "/discovery/" + service + "/" + dc
}

// PutDiscovery writes a discovery object the way confctl stores it (Python's
// json.dumps of the schema's fields, ttl 300, no references) and returns the
// new modifiedIndex.
func (s *Server) PutDiscovery(t testing.TB, service, dc string, pooled bool) uint64 {
	t.Helper()
	return s.Put(t, DiscoveryKey(service, dc), discoveryValue(pooled))
}

// PutDiscoveryAt is PutDiscovery under another conftool key prefix (the
// etcd section's prefix), so that tests sharing one server each keep
// their own objects.
func (s *Server) PutDiscoveryAt(t testing.TB, prefix, service, dc string, pooled bool) uint64 {
	t.Helper()
	return s.Put(t, prefix+"/discovery/"+service+"/"+dc, discoveryValue(pooled))
}

// SetDiscovery is PutDiscovery returning the error, for programs that are
// not tests.
func (s *Server) SetDiscovery(ctx context.Context, service, dc string, pooled bool) error {
	_, err := s.PutValue(ctx, DiscoveryKey(service, dc), discoveryValue(pooled))
	return err
}

func discoveryValue(pooled bool) string {
	return fmt.Sprintf(`{"pooled": %t, "references": [], "ttl": 300}`, pooled)
}

// EnableAuth turns on etcd v2 authentication with a root user, and revokes
// the guest role's default read/write access so anonymous requests fail.
// Later helper calls on s authenticate as root.
func (s *Server) EnableAuth(t testing.TB, rootPassword string) {
	t.Helper()
	steps := []struct{ method, path, body string }{
		{http.MethodPut, "/v2/auth/users/root", fmt.Sprintf(`{"user":"root","password":%q}`, rootPassword)},
		{http.MethodPut, "/v2/auth/enable", ""},
	}
	for _, st := range steps {
		body, status, err := s.doJSON(st.method, st.path, st.body)
		if err != nil || status >= 300 {
			t.Fatalf("etcd %s %s: status %d, err %v: %s", st.method, st.path, status, err, body)
		}
	}
	s.mu.Lock()
	s.auth = url.UserPassword("root", rootPassword)
	s.mu.Unlock()
	revoke := `{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}`
	if body, status, err := s.doJSON(http.MethodPut, "/v2/auth/roles/guest", revoke); err != nil || status >= 300 {
		t.Fatalf("etcd revoke guest: status %d, err %v: %s", status, err, body)
	}
}

func (s *Server) doJSON(method, path, body string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.ClientURL+path, strings.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	return s.send(req)
}

func (s *Server) do(ctx context.Context, method, path string, body io.Reader) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.ClientURL+path, body)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return s.send(req)
}

func (s *Server) send(req *http.Request) ([]byte, int, error) {
	s.mu.Lock()
	auth := s.auth
	s.mu.Unlock()
	if auth != nil {
		pw, _ := auth.Password()
		req.SetBasicAuth(auth.Username(), pw)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return b, resp.StatusCode, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.Clone(b.buf))
}

// writeCerts creates a CA and a server certificate for 127.0.0.1 and
// localhost, valid for a day, and writes them as PEM files into dir.
func writeCerts(dir string) (caFile, certFile, keyFile string, pool *x509.CertPool, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "poolbot test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", "", nil, err
	}
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "server.pem")
	keyFile = filepath.Join(dir, "server-key.pem")
	for _, f := range []struct {
		path string
		pem  *pem.Block
	}{
		{caFile, &pem.Block{Type: "CERTIFICATE", Bytes: caDER}},
		{certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der}},
		{keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(f.pem), 0o600); err != nil {
			return "", "", "", nil, err
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return caFile, certFile, keyFile, pool, nil
}
