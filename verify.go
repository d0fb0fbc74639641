package mcpauth

import (
	"context"
	"errors"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
)

// Verification failures, each mapped to one fixed error_description (wwwauth.go).
var (
	errTokenIssuer   = errors.New("issuer not accepted")
	errTokenAudience = errors.New("audience not accepted")
	errTokenType     = errors.New("typ is not at+jwt")
	errTokenCrit     = errors.New("crit header parameter not understood")
	errTokenKID      = errors.New("kid is not a string")
)

// verifier checks a JWT access token. Only the token's own claims are trusted after the
// signature verified with a key of the token's issuer; headers that point to keys (jku, x5u,
// jwk, x5c) are never read.
type verifier struct {
	parser     *jwt.Parser
	algorithms []string
	issuers    map[string]struct{}
	audiences  []string
	anyAud     bool
	requireAT  bool
	keys       *jwks.Sources
}

func newVerifier(h *Handler, keys *jwks.Sources) *verifier {
	v := &verifier{
		parser: jwt.NewParser(
			jwt.WithValidMethods(h.Algorithms),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(h.leeway),
			jwt.WithTimeFunc(h.now),
		),
		algorithms: h.Algorithms,
		issuers:    make(map[string]struct{}, len(h.Issuers)),
		audiences:  h.Audiences,
		anyAud:     h.AllowAnyAudience,
		requireAT:  h.RequireATJWT,
		keys:       keys,
	}
	for _, iss := range h.Issuers {
		v.issuers[iss] = struct{}{}
	}
	return v
}

// verify returns the claims of a valid token, or an error that errors.Is one of the sentinels
// of this file, of internal/jwks, or of jwt.
// The keys returned are those the signature was checked against (one of them verified it).
func (v *verifier) verify(ctx context.Context, raw string) (jwt.MapClaims, []*jwks.Key, *jwt.Token, error) {
	claims := jwt.MapClaims{}
	var keys []*jwks.Key
	tok, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		var err error
		keys, err = v.keyFor(ctx, t, claims)
		if err != nil {
			return nil, err
		}
		if len(keys) == 1 {
			return keys[0].Public(), nil
		}
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
		for i, k := range keys {
			set.Keys[i] = k.Public()
		}
		return set, nil
	})
	if err != nil {
		return nil, nil, tok, err
	}
	if !v.anyAud && !v.audienceOK(claims) {
		return nil, nil, tok, errTokenAudience
	}
	return claims, keys, tok, nil
}

// keyFor runs before the signature check: it refuses what can be refused without a signature
// (typ, crit, issuer) and picks the keys of the token's issuer only, so that a key of issuer A
// can never vouch for a token claiming issuer B.
func (v *verifier) keyFor(ctx context.Context, t *jwt.Token, claims jwt.MapClaims) ([]*jwks.Key, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errTokenCrit
	}
	if v.requireAT {
		typ, _ := t.Header["typ"].(string)
		if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return nil, errTokenType
		}
	}
	iss, _ := claims["iss"].(string)
	if _, ok := v.issuers[iss]; !ok {
		return nil, errTokenIssuer
	}
	var kid string
	if k, ok := t.Header["kid"]; ok {
		if kid, ok = k.(string); !ok {
			return nil, errTokenKID
		}
	}
	alg, _ := t.Header["alg"].(string)
	return v.keys.Lookup(ctx, iss, kid, alg)
}

func (v *verifier) audienceOK(claims jwt.MapClaims) bool {
	aud, err := claims.GetAudience()
	if err != nil {
		return false
	}
	for _, a := range aud {
		for _, want := range v.audiences {
			if a == want {
				return true
			}
		}
	}
	return false
}
