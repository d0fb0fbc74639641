package verify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// BenchmarkJWTVerify is the whole verification of a new token, against the signature check
// alone (golang-jwt's signing method with the key handed over): the difference is what this
// verifier adds (splitting, decoding, reading the claims, the checks, the identity).
//
//	go test -run '^$' -bench . -benchmem ./internal/verify
func BenchmarkJWTVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		k := jwttest.New(b, "k1", alg)
		v := &JWT{
			Keys:       keysOf{"k1": {pub: k.Signer.Public()}},
			Algorithms: []string{alg},
			Issuers:    []string{testIss},
			Audiences:  []string{testRes},
			Now:        func() time.Time { return testNow },
		}
		tok := k.Token(b, claims(nil), map[string]any{"typ": "at+jwt"})
		b.Run("verify/"+alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("signature_only/"+alg, func(b *testing.B) {
			i := strings.LastIndexByte(tok, '.')
			sig, err := jwt.NewParser().DecodeSegment(tok[i+1:])
			if err != nil {
				b.Fatal(err)
			}
			m := jwt.GetSigningMethod(alg)
			pub := k.Signer.Public()
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Verify(tok[:i], sig, pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
