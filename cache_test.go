package mcpauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

const (
	cacheIss = "https://as.example.com"
	cacheRes = "https://mcp.example.com/mcp"
)

// fakeClock is a settable clock shared by the verifier and the cache.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }

// serve runs one request with the token through h and returns the status and whether next ran.
func serve(t testing.TB, h *Handler, token string) (int, bool) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	ran := false
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		ran = true
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	if err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w.Code, ran
}

func cachedHandler(t testing.TB, js *jwksServer, clock *fakeClock, size int) *Handler {
	t.Helper()
	h := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		TokenCacheSize:       &size,
	}
	if clock != nil {
		h.now = clock.now
	}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	return h
}

func TestCacheServesVerifiedTokenWithoutVerifyingAgain(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	h := cachedHandler(t, js, nil, 100)
	tok := k.Token(t, testClaims(cacheIss, cacheRes, "mcp:read"), nil)

	if code, ran := serve(t, h, tok); code != 200 || !ran {
		t.Fatalf("first request: %d, next ran %v", code, ran)
	}
	if n := h.cache.Len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	// With the verifier's keys gone, only the cache can let the token through.
	h.verifier.(*verify.JWT).Keys = keyLookup{&jwks.Sources{}}
	if code, ran := serve(t, h, tok); code != 200 || !ran {
		t.Fatalf("cached request: %d, next ran %v", code, ran)
	}
}

func TestCacheRefusesTokenOnceExpired(t *testing.T) {
	clock := newFakeClock()
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	h := cachedHandler(t, js, clock, 100)
	claims := testClaims(cacheIss, cacheRes, "mcp:read")
	claims["exp"] = clock.now().Add(2 * time.Minute).Unix()
	tok := k.Token(t, claims, nil)

	if code, _ := serve(t, h, tok); code != 200 {
		t.Fatalf("fresh token: %d", code)
	}
	clock.advance(2*time.Minute + 20*time.Second) // past exp, within the 30s leeway
	if code, _ := serve(t, h, tok); code != 200 {
		t.Fatalf("within leeway: %d", code)
	}
	clock.advance(15 * time.Second) // past exp + leeway
	if code, ran := serve(t, h, tok); code != 401 || ran {
		t.Fatalf("expired cached token: %d, next ran %v", code, ran)
	}
	if n := h.cache.Len(); n != 0 {
		t.Fatalf("expired entry still cached (%d entries)", n)
	}
}

func TestCacheDropsTokenWhoseKeyLeftTheSet(t *testing.T) {
	old, next := jwttest.New(t, "old", "RS256"), jwttest.New(t, "new", "RS256")
	js := newJWKSServer(t, old, next)
	h := cachedHandler(t, js, nil, 100)
	oldTok := k2tok(t, old)
	newTok := k2tok(t, next)
	for _, tok := range []string{oldTok, newTok} {
		if code, _ := serve(t, h, tok); code != 200 {
			t.Fatalf("before rotation: %d", code)
		}
	}
	js.setKeys(t, next)
	// Refresh fetches anew: joining the initial load, possibly still in flight even though
	// its keys are in place, would not see the rotation.
	if err := h.keySets.URLs[0].Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, ran := serve(t, h, oldTok); code != 401 || ran {
		t.Fatalf("token of removed key: %d, next ran %v", code, ran)
	}
	// The key that stayed keeps its cached tokens: no re-verification needed.
	h.verifier.(*verify.JWT).Keys = keyLookup{&jwks.Sources{}}
	if code, _ := serve(t, h, newTok); code != 200 {
		t.Fatalf("token of kept key after refresh: %d", code)
	}
}

func k2tok(t testing.TB, k *jwttest.Key) string {
	t.Helper()
	return k.Token(t, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
}

func TestCacheNeverStoresFailedTokens(t *testing.T) {
	k, foreign := jwttest.New(t, "k1", "EdDSA"), jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	h := cachedHandler(t, js, nil, 100)
	bad := []string{
		foreign.Token(t, testClaims(cacheIss, cacheRes, "mcp:read"), nil),          // bad signature
		k.Token(t, testClaims("https://evil.example", cacheRes, "mcp:read"), nil),  // wrong issuer
		k.Token(t, testClaims(cacheIss, "https://other.example", "mcp:read"), nil), // wrong audience
	}
	expired := testClaims(cacheIss, cacheRes, "mcp:read")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	bad = append(bad, k.Token(t, expired, nil))
	for i, tok := range bad {
		for range 2 {
			if code, ran := serve(t, h, tok); code != 401 || ran {
				t.Fatalf("bad token %d: %d, next ran %v", i, code, ran)
			}
		}
	}
	if n := h.cache.Len(); n != 0 {
		t.Fatalf("cache holds %d entries after only failures", n)
	}
}

func TestCacheKeepsScopeDecision(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	h := cachedHandler(t, js, nil, 100)
	tok := k.Token(t, testClaims(cacheIss, cacheRes, "other"), nil)
	for range 2 {
		if code, ran := serve(t, h, tok); code != 403 || ran {
			t.Fatalf("token without scope: %d, next ran %v", code, ran)
		}
	}
}

func TestCacheSizeNeverExceedsBound(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	for _, size := range []int{1, 10, 64} {
		h := cachedHandler(t, js, nil, size)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 150 {
					c := testClaims(cacheIss, cacheRes, "mcp:read")
					c["jti"] = fmt.Sprintf("%d-%d", g, i)
					if code, _ := serve(t, h, k.Token(t, c, nil)); code != 200 {
						t.Errorf("distinct token: %d", code)
						return
					}
				}
			}()
		}
		wg.Wait()
		// 600 distinct tokens fill every shard: the bound is reached exactly, not exceeded,
		// and no shard is left unused.
		if n := h.cache.Len(); n != size {
			t.Fatalf("size %d: cache holds %d entries after 600 distinct tokens", size, n)
		}
	}
}

func TestCacheOffWithZero(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	h := cachedHandler(t, js, nil, 0)
	if h.cache != nil {
		t.Fatal("token_cache_size 0 must turn the cache off")
	}
	if code, _ := serve(t, h, k2tok(t, k)); code != 200 {
		t.Fatalf("without cache: %d", code)
	}
}

func TestIdentityPlaceholders(t *testing.T) {
	claims := jwt.MapClaims{"sub": "u1", "azp": "c1", "iss": cacheIss, "scp": []any{"a", "b"},
		"n": float64(42), "ok": true, "groups": []any{"x", "y"}, "exp": float64(time.Now().Add(time.Hour).Unix())}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(policy.Config{AllOf: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	id := newCaller(verify.Identity{Issuer: cacheIss, Subject: "u1", ClientID: "c1",
		Scopes: verify.GrantedScopes(claims, "")}.WithClaims(payload), p, 0)
	repl := caddy.NewReplacer()
	repl.Map(id.provider)
	for ph, want := range map[string]string{
		"{http.auth.user.id}":            "u1",
		"{http.auth.user.client_id}":     "c1",
		"{http.auth.user.scope}":         "a b",
		"{http.auth.user.iss}":           cacheIss,
		"{http.auth.mcp.claim.n}":        "42",
		"{http.auth.mcp.claim.ok}":       "true",
		"{http.auth.mcp.claim.groups}":   "x y",
		"{http.auth.mcp.claim.missing}":  "",
		"{http.auth.mcp.claim.sub}":      "u1",
		"{http.request.nothing_here}|<>": "|<>",
	} {
		if got := repl.ReplaceAll(ph, ""); got != want {
			t.Errorf("%s = %q, want %q", ph, got, want)
		}
	}
	if v := p.Decide(&id.subject, nil); !v.Allowed() {
		t.Error("scope a granted through scp, policy should be met")
	}
}
