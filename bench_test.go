package mcpauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"go.uber.org/zap"
)

// Benchmarks of the request path. Run them with:
//
//	go test -run '^$' -bench . -benchmem
//
// Each request reuses one *http.Request whose replacer is renewed every 256 requests (with
// the timer stopped), as Caddy gives every request a fresh one; a Caddy replacer has room for
// the handler's placeholder provider, so registering it costs no allocation there.

// nopWriter is a ResponseWriter that keeps one header map.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

var nextOK = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

func benchHandler(b *testing.B, k *jwttest.Key, cacheSize int) *Handler {
	b.Helper()
	js := newJWKSServer(b, k)
	h := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		TokenCacheSize:       &cacheSize,
	}
	provisionHandler(b, h)
	waitKeysLoaded(b, h)
	h.logger = zap.NewNop()
	return h
}

func newBenchRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// withReplacer gives r a fresh replacer shaped like Caddy's (which maps HTTP variables too).
func withReplacer(r *http.Request) *http.Request {
	repl := caddy.NewReplacer()
	repl.Map(func(string) (any, bool) { return nil, false })
	return r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl))
}

func runServe(b *testing.B, h *Handler, token string) {
	b.Helper()
	base := newBenchRequest(token)
	w := &nopWriter{h: make(http.Header)}
	r := withReplacer(base)
	if err := h.ServeHTTP(w, r, nextOK); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%256 == 255 {
			b.StopTimer()
			r = withReplacer(base)
			b.StartTimer()
		}
		_ = h.ServeHTTP(w, r, nextOK)
	}
}

func benchKeys(b *testing.B) []*jwttest.Key {
	return []*jwttest.Key{jwttest.New(b, "rs", "RS256"), jwttest.New(b, "es", "ES256"), jwttest.New(b, "ed", "EdDSA")}
}

// benchCase is one handler and token, set up before the benchmark names are printed so that
// start-up logs do not interleave with the results.
type benchCase struct {
	name  string
	h     *Handler
	token string
}

func benchCases(b *testing.B) []benchCase {
	keys := benchKeys(b)
	claims := testClaims(cacheIss, cacheRes, "mcp:read")
	cases := []benchCase{
		{"no_token", benchHandler(b, keys[0], defaultTokenCacheSize), ""},
		{"cached", benchHandler(b, keys[0], defaultTokenCacheSize), keys[0].Token(b, claims, nil)},
		// An opaque token checked by RFC 7662 introspection, then served from the cache under
		// its SHA-256 (the first request, before the timer, makes the one call).
		{"cached_introspected", introspectingHandler(b, benchIntrospectionEndpoint(b)), benchOpaqueToken},
	}
	for _, k := range keys {
		cases = append(cases, benchCase{"uncached_" + k.Alg, benchHandler(b, k, 0), k.Token(b, claims, nil)})
	}
	forged := jwttest.New(b, keys[0].KID, "RS256")
	cases = append(cases,
		benchCase{"invalid_signature", benchHandler(b, keys[0], defaultTokenCacheSize), forged.Token(b, claims, nil)},
		benchCase{"malformed_token", benchHandler(b, keys[0], defaultTokenCacheSize), "abc.def.ghi"},
	)
	return cases
}

// benchOpaqueToken is shaped like the opaque tokens of Ory Hydra (ory_at_ and 86 characters).
const benchOpaqueToken = "ory_at_Xk2vQ9mB7nR4tL1pW8sZ3yH6cF0jD5gA.uE9rT2wQ7iO4pL1kJ8hG3fD6sA0zX5cV2bN9mM4nB7vC1x"

func benchIntrospectionEndpoint(b *testing.B) string {
	srv, _ := newIntrospectionEndpoint(b, benchOpaqueToken)
	return srv.URL
}

func BenchmarkServeHTTP(b *testing.B) {
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) { runServe(b, c.h, c.token) })
	}
}

func BenchmarkServeHTTPParallel(b *testing.B) {
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &nopWriter{h: make(http.Header)}
				base := newBenchRequest(c.token)
				r := withReplacer(base)
				for i := 0; pb.Next(); i++ {
					if i%256 == 255 {
						r = withReplacer(base)
					}
					_ = c.h.ServeHTTP(w, r, nextOK)
				}
			})
		})
	}
}

// BenchmarkBareJWT is the yardstick for the uncached path: what verifying the same token
// costs with golang-jwt alone, given the key, into the same claims type.
func BenchmarkBareJWT(b *testing.B) {
	for _, k := range benchKeys(b) {
		b.Run(k.Alg, func(b *testing.B) {
			tok := k.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
			pub := k.Signer.Public()
			p := jwt.NewParser(jwt.WithValidMethods([]string{k.Alg}), jwt.WithExpirationRequired())
			kf := func(*jwt.Token) (any, error) { return pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(tok, jwt.MapClaims{}, kf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheMemory feeds distinct valid tokens through a handler with the default cache
// and reports the heap and RSS after, to show the cache stays within its bound. It signs every
// token (EdDSA, the fastest), so it takes a while:
//
//	MCPAUTH_TOKENS=1000000 go test -run '^$' -bench CacheMemory -benchtime 1x
func BenchmarkCacheMemory(b *testing.B) {
	n := 100000
	if s := os.Getenv("MCPAUTH_TOKENS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	k := jwttest.New(b, "ed", "EdDSA")
	h := benchHandler(b, k, defaultTokenCacheSize)
	claims := testClaims(cacheIss, cacheRes, "mcp:read")
	w := &nopWriter{h: make(http.Header)}
	base := newBenchRequest("")
	rssBefore := rssKiB()
	for b.Loop() {
		for i := range n {
			claims["jti"] = strconv.Itoa(i)
			base.Header.Set("Authorization", "Bearer "+k.Token(b, claims, nil))
			_ = h.ServeHTTP(w, withReplacer(base), nextOK)
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(h.cache.Len()), "entries")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(rssBefore)/1024, "rss-before-MiB")
	b.ReportMetric(float64(rssKiB())/1024, "rss-after-MiB")
	b.ReportMetric(float64(n), "tokens")
}

// rssKiB reads the resident set size of this process (Linux), or 0.
func rssKiB() int {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int
			_, _ = fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kb)
			return kb
		}
	}
	return 0
}

// BenchmarkRuleConditions compares a cached token passing a tools/call rule that needs a
// scope with the same rule needing a claim (dotted path), a client and an implied scope.
// Conditions are judged once per token when its caller is built, so a request only tests
// bits; the "uncached" cases include verifying the token and judging the conditions.
//
//	go test -run '^$' -bench RuleConditions -benchmem
func BenchmarkRuleConditions(b *testing.B) {
	k := jwttest.New(b, "ed", "EdDSA")
	claims := testClaims(cacheIss, cacheRes, "mcp:read mcp:admin")
	claims["client_id"] = "app-1"
	claims["realm_access"] = map[string]any{"roles": []any{"user", "mcp-admin"}}
	token := k.Token(b, claims, nil)
	mk := func(cacheSize int, rule *Rule, top func(h *Handler)) *Handler {
		js := newJWKSServer(b, k)
		h := &Handler{
			Resource:             cacheRes,
			AuthorizationServers: []string{cacheIss},
			JWKSURLs:             []string{js.URL},
			Scopes:               []string{"mcp:read"},
			TokenCacheSize:       &cacheSize,
			Rules:                []*Rule{rule},
		}
		if top != nil {
			top(h)
		}
		provisionHandler(b, h)
		waitKeysLoaded(b, h)
		h.logger = zap.NewNop()
		return h
	}
	scopeRule := func() *Rule { return &Rule{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}} }
	claimRule := func() *Rule {
		return &Rule{Tools: []string{"delete_*"}, Clients: []string{"app-*"},
			RequireClaims: []ClaimCondition{{Claim: "realm_access.roles", Values: []string{"mcp-admin"}}}}
	}
	implies := func(h *Handler) { h.ScopeImplies = map[string][]string{"mcp:admin": {"mcp:write"}} }
	impliedRule := func() *Rule { return &Rule{Tools: []string{"delete_*"}, Scopes: []string{"mcp:write"}} }
	cases := []struct {
		name string
		h    *Handler
	}{
		{"cached_scopes", mk(defaultTokenCacheSize, scopeRule(), nil)},
		{"cached_claims", mk(defaultTokenCacheSize, claimRule(), nil)},
		{"cached_implied_scope", mk(defaultTokenCacheSize, impliedRule(), implies)},
		{"uncached_scopes", mk(0, scopeRule(), nil)},
		{"uncached_claims", mk(0, claimRule(), nil)},
	}
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{}}}`)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := &nopWriter{h: make(http.Header)}
			base := newBenchRequest(token)
			base.Header.Set("Content-Type", "application/json")
			rd := strings.NewReader("")
			serve := func(r *http.Request) {
				rd.Reset(string(body))
				r.Body = io.NopCloser(rd)
				r.ContentLength = int64(len(body))
				rec := denyRecorder{nopWriter: w}
				_ = c.h.ServeHTTP(&rec, r, nextOK)
				if rec.status != 0 {
					b.Fatalf("denied with %d", rec.status)
				}
			}
			r := withReplacer(base)
			serve(r)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%256 == 255 {
					b.StopTimer()
					r = withReplacer(base)
					b.StartTimer()
				}
				serve(r)
			}
		})
	}
}

// denyRecorder notes the status of a denial (nextOK writes none).
type denyRecorder struct {
	*nopWriter
	status int
}

func (d *denyRecorder) WriteHeader(s int) { d.status = s }
