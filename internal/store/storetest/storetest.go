// Package storetest starts a real redis-server for tests: on a free 127.0.0.1 port, with its
// own configuration (no persistence), stopped by its PID when the test ends.
//
// Without redis-server on the PATH the test is skipped with one line saying how to run it,
// unless MCPAUTH_STORE=1 (as .ci/run sets) makes that a failure.
package storetest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process.
type Server struct {
	t    testing.TB
	bin  string
	Port int
	Addr string
	dir  string
	args []string
	// sentinel: the server runs as a Sentinel with this config file.
	sentinel string

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs []string // the output of the running process, by line
	gone bool     // its output ended
	cond *sync.Cond
}

var announce sync.Once

// Find returns the redis-server (or valkey-server) binary, or skips t.
func Find(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"redis-server", "valkey-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "store tests SKIPPED: redis-server not found; install it (apt-get install redis-server) and run `go test ./...` again; MCPAUTH_STORE=1 turns this skip into a failure"
	if os.Getenv("MCPAUTH_STORE") == "1" {
		t.Fatal("redis-server not found and MCPAUTH_STORE=1: install it (apt-get install redis-server)")
	}
	announce.Do(func() {
		// go test hides the output of packages that pass; the terminal, as the end-to-end
		// test does for Node, is where one line can still be seen. Without one (CI, a pipe),
		// the skip message is in -v and -json output.
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			fmt.Fprintln(tty, msg)
			tty.Close()
		}
	})
	t.Skip(msg)
	return ""
}

// Start runs a redis-server for the test, with extra configuration arguments
// ("--requirepass", "x"); it is stopped when the test ends.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := Find(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: extra}
	s.Port = freePort(t)
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.Port)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// StartSentinel runs a Sentinel that monitors master under the name masterName (quorum 1).
func StartSentinel(t testing.TB, master *Server, masterName string) *Server {
	t.Helper()
	bin := Find(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	s.Port = freePort(t)
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.Port)
	s.sentinel = s.dir + "/sentinel.conf"
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n", masterName, master.Port)
	if err := os.WriteFile(s.sentinel, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// freePort picks a port the kernel says is free now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs the server on s.Port and returns once it accepts connections (it says so on
// its standard output).
func (s *Server) start() {
	s.t.Helper()
	args := append([]string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "notice", "--logfile", "",
		"--protected-mode", "yes",
	}, s.args...)
	for i, a := range args {
		if a == "{port}" {
			args[i] = strconv.Itoa(s.Port)
		}
	}
	readyLine := "Ready to accept connections"
	if s.sentinel != "" {
		// A Sentinel has no "ready" line; it is ready once it monitors its master.
		args = []string{s.sentinel, "--sentinel", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
			"--daemonize", "no", "--logfile", ""}
		readyLine = "+monitor master"
	}
	cmd := exec.Command(s.bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	ready := make(chan struct{})
	s.mu.Lock()
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	s.logs, s.gone = nil, false
	s.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			s.mu.Lock()
			s.logs = append(s.logs, sc.Text())
			s.cond.Broadcast()
			s.mu.Unlock()
			if !signalled && strings.Contains(sc.Text(), readyLine) {
				signalled = true
				close(ready)
			}
		}
		if !signalled {
			close(ready)
		}
		s.mu.Lock()
		s.gone = true
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	<-ready
	if !s.accepting() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.t.Fatalf("redis-server did not start:\n%s", strings.Join(s.logs, "\n"))
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
}

func (s *Server) accepting() bool {
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// WaitLog waits until the server writes a line containing text (an event it reports, such
// as "Cluster state changed: ok"); it fails the test if the server exits first.
func (s *Server) WaitLog(text string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, l := range s.logs {
			if strings.Contains(l, text) {
				return
			}
		}
		if s.gone {
			s.t.Fatalf("redis-server stopped without logging %q", text)
		}
		s.cond.Wait()
	}
}

// Stop kills the server by its PID and waits for it to exit. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Proxy is a TCP proxy in front of a server that a test controls: Hold keeps the server's
// answers from reaching the client (a store that answers slowly), Drop closes every
// connection (a store that drops the connection mid-request).
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	gate  chan struct{} // closed while answers flow
	held  chan struct{} // an answer waits at the closed gate
	conns []net.Conn
	wg    sync.WaitGroup
}

// NewProxy listens on a free 127.0.0.1 port and forwards to target; closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, gate: make(chan struct{}), held: make(chan struct{}, 1)}
	close(p.gate)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.Release()
		p.Drop()
		p.wg.Wait()
	})
	return p
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
		go func() { defer p.wg.Done(); p.answers(c, u); c.Close() }()
	}
}

// answers copies the server's bytes to the client, each chunk waiting for the gate.
func (p *Proxy) answers(c, u net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			p.mu.Lock()
			g := p.gate
			p.mu.Unlock()
			select {
			case <-g:
			default:
				select {
				case p.held <- struct{}{}:
				default:
				}
				<-g
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Held receives when an answer of the server waits behind Hold: the request reached the
// server and was answered.
func (p *Proxy) Held() <-chan struct{} { return p.held }

// Hold stops the server's answers until Release.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default:
	}
}

// Release lets answers flow again, the held ones first.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// Drop closes every connection through the proxy (new ones are accepted).
func (p *Proxy) Drop() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// WriteCerts writes a CA (ca.pem) and a server certificate for 127.0.0.1 and localhost signed
// by it (server.pem, server-key.pem) into dir, and returns the CA's PEM and the two paths.
func WriteCerts(t testing.TB, dir string) (caPEM []byte, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "storetest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	for _, f := range []struct {
		path string
		data []byte
	}{
		{filepath.Join(dir, "ca.pem"), caPEM},
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caPEM, certFile, keyFile
}
