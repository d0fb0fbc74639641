package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// The routing seam: which mechanism verifies a token. A JWS goes to the JWT verifier, any
// other token to introspection when it is configured.

// IsJWS reports whether token is a JWS compact serialization: three base64url parts, the
// first a JSON object (RFC 7515 §7.1). Anything else is an opaque token.
func IsJWS(token string) bool {
	h64, rest, ok1 := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !base64URL(h64) || !base64URL(p64) || !base64URL(s64) {
		return false
	}
	if len(h64) > 4096 {
		return false
	}
	var buf [3072]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(h64))
	if err != nil {
		return false
	}
	hdr := buf[:n]
	i := skipSpace(hdr, 0)
	return i < len(hdr) && hdr[i] == '{' && json.Valid(hdr)
}

// MaybeJWS is the cheap test that every JWS passes (two dots, and the first part begins
// with 'e', as the base64url of '{' does); a token that fails it is opaque.
func MaybeJWS(token string) bool {
	return len(token) > 0 && token[0] == 'e' && strings.Count(token, ".") == 2
}

func base64URL(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Chain routes a token to the mechanism that can verify it: a JWS to the JWT verifier, any
// other token to introspection when it is configured (else it is Malformed, as before). With
// JWTToo, a JWT that passed the local checks is introspected as well, so that revocation at
// the authorization server takes effect.
type Chain struct {
	JWT           Verifier
	Introspection *Introspection
	JWTToo        bool
}

// Verify implements Verifier.
func (c *Chain) Verify(ctx context.Context, token string, r *http.Request) (*Identity, error) {
	if c.Introspection == nil {
		return c.JWT.Verify(ctx, token, r)
	}
	if !IsJWS(token) {
		return c.Introspection.Verify(ctx, token, r)
	}
	id, err := c.JWT.Verify(ctx, token, r)
	if err != nil || !c.JWTToo {
		return id, err
	}
	return c.Introspection.Recheck(ctx, token, id)
}
