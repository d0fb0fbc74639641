package mcpauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// newIntrospectionEndpoint answers every token in active as active for cacheRes, any
// other as inactive, and counts the calls.
func newIntrospectionEndpoint(tb testing.TB, active ...string) (*httptest.Server, *atomic.Int64) {
	tb.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_ = r.ParseForm()
		ans := map[string]any{"active": false}
		for _, a := range active {
			if r.PostForm.Get("token") == a {
				ans = map[string]any{"active": true, "iss": cacheIss, "aud": cacheRes, "sub": "opaque-user",
					"scope": "mcp:read", "exp": time.Now().Add(time.Hour).Unix()}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	}))
	tb.Cleanup(srv.Close)
	return srv, &calls
}

func introspectingHandler(tb testing.TB, endpoint string) *Handler {
	tb.Helper()
	js := newJWKSServer(tb, jwttest.New(tb, "ec", "ES256"))
	h := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		Introspection:        &Introspection{Endpoint: endpoint, ClientID: "rs", ClientSecret: "secret"},
	}
	provisionHandler(tb, h)
	waitKeysLoaded(tb, h)
	h.logger = zap.NewNop()
	return h
}

// TestIntrospectedTokenCachedByHash: an opaque token is cached under "sha256:" and its
// digest, never under the token itself, and a cached one costs no call and no allocation.
func TestIntrospectedTokenCachedByHash(t *testing.T) {
	const token = benchOpaqueToken // longer than 32 bytes, as real opaque tokens are
	srv, calls := newIntrospectionEndpoint(t, token)
	h := introspectingHandler(t, srv.URL)
	w := &nopWriter{h: make(http.Header)}
	r := withReplacer(newBenchRequest(token))
	for range 3 {
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, nextOK); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("status %d, %v", rec.Code, err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls for three requests, want 1", calls.Load())
	}
	if _, ok := h.cache.Get(token); ok {
		t.Error("the opaque token itself is a cache key")
	}
	var kb [verify.OpaqueCacheKeyLen]byte
	sum := verify.HashToken(token)
	if _, ok := h.cache.GetBytes(sum.OpaqueCacheKey(&kb)); !ok || h.cache.Len() != 1 {
		t.Errorf("no entry under the token's hash (entries: %d)", h.cache.Len())
	}
	if n := testing.AllocsPerRun(200, func() { _ = h.ServeHTTP(w, r, nextOK) }); n != 0 {
		t.Errorf("a cached introspected token costs %v allocations per request", n)
	}

	// An inactive token: 401, remembered (one call for several requests), never cached.
	for range 3 {
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, withReplacer(newBenchRequest("opaque-unknown")), nextOK)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Header().Get("WWW-Authenticate"), "not active") {
			t.Fatalf("inactive: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	if calls.Load() != 2 || h.cache.Len() != 1 {
		t.Errorf("inactive token: %d calls (want 2 in all), %d cache entries (want 1)", calls.Load(), h.cache.Len())
	}
}

func writeKey(t *testing.T, der []byte, typ string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIntrospectionConfig(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs1 := writeKey(t, x509.MarshalPKCS1PrivateKey(rk), "RSA PRIVATE KEY")
	good := writeKey(t, ecDER, "PRIVATE KEY")

	t.Setenv("MCP_TEST_RS_SECRET", "s3cret-value")
	t.Setenv("MCP_TEST_EMPTY", "")
	cases := []struct {
		name string
		in   Introspection
		want string // "" = accepted
	}{
		{"basic", Introspection{ClientID: "rs", ClientSecret: "{env.MCP_TEST_RS_SECRET}"}, ""},
		{"private_key_jwt", Introspection{ClientID: "rs", AuthMethod: "private_key_jwt", PrivateKey: good}, ""},
		{"no client_id", Introspection{ClientSecret: "x"}, "introspection client_id: required"},
		{"no secret", Introspection{ClientID: "rs"}, "introspection client_secret: required"},
		{"unknown method", Introspection{ClientID: "rs", ClientSecret: "x", AuthMethod: "tls_client_auth"}, `introspection auth_method "tls_client_auth"`},
		{"private_key_jwt without key", Introspection{ClientID: "rs", AuthMethod: "private_key_jwt"}, "introspection private_key: required"},
		{"PKCS#1 key", Introspection{ClientID: "rs", AuthMethod: "private_key_jwt", PrivateKey: pkcs1}, "PKCS#8"},
		{"bad endpoint", Introspection{ClientID: "rs", ClientSecret: "x", Endpoint: "ftp://as/introspect"}, "introspection endpoint"},
		{"negative ttl", Introspection{ClientID: "rs", ClientSecret: "x", CacheTTL: -1}, "introspection cache_ttl"},
		{"negative max_rate", Introspection{ClientID: "rs", ClientSecret: "x", MaxRate: -5}, "introspection max_rate: -5 is negative"},
		{"max_rate", Introspection{ClientID: "rs", ClientSecret: "x", MaxRate: 200}, ""},
		{"secret from an empty variable", Introspection{ClientID: "rs", ClientSecret: "{env.MCP_TEST_EMPTY}"}, "introspection client_secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			err := in.prepare(caddy.NewReplacer())
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if in.ClientSecret == "{env.MCP_TEST_RS_SECRET}" {
					t.Error("client_secret placeholder not expanded")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("error holds the secret: %v", err)
			}
		})
	}

	for _, c := range []struct{ cf, want string }{
		{"introspection {\n client_id rs\n auth_method magic\n}", `auth_method "magic"`},
		{"introspection {\n client_id rs\n client_id rs2\n}", "given more than once"},
		{"introspection {\n max_in_flight 0\n}", "max_in_flight"},
		{"introspection {\n max_rate 0\n}", `introspection max_rate: "0" is not a whole number of calls per second >= 1`},
		{"introspection {\n max_rate 10/s\n}", `introspection max_rate: "10/s"`},
		{"introspection {\n max_rate 1 2\n}", "max_rate: takes one value"},
		{"introspection {\n cache_ttl soon\n}", "cache_ttl"},
		{"introspection {\n endpoint not-a-url\n}", "introspection endpoint"},
		{"introspection {\n jwt_too yes\n}", "jwt_too: takes no value"},
		{"introspection {\n colour blue\n}", "unrecognized introspection subdirective"},
		{"introspection x {\n}", "takes a block"},
		{"introspection {\n}\nintrospection {\n}", "given more than once"},
	} {
		cf := "mcp_auth {\n resource " + cacheRes + "\n authorization_servers " + cacheIss + "\n scopes a\n " + c.cf + "\n}"
		if _, err := parseTestCaddyfile(cf); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.cf, err, c.want)
		}
	}
}
