package mcpauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeHTTPExchange compares a cached request without token exchange with one whose
// exchanged token is cached too: the exchange should add at most ~1 µs and no allocation.
// The request's Authorization header is put back before each request (the exchange replaces
// it), the same way in both cases.
func BenchmarkServeHTTPExchange(b *testing.B) {
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"exchanged.token.value","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}`)
	}))
	b.Cleanup(as.Close)
	k := benchKeys(b)[0]
	token := k.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	plain := benchHandler(b, k, defaultTokenCacheSize)
	js := newJWKSServer(b, k)
	size := defaultTokenCacheSize
	exch := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		TokenCacheSize:       &size,
		TokenExchange: &TokenExchange{Endpoint: as.URL, ClientID: "gw", ClientSecret: "s",
			ExchangeTarget: ExchangeTarget{Audience: []string{"https://api.example.com"}}},
	}
	provisionHandler(b, exch)
	waitKeysLoaded(b, exch)
	exch.logger = plain.logger
	for _, c := range []struct {
		name string
		h    *Handler
	}{{"cached", plain}, {"cached_exchanged", exch}} {
		b.Run(c.name, func(b *testing.B) {
			value := "Bearer " + token
			auth := []string{value}
			base := newBenchRequest(token)
			w := &nopWriter{h: make(http.Header)}
			r := withReplacer(base)
			if err := c.h.ServeHTTP(w, r, nextOK); err != nil {
				b.Fatal(err)
			}
			if c.h == exch && r.Header.Get("Authorization") != "Bearer exchanged.token.value" {
				b.Fatalf("upstream Authorization %q", r.Header.Get("Authorization"))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%256 == 255 {
					b.StopTimer()
					r = withReplacer(base)
					b.StartTimer()
				}
				// The exchange writes the new token into the request's own Authorization
				// slice, as a server hands each request its own: put the value back too.
				auth[0] = value
				r.Header["Authorization"] = auth
				_ = c.h.ServeHTTP(w, r, nextOK)
			}
		})
	}
}
