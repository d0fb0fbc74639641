package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/store"
	"github.com/mcpauth/caddy-mcp-auth/internal/store/storetest"
	"github.com/redis/go-redis/v9"
)

// Every test here runs against a real redis-server started for it (storetest).

func newClient(t *testing.T, addr string, o store.Options) (*store.Client, chan bool) {
	t.Helper()
	health := make(chan bool, 16)
	o.Addrs = []string{addr}
	o.OnHealth = func(up bool) { health <- up }
	c, err := store.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, health
}

// admin is a plain client to look at the server as an operator would.
func admin(t *testing.T, addr string) *redis.Client {
	t.Helper()
	r := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	t.Cleanup(func() { r.Close() })
	return r
}

func TestClaimProofOnce(t *testing.T) {
	srv := storetest.Start(t)
	c, _ := newClient(t, srv.Addr, store.Options{KeyPrefix: "t:"})
	ctx := context.Background()

	got, err := c.ClaimProof(ctx, "thumb", "jti-1", time.Minute)
	if err != nil || got != store.Fresh {
		t.Fatalf("first claim = %v, %v; want Fresh", got, err)
	}
	got, err = c.ClaimProof(ctx, "thumb", "jti-1", time.Minute)
	if err != nil || got != store.Seen {
		t.Fatalf("second claim = %v, %v; want Seen", got, err)
	}
	// Another key, or the same jti under another key: fresh.
	for _, p := range [][2]string{{"other", "jti-1"}, {"thumb", "jti-2"}, {"thumb\x00jti", "-1"}} {
		if got, err := c.ClaimProof(ctx, p[0], p[1], time.Minute); err != nil || got != store.Fresh {
			t.Errorf("claim %q = %v, %v; want Fresh", p, got, err)
		}
	}

	// The key is the prefix and the lowercase hex SHA-256 of jkt, 0x00, jti; it expires.
	sum := sha256.Sum256([]byte("thumb\x00jti-1"))
	key := "t:" + hex.EncodeToString(sum[:])
	if c.ProofKey("thumb", "jti-1") != key {
		t.Errorf("ProofKey = %s, want %s", c.ProofKey("thumb", "jti-1"), key)
	}
	a := admin(t, srv.Addr)
	ttl, err := a.PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL of %s = %v, %v; want within (0, 1m]", key, ttl, err)
	}
}

func TestSealed(t *testing.T) {
	srv := storetest.Start(t)
	c, _ := newClient(t, srv.Addr, store.Options{KeyPrefix: "s:"})
	ctx := context.Background()
	secret := []byte("0123456789abcdef0123456789abcdef")
	s, err := c.Sealed(secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sealed(secret[:31]); !errors.Is(err, store.ErrShortKey) {
		t.Errorf("a 31-byte secret: err = %v, want ErrShortKey", err)
	}
	key := sha256.Sum256([]byte("an-opaque-token-value"))
	val := []byte(`{"active":true,"sub":"alice-the-subject"}`)
	if _, ok, err := s.Get(ctx, "introspection", key); ok || err != nil {
		t.Fatalf("Get before Set = %v, %v; want a miss", ok, err)
	}
	if err := s.Set(ctx, "introspection", key, val, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Get(ctx, "introspection", key)
	if err != nil || !ok || !bytes.Equal(got, val) {
		t.Fatalf("Get = %q, %v, %v; want the value", got, ok, err)
	}
	// Namespaces are apart.
	if _, ok, _ := s.Get(ctx, "exchange", key); ok {
		t.Error("the value is visible in another namespace")
	}

	// What the store holds: neither the value nor the key in clear, a TTL set.
	a := admin(t, srv.Addr)
	keys, err := a.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %v, %v; want one", keys, err)
	}
	k := keys[0]
	if !strings.HasPrefix(k, "s:introspection:") || strings.Contains(k, hex.EncodeToString(key[:])) {
		t.Errorf("key %q: want the prefix, the namespace and a keyed hash (not the plain SHA-256)", k)
	}
	raw, _ := a.Get(ctx, k).Bytes()
	if bytes.Contains(raw, []byte("alice")) || bytes.Contains(raw, []byte("active")) {
		t.Errorf("the stored value is readable: %q", raw)
	}
	if ttl := a.PTTL(ctx, k).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL = %v", ttl)
	}

	// Another secret reads a miss, not an error; so do a tampered and a truncated value.
	other, _ := c.Sealed([]byte("fedcba9876543210fedcba9876543210"))
	if _, ok, err := other.Get(ctx, "introspection", key); ok || err != nil {
		t.Errorf("another key: %v, %v; want a miss", ok, err)
	}
	// The other key names entries differently; read the same entry under the right name.
	tampered := bytes.Clone(raw)
	tampered[len(tampered)-1] ^= 1
	a.Set(ctx, k, tampered, time.Minute)
	if _, ok, err := s.Get(ctx, "introspection", key); ok || err != nil {
		t.Errorf("tampered value: %v, %v; want a miss", ok, err)
	}
	a.Set(ctx, k, raw[:5], time.Minute)
	if _, ok, err := s.Get(ctx, "introspection", key); ok || err != nil {
		t.Errorf("truncated value: %v, %v; want a miss", ok, err)
	}
	// A value moved to another entry's key does not open there (the key is authenticated).
	key2 := sha256.Sum256([]byte("another-token"))
	a.Set(ctx, s.Key("introspection", key2), raw, time.Minute)
	if _, ok, _ := s.Get(ctx, "introspection", key2); ok {
		t.Error("a value copied to another key opened")
	}
	// Sealing under the other secret, read with the right one at that key: a miss.
	if err := other.Set(ctx, "introspection", key, val, time.Minute); err != nil {
		t.Fatal(err)
	}
	raw2, _ := a.Get(ctx, other.Key("introspection", key)).Bytes()
	a.Set(ctx, k, raw2, time.Minute)
	if _, ok, err := s.Get(ctx, "introspection", key); ok || err != nil {
		t.Errorf("a value sealed under another secret: %v, %v; want a miss", ok, err)
	}
}

// A store that does not answer is cut at the timeout; it comes back by itself.
func TestSlowStoreCutAtTimeout(t *testing.T) {
	srv := storetest.Start(t)
	px := storetest.NewProxy(t, srv.Addr)
	c, health := newClient(t, px.Addr, store.Options{Timeout: 50 * time.Millisecond})
	ctx := context.Background()
	if _, err := c.ClaimProof(ctx, "k", "warm", time.Minute); err != nil {
		t.Fatal(err)
	}
	px.Hold()
	_, err := c.ClaimProof(ctx, "k", "held", time.Minute)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "timeout") && !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("held answer: err = %v; want ErrUnavailable from the timeout", err)
	}
	if up := <-health; up || c.Up() {
		t.Fatal("the store is still up after a timeout")
	}
	px.Release()
	// The prober pings until the store answers, then reports it up.
	if up := <-health; !up {
		t.Fatal("want an up transition")
	}
	if got, err := c.ClaimProof(ctx, "k", "after", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("after release: %v, %v", got, err)
	}
	// The held SET reached the server: its proof is used, and says so.
	if got, err := c.ClaimProof(ctx, "k", "held", time.Minute); err != nil || got != store.Seen {
		t.Errorf("the held claim: %v, %v; want Seen (it reached the server)", got, err)
	}
}

// A connection dropped mid-request fails that call only; the next one reconnects.
func TestDroppedConnection(t *testing.T) {
	srv := storetest.Start(t)
	px := storetest.NewProxy(t, srv.Addr)
	c, _ := newClient(t, px.Addr, store.Options{Timeout: 2 * time.Second})
	ctx := context.Background()
	if _, err := c.ClaimProof(ctx, "k", "warm", time.Minute); err != nil {
		t.Fatal(err)
	}
	px.Hold()
	done := make(chan error, 1)
	go func() { _, err := c.ClaimProof(ctx, "k", "mid", time.Minute); done <- err }()
	<-px.Held() // the server answered; the answer waits in the proxy
	px.Drop()
	if err := <-done; !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("dropped mid-request: err = %v; want ErrUnavailable", err)
	}
	px.Release()
	if got, err := c.ClaimProof(ctx, "k", "next", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("next call: %v, %v; want Fresh", got, err)
	}

	// CLIENT KILL from the server side, between requests (a client straight to the server:
	// the proxy would turn the kill into a race of its own): the next call reconnects.
	direct, _ := newClient(t, srv.Addr, store.Options{})
	if _, err := direct.ClaimProof(ctx, "k", "direct-warm", time.Minute); err != nil {
		t.Fatal(err)
	}
	a := admin(t, srv.Addr)
	if err := a.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := direct.ClaimProof(ctx, "k", "after-kill", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("after CLIENT KILL: %v, %v; want Fresh", got, err)
	}
}

// A store stopped and started again: calls fail while it is down, then work, without a new
// client; the health transitions are reported once each.
func TestStoreDownAndBack(t *testing.T) {
	srv := storetest.Start(t)
	c, health := newClient(t, srv.Addr, store.Options{})
	ctx := context.Background()
	if _, err := c.ClaimProof(ctx, "k", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := range 3 {
		if _, err := c.ClaimProof(ctx, "k", "down", time.Minute); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("call %d while down: err = %v", i, err)
		}
	}
	if up := <-health; up {
		t.Fatal("want a down transition")
	}
	srv.Restart()
	if up := <-health; !up {
		t.Fatal("want an up transition")
	}
	if got, err := c.ClaimProof(ctx, "k", "b", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("after restart: %v, %v", got, err)
	}
	select {
	case up := <-health:
		t.Errorf("an extra transition (%v): each is reported once", up)
	default:
	}
}

// With a password and an ACL user limited to the commands the client uses.
func TestACLUser(t *testing.T) {
	srv := storetest.Start(t, "--user", "default", "off",
		"--user", "mcp", "on", ">s3cret-pass", "~mcp_auth:*", "resetchannels", "-@all", "+set", "+get", "+ping", "+auth", "+select")
	c, _ := newClient(t, srv.Addr, store.Options{Username: "mcp", Password: "s3cret-pass"})
	ctx := context.Background()
	if got, err := c.ClaimProof(ctx, "k", "j", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("claim with the minimal ACL: %v, %v", got, err)
	}
	s, _ := c.Sealed(bytes.Repeat([]byte("k"), 32))
	if err := s.Set(ctx, "ns", [32]byte{1}, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "ns", [32]byte{1}); err != nil || !ok || string(v) != "v" {
		t.Fatalf("get with the minimal ACL: %q %v %v", v, ok, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	bad, _ := newClient(t, srv.Addr, store.Options{Username: "mcp", Password: "wrong"})
	if _, err := bad.ClaimProof(ctx, "k", "x", time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("wrong password: err = %v; want ErrUnavailable", err)
	}
}

// Through a Sentinel: the client asks it for the master and claims there.
func TestSentinel(t *testing.T) {
	master := storetest.Start(t)
	sentinel := storetest.StartSentinel(t, master, "mymaster")
	c, err := store.New(store.Options{Addrs: []string{sentinel.Addr}, MasterName: "mymaster"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if got, err := c.ClaimProof(ctx, "k", "j", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("claim through Sentinel: %v, %v", got, err)
	}
	if n := admin(t, master.Addr).Exists(ctx, c.ProofKey("k", "j")).Val(); n != 1 {
		t.Error("the key is not on the master")
	}
	if got, err := c.ClaimProof(ctx, "k", "j", time.Minute); err != nil || got != store.Seen {
		t.Fatalf("second claim through Sentinel: %v, %v", got, err)
	}
}

// A caller that gave up (its request ended) gets an error, but the store is not marked down.
func TestCallerCancelIsNotStoreDown(t *testing.T) {
	srv := storetest.Start(t)
	c, health := newClient(t, srv.Addr, store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ClaimProof(ctx, "k", "j", time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("cancelled caller: err = %v", err)
	}
	if !c.Up() {
		t.Error("a cancelled caller marked the store down")
	}
	select {
	case up := <-health:
		t.Errorf("a health transition (%v) for a cancelled caller", up)
	default:
	}
}

// Against a Cluster (one node holding every slot): the cluster client claims there.
func TestCluster(t *testing.T) {
	srv := storetest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	ctx := context.Background()
	if err := admin(t, srv.Addr).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	srv.WaitLog("Cluster state changed: ok")
	c, err := store.New(store.Options{Addrs: []string{srv.Addr}, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, want := range []store.Outcome{store.Fresh, store.Seen} {
		if got, err := c.ClaimProof(ctx, "k", "j", time.Minute); err != nil || got != want {
			t.Fatalf("claim on the Cluster: %v, %v; want %v", got, err, want)
		}
	}
	s, _ := c.Sealed(bytes.Repeat([]byte("c"), 32))
	if err := s.Set(ctx, "ns", [32]byte{2}, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "ns", [32]byte{2}); err != nil || !ok || string(v) != "v" {
		t.Fatalf("sealed get on the Cluster: %q %v %v", v, ok, err)
	}
}

// Over TLS, the server verified against a CA given to the client; a client that does not
// trust that CA gets no connection.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, certFile, keyFile := storetest.WriteCerts(t, dir)
	srv := storetest.Start(t, "--port", "0", "--tls-port", "{port}", "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	// A long timeout: the handshake, not the clock, decides these outcomes.
	c, _ := newClient(t, srv.Addr, store.Options{Timeout: 10 * time.Second, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	ctx := context.Background()
	if got, err := c.ClaimProof(ctx, "k", "j", time.Minute); err != nil || got != store.Fresh {
		t.Fatalf("claim over TLS: %v, %v", got, err)
	}
	untrusting, _ := newClient(t, srv.Addr, store.Options{Timeout: 10 * time.Second, TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if _, err := untrusting.ClaimProof(ctx, "k", "x", time.Minute); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: err = %v; want a certificate error", err)
	}
	plain, _ := newClient(t, srv.Addr, store.Options{Timeout: 10 * time.Second})
	if _, err := plain.ClaimProof(ctx, "k", "y", time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a plain client on the TLS port: err = %v; want ErrUnavailable", err)
	}
}
