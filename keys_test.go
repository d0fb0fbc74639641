package mcpauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
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
	r := httptest.NewRequest(http.MethodGet, testResource, nil)
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

// authServer is an authorization server: RFC 8414 metadata at the root naming its own URL as
// issuer, and a JWKS.
type authServer struct {
	*httptest.Server
	jwks []byte
}

func newAuthServer(t *testing.T, keys ...*jwttest.Key) *authServer {
	t.Helper()
	as := &authServer{jwks: jwksJSON(t, keys...)}
	as.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": as.URL, "jwks_uri": as.URL + "/jwks"})
		case "/jwks":
			_, _ = w.Write(as.jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(as.Close)
	return as
}

// TestPoolSharing: handlers with the same JWKS URL share one set and one fetch; Cleanup of one
// leaves the set to the others, Cleanup twice releases once, and when the last lets go, the
// set stops and its goroutines and connections are gone.
func TestPoolSharing(t *testing.T) {
	key := jwttest.New(t, "k1", "ES256")
	js := newJWKSServer(t, key) // outside the bubble: its goroutines are the network's
	synctest.Test(t, func(t *testing.T) { poolSharing(t, key, js) })
}

// poolSharing runs in a synctest bubble: the bubble ends only once every goroutine started
// in it (refresh loops, fetches, the key sets' connections) has ended, and one left blocked
// fails the test as a deadlock. That is the goroutine check, without counting or waiting.
func poolSharing(t *testing.T, key *jwttest.Key, js *jwksServer) {

	mk := func() *Handler {
		h := newIssuerHandler("https://as.example.com")
		h.JWKSURLs = []string{js.URL}
		provisionHandler(t, h)
		return h
	}
	h1, h2, h3 := mk(), mk(), mk()
	waitKeysLoaded(t, h1)
	rs := h1.keySets.URLs[0]
	if h2.keySets.URLs[0] != rs || h3.keySets.URLs[0] != rs {
		t.Fatal("handlers with the same jwks_url got different key sets")
	}
	poolKey := "jwks|" + js.URL + "|" + defaultRefresh.String()
	if refs, _ := keyPool.References(poolKey); refs != 3 {
		t.Fatalf("pool references %d, want 3", refs)
	}
	tok := key.Token(t, testClaims("https://as.example.com", testResource, "mcp:read"), nil)
	for _, h := range []*Handler{h1, h2, h3} {
		wantStatus(t, serveToken(h, tok), http.StatusOK, "")
	}
	if n := js.count.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for three handlers, want 1", n)
	}

	for range 2 {
		if err := h1.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if refs, _ := keyPool.References(poolKey); refs != 2 {
		t.Fatalf("after Cleanup twice of one handler: references %d, want 2", refs)
	}
	select {
	case <-rs.Done():
		t.Fatal("set stopped while two handlers still use it")
	default:
	}
	wantStatus(t, serveToken(h2, tok), http.StatusOK, "")

	_ = h2.Cleanup()
	_ = h3.Cleanup()
	if _, ok := keyPool.References(poolKey); ok {
		t.Fatal("pool entry still there after the last Cleanup")
	}
	select {
	case <-rs.Done():
	default:
		t.Fatal("refresh loop still running after Destruct returned")
	}
}

// TestFailedProvisionReleases: a Provision that fails after taking key sets from the pool
// leaves no entry (and no goroutine, no connection) behind, and the Cleanup Caddy calls next is
// harmless. Each case runs in a synctest bubble (see TestPoolSharing).
func TestFailedProvisionReleases(t *testing.T) {
	good := newAuthServer(t, jwttest.New(t, "k1", "ES256"))
	js := newJWKSServer(t, jwttest.New(t, "k2", "ES256"))
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
			synctest.Test(t, func(t *testing.T) { failedProvision(t, tt.h, tt.poolKeys) })
		})
	}
}

func failedProvision(t *testing.T, h *Handler, poolKeys []string) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := h.Provision(ctx)
	if err == nil {
		t.Fatal("Provision succeeded, want an error")
	}
	t.Logf("provision error: %v", err)
	for range 2 { // Caddy calls Cleanup after a failed Provision; a second is harmless
		if err := h.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range poolKeys {
		if refs, ok := keyPool.References(k); ok {
			t.Fatalf("pool entry %s left with %d references", k, refs)
		}
	}
}

// TestCrossIssuerConfusion: two issuers, each discovered with its own key. A token signed by
// A's key that claims issuer B is refused, also when both keys share a kid.
func TestCrossIssuerConfusion(t *testing.T) {
	for _, sameKID := range []bool{false, true} {
		t.Run(fmt.Sprintf("same kid %v", sameKID), func(t *testing.T) {
			keyA, keyB := jwttest.New(t, "a", "RS256"), jwttest.New(t, "b", "ES256")
			if sameKID {
				keyB = jwttest.New(t, "a", "RS256")
			}
			asA, asB := newAuthServer(t, keyA), newAuthServer(t, keyB)
			h := newIssuerHandler(asA.URL, asB.URL)
			provisionHandler(t, h)
			waitKeysLoaded(t, h)

			sign := func(k *jwttest.Key, iss string) string {
				return k.Token(t, testClaims(iss, testResource, "mcp:read"), nil)
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
// The JWKS is fetched once per set lifetime; in a synctest bubble (see TestPoolSharing), no
// goroutine and no connection outlives the handlers.
func TestReloads50(t *testing.T) {
	key := jwttest.New(t, "k1", "ES256")
	js := newJWKSServer(t, key)
	synctest.Test(t, func(t *testing.T) { reloads50(t, key, js) })
}

func reloads50(t *testing.T, key *jwttest.Key, js *jwksServer) {
	tok := key.Token(t, testClaims("https://as.example.com", testResource, "mcp:read"), nil)
	base := runtime.NumGoroutine()

	provision := func() (*Handler, context.CancelFunc) {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		h := newIssuerHandler("https://as.example.com")
		h.JWKSURLs = []string{js.URL}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		waitKeysLoaded(t, h)
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
			if h.keySets.URLs[0] != prev.keySets.URLs[0] {
				t.Fatal("reload made a new key set")
			}
			release(prev, prevCancel)
		}
		prev, prevCancel = h, cancel
		maxG = max(maxG, runtime.NumGoroutine())
	}
	release(prev, prevCancel)
	reloadFetches := js.count.Load()
	t.Logf("50 reloads: %d JWKS fetch(es); goroutines %d before, at most %d during", reloadFetches, base, maxG)
	if reloadFetches != 1 {
		t.Fatalf("%d JWKS fetches over 50 reloads, want 1 (the set lives across reloads)", reloadFetches)
	}

	for range 50 {
		h, cancel := provision()
		release(h, cancel)
	}
	restartFetches := js.count.Load() - reloadFetches
	t.Logf("50 stop/start cycles: %d JWKS fetches", restartFetches)
	if restartFetches != 50 {
		t.Fatalf("%d JWKS fetches over 50 stop/start cycles, want 50 (one per new set)", restartFetches)
	}
}
