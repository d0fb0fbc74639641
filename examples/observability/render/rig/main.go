// Command rig is the stand-in world that render.sh runs Caddy with mcp_auth in, so that the
// dashboard's picture shows real metrics: a small authorization server (RFC 8414 metadata, a
// JWKS, RFC 7662 introspection with client credentials), an upstream MCP server that answers
// every call, and a bounded load generator that sends Caddy a mix of good, expired,
// wrong-scope, wrong-audience, badly signed, opaque (active and inactive) and missing tokens
// for -duration, then exits.
//
// The run has phases, so that the panels have something to show: a steady mix; an
// introspection outage (the authorization server answers 500, opaque tokens not yet cached get
// 503); a store outage (with -store, the rig is a TCP proxy in front of Redis and drops every
// connection for a while); a burst of refusals (a client retrying expired tokens); the steady
// mix between and after them.
//
// It binds only the loopback addresses it is given and stops by itself.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// The introspection client the Caddyfile of render.sh configures.
const (
	clientID     = "render-rs"
	clientSecret = "render-introspection-secret"
)

func main() {
	var (
		asAddr   = flag.String("as", "127.0.0.1:0", "address of the stand-in authorization server (loopback)")
		mcpAddr  = flag.String("mcp", "127.0.0.1:0", "address of the stand-in MCP server (loopback)")
		caddy    = flag.String("caddy", "", "Caddy's base URL, e.g. http://127.0.0.1:8080 (required)")
		duration = flag.Duration("duration", 150*time.Second, "how long to send load; the program exits after it")
		rate     = flag.Int("rate", 40, "requests per second in the steady phases")
		proxy    = flag.String("store-proxy", "", "with -store: the loopback address Caddy's store points at")
		store    = flag.String("store", "", "the Redis server's address the store proxy forwards to")
	)
	flag.Parse()
	if *caddy == "" {
		log.Fatal("rig: -caddy is required")
	}
	if *duration <= 0 || *duration > 30*time.Minute {
		log.Fatal("rig: -duration must be between 0 and 30m")
	}
	var sp *storeProxy
	if *proxy != "" {
		ln, err := listenLoopback(*proxy)
		if err != nil {
			log.Fatal("rig: ", err)
		}
		sp = &storeProxy{target: *store, conns: map[net.Conn]bool{}}
		go sp.serve(ln)
		defer ln.Close()
	}
	if err := run(*asAddr, *mcpAddr, strings.TrimSuffix(*caddy, "/"), *duration, *rate, sp); err != nil {
		log.Fatal("rig: ", err)
	}
}

func run(asAddr, mcpAddr, caddy string, duration time.Duration, rate int, sp *storeProxy) error {
	asLn, err := listenLoopback(asAddr)
	if err != nil {
		return err
	}
	mcpLn, err := listenLoopback(mcpAddr)
	if err != nil {
		return err
	}
	issuer := "http://" + asLn.Addr().String()

	key, err := jwttest.Generate("render-1", "ES256")
	if err != nil {
		return err
	}
	as := &authServer{issuer: issuer, resource: caddy + "/mcp", jwks: jwttest.JWKS(key)}
	asSrv := &http.Server{Handler: as.routes(), ReadHeaderTimeout: 5 * time.Second}
	mcpSrv := &http.Server{Handler: http.HandlerFunc(serveMCP), ReadHeaderTimeout: 5 * time.Second}
	go asSrv.Serve(asLn)
	go mcpSrv.Serve(mcpLn)
	defer asSrv.Close()
	defer mcpSrv.Close()
	log.Printf("rig: authorization server %s, MCP server http://%s", issuer, mcpLn.Addr())

	if err := waitReady(caddy+"/mcp", time.Minute); err != nil {
		return err
	}
	l := &load{
		caddy: caddy, issuer: issuer, key: key, as: as,
		client: &http.Client{Timeout: 10 * time.Second}, store: sp,
	}
	if l.wrongKey, err = jwttest.Generate("render-1", "ES256"); err != nil { // same kid, other key
		return err
	}
	return l.run(duration, rate)
}

func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s: only loopback addresses", addr)
	}
	return net.Listen("tcp", addr)
}

// waitReady polls Caddy until it answers (any status), for at most limit.
func waitReady(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("caddy at %s did not answer within %s", url, limit)
}

// authServer is the stand-in authorization server. failing makes introspection answer 500.
// Active opaque tokens are for resource, the one resource of render.sh that introspects.
type authServer struct {
	issuer   string
	resource string
	jwks     []byte
	failing  atomic.Bool
}

func (as *authServer) routes() http.Handler {
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, _ *http.Request) {
		jitter(1, 4)
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                 as.issuer,
			"jwks_uri":               as.issuer + "/jwks",
			"introspection_endpoint": as.issuer + "/introspect",
		})
	}
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", meta)
	mux.HandleFunc("GET /.well-known/openid-configuration", meta)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		jitter(2, 8)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(as.jwks)
	})
	mux.HandleFunc("POST /introspect", as.introspect)
	return mux
}

func (as *authServer) introspect(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != clientID || secret != clientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid_client"})
		return
	}
	if as.failing.Load() {
		jitter(50, 200) // an authorization server in trouble is slow as well
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "server_error"})
		return
	}
	jitter(5, 40)
	tok := r.PostFormValue("token")
	// Opaque tokens are "opq-<state>-<n>"; only the rig mints them.
	if !strings.HasPrefix(tok, "opq-active-") {
		writeJSON(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	now := time.Now()
	writeJSON(w, http.StatusOK, map[string]any{
		"active":    true,
		"iss":       as.issuer,
		"aud":       as.resource,
		"sub":       "opaque-user",
		"client_id": "render-client",
		"scope":     "mcp:read",
		"iat":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	})
}

func jitter(minMS, maxMS int) {
	time.Sleep(time.Duration(minMS+rand.IntN(maxMS-minMS+1)) * time.Millisecond)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// serveMCP answers every JSON-RPC request with an empty result, as a real MCP server's
// answer would travel back through Caddy.
func serveMCP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID any `json:"id"`
	}
	json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	if req.ID == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": map[string]any{}})
}

type load struct {
	caddy    string
	issuer   string
	key      *jwttest.Key
	wrongKey *jwttest.Key
	as       *authServer
	client   *http.Client
	store    *storeProxy // nil without -store-proxy

	mu   sync.Mutex
	good map[string][]string // resource path → a pool of valid JWTs, reused (token cache hits)
}

// A kind of request the load sends, and its weight in the steady mix.
type kind struct {
	name   string
	weight int
}

var steady = []kind{
	{"good_jwt", 40}, {"fresh_jwt", 6}, {"opaque_active", 14}, {"opaque_new", 4},
	{"opaque_inactive", 3}, {"expired", 5}, {"wrong_scope", 5}, {"wrong_audience", 2},
	{"bad_signature", 1}, {"unknown_key", 1}, {"malformed", 2}, {"missing", 8},
}

// During the burst, a misbehaving client retries expired tokens and calls without one.
var burst = []kind{{"expired", 60}, {"missing", 30}, {"good_jwt", 10}}

func pick(mix []kind) string {
	total := 0
	for _, k := range mix {
		total += k.weight
	}
	n := rand.IntN(total)
	for _, k := range mix {
		if n < k.weight {
			return k.name
		}
		n -= k.weight
	}
	return mix[0].name
}

func (l *load) run(duration time.Duration, rate int) error {
	l.good = map[string][]string{}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	var (
		wg     sync.WaitGroup
		counts sync.Map // "<kind> <status>" → *atomic.Int64
	)
	jobs := make(chan string)
	for range 8 {
		wg.Go(func() {
			for k := range jobs {
				status := l.send(k)
				v, _ := counts.LoadOrStore(fmt.Sprintf("%-16s %d", k, status), new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		})
	}

	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	phase := ""
	for {
		select {
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			l.as.failing.Store(false)
			log.Printf("rig: load done after %s; requests by kind and status:", time.Since(start).Round(time.Second))
			counts.Range(func(k, v any) bool {
				log.Printf("  %s  %d", k, v.(*atomic.Int64).Load())
				return true
			})
			return nil
		case <-tick.C:
		}
		f := float64(time.Since(start)) / float64(duration)
		mix, name := steady, "steady"
		switch {
		case f >= 0.25 && f < 0.37:
			name = "introspection outage"
		case f >= 0.5 && f < 0.62 && l.store != nil:
			name = "store outage"
		case f >= 0.72 && f < 0.85:
			mix, name = burst, "refusal burst"
		}
		if name != phase {
			phase = name
			l.as.failing.Store(name == "introspection outage")
			if l.store != nil {
				l.store.setDown(name == "store outage")
			}
			log.Printf("rig: %s phase at %s", name, time.Since(start).Round(time.Second))
		}
		n := 1
		if name == "refusal burst" {
			n = 3 // three times the steady rate
		}
		for range n {
			select {
			case jobs <- pick(mix):
			case <-ctx.Done():
			}
		}
	}
}

// send makes one request of kind k to one of the two resources and returns the status.
func (l *load) send(k string) int {
	path := "/mcp"
	if rand.IntN(3) == 0 && !strings.HasPrefix(k, "opaque") {
		path = "/files" // the second resource: JWTs only
	}
	resource := l.caddy + path
	scope := "mcp:read"
	if path == "/files" {
		scope = "files:read"
	}
	tok := ""
	switch k {
	case "good_jwt":
		tok = l.pooled(path, resource, scope)
	case "fresh_jwt":
		tok = l.mint(l.key, resource, scope, time.Hour)
	case "expired":
		tok = l.mint(l.key, resource, scope, -2*time.Hour)
	case "wrong_scope":
		tok = l.mint(l.key, resource, "profile", time.Hour)
	case "wrong_audience":
		tok = l.mint(l.key, "https://other.example/mcp", scope, time.Hour)
	case "bad_signature":
		tok = l.mint(l.wrongKey, resource, scope, time.Hour)
	case "unknown_key":
		k2, _ := jwttest.Generate(fmt.Sprintf("rotated-%d", rand.IntN(1000)), "ES256")
		tok = l.mint(k2, resource, scope, time.Hour)
	case "malformed":
		tok = "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln"
	case "opaque_active":
		tok = fmt.Sprintf("opq-active-%032d", rand.IntN(30)) // a small pool: mostly cached
	case "opaque_new":
		tok = fmt.Sprintf("opq-active-%032d", 1000+rand.IntN(1_000_000_000))
	case "opaque_inactive":
		tok = fmt.Sprintf("opq-revoked-%032d", rand.IntN(1_000_000_000))
	case "missing":
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	req, err := http.NewRequest(http.MethodPost, resource, strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			log.Printf("rig: %s: %v", k, err)
		}
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// pooled returns one of 20 valid tokens per resource, so most good requests hit the token cache.
func (l *load) pooled(path, resource, scope string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	pool := l.good[path]
	if len(pool) < 20 {
		pool = append(pool, l.mint(l.key, resource, scope, time.Hour))
		l.good[path] = pool
		return pool[len(pool)-1]
	}
	return pool[rand.IntN(len(pool))]
}

func (l *load) mint(k *jwttest.Key, aud, scope string, ttl time.Duration) string {
	now := time.Now()
	var jti [8]byte
	for i := range jti {
		jti[i] = byte(rand.IntN(256))
	}
	tok, err := k.Sign(jwt.MapClaims{
		"iss": l.issuer, "aud": aud, "sub": "render-user", "client_id": "render-client",
		"scope": scope, "iat": now.Add(min(ttl, 0)).Add(-time.Minute).Unix(),
		"exp": now.Add(ttl).Unix(), "jti": fmt.Sprintf("%x", jti),
	}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rig: sign:", err)
		os.Exit(1)
	}
	return tok
}

// storeProxy forwards TCP connections to the Redis server; while down it drops every
// connection and refuses new ones, as a store that went away would.
type storeProxy struct {
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func (p *storeProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *storeProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *storeProxy) forget(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *storeProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *storeProxy) handle(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.forget(c)
	up, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(up) {
		return
	}
	defer p.forget(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done // either side closing (or setDown) ends both
}
