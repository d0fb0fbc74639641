package mcpauth

import (
	"context"
	"encoding/base64"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwksJSON(t testing.TB, keys ...*jwttest.Key) []byte {
	t.Helper()
	return jwttest.JWKS(keys...)
}

// jwksServer serves a JWK set that a test may swap, and counts the requests it gets.
type jwksServer struct {
	*httptest.Server
	mu    sync.Mutex
	body  []byte
	down  atomic.Bool
	count atomic.Int64
}

func newJWKSServer(t testing.TB, keys ...*jwttest.Key) *jwksServer {
	t.Helper()
	js := &jwksServer{body: jwksJSON(t, keys...)}
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.count.Add(1)
		if js.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		js.mu.Lock()
		body := js.body
		js.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(js.Close)
	return js
}

func (js *jwksServer) setKeys(t testing.TB, keys ...*jwttest.Key) {
	t.Helper()
	b := jwksJSON(t, keys...)
	js.mu.Lock()
	js.body = b
	js.mu.Unlock()
}

// testClaims are valid claims for resource and issuer, lasting an hour, with scope.
func testClaims(iss, aud, scope string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":       iss,
		"aud":       aud,
		"sub":       "user-1",
		"client_id": "client-1",
		"scope":     scope,
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(time.Hour).Unix(),
	}
}

// provisionHandler provisions h with a fresh Caddy context, and cleans it up after the test.
func provisionHandler(t testing.TB, h *Handler) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		_ = h.Cleanup()
		cancel()
	})
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
}

// waitKeysLoaded waits until every remote set of h has keys, or fails the test after 10s.
func waitKeysLoaded(t testing.TB, h *Handler) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	remotes := slices.Collect(maps.Values(h.keySets.Issuers))
	for _, rs := range append(remotes, h.keySets.URLs...) {
		select {
		case <-rs.Loaded():
		case <-timeout:
			t.Fatal("key sets not loaded within 10s")
		}
	}
}

func durationPtr(d time.Duration) *caddy.Duration {
	c := caddy.Duration(d)
	return &c
}

// scopesCaller is a caller of h that holds scopes and nothing else (no client, no claims).
func scopesCaller(h *Handler, scopes ...string) *caller {
	return newCaller(&verify.Identity{Scopes: scopes}, h.policy, 0)
}
