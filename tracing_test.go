package mcpauth

import (
	"net/http"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"go.opentelemetry.io/otel/trace"
)

// unsampledSpan puts on r a span that exists but does not record, as Caddy's tracing does
// for a trace its sampler left out.
func unsampledSpan(r *http.Request) *http.Request {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, // TraceFlags: not sampled
	})
	return r.WithContext(trace.ContextWithSpanContext(r.Context(), sc))
}

// TestTracingCostsNothingWhenNotRecording: on the cached path, a request without a span
// (no `tracing`) and one whose span does not record cost no allocation: the span attributes
// and the record they are read from are built only for a recording span.
func TestTracingCostsNothingWhenNotRecording(t *testing.T) {
	k := jwttest.New(t, "k1", "EdDSA")
	h := &Handler{Resource: cacheRes, AuthorizationServers: []string{cacheIss},
		JWKSURLs: []string{newJWKSServer(t, k).URL}, Scopes: []string{"mcp:read"}}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	token := k.Token(t, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	w := &nopWriter{h: make(http.Header)}
	for name, r := range map[string]*http.Request{
		"no span":        withReplacer(newBenchRequest(token)),
		"unsampled span": unsampledSpan(withReplacer(newBenchRequest(token))),
	} {
		if recordingSpan(r) != nil {
			t.Fatalf("%s: the span records", name)
		}
		_ = h.ServeHTTP(w, r, nextOK) // fills the cache
		if n := testing.AllocsPerRun(200, func() { _ = h.ServeHTTP(w, r, nextOK) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", name, n)
		}
	}
}

// BenchmarkServeHTTPTracing is the cached path with Caddy's tracing absent and with a span
// that does not record: both must report 0 allocs/op, the same as BenchmarkServeHTTP/cached.
func BenchmarkServeHTTPTracing(b *testing.B) {
	k := benchKeys(b)[0]
	h := benchHandler(b, k, defaultTokenCacheSize)
	token := k.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	for _, c := range []struct {
		name string
		wrap func(*http.Request) *http.Request
	}{
		{"cached_no_span", func(r *http.Request) *http.Request { return r }},
		{"cached_unsampled_span", unsampledSpan},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := &nopWriter{h: make(http.Header)}
			base := newBenchRequest(token)
			r := c.wrap(withReplacer(base))
			_ = h.ServeHTTP(w, r, nextOK)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%256 == 255 {
					b.StopTimer()
					r = c.wrap(withReplacer(base))
					b.StartTimer()
				}
				_ = h.ServeHTTP(w, r, nextOK)
			}
		})
	}
}
