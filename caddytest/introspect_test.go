package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// introspectionAS is an authorization server with RFC 8414 metadata (issuer, jwks_uri,
// introspection_endpoint) and an RFC 7662 endpoint that checks the resource server's
// client credentials and answers per token.
type introspectionAS struct {
	*httptest.Server
	issuer   string
	jwks     *jwksServer
	calls    atomic.Int64
	inFlight atomic.Int64
	peak     atomic.Int64
	down     atomic.Bool
	delay    atomic.Int64 // nanoseconds each call takes
	mu       sync.Mutex
	answers  map[string]map[string]any
	raw      map[string]string // answers written as is (malformed ones)
	// clientKey is the public key registered for private_key_jwt.
	clientKey any
}

func (as *introspectionAS) validAssertion(assertion string) bool {
	tok, err := jwt.Parse(assertion, func(*jwt.Token) (any, error) { return as.clientKey, nil },
		jwt.WithAudience(as.issuer), jwt.WithIssuer(rsClientID), jwt.WithSubject(rsClientID),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		return false
	}
	exp, _ := tok.Claims.GetExpirationTime()
	jti, _ := tok.Claims.(jwt.MapClaims)["jti"].(string)
	return jti != "" && time.Until(exp.Time) <= 5*time.Minute
}

const (
	rsClientID     = "mcp-rs"
	rsClientSecret = "rs-secret:with&odd chars"
)

func newIntrospectionAS(t *testing.T, key *jwttest.Key) *introspectionAS {
	t.Helper()
	as := &introspectionAS{jwks: newJWKSServer(t, key), answers: map[string]map[string]any{}, raw: map[string]string{}}
	as.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{
				"issuer":                 as.issuer,
				"jwks_uri":               as.jwks.URL,
				"introspection_endpoint": as.URL + "/introspect",
			})
		case "/introspect":
			as.calls.Add(1)
			n := as.inFlight.Add(1)
			defer as.inFlight.Add(-1)
			for p := as.peak.Load(); n > p && !as.peak.CompareAndSwap(p, n); p = as.peak.Load() {
			}
			time.Sleep(time.Duration(as.delay.Load()))
			if as.down.Load() {
				http.Error(w, "down", http.StatusBadGateway)
				return
			}
			id, secret, _ := r.BasicAuth()
			if err := r.ParseForm(); err != nil {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
			if r.PostForm.Has("client_assertion") {
				// private_key_jwt (RFC 7523): the assertion verifies with the client's
				// registered public key, names the client and this server, and is short-lived.
				if as.clientKey == nil || !as.validAssertion(r.PostForm.Get("client_assertion")) {
					http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
					return
				}
				id, secret = rsClientID, rsClientSecret
			} else if r.PostForm.Has("client_secret") {
				id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
			} else {
				// RFC 6749 §2.3.1: form-urlencoded before base64.
				id, _ = url.QueryUnescape(id)
				secret, _ = url.QueryUnescape(secret)
			}
			if id != rsClientID || secret != rsClientSecret {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			as.mu.Lock()
			ans, ok := as.answers[r.PostForm.Get("token")]
			raw, isRaw := as.raw[r.PostForm.Get("token")]
			as.mu.Unlock()
			if isRaw {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(raw))
				return
			}
			if !ok {
				ans = map[string]any{"active": false}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(ans)
		default:
			http.NotFound(w, r)
		}
	}))
	as.issuer = as.URL
	t.Cleanup(as.Close)
	return as
}

// issue makes an opaque token the server calls active, for resource aud.
func (as *introspectionAS) issue(token, aud, scope string, extra map[string]any) {
	ans := map[string]any{
		"active": true, "iss": as.issuer, "aud": aud, "sub": "opaque-user", "client_id": "opaque-client",
		"scope": scope, "token_type": "Bearer", "exp": time.Now().Add(time.Hour).Unix(), "tenant": "acme",
	}
	for k, v := range extra {
		ans[k] = v
	}
	as.mu.Lock()
	as.answers[token] = ans
	as.mu.Unlock()
}

func (as *introspectionAS) revoke(token string) {
	as.mu.Lock()
	delete(as.answers, token)
	as.mu.Unlock()
}

// introspectionConfig: in the Caddyfile the endpoint is discovered from the issuer's
// metadata; in JSON it is named, with client_secret_post. The secret comes from the
// environment. No jwks_url: JWTs are verified with the issuer's discovered keys.
func introspectionConfig(f *fixture, format, issuer string) string {
	const answer = "{http.auth.user.id} {http.auth.user.client_id} {http.auth.user.scope} {http.auth.mcp.claim.tenant}"
	if format == "caddyfile" {
		return f.siteCaddyfile(`resource https://mcp.example.com/mcp
authorization_servers `+issuer+`
scopes mcp:read
introspection {
	client_id mcp-rs
	client_secret {env.MCP_ITEST_RS_SECRET}
	cache_ttl 1s
	timeout 2s
}`, `respond "`+answer+`"`)
	}
	return f.json(map[string]any{
		"authorization_servers": []string{issuer},
		"scopes":                []string{"mcp:read"},
		"introspection": map[string]any{
			"endpoint": issuer + "/introspect", "client_id": "mcp-rs",
			"client_secret": "{env.MCP_ITEST_RS_SECRET}", "auth_method": "client_secret_post",
			"cache_ttl": 1000000000, "timeout": 2000000000,
		},
	}, map[string]any{"handler": "static_response", "body": answer})
}

// TestIntrospectionThroughCaddy: opaque tokens are introspected (Caddyfile with a
// discovered endpoint, JSON with a configured one); an active token reaches the upstream
// with its identity, and is asked about once while cached; an inactive, revoked or refresh
// token gets 401; an authorization server that fails gets 503 with Retry-After; JWTs are
// still verified locally.
func TestIntrospectionThroughCaddy(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	for _, format := range []string{"caddyfile", "json"} {
		t.Run(format, func(t *testing.T) {
			key := jwttest.New(t, "ec-i", "ES256")
			as := newIntrospectionAS(t, key)
			f := &fixture{} // no jwks_url: the keys are the issuer's, discovered
			f.start(t, introspectionConfig(f, format, as.issuer), format)

			as.issue("opaque-good", resource, "mcp:read mcp:write", nil)
			for i := range 3 {
				code, _, body := f.do(t, bearerReq("opaque-good"))
				if want := "opaque-user opaque-client mcp:read mcp:write acme"; code != http.StatusOK || string(body) != want {
					t.Fatalf("active opaque token, request %d: status %d body %q, want 200 %q", i, code, body, want)
				}
			}
			goodAnswered := time.Now() // every answer about opaque-good arrived before this
			if n := as.calls.Load(); n != 1 {
				t.Errorf("%d introspection calls for three requests with one token, want 1 (cached)", n)
			}

			unauthorized := func(what, token, desc string) {
				t.Helper()
				code, hdr, body := f.do(t, bearerReq(token))
				if code != http.StatusUnauthorized {
					t.Errorf("%s: status %d, want 401", what, code)
					return
				}
				checkChallenge(t, hdr, challenge("invalid_token", desc, "mcp:read"))
				checkErrorBody(t, string(body), "invalid_token", desc)
			}
			unauthorized("inactive token", "opaque-unknown", "The access token is not active.")
			as.issue("opaque-refresh", resource, "mcp:read", map[string]any{"token_type": "refresh_token"})
			unauthorized("refresh token", "opaque-refresh", "The access token type is not at+jwt.")
			as.issue("opaque-other", "https://other.example.com/mcp", "mcp:read", nil)
			unauthorized("token for another resource", "opaque-other", descAudience)
			as.issue("opaque-bound", resource, "mcp:read", map[string]any{"cnf": map[string]any{"jkt": "abc"}})
			unauthorized("bound token as bearer", "opaque-bound", "The access token is bound to a key and cannot be used as a bearer token.")
			as.issue("opaque-weak", resource, "mcp:write", nil)
			if code, _, _ := f.do(t, bearerReq("opaque-weak")); code != http.StatusForbidden {
				t.Errorf("opaque token without the scope: status %d, want 403", code)
			}

			// Revoked at the authorization server: refused once cache_ttl (1s) has passed, and
			// served from the cache until then.
			as.revoke("opaque-good")
			refusedWithinTTL(t, f, "opaque-good", goodAnswered, time.Second)
			unauthorized("revoked token after cache_ttl", "opaque-good", "The access token is not active.")

			// JWTs are still verified locally, without a call.
			before := as.calls.Load()
			jwtTok := key.Token(t, f.claims("mcp:read", map[string]any{"iss": as.issuer}), nil)
			as.jwks.waitKeysServed(t) // the discovered keys load in the background
			if code, _, _ := f.do(t, bearerReq(jwtTok)); code != http.StatusOK {
				t.Fatalf("JWT: status %d, want 200", code)
			}
			if n := as.calls.Load(); n != before {
				t.Errorf("a JWT was introspected without jwt_too")
			}

			// The authorization server fails: 503 with Retry-After, no challenge.
			as.down.Store(true)
			as.issue("opaque-new", resource, "mcp:read", nil)
			code, hdr, body := f.do(t, bearerReq("opaque-new"))
			if code != http.StatusServiceUnavailable {
				t.Fatalf("authorization server failing: status %d, want 503", code)
			}
			if ra, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || ra <= 0 {
				t.Errorf("Retry-After = %q, want seconds", hdr.Get("Retry-After"))
			}
			checkErrorBody(t, string(body), "temporarily_unavailable", "The authorization server cannot check the access token now.")
			as.down.Store(false)
			if code, _, _ := f.do(t, bearerReq("opaque-new")); code != http.StatusOK {
				t.Errorf("after the authorization server came back: status %d, want 200", code)
			}
		})
	}
}

// TestIntrospectionWrongCredentials: the authorization server refuses our client
// credentials: 503 (the caller's token is not at fault), never 401.
func TestIntrospectionWrongCredentials(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", "not-the-secret")
	as := newIntrospectionAS(t, jwttest.New(t, "ec-w", "ES256"))
	f := &fixture{}
	f.start(t, introspectionConfig(f, "caddyfile", as.issuer), "caddyfile")
	as.issue("opaque-good", resource, "mcp:read", nil)
	code, hdr, _ := f.do(t, bearerReq("opaque-good"))
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("credentials refused by the authorization server: status %d Retry-After %q, want 503 with it", code, hdr.Get("Retry-After"))
	}
}

// TestIntrospectionPrivateKeyJWTAndJWTToo: client authentication with a private_key_jwt
// assertion signed by a PKCS#8 key file (JSON config), and jwt_too: a JWT that verifies
// locally is introspected too, and refused once the authorization server revokes it.
func TestIntrospectionPrivateKeyJWTAndJWTToo(t *testing.T) {
	key := jwttest.New(t, "ec-j", "ES256")
	as := newIntrospectionAS(t, key)
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	as.clientKey = clientKey.Public()
	der, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "rs-key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	f.start(t, f.json(map[string]any{
		"authorization_servers": []string{as.issuer}, "jwks_urls": []string{as.jwks.URL}, "scopes": []string{"mcp:read"},
		"introspection": map[string]any{"client_id": "mcp-rs", "auth_method": "private_key_jwt",
			"private_key": keyPath, "cache_ttl": "1s", "jwt_too": true},
	}, map[string]any{"handler": "static_response", "body": "{http.auth.user.id}"}), "json")

	as.issue("opaque-pk", resource, "mcp:read", nil)
	if code, _, body := f.do(t, bearerReq("opaque-pk")); code != http.StatusOK || string(body) != "opaque-user" {
		t.Fatalf("opaque token with private_key_jwt: status %d body %q, want 200", code, body)
	}

	jwtTok := key.Token(t, f.claims("mcp:read", map[string]any{"iss": as.issuer}), nil)
	as.issue(jwtTok, resource, "mcp:read", map[string]any{"sub": "user-1"})
	as.jwks.waitKeysServed(t) // the discovered keys load in the background
	if code, _, _ := f.do(t, bearerReq(jwtTok)); code != http.StatusOK {
		t.Fatalf("active JWT with jwt_too: status %d, want 200", code)
	}
	jwtAnswered := time.Now() // the answer about jwtTok arrived before this
	before := as.calls.Load()
	as.revoke(jwtTok)
	hdr := refusedWithinTTL(t, f, jwtTok, jwtAnswered, time.Second)
	checkChallenge(t, hdr, challenge("invalid_token", "The access token is not active.", "mcp:read"))
	if as.calls.Load() == before {
		t.Error("the JWT was not introspected again after cache_ttl")
	}
}

// refusedWithinTTL asks with token, revoked at the authorization server, until it is refused
// with 401 (bounded), and returns that answer's header. Until then it may be served (200)
// from the cache, but only to a request sent before answered+ttl: answered is when the last
// answer that could have cached it had reached the test, so the cached answer was trusted
// from before then and lapses by answered+ttl. A 200 to a request sent later (100 ms of
// grace, as the sleep this replaces had) means the revoked token outlived cache_ttl. A slow
// machine only sends the requests later, which this never holds against the server.
func refusedWithinTTL(t *testing.T, f *fixture, token string, answered time.Time, ttl time.Duration) http.Header {
	t.Helper()
	lapsed := answered.Add(ttl + 100*time.Millisecond)
	var hdr http.Header
	eventually(t, "the revoked token refused after cache_ttl", func() bool {
		sent := time.Now()
		code, h, body := f.do(t, bearerReq(token))
		switch {
		case code == http.StatusUnauthorized:
			hdr = h
			return true
		case code != http.StatusOK:
			t.Fatalf("revoked token: %d %q, want 200 (cached, within cache_ttl) then 401", code, body)
		case sent.After(lapsed):
			t.Fatalf("revoked token served %s after its answer arrived, cache_ttl %s: want 401", sent.Sub(answered).Round(time.Millisecond), ttl)
		}
		return false
	})
	return hdr
}
