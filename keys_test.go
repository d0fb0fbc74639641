package mcpauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// newIssuerHandler is a handler for testResource requiring mcp:read, trusting these issuers
// (their JWKS discovered unless the test sets JWKSURLs or JWKSFile).
func newIssuerHandler(issuers ...string) *Handler {
	return &Handler{
		Resource:             testResource,
		AuthorizationServers: issuers,
		Scopes:               []string{"mcp:read"},
	}
}

// serveToken sends GET /mcp with this bearer token ("" for none) through h.ServeHTTP; the
// next handler answers 200 "next".
func serveToken(h *Handler, token string) *httptest.ResponseRecorder {
	return serveTokenCtx(context.Background(), h, token)
}

func serveTokenCtx(ctx context.Context, h *Handler, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, testResource, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte("next"))
		return err
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		w.Code = 599
	}
	return w
}

// wantStatus fails unless rec has this status and, for 401/403, this error code.
func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d (WWW-Authenticate %q, body %q)", rec.Code, status,
			rec.Header().Get("WWW-Authenticate"), rec.Body.String())
	}
	chal := rec.Header().Get("WWW-Authenticate")
	switch {
	case code == "" && strings.Contains(chal, "error="):
		t.Fatalf("challenge %q has an error, want none", chal)
	case code != "" && !strings.Contains(chal, `error="`+code+`"`):
		t.Fatalf("challenge %q, want error=%q", chal, code)
	}
}

// setTunable sets a package variable for the rest of the test.
func setTunable[T any](t *testing.T, v *T, val T) {
	t.Helper()
	old := *v
	*v = val
	t.Cleanup(func() { *v = old })
}

// fastRetry makes sets created from now on retry every few milliseconds and accept a short
// jwks_refresh.
func fastRetry(t *testing.T) {
	t.Helper()
	setTunable(t, &retryMin, 5*time.Millisecond)
	setTunable(t, &retryMax, 20*time.Millisecond)
	setTunable(t, &minJWKSRefresh, time.Millisecond)
}

// waitUntil polls cond for at most 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settleGoroutines waits (bounded) until at most want+slack goroutines run, and returns the
// count. On failure it prints the stacks.
func settleGoroutines(t *testing.T, want, slack int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want+slack {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d+%d\n%s", n, want, slack, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSettled waits until every remote set of h has keys and no fetch in flight, so that the
// next unknown kid starts a fetch of its own instead of joining the first load.
func waitSettled(t *testing.T, h *Handler) {
	t.Helper()
	waitKeysLoaded(t, h)
	sets := append([]*remoteSet(nil), h.keySets.shared...)
	for _, rs := range h.keySets.byIssuer {
		sets = append(sets, rs)
	}
	waitUntil(t, "first load finished", func() bool {
		for _, rs := range sets {
			rs.mu.Lock()
			busy := rs.inflight != nil
			rs.mu.Unlock()
			if busy {
				return false
			}
		}
		return true
	})
}

// settleExact asserts at most want+slack goroutines (bounded wait), then gives the count a
// little more time to reach want exactly, and returns it for the log.
func settleExact(t *testing.T, want, slack int) int {
	t.Helper()
	n := settleGoroutines(t, want, slack)
	for i := 0; i < 200 && n > want; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// authServer is an authorization server: RFC 8414 metadata at the root naming its own URL as
// issuer, and a JWKS it counts requests for. A test may hold JWKS answers behind a gate.
type authServer struct {
	*httptest.Server
	mu      sync.Mutex
	jwks    []byte
	gate    chan struct{} // when set, JWKS requests wait for it to close
	arrived chan struct{} // gets a value when a JWKS request waits at the gate
	down    atomic.Bool
	fetches atomic.Int64
}

func newAuthServer(t *testing.T, keys ...*testKey) *authServer {
	t.Helper()
	as := &authServer{jwks: jwksJSON(t, keys...), arrived: make(chan struct{}, 1)}
	as.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if as.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": as.URL, "jwks_uri": as.URL + "/jwks"})
		case "/jwks":
			as.fetches.Add(1)
			as.mu.Lock()
			body, gate := as.jwks, as.gate
			as.mu.Unlock()
			if gate != nil {
				select {
				case as.arrived <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-r.Context().Done():
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(as.Close)
	return as
}

func (as *authServer) setKeys(t *testing.T, keys ...*testKey) {
	t.Helper()
	b := jwksJSON(t, keys...)
	as.mu.Lock()
	as.jwks = b
	as.mu.Unlock()
}

// TestUnknownKIDFlood sends 1000 validly signed tokens with made-up kids: the first makes the
// key set fetch again, the other 999 within the minute make no request at all.
func TestUnknownKIDFlood(t *testing.T) {
	key := newECKey(t, "k1")
	js := newJWKSServer(t, key)
	h := newIssuerHandler("https://as.example.com")
	h.JWKSURLs = []string{js.URL}
	provisionHandler(t, h)
	waitSettled(t, h)
	before := js.count.Load()

	claims := testClaims("https://as.example.com", testResource, "mcp:read")
	for i := range 1000 {
		tok := key.sign(t, claims, map[string]any{"kid": fmt.Sprintf("made-up-%d", i)})
		rec := serveToken(h, tok)
		wantStatus(t, rec, http.StatusUnauthorized, "invalid_token")
		if !strings.Contains(rec.Header().Get("WWW-Authenticate"), "not signed by a known key") {
			t.Fatalf("challenge %q does not name the unknown key", rec.Header().Get("WWW-Authenticate"))
		}
	}
	extra := js.count.Load() - before
	t.Logf("1000 tokens with made-up kids: %d extra JWKS fetch(es)", extra)
	if extra != 1 {
		t.Fatalf("%d extra JWKS fetches, want exactly 1 (one refresh per minute)", extra)
	}
	// The known key still works, without a fetch.
	wantStatus(t, serveToken(h, key.sign(t, claims, nil)), http.StatusOK, "")
	if n := js.count.Load() - before; n != 1 {
		t.Fatalf("%d extra fetches after a known-kid token, want still 1", n)
	}
}

// TestUnknownKIDConcurrentShareOneFetch rotates in a new key, then sends 100 concurrent
// requests with it while the JWKS answer is held: none completes before the fetch does, all
// succeed, and the server saw exactly one request.
func TestUnknownKIDConcurrentShareOneFetch(t *testing.T) {
	oldKey, newKey := newECKey(t, "old"), newECKey(t, "new")
	as := newAuthServer(t, oldKey)
	h := newIssuerHandler(as.URL)
	provisionHandler(t, h)
	waitSettled(t, h)
	before := as.fetches.Load()

	gate := make(chan struct{})
	as.mu.Lock()
	as.gate = gate
	as.mu.Unlock()
	as.setKeys(t, oldKey, newKey)

	tok := newKey.sign(t, testClaims(as.URL, testResource, "mcp:read"), nil)
	var done atomic.Int64
	var wg sync.WaitGroup
	codes := make([]int, 100)
	for i := range codes {
		wg.Go(func() {
			codes[i] = serveToken(h, tok).Code
			done.Add(1)
		})
	}
	<-as.arrived // the one fetch reached the server and is held
	if n := done.Load(); n != 0 {
		t.Fatalf("%d requests finished while the fetch was held; want all of them to wait", n)
	}
	close(gate)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, c)
		}
	}
	extra := as.fetches.Load() - before
	t.Logf("100 concurrent requests with a new kid: %d JWKS fetch(es)", extra)
	if extra != 1 {
		t.Fatalf("%d JWKS fetches, want 1 shared fetch", extra)
	}
}

// TestRotation publishes a new key next to the old one: a token with the new kid is accepted
// at once, through the unknown-kid refresh (on a set whose background refresh is an hour
// away). Then the old key is removed: tokens signed with it still pass until the set's next
// refresh, and are refused after it (background refresh of a 50ms set; an explicit refresh
// of the hourly one).
func TestRotation(t *testing.T) {
	fastRetry(t)
	k1, k2 := newRSAKey(t, "2025"), newRSAKey(t, "2026")
	js := newJWKSServer(t, k1)
	const iss = "https://as.example.com"
	hourly := newIssuerHandler(iss)
	hourly.JWKSURLs = []string{js.URL}
	fast := newIssuerHandler(iss)
	fast.JWKSURLs = []string{js.URL}
	fast.JWKSRefresh = caddy.Duration(50 * time.Millisecond)
	provisionHandler(t, hourly)
	provisionHandler(t, fast)
	waitSettled(t, hourly)
	waitKeysLoaded(t, fast)
	hourlySet, fastSet := hourly.keySets.shared[0], fast.keySets.shared[0]
	if hourlySet == fastSet {
		t.Fatal("sets with different refresh intervals are shared")
	}
	claims := testClaims(iss, testResource, "mcp:read")
	tok1, tok2 := k1.sign(t, claims, nil), k2.sign(t, claims, nil)
	wantStatus(t, serveToken(hourly, tok1), http.StatusOK, "")

	js.setKeys(t, k1, k2)
	before := hourlySet.fetches.Load()
	wantStatus(t, serveToken(hourly, tok2), http.StatusOK, "")
	wantStatus(t, serveToken(hourly, tok1), http.StatusOK, "")
	if n := hourlySet.fetches.Load() - before; n != 1 {
		t.Fatalf("new kid: %d fetches of the hourly set, want 1 (unknown-kid refresh)", n)
	}

	js.setKeys(t, k2)
	waitUntil(t, "background refresh dropping kid 2025", func() bool { return fastSet.current().byKID["2025"] == nil })
	wantStatus(t, serveToken(fast, tok1), http.StatusUnauthorized, "invalid_token")
	wantStatus(t, serveToken(fast, tok2), http.StatusOK, "")

	// The hourly set has not refreshed since: the removed key still verifies there.
	wantStatus(t, serveToken(hourly, tok1), http.StatusOK, "")
	if err := hourlySet.fetchShared(); err != nil { // what its next background refresh does
		t.Fatal(err)
	}
	wantStatus(t, serveToken(hourly, tok1), http.StatusUnauthorized, "invalid_token")
	wantStatus(t, serveToken(hourly, tok2), http.StatusOK, "")
}

// TestOutageAtStart: the JWKS cannot be loaded when the handler starts. A token gets 503 with
// Retry-After, a request without a token the plain 401 challenge; once the server answers,
// the same handler accepts the token.
func TestOutageAtStart(t *testing.T) {
	for _, mode := range []string{"closed listener", "503 from JWKS URL", "503 from discovery"} {
		t.Run(mode, func(t *testing.T) {
			fastRetry(t)
			key := newRSAKey(t, "k1")
			var h *Handler
			var up func()
			iss := "https://as.example.com"
			switch mode {
			case "closed listener":
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := l.Addr().String()
				l.Close()
				h = newIssuerHandler(iss)
				h.JWKSURLs = []string{"http://" + addr + "/jwks"}
				up = func() {
					l, err := net.Listen("tcp", addr)
					if err != nil {
						t.Skipf("port %s taken meanwhile: %v", addr, err)
					}
					srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						_, _ = w.Write(jwksJSON(t, key))
					}))
					srv.Listener.Close()
					srv.Listener = l
					srv.Start()
					t.Cleanup(srv.Close)
				}
			case "503 from JWKS URL":
				js := newJWKSServer(t, key)
				js.down.Store(true)
				h = newIssuerHandler(iss)
				h.JWKSURLs = []string{js.URL}
				up = func() { js.down.Store(false) }
			case "503 from discovery":
				as := newAuthServer(t, key)
				as.down.Store(true)
				iss = as.URL
				h = newIssuerHandler(iss)
				up = func() { as.down.Store(false) }
			}
			provisionHandler(t, h)
			tok := key.sign(t, testClaims(iss, testResource, "mcp:read"), nil)

			for range 3 { // the first request tries a fetch itself, the next are rate-limited
				rec := serveToken(h, tok)
				if rec.Code != http.StatusServiceUnavailable {
					t.Fatalf("token during outage: status %d, want 503", rec.Code)
				}
				if ra := rec.Header().Get("Retry-After"); ra != "10" {
					t.Fatalf("Retry-After %q, want 10", ra)
				}
				if !strings.Contains(rec.Body.String(), "temporarily_unavailable") {
					t.Fatalf("body %q", rec.Body.String())
				}
			}
			wantStatus(t, serveToken(h, ""), http.StatusUnauthorized, "")
			if c := serveToken(h, "").Header().Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer ") {
				t.Fatalf("no-token challenge %q", c)
			}

			up()
			waitUntil(t, "keys loaded after the server came up", func() bool {
				return serveToken(h, tok).Code == http.StatusOK
			})
			wantStatus(t, serveToken(h, ""), http.StatusUnauthorized, "")
		})
	}
}

// TestPoolSharing: handlers with the same JWKS URL share one set and one fetch; Cleanup of one
// leaves the set to the others, Cleanup twice releases once, and when the last lets go, the
// set stops and its goroutines and connections are gone.
func TestPoolSharing(t *testing.T) {
	key := newECKey(t, "k1")
	js := newJWKSServer(t, key)
	base := runtime.NumGoroutine()

	mk := func() *Handler {
		h := newIssuerHandler("https://as.example.com")
		h.JWKSURLs = []string{js.URL}
		provisionHandler(t, h)
		return h
	}
	h1, h2, h3 := mk(), mk(), mk()
	waitSettled(t, h1)
	rs := h1.keySets.shared[0]
	if h2.keySets.shared[0] != rs || h3.keySets.shared[0] != rs {
		t.Fatal("handlers with the same jwks_url got different key sets")
	}
	poolKey := "jwks|" + js.URL + "|" + defaultRefresh.String()
	if refs, _ := keyPool.References(poolKey); refs != 3 {
		t.Fatalf("pool references %d, want 3", refs)
	}
	tok := key.sign(t, testClaims("https://as.example.com", testResource, "mcp:read"), nil)
	for _, h := range []*Handler{h1, h2, h3} {
		wantStatus(t, serveToken(h, tok), http.StatusOK, "")
	}
	if n := js.count.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for three handlers, want 1", n)
	}
	during := runtime.NumGoroutine()

	for range 2 {
		if err := h1.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if refs, _ := keyPool.References(poolKey); refs != 2 {
		t.Fatalf("after Cleanup twice of one handler: references %d, want 2", refs)
	}
	if rs.ctx.Err() != nil {
		t.Fatal("set stopped while two handlers still use it")
	}
	wantStatus(t, serveToken(h2, tok), http.StatusOK, "")

	_ = h2.Cleanup()
	_ = h3.Cleanup()
	if _, ok := keyPool.References(poolKey); ok {
		t.Fatal("pool entry still there after the last Cleanup")
	}
	select {
	case <-rs.done:
	default:
		t.Fatal("refresh loop still running after Destruct returned")
	}
	after := settleGoroutines(t, base, 0)
	t.Logf("goroutines: %d before, %d with the shared set, %d after the last Cleanup", base, during, after)
}

// TestFailedProvisionReleases: a Provision that fails after taking key sets from the pool
// leaves no entry (and no goroutine) behind, and the Cleanup Caddy calls next is harmless.
func TestFailedProvisionReleases(t *testing.T) {
	good := newAuthServer(t, newECKey(t, "k1"))
	js := newJWKSServer(t, newECKey(t, "k2"))
	badFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(badFile, []byte(`{"keys": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		h        *Handler
		poolKeys []string
	}{
		{
			name: "second issuer cannot be discovered",
			h: &Handler{Resource: testResource, AuthorizationServers: []string{good.URL},
				Issuers: []string{good.URL, "urn:example:not-discoverable"}, Scopes: []string{"mcp:read"}},
			poolKeys: []string{"issuer|" + good.URL + "|1h0m0s"},
		},
		{
			name: "jwks_url with a bad jwks_file",
			h: &Handler{Resource: testResource, AuthorizationServers: []string{"https://as.example.com"},
				JWKSURLs: []string{js.URL}, JWKSFile: badFile, Scopes: []string{"mcp:read"}},
			poolKeys: []string{"jwks|" + js.URL + "|1h0m0s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := tt.h.Provision(ctx)
			if err == nil {
				t.Fatal("Provision succeeded, want an error")
			}
			t.Logf("provision error: %v", err)
			for range 2 { // Caddy calls Cleanup after a failed Provision; a second is harmless
				if err := tt.h.Cleanup(); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range tt.poolKeys {
				if refs, ok := keyPool.References(k); ok {
					t.Fatalf("pool entry %s left with %d references", k, refs)
				}
			}
			settleGoroutines(t, base, 0)
		})
	}
}

// TestFailedRefreshKeepsKeys: the JWKS server fails after the first load; the refreshes fail,
// each logged as a warning through zap, and the last good keys keep verifying tokens.
func TestFailedRefreshKeepsKeys(t *testing.T) {
	fastRetry(t)
	logs := observeKeyLogs(t)
	key := newRSAKey(t, "k1")
	js := newJWKSServer(t, key)
	const iss = "https://as.example.com"
	h := newIssuerHandler(iss)
	h.JWKSURLs = []string{js.URL}
	h.JWKSRefresh = caddy.Duration(20 * time.Millisecond)
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	waitLog(t, logs, "signing keys loaded", js.URL)

	js.down.Store(true)
	failed := js.count.Load()
	e := waitLog(t, logs, "refreshing signing keys failed", js.URL)
	if e.Level.String() != "warn" {
		t.Fatalf("failed refresh logged at %s, want warn", e.Level)
	}
	if kept := e.ContextMap()["keys_kept"]; kept != int64(1) {
		t.Fatalf("keys_kept %v, want 1", kept)
	}
	waitUntil(t, "a few failed refreshes", func() bool { return js.count.Load() >= failed+3 })
	if n := h.keySets.shared[0].current().size(); n != 1 {
		t.Fatalf("%d keys after failed refreshes, want the last good 1", n)
	}
	wantStatus(t, serveToken(h, key.sign(t, testClaims(iss, testResource, "mcp:read"), nil)), http.StatusOK, "")
	// An unknown kid during the outage is a bad token (keys are loaded), not a 503.
	bad := newRSAKey(t, "other").sign(t, testClaims(iss, testResource, "mcp:read"), nil)
	wantStatus(t, serveToken(h, bad), http.StatusUnauthorized, "invalid_token")
	t.Logf("warnings logged for failed refreshes: %d", logs.FilterMessageSnippet("refreshing signing keys failed").Len())
}

// TestCrossIssuerConfusion: two issuers, each discovered with its own key. A token signed by
// A's key that claims issuer B is refused, also when both keys share a kid.
func TestCrossIssuerConfusion(t *testing.T) {
	for _, sameKID := range []bool{false, true} {
		t.Run(fmt.Sprintf("same kid %v", sameKID), func(t *testing.T) {
			keyA, keyB := newRSAKey(t, "a"), newECKey(t, "b")
			if sameKID {
				keyB = newRSAKey(t, "a")
			}
			asA, asB := newAuthServer(t, keyA), newAuthServer(t, keyB)
			h := newIssuerHandler(asA.URL, asB.URL)
			provisionHandler(t, h)
			waitSettled(t, h)

			sign := func(k *testKey, iss string) string {
				return k.sign(t, testClaims(iss, testResource, "mcp:read"), nil)
			}
			wantStatus(t, serveToken(h, sign(keyA, asA.URL)), http.StatusOK, "")
			wantStatus(t, serveToken(h, sign(keyB, asB.URL)), http.StatusOK, "")
			wantStatus(t, serveToken(h, sign(keyA, asB.URL)), http.StatusUnauthorized, "invalid_token")
			wantStatus(t, serveToken(h, sign(keyB, asA.URL)), http.StatusUnauthorized, "invalid_token")
		})
	}
}

// TestReloads50 provisions 50 handler instances in sequence with the same JWKS URL, the way
// config reloads do (the new one is provisioned before the old one is cleaned up), each
// serving a request; then the same with a stop between (the old one cleaned up first).
// Goroutines return to the baseline, and the JWKS is fetched once per set lifetime.
func TestReloads50(t *testing.T) {
	key := newECKey(t, "k1")
	js := newJWKSServer(t, key)
	tok := key.sign(t, testClaims("https://as.example.com", testResource, "mcp:read"), nil)
	base := runtime.NumGoroutine()

	provision := func() (*Handler, context.CancelFunc) {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		h := newIssuerHandler("https://as.example.com")
		h.JWKSURLs = []string{js.URL}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		waitSettled(t, h)
		wantStatus(t, serveToken(h, tok), http.StatusOK, "")
		return h, cancel
	}
	release := func(h *Handler, cancel context.CancelFunc) {
		if err := h.Cleanup(); err != nil {
			t.Fatal(err)
		}
		cancel()
	}

	var prev *Handler
	var prevCancel context.CancelFunc
	maxG := 0
	for range 50 {
		h, cancel := provision()
		if prev != nil {
			if h.keySets.shared[0] != prev.keySets.shared[0] {
				t.Fatal("reload made a new key set")
			}
			release(prev, prevCancel)
		}
		prev, prevCancel = h, cancel
		maxG = max(maxG, runtime.NumGoroutine())
	}
	release(prev, prevCancel)
	reloadFetches := js.count.Load()
	after := settleExact(t, base, 5)
	t.Logf("50 reloads: %d JWKS fetch(es); goroutines %d before, at most %d during, %d after",
		reloadFetches, base, maxG, after)
	if reloadFetches != 1 {
		t.Fatalf("%d JWKS fetches over 50 reloads, want 1 (the set lives across reloads)", reloadFetches)
	}

	for range 50 {
		h, cancel := provision()
		release(h, cancel)
	}
	restartFetches := js.count.Load() - reloadFetches
	after = settleExact(t, base, 5)
	t.Logf("50 stop/start cycles: %d JWKS fetches; goroutines %d after", restartFetches, after)
	if restartFetches != 50 {
		t.Fatalf("%d JWKS fetches over 50 stop/start cycles, want 50 (one per new set)", restartFetches)
	}
}

// TestCleanupDuringFetch: the last Cleanup comes while an unknown-kid fetch is held at the
// server. Destruct cancels it and waits for it; afterwards a request on the stale handler
// starts no fetch, and no goroutine or connection is left.
func TestCleanupDuringFetch(t *testing.T) {
	setTunable(t, &unknownKIDInterval, 0) // so that only Destruct can stop a fetch below
	key := newECKey(t, "k1")
	as := newAuthServer(t, key)
	base := runtime.NumGoroutine()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := newIssuerHandler(as.URL)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, h)
	rs := h.keySets.byIssuer[as.URL]

	gate := make(chan struct{})
	defer close(gate)
	as.mu.Lock()
	as.gate = gate
	as.mu.Unlock()
	unknown := newECKey(t, "k2").sign(t, testClaims(as.URL, testResource, "mcp:read"), nil)
	codes := make(chan int, 1)
	go func() { codes <- serveToken(h, unknown).Code }()
	<-as.arrived

	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if c := <-codes; c != http.StatusUnauthorized {
		t.Fatalf("request whose fetch was cancelled: status %d, want 401", c)
	}
	fetches := as.fetches.Load()
	rs.mu.Lock()
	inflight := rs.inflight
	rs.mu.Unlock()
	if inflight != nil {
		t.Fatal("a fetch is still in flight after Destruct returned")
	}
	wantStatus(t, serveToken(h, unknown), http.StatusUnauthorized, "invalid_token")
	if n := as.fetches.Load(); n != fetches {
		t.Fatalf("a stale handler made %d fetches after Destruct", n-fetches)
	}
	settleGoroutines(t, base, 0)
}
