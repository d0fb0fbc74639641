package mcpauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	errTokenTypeStr  = errors.New("typ is not a string")
	errTokenDate     = errors.New("exp, nbf or iat is not a date between 1970 and 9999")
	errTokenBound    = errors.New("token is bound to a key (cnf) but was presented as a bearer token")
)

// maxNumericDate is 9999-12-31T23:59:59Z. A NumericDate (RFC 7519 §2) outside 0..this is no
// date any issuer means, and golang-jwt converts seconds to int64 unchecked, which the Go
// spec leaves implementation-defined for out-of-range values: on amd64, an `nbf` of 1e20
// became a date in the past.
const maxNumericDate = 253402300799

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
	// A token bound to a key (RFC 7800 `cnf`: `jkt` of DPoP, RFC 9449 §7.2; `x5t#S256` of
	// mTLS, RFC 8705 §3) is only good with proof of that key. This module takes plain
	// bearer tokens only, so any `cnf` at all is refused: its holder may be a thief.
	if _, ok := claims["cnf"]; ok {
		return nil, nil, tok, errTokenBound
	}
	return claims, keys, tok, nil
}

// keyFor runs before the signature check: it refuses what can be refused without a signature
// (crit, typ, dates, issuer) and picks the keys of the token's issuer only, so that a key of
// issuer A can never vouch for a token claiming issuer B.
func (v *verifier) keyFor(ctx context.Context, t *jwt.Token, claims jwt.MapClaims) ([]*jwks.Key, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errTokenCrit
	}
	typ, ok := t.Header["typ"].(string)
	if !ok && t.Header["typ"] != nil {
		return nil, errTokenTypeStr
	}
	if otherJWTType(typ) {
		return nil, errTokenType
	}
	if v.requireAT && !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return nil, errTokenType
	}
	// The library's own time checks come after the signature, on dates it converts
	// unchecked: refuse absurd ones first.
	if err := checkDates(claims); err != nil {
		return nil, err
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

// otherJWTType reports whether a `typ` header names a kind of JWT other than an access token
// (RFC 8725 §3.11, explicit typing): `dpop+jwt` (a DPoP proof, RFC 9449), `logout+jwt`
// (OpenID back-channel logout), `secevent+jwt` (RFC 8417), `oauth-id-jag+jwt`, and any other
// `*+jwt` but `at+jwt` (RFC 9068). Such a token may be signed by the same authorization
// server with the same keys, so only its type tells it apart, whatever require_at_jwt says.
// Media types compare case-insensitively (RFC 7515 §4.1.9, RFC 2045 §5.1), the
// `application/` prefix may be left out, and parameters are ignored, so that no spelling of
// another type slips through as an access token. Without require_at_jwt, a generic `typ`
// (`JWT`, `application/jwt`, none) is still accepted.
func otherJWTType(typ string) bool {
	if typ == "" || typ == "at+jwt" {
		return false
	}
	mt, _, _ := strings.Cut(typ, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	mt = strings.TrimPrefix(mt, "application/")
	// Contains, not HasSuffix: "dpop+jwt" followed by junk is refused too.
	return strings.Contains(mt, "+jwt") && mt != "at+jwt"
}

// checkDates refuses an `exp`, `nbf` or `iat` that is not a JSON number (RFC 7519 §2
// NumericDate) between 1970 and 9999, before the library turns it into a time.
func checkDates(claims jwt.MapClaims) error {
	for _, name := range [...]string{"exp", "nbf", "iat"} {
		v, ok := claims[name]
		if !ok {
			continue
		}
		var f float64
		switch n := v.(type) {
		case float64:
			f = n
		case json.Number:
			var err error
			if f, err = n.Float64(); err != nil {
				return fmt.Errorf("%s: %w", name, errTokenDate)
			}
		default:
			return fmt.Errorf("%s: %w", name, errTokenDate)
		}
		// Written so that NaN fails too.
		if !(f >= 0 && f <= maxNumericDate) {
			return fmt.Errorf("%s: %w", name, errTokenDate)
		}
	}
	return nil
}
