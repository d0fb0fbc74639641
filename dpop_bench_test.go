package mcpauth

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// BenchmarkSenderConstrained compares, with the token in the verified-token cache, the bearer
// path with the DPoP path (a fresh ES256 proof per request, replay cache on) and the
// certificate-bound path, and gives the bare ES256 signature check of golang-jwt as the
// yardstick: a DPoP request should cost about one such check more than a bearer one.
//
//	go test -run '^$' -bench SenderConstrained -benchmem
func BenchmarkSenderConstrained(b *testing.B) {
	asKey := jwttest.New(b, "rs", "RS256")
	client := jwttest.New(b, "", "ES256")
	const htu = cacheRes // the resource: its origin and the path requested

	unbound := asKey.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	c := testClaims(cacheIss, cacheRes, "mcp:read")
	c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
	dpopBound := asKey.Token(b, c, nil)
	cert := benchCert(b)
	c = testClaims(cacheIss, cacheRes, "mcp:read")
	c["cnf"] = map[string]any{"x5t#S256": verify.CertThumbprint(cert)}
	certBound := asKey.Token(b, c, nil)

	bearerH := benchHandler(b, asKey, defaultTokenCacheSize)
	dpopH := benchDPoPHandler(b, asKey)
	mtlsH := benchHandler(b, asKey, defaultTokenCacheSize)
	mtlsH.MTLSBound = true

	// Proofs are made before the timer runs; the replay cache is renewed (timer stopped)
	// each time the pool is used up, so every timed proof is new to it.
	pool := make([]string, 2048)
	for i := range pool {
		pool[i] = client.Proof(b, http.MethodPost, htu, dpopBound, time.Now().Unix())
	}

	b.Run("bearer_cached", func(b *testing.B) { runServe(b, bearerH, unbound) })
	b.Run("dpop_cached", func(b *testing.B) {
		base := newBenchRequest("")
		base.Header.Set("Authorization", "DPoP "+dpopBound)
		w := &nopWriter{h: make(http.Header)}
		r := withReplacer(base)
		// A fresh replay cache: with -count above 1 the pool's proofs were seen before.
		dpopH.dpop.Replay = verify.NewReplayCache(defaultDPoPReplayCache)
		r.Header["Dpop"] = []string{pool[0]}
		if err := dpopH.ServeHTTP(w, r, nextOK); err != nil || w.h.Get("Www-Authenticate") != "" {
			b.Fatalf("first request refused: %v %s", err, w.h.Get("Www-Authenticate"))
		}
		dpopH.dpop.Replay = verify.NewReplayCache(defaultDPoPReplayCache)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if i%len(pool) == len(pool)-1 {
				b.StopTimer()
				dpopH.dpop.Replay = verify.NewReplayCache(defaultDPoPReplayCache)
				r = withReplacer(base)
				b.StartTimer()
			}
			r.Header["Dpop"] = pool[i%len(pool) : i%len(pool)+1]
			_ = dpopH.ServeHTTP(w, r, nextOK)
		}
		b.StopTimer()
		if w.h.Get("Www-Authenticate") != "" {
			b.Fatalf("refused: %s", w.h.Get("Www-Authenticate"))
		}
	})
	b.Run("mtls_bound_cached", func(b *testing.B) {
		base := newBenchRequest(certBound)
		base.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		w := &nopWriter{h: make(http.Header)}
		r := withReplacer(base)
		if err := mtlsH.ServeHTTP(w, r, nextOK); err != nil || w.h.Get("Www-Authenticate") != "" {
			b.Fatalf("refused: %v %s", err, w.h.Get("Www-Authenticate"))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if i%256 == 255 {
				b.StopTimer()
				r = withReplacer(base)
				b.StartTimer()
			}
			_ = mtlsH.ServeHTTP(w, r, nextOK)
		}
	})
	b.Run("yardstick_es256_verify", func(b *testing.B) {
		p := pool[0]
		i := strings.LastIndexByte(p, '.')
		sig, err := jwt.NewParser().DecodeSegment(p[i+1:])
		if err != nil {
			b.Fatal(err)
		}
		pub := client.Signer.Public()
		b.ReportAllocs()
		for b.Loop() {
			if err := jwt.SigningMethodES256.Verify(p[:i], sig, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchDPoPHandler(b *testing.B, k *jwttest.Key) *Handler {
	b.Helper()
	size := defaultTokenCacheSize
	js := newJWKSServer(b, k)
	h := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		TokenCacheSize:       &size,
		DPoP:                 &DPoPConfig{},
	}
	provisionHandler(b, h)
	waitKeysLoaded(b, h)
	return h
}

func benchCert(b *testing.B) *x509.Certificate {
	b.Helper()
	ca := jwttest.New(b, "", "ES256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.Signer.Public(), ca.Signer)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	return cert
}
