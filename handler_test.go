package mcpauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	testResource = "https://mcp.example.com/mcp"
	testIssuer   = "https://auth.example.com"
	testPRMPath  = "/.well-known/oauth-protected-resource/mcp"
)

// served is what a request through the handler produced.
type served struct {
	status   int
	header   http.Header
	body     string
	nextRan  bool
	nextAuth []string // Authorization values the next handler saw
	repl     *caddy.Replacer
}

// serveRequest runs r through h with a next handler that records whether it ran, the way
// Caddy does: with a replacer in the request context.
func serveRequest(t testing.TB, h *Handler, r *http.Request) served {
	t.Helper()
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	res := served{repl: repl}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.nextRan = true
		res.nextAuth = r.Header.Values("Authorization")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("from next"))
		return nil
	})
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	res.status = rec.Code
	res.header = rec.Header()
	res.body = rec.Body.String()
	return res
}

// testKeyring holds one key of each family the default allowlist accepts.
type testKeyring struct {
	rsa, ec, ed *jwttest.Key
}

func newTestKeyring(t testing.TB) testKeyring {
	t.Helper()
	return testKeyring{rsa: jwttest.New(t, "rsa-1", "RS256"), ec: jwttest.New(t, "ec-1", "ES256"), ed: jwttest.New(t, "ed-1", "EdDSA")}
}

// newTestHandler provisions a handler for testResource whose keys come from jwks, with the
// base policy `scopes mcp:read`, changed by mod, and waits for the keys.
func newTestHandler(t testing.TB, jwks *jwksServer, mod func(*Handler)) *Handler {
	t.Helper()
	h := &Handler{
		Resource:             testResource,
		AuthorizationServers: []string{testIssuer},
		JWKSURLs:             []string{jwks.URL},
		Scopes:               []string{"mcp:read"},
	}
	if mod != nil {
		mod(h)
	}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	return h
}

func bearerReq(method, target string, auth ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

// claimsWith returns valid claims for testResource, changed by set (a nil value deletes).
func claimsWith(set map[string]any) jwt.MapClaims {
	c := testClaims(testIssuer, testResource, "mcp:read")
	for k, v := range set {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// hs256WithPublicPEM forges the classic key-confusion token: HS256 keyed with the PEM of the
// RSA public key, naming the RSA key's kid.
func hs256WithPublicPEM(t testing.TB, k *jwttest.Key, claims jwt.MapClaims) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = k.KID
	tok.Header["typ"] = "at+jwt"
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unsignedToken(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = kid
	tok.Header["typ"] = "at+jwt"
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authCase is one request and the outcome RFC 6750 and RFC 9068 call for.
type authCase struct {
	name    string
	h       *Handler
	req     *http.Request
	status  int
	code    string // expected error code; "" with a 401 means a challenge without error
	desc    string
	scope   string // expected scope parameter
	nextRan bool
}

func runAuthCases(t *testing.T, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := serveRequest(t, tc.h, tc.req)
			if res.status != tc.status {
				t.Errorf("status %d, want %d (body %q)", res.status, tc.status, res.body)
			}
			if res.nextRan != tc.nextRan {
				t.Errorf("next ran = %v, want %v", res.nextRan, tc.nextRan)
			}
			if tc.status == http.StatusOK {
				if len(res.header.Values("WWW-Authenticate")) != 0 {
					t.Errorf("challenge on success")
				}
				if got, _ := res.repl.GetString("http.auth.mcp.error"); got != "" {
					t.Errorf("{http.auth.mcp.error} = %q on success", got)
				}
				return
			}
			if res.nextRan {
				return
			}
			ch := res.header.Values("WWW-Authenticate")
			want := wantChallenge(tc.code, tc.desc, tc.scope, testMetaURL)
			if tc.status == http.StatusServiceUnavailable {
				if res.header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After")
				}
			} else if len(ch) != 1 || ch[0] != want {
				t.Errorf("WWW-Authenticate\n got %q\nwant %q", ch, want)
			}
			if res.body != wantBody(tc.code, tc.desc) {
				t.Errorf("body %q, want %q", res.body, wantBody(tc.code, tc.desc))
			}
			wantErr := tc.code
			if wantErr == "" {
				wantErr = "missing_token"
			}
			if got, _ := res.repl.GetString("http.auth.mcp.error"); got != wantErr {
				t.Errorf("{http.auth.mcp.error} = %q, want %q", got, wantErr)
			}
		})
	}
}

func TestServeHTTPOutcomes(t *testing.T) {
	keys := newTestKeyring(t)
	foreign := jwttest.New(t, "rsa-1", "RS256") // reuses the real kid, is not in the JWKS
	stranger := jwttest.New(t, "stranger", "ES256")
	jwks := newJWKSServer(t, keys.rsa, keys.ec, keys.ed)

	base := newTestHandler(t, jwks, nil)
	anyOf := newTestHandler(t, jwks, func(h *Handler) { h.AnyOf = []string{"mcp:write", "mcp:admin"} })
	onlyAnyOf := newTestHandler(t, jwks, func(h *Handler) { h.Scopes = nil; h.AnyOf = []string{"mcp:write", "mcp:admin"} })
	skip := newTestHandler(t, jwks, func(h *Handler) { h.Scopes = nil; h.SkipScopes = true })
	strict := newTestHandler(t, jwks, func(h *Handler) { h.RequireATJWT = true })
	rsOnly := newTestHandler(t, jwks, func(h *Handler) { h.Algorithms = []string{"RS256"} })
	customAud := newTestHandler(t, jwks, func(h *Handler) { h.Audiences = []string{"api://mcp", "urn:other"} })
	anyAud := newTestHandler(t, jwks, func(h *Handler) { h.AllowAnyAudience = true })
	customIss := newTestHandler(t, jwks, func(h *Handler) { h.Issuers = []string{"https://other-issuer.example.com/v2"} })
	scpClaim := newTestHandler(t, jwks, func(h *Handler) { h.ScopeClaim = ClaimNames{"permissions"} })
	tight := newTestHandler(t, jwks, func(h *Handler) { h.Scopes = []string{"mcp:read", "mcp:write"} })

	now := time.Now()
	valid := keys.rsa.Token(t, claimsWith(nil), nil)
	bearer := func(tok string) string { return "Bearer " + tok }
	get := func(auth ...string) *http.Request { return bearerReq(http.MethodPost, "/mcp", auth...) }
	ok := func(name string, h *Handler, tok string) authCase {
		return authCase{name: name, h: h, req: get(bearer(tok)), status: 200, nextRan: true}
	}
	bad := func(name string, h *Handler, tok, desc string) authCase {
		return authCase{name: name, h: h, req: get(bearer(tok)), status: 401, code: "invalid_token", desc: desc, scope: "mcp:read"}
	}
	noCreds := func(name string, req *http.Request) authCase {
		return authCase{name: name, h: base, req: req, status: 401, scope: "mcp:read"}
	}
	badReq := func(name string, req *http.Request, desc string) authCase {
		return authCase{name: name, h: base, req: req, status: 400, code: "invalid_request", desc: desc, scope: "mcp:read"}
	}

	queryOnly := httptest.NewRequest(http.MethodGet, "/mcp?access_token="+valid, nil)
	formBody := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("access_token="+valid))
	formBody.Header.Set("Content-Type", "application/x-www-form-urlencoded")

	cases := []authCase{
		ok("RS256", base, valid),
		ok("ES256", base, keys.ec.Token(t, claimsWith(nil), nil)),
		ok("EdDSA", base, keys.ed.Token(t, claimsWith(nil), nil)),
		ok("no kid tries every compatible key", base, keys.ec.Token(t, claimsWith(nil), map[string]any{"kid": nil})),
		ok("no typ without require_at_jwt", base, keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": nil})),
		ok("typ JWT without require_at_jwt", base, keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": "JWT"})),
		{name: "lower-case bearer", h: base, req: get("bearer " + valid), status: 200, nextRan: true},
		{name: "upper-case BEARER", h: base, req: get("BEARER " + valid), status: 200, nextRan: true},

		// credentials
		noCreds("no Authorization header", get()),
		noCreds("Basic scheme", get("Basic dXNlcjpwYXNz")),
		noCreds("token scheme", get("Token "+valid)),
		noCreds("bare token without scheme", get(valid)),
		noCreds("token only in the query string", queryOnly),
		noCreds("token only in a form body", formBody),
		noCreds("GET without token", bearerReq(http.MethodGet, "/mcp")),
		noCreds("OPTIONS without preflight header", bearerReq(http.MethodOptions, "/mcp")),
		badReq("two Authorization headers", get(bearer(valid), bearer(valid)), descMultiple),
		badReq("Bearer with empty token", get("Bearer "), descBadHeader),
		badReq("Bearer without space or token", get("Bearer"), descBadHeader),
		badReq("Bearer with two words", get("Bearer a b"), descBadHeader),
		badReq("Bearer with a quote", get(`Bearer "abc"`), descBadHeader),
		badReq("Bearer with padding inside", get("Bearer ab=c"), descBadHeader),
		bad("token over 16 KiB", base, strings.Repeat("a", 16<<10+1), descTooLarge),
		bad("token over 16 KiB with a valid prefix", base, valid+strings.Repeat("A", 16<<10), descTooLarge),
		bad("not a JWT", base, "abc", descMalformed),
		bad("JWT with undecodable header", base, "a."+strings.SplitN(valid, ".", 2)[1], descMalformed),
		bad("JWT with two segments", base, strings.Join(strings.Split(valid, ".")[:2], "."), descMalformed),

		// lifetime
		bad("expired", base, keys.rsa.Token(t, claimsWith(map[string]any{"exp": now.Add(-time.Hour).Unix()}), nil), descExpired),
		bad("nbf in the future", base, keys.rsa.Token(t, claimsWith(map[string]any{"nbf": now.Add(time.Hour).Unix()}), nil), descNotYet),
		bad("iat in the future", base, keys.rsa.Token(t, claimsWith(map[string]any{"iat": now.Add(time.Hour).Unix()}), nil), descIatFuture),
		ok("exp passed within leeway", base, keys.rsa.Token(t, claimsWith(map[string]any{"exp": now.Add(-10 * time.Second).Unix()}), nil)),
		ok("nbf and iat ahead within leeway", base, keys.rsa.Token(t, claimsWith(map[string]any{
			"nbf": now.Add(10 * time.Second).Unix(), "iat": now.Add(10 * time.Second).Unix()}), nil)),
		bad("no exp", base, keys.rsa.Token(t, claimsWith(map[string]any{"exp": nil}), nil), descNoExpiry),
		ok("no nbf and no iat", base, keys.rsa.Token(t, claimsWith(map[string]any{"nbf": nil, "iat": nil}), nil)),

		// audience
		bad("no aud", base, keys.rsa.Token(t, claimsWith(map[string]any{"aud": nil}), nil), descAudience),
		bad("wrong aud", base, keys.rsa.Token(t, claimsWith(map[string]any{"aud": "https://other.example.com/mcp"}), nil), descAudience),
		bad("aud is the resource with a trailing slash", base, keys.rsa.Token(t, claimsWith(map[string]any{"aud": testResource + "/"}), nil), descAudience),
		ok("aud array containing the resource", base, keys.rsa.Token(t, claimsWith(map[string]any{"aud": []any{"https://x", testResource}}), nil)),
		bad("aud array without the resource", base, keys.rsa.Token(t, claimsWith(map[string]any{"aud": []any{"https://x", "https://y"}}), nil), descAudience),
		ok("custom audiences accept a listed aud", customAud, keys.rsa.Token(t, claimsWith(map[string]any{"aud": "urn:other"}), nil)),
		bad("custom audiences replace the resource", customAud, valid, descAudience),
		ok("allow_any_audience accepts a foreign aud", anyAud, keys.rsa.Token(t, claimsWith(map[string]any{"aud": "https://other.example.com"}), nil)),
		ok("allow_any_audience accepts no aud", anyAud, keys.rsa.Token(t, claimsWith(map[string]any{"aud": nil}), nil)),

		// issuer
		bad("wrong iss", base, keys.rsa.Token(t, claimsWith(map[string]any{"iss": "https://evil.example.com"}), nil), descIssuer),
		bad("iss with trailing slash", base, keys.rsa.Token(t, claimsWith(map[string]any{"iss": testIssuer + "/"}), nil), descIssuer),
		bad("no iss", base, keys.rsa.Token(t, claimsWith(map[string]any{"iss": nil}), nil), descIssuer),
		ok("custom issuers accept a listed iss", customIss, keys.rsa.Token(t, claimsWith(map[string]any{"iss": "https://other-issuer.example.com/v2"}), nil)),
		bad("custom issuers replace the authorization servers", customIss, valid, descIssuer),

		// keys and algorithms
		bad("unknown kid", base, stranger.Token(t, claimsWith(nil), nil), descUnknownKey),
		bad("foreign key reusing a real kid", base, foreign.Token(t, claimsWith(nil), nil), descSignature),
		bad("embedded jwk and jku headers are ignored", base, stranger.Token(t, claimsWith(nil), map[string]any{
			"jwk": stranger.JWK(), "jku": jwks.URL, "x5u": jwks.URL}), descUnknownKey),
		bad("RSA kid on an ES256 token", base, keys.ec.Token(t, claimsWith(nil), map[string]any{"kid": keys.rsa.KID}), descUnknownKey),
		bad("tampered payload", base, tamper(t, valid), descSignature),
		bad("alg none", base, unsignedToken(t, keys.rsa.KID, claimsWith(nil)), descAlgorithm),
		bad("HS256 keyed with the RSA public key PEM", base, hs256WithPublicPEM(t, keys.rsa, claimsWith(nil)), descAlgorithm),
		bad("unknown alg", base, withHeader(t, valid, `{"alg":"XS999","kid":"rsa-1","typ":"at+jwt"}`), descAlgorithm),
		ok("RS256 in the algorithms allowlist", rsOnly, valid),
		bad("ES256 not in the algorithms allowlist", rsOnly, keys.ec.Token(t, claimsWith(nil), nil), descAlgorithm),
		bad("crit header", base, keys.rsa.Token(t, claimsWith(nil), map[string]any{"crit": []any{"exp"}}), descMalformed),
		bad("kid not a string", base, keys.rsa.Token(t, claimsWith(nil), map[string]any{"kid": 7}), descMalformed),

		// require_at_jwt
		bad("typ JWT under require_at_jwt", strict, keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": "JWT"}), descType),
		bad("no typ under require_at_jwt", strict, keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": nil}), descType),
		ok("typ at+jwt under require_at_jwt", strict, valid),
		ok("typ application/at+jwt under require_at_jwt", strict, keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": "application/at+jwt"})),
		ok("typ AT+JWT under require_at_jwt", strict, keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": "AT+JWT"})),

		// scopes
		{name: "insufficient scope", h: base, req: get(bearer(keys.rsa.Token(t, claimsWith(map[string]any{"scope": "mcp:write"}), nil))),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read"},
		{name: "no scope claim", h: base, req: get(bearer(keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil}), nil))),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read"},
		{name: "one of two required scopes", h: tight, req: get(bearer(valid)),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read mcp:write"},
		ok("both required scopes", tight, keys.rsa.Token(t, claimsWith(map[string]any{"scope": "mcp:write openid mcp:read"}), nil)),
		{name: "any_of: none of the alternatives", h: anyOf, req: get(bearer(valid)),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read mcp:write"},
		ok("any_of: second alternative", anyOf, keys.rsa.Token(t, claimsWith(map[string]any{"scope": "mcp:read mcp:admin"}), nil)),
		{name: "any_of: alternative without the required scope", h: anyOf,
			req:    get(bearer(keys.rsa.Token(t, claimsWith(map[string]any{"scope": "mcp:admin"}), nil))),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read mcp:write"},
		ok("only any_of: first alternative", onlyAnyOf, keys.rsa.Token(t, claimsWith(map[string]any{"scope": "mcp:write"}), nil)),
		ok("scp array", base, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "scp": []any{"openid", "mcp:read"}}), nil)),
		ok("scp string", base, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "scp": "openid mcp:read"}), nil)),
		{name: "scope preferred over scp", h: base,
			req:    get(bearer(keys.rsa.Token(t, claimsWith(map[string]any{"scope": "openid", "scp": []any{"mcp:read"}}), nil))),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read"},
		ok("custom scope_claim", scpClaim, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "permissions": []any{"mcp:read"}}), nil)),
		{name: "custom scope_claim ignores scope", h: scpClaim, req: get(bearer(valid)),
			status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:read"},
		ok("skip_scopes: no scope at all", skip, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil}), nil)),
		{name: "skip_scopes still verifies", h: skip, req: get(bearer(keys.rsa.Token(t, claimsWith(map[string]any{"aud": "x"}), nil))),
			status: 401, code: "invalid_token", desc: descAudience},
		{name: "skip_scopes: no token, no scope param", h: skip, req: get(), status: 401},

		// requests that need no token
		{name: "CORS preflight goes to next", h: base, nextRan: true, status: 200, req: func() *http.Request {
			r := bearerReq(http.MethodOptions, "/mcp")
			r.Header.Set("Origin", "https://app.example.com")
			r.Header.Set("Access-Control-Request-Method", "POST")
			return r
		}()},
		// A preflight has no body (and an Origin): any other OPTIONS is authenticated.
		noCreds("OPTIONS preflight with a body", preflight(strings.NewReader(toolsCall), nil)),
		noCreds("OPTIONS preflight with an empty chunked body", preflight(strings.NewReader(""), []string{"chunked"})),
		noCreds("OPTIONS preflight with a body of unknown length", preflight(io.MultiReader(strings.NewReader(toolsCall)), nil)),
		// Nor does it ask to switch protocols or override its method (a tunnel with no token).
		noCreds("OPTIONS preflight asking to upgrade", func() *http.Request {
			r := preflight(nil, nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}()),
		noCreds("OPTIONS preflight with an empty Upgrade", func() *http.Request {
			r := preflight(nil, nil)
			r.Header["Upgrade"] = []string{""}
			return r
		}()),
		{name: "OPTIONS preflight with credentials is authenticated", h: base, status: 401, code: "invalid_token", desc: descMalformed, scope: "mcp:read",
			req: func() *http.Request {
				r := preflight(nil, nil)
				r.Header.Set("Authorization", "Bearer forged-token-never-verified")
				return r
			}()},
		noCreds("OPTIONS preflight with a method override", func() *http.Request {
			r := preflight(nil, nil)
			r.Header.Set("X-Http-Method-Override", "GET")
			return r
		}()),
		noCreds("OPTIONS preflight without Origin", func() *http.Request {
			r := preflight(nil, nil)
			r.Header.Del("Origin")
			return r
		}()),
		{name: "CORS preflight with Content-Length 0 goes to next", h: base, nextRan: true, status: 200,
			req: preflight(strings.NewReader(""), nil)},
		// HTTP/3 (and HTTP/2 without END_STREAM on HEADERS): no Content-Length, length -1.
		{name: "CORS preflight of unknown length that is empty goes to next", h: base, nextRan: true, status: 200,
			req: preflight(io.MultiReader(), nil)},
		{name: "PRM GET without token", h: base, req: bearerReq(http.MethodGet, testPRMPath), status: 200},
		{name: "PRM GET with a bad token", h: base, req: bearerReq(http.MethodGet, testPRMPath, "Bearer x.y.z"), status: 200},
		{name: "PRM GET with trailing slash", h: base, req: bearerReq(http.MethodGet, testPRMPath+"/"), status: 200},
	}
	runAuthCases(t, cases)
}

// toolsCall is a tools/call message, as a body smuggled into a request that is not a POST.
const toolsCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}`

// preflight is a CORS preflight to /mcp, with body (nil for none; a reader of unknown type
// has an unknown length, -1, as on HTTP/2 and HTTP/3) and transfer codings te.
func preflight(body io.Reader, te []string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, "/mcp", body)
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("Access-Control-Request-Method", "POST")
	if te != nil {
		r.TransferEncoding = te
		r.ContentLength = -1
	}
	return r
}

// tamper changes one claim of a signed token and keeps the signature.
func tamper(t testing.TB, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWS")
	}
	claims := claimsWith(map[string]any{"scope": "mcp:read mcp:admin"})
	forged := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	s, err := forged.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + strings.Split(s, ".")[1] + "." + parts[2]
}

// withHeader replaces the JOSE header of a token, keeping payload and signature.
func withHeader(t testing.TB, tok, header string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWS")
	}
	return b64([]byte(header)) + "." + parts[1] + "." + parts[2]
}

func TestServeHTTPPRMWithoutAuth(t *testing.T) {
	keys := newTestKeyring(t)
	h := newTestHandler(t, newJWKSServer(t, keys.ed), func(h *Handler) { h.ResourceName = "Example" })
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		res := serveRequest(t, h, bearerReq(method, testPRMPath))
		want := map[string]int{http.MethodGet: 200, http.MethodHead: 200, http.MethodOptions: 204}[method]
		if res.status != want || res.nextRan {
			t.Errorf("%s: status %d next %v", method, res.status, res.nextRan)
		}
		if res.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS", method)
		}
		if res.header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: challenge on the metadata document", method)
		}
	}
	res := serveRequest(t, h, bearerReq(http.MethodGet, testPRMPath))
	want := `{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],` +
		`"bearer_methods_supported":["header"],"scopes_supported":["mcp:read"],"resource_name":"Example"}`
	if res.body != want {
		t.Errorf("document\n got %s\nwant %s", res.body, want)
	}
}

func TestServeHTTPStripToken(t *testing.T) {
	keys := newTestKeyring(t)
	jwks := newJWKSServer(t, keys.ec)
	tok := keys.ec.Token(t, claimsWith(nil), nil)
	for _, strip := range []bool{false, true} {
		h := newTestHandler(t, jwks, func(h *Handler) { h.StripToken = strip })
		res := serveRequest(t, h, bearerReq(http.MethodPost, "/mcp", "Bearer "+tok))
		if !res.nextRan {
			t.Fatalf("strip_token=%v: next did not run (status %d)", strip, res.status)
		}
		if strip && len(res.nextAuth) != 0 {
			t.Errorf("strip_token: next saw %d Authorization headers", len(res.nextAuth))
		}
		if !strip && (len(res.nextAuth) != 1 || res.nextAuth[0] != "Bearer "+tok) {
			t.Errorf("without strip_token: next did not see the Authorization header unchanged")
		}
	}
}

func TestServeHTTPPlaceholders(t *testing.T) {
	keys := newTestKeyring(t)
	h := newTestHandler(t, newJWKSServer(t, keys.rsa), func(h *Handler) { h.AnyOf = []string{"mcp:write"} })
	tests := []struct {
		name   string
		claims map[string]any
		want   map[string]string
	}{
		{
			name: "sub, client_id and custom claims",
			claims: map[string]any{
				"scope": "mcp:read mcp:write", "tenant": "acme", "level": 3, "ratio": 0.5, "big": 1700000000,
				"admin": true, "off": false, "groups": []any{"a", "b", 7}, "empty": "",
			},
			want: map[string]string{
				"http.auth.user.id":           "user-1",
				"http.auth.user.client_id":    "client-1",
				"http.auth.user.scope":        "mcp:read mcp:write",
				"http.auth.user.iss":          testIssuer,
				"http.auth.mcp.claim.tenant":  "acme",
				"http.auth.mcp.claim.level":   "3",
				"http.auth.mcp.claim.ratio":   "0.5",
				"http.auth.mcp.claim.big":     "1700000000",
				"http.auth.mcp.claim.admin":   "true",
				"http.auth.mcp.claim.off":     "false",
				"http.auth.mcp.claim.groups":  "a b 7",
				"http.auth.mcp.claim.empty":   "",
				"http.auth.mcp.claim.missing": "",
				"http.auth.mcp.claim.sub":     "user-1",
				"http.auth.mcp.claim.aud":     testResource,
				"http.auth.mcp.claim.iss":     testIssuer,
			},
		},
		{
			name:   "no sub: id is client_id",
			claims: map[string]any{"sub": nil, "scope": "mcp:write mcp:read"},
			want: map[string]string{
				"http.auth.user.id":        "client-1",
				"http.auth.user.client_id": "client-1",
				"http.auth.user.scope":     "mcp:write mcp:read",
			},
		},
		{
			name:   "azp when there is no client_id",
			claims: map[string]any{"client_id": nil, "azp": "app-9", "scope": nil, "scp": []any{"mcp:read", "mcp:write"}},
			want: map[string]string{
				"http.auth.user.id":        "user-1",
				"http.auth.user.client_id": "app-9",
				"http.auth.user.scope":     "mcp:read mcp:write",
			},
		},
		{
			name:   "client_id preferred over azp",
			claims: map[string]any{"azp": "app-9", "scope": "mcp:read mcp:write"},
			want: map[string]string{
				"http.auth.user.client_id": "client-1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := keys.rsa.Token(t, claimsWith(tt.claims), nil)
			res := serveRequest(t, h, bearerReq(http.MethodPost, "/mcp", "Bearer "+tok))
			if !res.nextRan {
				t.Fatalf("status %d, body %q", res.status, res.body)
			}
			for key, want := range tt.want {
				got, known := res.repl.GetString(key)
				if !known || got != want {
					t.Errorf("{%s} = %q (known %v), want %q", key, got, known, want)
				}
				if replaced := res.repl.ReplaceAll("{"+key+"}", "MISSING"); replaced != want && want != "" {
					t.Errorf("ReplaceAll {%s} = %q, want %q", key, replaced, want)
				}
			}
			if got, _ := res.repl.GetString("http.auth.mcp.error"); got != "" {
				t.Errorf("{http.auth.mcp.error} = %q after success", got)
			}
		})
	}
}

// TestServeHTTPKeysNeverLoaded: an authorization server unreachable since start is the
// server's problem (503), not the token's, while a request without a token still gets 401.
func TestServeHTTPKeysNeverLoaded(t *testing.T) {
	keys := newTestKeyring(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/jwks.json"
	closed.Close()

	h := &Handler{
		Resource:             testResource,
		AuthorizationServers: []string{testIssuer},
		JWKSURLs:             []string{closedURL},
		Scopes:               []string{"mcp:read"},
	}
	provisionHandler(t, h)
	tok := keys.rsa.Token(t, claimsWith(nil), nil)

	runAuthCases(t, []authCase{
		{name: "token while no keys were ever loaded", h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer "+tok),
			status: 503, code: "temporarily_unavailable", desc: descUnavailable},
		{name: "again, within the refresh limit", h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer "+tok),
			status: 503, code: "temporarily_unavailable", desc: descUnavailable},
		{name: "no token", h: h, req: bearerReq(http.MethodPost, "/mcp"), status: 401, scope: "mcp:read"},
		{name: "malformed header", h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer a b"),
			status: 400, code: "invalid_request", desc: descBadHeader, scope: "mcp:read"},
		{name: "wrong issuer is still the token's fault", h: h,
			req:    bearerReq(http.MethodPost, "/mcp", "Bearer "+keys.rsa.Token(t, claimsWith(map[string]any{"iss": "https://evil"}), nil)),
			status: 401, code: "invalid_token", desc: descIssuer, scope: "mcp:read"},
	})
	res := serveRequest(t, h, bearerReq(http.MethodPost, "/mcp", "Bearer "+tok))
	if got := res.header.Get("Retry-After"); got != fmt.Sprint(defaultRetryAfter) {
		t.Errorf("Retry-After %q", got)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", res.header.Get("Cache-Control"))
	}
}

// TestServeHTTPNeverLogsToken runs every kind of failure with debug logging on and checks
// that no message or field holds the token or its signature.
func TestServeHTTPNeverLogsToken(t *testing.T) {
	keys := newTestKeyring(t)
	foreign := jwttest.New(t, "rsa-1", "RS256")
	jwks := newJWKSServer(t, keys.rsa, keys.ec)
	h := newTestHandler(t, jwks, func(h *Handler) { h.RequireATJWT = true })
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)

	now := time.Now()
	valid := keys.rsa.Token(t, claimsWith(nil), nil)
	tokens := map[string]string{
		"expired":       keys.rsa.Token(t, claimsWith(map[string]any{"exp": now.Add(-time.Hour).Unix()}), nil),
		"not yet valid": keys.rsa.Token(t, claimsWith(map[string]any{"nbf": now.Add(time.Hour).Unix()}), nil),
		"iat future":    keys.rsa.Token(t, claimsWith(map[string]any{"iat": now.Add(time.Hour).Unix()}), nil),
		"no exp":        keys.rsa.Token(t, claimsWith(map[string]any{"exp": nil}), nil),
		"wrong aud":     keys.rsa.Token(t, claimsWith(map[string]any{"aud": "https://other"}), nil),
		"wrong iss":     keys.rsa.Token(t, claimsWith(map[string]any{"iss": "https://evil"}), nil),
		"unknown kid":   keys.rsa.Token(t, claimsWith(nil), map[string]any{"kid": "nope"}),
		"bad signature": foreign.Token(t, claimsWith(nil), nil),
		"tampered":      tamper(t, valid),
		"alg none":      unsignedToken(t, keys.rsa.KID, claimsWith(nil)),
		"hs256 pem":     hs256WithPublicPEM(t, keys.rsa, claimsWith(nil)),
		"unknown alg":   withHeader(t, valid, `{"alg":"XS999","kid":"rsa-1","typ":"at+jwt"}`),
		"typ JWT":       keys.rsa.Token(t, claimsWith(nil), map[string]any{"typ": "JWT"}),
		"crit":          keys.rsa.Token(t, claimsWith(nil), map[string]any{"crit": []any{"exp"}}),
		"bad scope":     keys.rsa.Token(t, claimsWith(map[string]any{"scope": "other"}), nil),
		"malformed":     "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
		"bad header":    "e30gInsecret.e30.c2lnbmF0dXJl",
		"too large":     valid + strings.Repeat("Q", 16<<10),
	}
	headers := map[string][]string{
		"two headers": {"Bearer " + valid, "Bearer " + valid},
		"two words":   {"Bearer " + valid + " " + valid},
	}
	for name, tok := range tokens {
		headers[name] = []string{"Bearer " + tok}
	}
	for name, hdr := range headers {
		res := serveRequest(t, h, bearerReq(http.MethodPost, "/mcp", hdr...))
		if res.nextRan {
			t.Errorf("%s: request passed", name)
		}
	}
	if logs.Len() < len(headers) {
		t.Fatalf("%d log entries for %d denials: denials are not logged at debug", logs.Len(), len(headers))
	}

	secrets := []string{valid, sigOf(valid)}
	for _, tok := range tokens {
		secrets = append(secrets, tok)
		if s := sigOf(tok); len(s) >= 8 {
			secrets = append(secrets, s)
		}
	}
	for _, e := range logs.All() {
		if _, ok := e.ContextMap()["reason"]; !ok {
			t.Errorf("log entry %q has no reason", e.Message)
		}
		text := e.Message + " " + fmt.Sprint(e.ContextMap())
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("log entry %q (reason %v) contains a token or signature", e.Message, e.ContextMap()["reason"])
			}
		}
	}
}

func sigOf(tok string) string {
	if i := strings.LastIndexByte(tok, '.'); i >= 0 {
		return tok[i+1:]
	}
	return ""
}

// TestServeHTTPKeyTypeMustMatchAlg: with JWKs that do not name their alg, the key type (and
// curve) alone must keep a key from being handed to a method of another family.
func TestServeHTTPKeyTypeMustMatchAlg(t *testing.T) {
	keys := newTestKeyring(t)
	jwks := newJWKSServer(t)
	set := map[string]any{"keys": []any{}}
	for _, k := range []*jwttest.Key{keys.rsa, keys.ec, keys.ed} {
		m := k.JWK()
		delete(m, "alg")
		set["keys"] = append(set["keys"].([]any), m)
	}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	jwks.mu.Lock()
	jwks.body = body
	jwks.mu.Unlock()
	h := newTestHandler(t, jwks, nil)

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signAs := func(kid, alg string, signer *jwttest.Key) string {
		k := &jwttest.Key{KID: kid, Alg: alg, Signer: signer.Signer}
		return k.Token(t, claimsWith(nil), nil)
	}
	ps256 := signAs(keys.rsa.KID, "PS256", keys.rsa)
	es384 := (&jwttest.Key{KID: keys.ec.KID, Alg: "ES384", Signer: p384}).Token(t, claimsWith(nil), nil)
	bad := func(name, tok, desc string) authCase {
		return authCase{name: name, h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer "+tok),
			status: 401, code: "invalid_token", desc: desc, scope: "mcp:read"}
	}
	runAuthCases(t, []authCase{
		{name: "RSA key without alg verifies RS256", h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer "+keys.rsa.Token(t, claimsWith(nil), nil)), status: 200, nextRan: true},
		{name: "RSA key without alg verifies PS256", h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer "+ps256), status: 200, nextRan: true},
		{name: "EC key without alg verifies ES256", h: h, req: bearerReq(http.MethodPost, "/mcp", "Bearer "+keys.ec.Token(t, claimsWith(nil), nil)), status: 200, nextRan: true},
		bad("RS256 token naming the EC key", signAs(keys.ec.KID, "RS256", keys.rsa), descUnknownKey),
		bad("RS256 token naming the Ed25519 key", signAs(keys.ed.KID, "RS256", keys.rsa), descUnknownKey),
		bad("ES256 token naming the RSA key", signAs(keys.rsa.KID, "ES256", keys.ec), descUnknownKey),
		bad("EdDSA token naming the EC key", signAs(keys.ec.KID, "EdDSA", keys.ed), descUnknownKey),
		bad("ES384 token naming the P-256 key", es384, descUnknownKey),
	})
}

// TestForbiddenShowsWhoWasRefused: a valid token without the scope gets 403, and the
// identity placeholders are set, so the access log's user_id names the caller.
func TestForbiddenShowsWhoWasRefused(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	js := newJWKSServer(t, k)
	h := &Handler{Resource: cacheRes, AuthorizationServers: []string{cacheIss},
		JWKSURLs: []string{js.URL}, Scopes: []string{"mcp:read"}}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+k.Token(t, testClaims(cacheIss, cacheRes, "other"), nil))
	repl := caddyhttp.NewTestReplacer(r)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatal("next ran for a 403")
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", w.Code)
	}
	if got, _ := repl.GetString("http.auth.user.id"); got != "user-1" {
		t.Errorf("{http.auth.user.id} = %q after a 403, want user-1", got)
	}
	if got, _ := repl.GetString("http.auth.mcp.error"); got != "insufficient_scope" {
		t.Errorf("{http.auth.mcp.error} = %q, want insufficient_scope", got)
	}
}

// TestServeHTTPRefusesOtherTokens: absurd dates, JWTs of another kind and key-bound tokens
// are refused whatever the options, and scope strings split on U+0020 only (RFC 6749 §3.3).
// Every request is sent twice: the second answer may come from the token cache, which must
// never serve what verification refuses.
func TestServeHTTPRefusesOtherTokens(t *testing.T) {
	keys := newTestKeyring(t)
	jwks := newJWKSServer(t, keys.rsa, keys.ec, keys.ed)
	base := newTestHandler(t, jwks, nil)
	strict := newTestHandler(t, jwks, func(h *Handler) { h.RequireATJWT = true })
	anyAud := newTestHandler(t, jwks, func(h *Handler) { h.AllowAnyAudience = true; h.Scopes = nil; h.SkipScopes = true })
	admin := newTestHandler(t, jwks, func(h *Handler) { h.Scopes = []string{"mcp:admin"} })
	perms := newTestHandler(t, jwks, func(h *Handler) { h.Scopes = []string{"mcp:admin"}; h.ScopeClaim = ClaimNames{"permissions"} })

	bearer := func(tok string) string { return "Bearer " + tok }
	post := func(auth string) *http.Request { return bearerReq(http.MethodPost, "/mcp", auth) }
	ok := func(name string, h *Handler, tok string) authCase {
		return authCase{name: name, h: h, req: post(bearer(tok)), status: 200, nextRan: true}
	}
	bad := func(name string, h *Handler, tok, desc string) authCase {
		scope := strings.Join(h.Scopes, " ")
		return authCase{name: name, h: h, req: post(bearer(tok)), status: 401, code: "invalid_token", desc: desc, scope: scope}
	}
	forbidden := func(name string, h *Handler, tok string) authCase {
		return authCase{name: name, h: h, req: post(bearer(tok)), status: 403, code: "insufficient_scope", desc: descScope, scope: "mcp:admin"}
	}
	claim := func(name string, v any) jwt.MapClaims { return claimsWith(map[string]any{name: v}) }
	typ := func(v any) map[string]any { return map[string]any{"typ": v} }

	var cases []authCase

	// Dates: JSON numbers between 1970 and 9999 only. golang-jwt converts to int64
	// unchecked, so 1e20 used to become a date in the past (nbf, iat: accepted).
	for _, name := range []string{"exp", "nbf", "iat"} {
		for _, v := range []any{1e20, -1, 1e300, -1e300, 253402300800, 253402300799.5, "1700000000", true, []any{1}, map[string]any{}, json.RawMessage("null")} {
			tok := keys.rsa.Token(t, claim(name, v), nil)
			cases = append(cases,
				bad(fmt.Sprintf("%s %v", name, v), base, tok, descMalformed),
				bad(fmt.Sprintf("%s %v under allow_any_audience and skip_scopes", name, v), anyAud, tok, descMalformed))
		}
	}
	cases = append(cases,
		bad("nbf out of float64 range", base, keys.rsa.Token(t, claim("nbf", json.Number("1e400")), nil), descMalformed),
		ok("iat -0 is the epoch", base, keys.rsa.Token(t, claim("iat", json.Number("-0")), nil)),
		ok("exp at the end of year 9999", base, keys.rsa.Token(t, claim("exp", 253402300799), nil)),
		ok("nbf and iat at the epoch", base, keys.rsa.Token(t, claimsWith(map[string]any{"nbf": 0, "iat": 1}), nil)),
		ok("fractional dates", base, keys.rsa.Token(t, claimsWith(map[string]any{"nbf": 1.5, "iat": float64(time.Now().Unix()) - 0.25}), nil)),
		bad("exp 0 is no expiry", base, keys.rsa.Token(t, claim("exp", 0), nil), descNoExpiry),
	)

	// Other kinds of JWT, signed by the same issuer with the same key: refused with or
	// without require_at_jwt.
	for _, v := range []string{
		"dpop+jwt", "DPoP+JWT", "application/dpop+jwt", "Application/DPOP+jwt",
		"oauth-id-jag+jwt", "application/oauth-id-jag+jwt", "logout+jwt", "secevent+jwt",
		"token-introspection+jwt", "jwk-set+jwt", "at+jwt+jwt", "+jwt", "dpop+jwt; charset=utf-8", " dpop+jwt ",
		"application/at+jwt+jwt", "dpop+jwt\x00", "text/at+jwt", "x-dpop+jwt-x",
	} {
		tok := keys.rsa.Token(t, claimsWith(nil), typ(v))
		cases = append(cases,
			bad("typ "+v, base, tok, descType),
			bad("typ "+v+" under require_at_jwt", strict, tok, descType),
			bad("typ "+v+" under allow_any_audience and skip_scopes", anyAud, tok, descType))
	}
	cases = append(cases,
		bad("typ a number", base, keys.rsa.Token(t, claimsWith(nil), typ(7)), descMalformed),
		bad("typ an array", base, keys.rsa.Token(t, claimsWith(nil), typ([]any{"at+jwt"})), descMalformed),
		ok("typ AT+JWT", base, keys.rsa.Token(t, claimsWith(nil), typ("AT+JWT"))),
		ok("typ application/at+jwt", base, keys.rsa.Token(t, claimsWith(nil), typ("application/at+jwt"))),
		ok("typ application/jwt", base, keys.rsa.Token(t, claimsWith(nil), typ("application/jwt"))),
		ok("typ JOSE", base, keys.rsa.Token(t, claimsWith(nil), typ("JOSE"))),
	)

	// Key-bound tokens presented as bearer tokens.
	for _, v := range []any{
		map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
		map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
		map[string]any{"jwk": keys.ec.JWK()},
		map[string]any{}, "x", json.RawMessage("null"),
	} {
		tok := keys.rsa.Token(t, claim("cnf", v), nil)
		cases = append(cases,
			bad(fmt.Sprintf("cnf %v", v), base, tok, descBound),
			bad(fmt.Sprintf("cnf %v under allow_any_audience and skip_scopes", v), anyAud, tok, descBound))
	}

	// Scopes: U+0020 is the only separator; an item with any other whitespace or character
	// outside the scope-token grammar grants nothing.
	for _, sep := range []string{"\u00a0", "\t", "\n", "\r", "\v", "\f", "\u3000", "\u2028", "\u2029", "\u0085", "\u1680", "\u200b", "\x00", ","} {
		s := "mcp:read" + sep + "mcp:admin"
		name := fmt.Sprintf("scope separated by %U", []rune(sep)[0])
		cases = append(cases,
			forbidden(name, admin, keys.rsa.Token(t, claim("scope", s), nil)),
			forbidden(name+" in scp", admin, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "scp": s}), nil)),
			forbidden(name+" in an scp element", admin, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "scp": []any{s}}), nil)),
			forbidden(name+" in scope_claim", perms, keys.rsa.Token(t, claim("permissions", s), nil)),
			forbidden(name+" in a scope_claim element", perms, keys.rsa.Token(t, claim("permissions", []any{s}), nil)),
		)
	}
	for _, s := range []string{"mcp:admin\t", "\tmcp:admin", "mcp:admin\u00a0", "mcp:admin\n", "mcp:\u0430dmin", `mcp:"admin`, `mcp:\admin`} {
		cases = append(cases, forbidden(fmt.Sprintf("scope %q", s), admin, keys.rsa.Token(t, claim("scope", "mcp:read "+s), nil)))
	}
	cases = append(cases,
		forbidden("scp element holding two scopes", admin, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "scp": []any{"mcp:read mcp:admin"}}), nil)),
		forbidden("scope_claim element holding two scopes", perms, keys.rsa.Token(t, claim("permissions", []any{"mcp:read mcp:admin"}), nil)),
		ok("double and outer spaces are skipped", admin, keys.rsa.Token(t, claim("scope", "  mcp:read   mcp:admin "), nil)),
		ok("a bad item does not spoil the others", admin, keys.rsa.Token(t, claim("scope", "mcp:read\u00a0x mcp:admin"), nil)),
		ok("scp array with a bad element and a good one", admin, keys.rsa.Token(t, claimsWith(map[string]any{"scope": nil, "scp": []any{"x\ty", "mcp:admin"}}), nil)),
	)

	runAuthCases(t, cases)
	// Again: what was refused was not cached, and what was cached grants no more.
	for i := range cases {
		cases[i].req = cases[i].req.Clone(context.Background())
	}
	t.Run("again", func(t *testing.T) { runAuthCases(t, cases) })
	for _, tc := range cases {
		if tc.status != http.StatusUnauthorized {
			continue
		}
		raw := strings.TrimPrefix(tc.req.Header.Get("Authorization"), "Bearer ")
		if tc.h.cache == nil || func() bool { _, ok := tc.h.cache.Get(raw); return ok }() {
			t.Errorf("%s: the token cache holds a refused token (or is off)", tc.name)
		}
	}
}
