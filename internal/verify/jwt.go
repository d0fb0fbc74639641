package verify

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT verifies RFC 9068 JWT access tokens with keys from a KeySource. Only the token's own
// claims are trusted, and only after its signature verified with a key of its issuer; header
// parameters that point to keys (jku, x5u, jwk, x5c) are never read (RFC 8725 §3.1).
//
// The signature is checked with golang-jwt's signing methods; the header and payload are read
// here, straight into the registered claims, without building a claims map.
type JWT struct {
	Keys KeySource
	// Algorithms is the allowlist; symmetric algorithms and none are refused at load.
	Algorithms []string
	Issuers    []string
	Audiences  []string
	// AnyAudience skips the audience check (allow_any_audience).
	AnyAudience bool
	// RequireATJWT requires typ at+jwt (RFC 9068 §2.1).
	RequireATJWT bool
	Leeway       time.Duration
	// ScopeClaims name the claims holding scopes, at most MaxScopeClaims; the granted scopes
	// are the union of what each holds. None reads `scope`, then `scp`.
	ScopeClaims []string
	Now         func() time.Time
	// AllowMissingAudience, when set, is asked about a token that has no `aud` at all, with
	// the token's client (client_id, else azp): true accepts it without an audience. A token
	// whose `aud` names another audience is never accepted through it (Cognito, Keycloak
	// CIMD clients issue tokens without `aud`).
	AllowMissingAudience func(clientID string) bool
	// Tenants, when not empty, are the only `tid` values accepted from a token whose issuer
	// matched an issuer template (TenantPlaceholder).
	Tenants []string
}

// KeySource finds the keys that may have verified a token of issuer iss with this kid and
// alg. It returns ErrKeysUnavailable when no key could ever be loaded, ErrUnknownKey when the
// kid is not known.
type KeySource interface {
	Lookup(ctx context.Context, iss, kid, alg string, buf []VerificationKey) ([]VerificationKey, error)
}

// VerificationKey is a public key that may be withdrawn later.
type VerificationKey interface {
	Retirable
	Public() crypto.PublicKey
}

// Errors a KeySource returns.
var (
	ErrKeysUnavailable = errors.New("no signing keys loaded")
	ErrUnknownKey      = errors.New("no key with this kid")
)

var (
	errCrit      = errors.New("crit header parameter not understood")
	errKIDType   = errors.New("kid is not a string")
	errDuplicate = errors.New("duplicate member")
)

// jwtHeader is what the JOSE header may say that matters here.
type jwtHeader struct {
	alg, kid, typ string
	hasTyp        bool
}

// jwtClaims are the registered claims an access token is judged by.
type jwtClaims struct {
	registered
	audBuf [2]string
}

// Verify checks raw, a JWS compact serialization. The order of checks decides which reason
// a token with several faults is refused for: form, algorithm, header, issuer, key,
// signature, dates, audience. A token bound to a key or certificate (cnf) verifies here;
// the caller checks the binding against the request (Identity.Confirmation).
func (v *JWT) Verify(ctx context.Context, raw string, _ *http.Request) (*Identity, error) {
	h64, rest, ok1 := strings.Cut(raw, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s64, '.') >= 0 {
		return nil, fail(Malformed)
	}
	var hdr jwtHeader
	if err := v.readHeader(h64, &hdr); err != nil {
		return nil, err
	}
	var c jwtClaims
	if err := v.readClaims(p64, &c); err != nil {
		return nil, err
	}

	method := jwt.GetSigningMethod(hdr.alg)
	if method == nil || !slices.Contains(v.Algorithms, hdr.alg) {
		return nil, fail(Algorithm)
	}
	if hdr.hasTyp && otherKind(hdr.typ) {
		return nil, fail(OtherKind)
	}
	if v.RequireATJWT && !isATJWT(hdr.typ) {
		return nil, fail(Type)
	}
	issuer, ok := matchIssuer(v.Issuers, v.Tenants, c.iss, c.tid)
	if !ok {
		return nil, fail(Issuer)
	}

	var keyBuf [4]VerificationKey
	keys, err := v.Keys.Lookup(ctx, issuer, hdr.kid, hdr.alg, keyBuf[:0])
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		return nil, failWith(Unavailable, err)
	case err != nil:
		return nil, failWith(UnknownKey, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s64)
	if err != nil {
		return nil, fail(Malformed)
	}
	signed := raw[:len(h64)+1+len(p64)]
	verified := false
	for _, k := range keys {
		if method.Verify(signed, sig, k.Public()) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, fail(Signature)
	}

	now := v.now()
	if err := v.checkDates(&c, now); err != nil {
		return nil, err
	}
	clientID := c.clientID
	if clientID == "" {
		clientID = c.azp
	}
	if !v.AnyAudience && !audienceOK(c.aud, v.Audiences) {
		// Only a token without any `aud` member may be let through, and only for the
		// configured clients: one that names another audience was issued for another
		// resource (RFC 8707, RFC 9068 §4).
		if c.hasAud || v.AllowMissingAudience == nil || !v.AllowMissingAudience(clientID) {
			return nil, fail(Audience)
		}
	}

	id := &Identity{
		Issuer:       c.iss,
		Subject:      c.sub,
		ClientID:     clientID,
		TokenID:      c.jti,
		Scopes:       c.grantedScopes(len(v.ScopeClaims)),
		Expiry:       numericTime(c.exp),
		Confirmation: c.cnf,
		claims:       &lazyClaims{src: p64},
	}
	id.keys = make([]Retirable, len(keys))
	for i, k := range keys {
		id.keys[i] = k
	}
	return id, nil
}

func (v *JWT) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// checkDates applies exp (required), iat and nbf with the leeway, in golang-jwt's order.
func (v *JWT) checkDates(c *jwtClaims, now time.Time) error {
	if !c.hasExp {
		return fail(NoExpiry)
	}
	if !now.Before(numericTime(c.exp).Add(v.Leeway)) {
		return fail(Expired)
	}
	if c.hasIat && now.Add(v.Leeway).Before(numericTime(c.iat)) {
		return fail(IssuedInFuture)
	}
	if c.hasNbf && now.Add(v.Leeway).Before(numericTime(c.nbf)) {
		return fail(NotYetValid)
	}
	return nil
}

// numericTime converts a bounded NumericDate, keeping fractions of a second as golang-jwt does.
func numericTime(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

func (v *JWT) readHeader(h64 string, hdr *jwtHeader) error {
	b, err := decodeSegment(h64)
	if err != nil {
		return fail(Malformed)
	}
	var seen uint8
	err = members(b, func(name string, val []byte) error {
		var bit uint8
		switch name {
		case "alg":
			bit = 1
			s, err := jsonString(val)
			if err != nil {
				return err
			}
			hdr.alg = s
		case "kid":
			bit = 2
			s, err := jsonString(val)
			if err != nil {
				return errKIDType
			}
			hdr.kid = s
		case "typ":
			bit = 4
			s, err := jsonString(val)
			if err != nil {
				return err
			}
			hdr.typ, hdr.hasTyp = s, true
		case "crit":
			// No extension is understood, so a token that makes one critical is refused
			// (RFC 7515 §4.1.11).
			return errCrit
		default:
			return nil
		}
		if seen&bit != 0 {
			return errDuplicate
		}
		seen |= bit
		return nil
	})
	if err != nil {
		return failWith(Malformed, err)
	}
	return nil
}

func (v *JWT) readClaims(p64 string, c *jwtClaims) error {
	b, err := decodeSegment(p64)
	if err != nil {
		return fail(Malformed)
	}
	c.aud = c.audBuf[:0]
	var seen uint32
	err = members(b, func(name string, val []byte) error {
		_, err := c.read(name, val, v.ScopeClaims, &seen)
		return err
	})
	if err != nil {
		return failWith(Malformed, err)
	}
	// A NumericDate of 0 counts as absent, as golang-jwt reads it: exp 0 is no expiry.
	c.hasExp = c.hasExp && c.exp != 0
	c.hasNbf = c.hasNbf && c.nbf != 0
	c.hasIat = c.hasIat && c.iat != 0
	return nil
}

// scopeValue keeps a scope claim as ParseScopes reads it: a string, or an array whose
// non-string elements grant nothing.
func scopeValue(val []byte) (any, error) {
	switch {
	case len(val) > 0 && val[0] == '"':
		return jsonString(val)
	case len(val) > 0 && val[0] == '[':
		var a []any
		if err := json.Unmarshal(val, &a); err != nil {
			return nil, err
		}
		return a, nil
	}
	return nil, nil // a number, object or null grants nothing
}

// readConfirmation reads cnf (RFC 7800 §3.1): an object. Any cnf member, even null or of
// an unreadable shape, marks the token bound: when unsure, it is not a bearer token. A key
// or certificate named twice makes the whole token unreadable, as any other duplicate member
// it is judged by does: readers that keep the first and readers that keep the last would bind
// it to two different keys.
func readConfirmation(val []byte, cnf *Confirmation) error {
	cnf.Present = true
	if len(val) == 0 || val[0] != '{' {
		return nil // bound to something unreadable: still bound
	}
	var seen uint32
	return members(val, func(name string, v []byte) error {
		switch name {
		case "jkt":
			if s, err := jsonString(v); err == nil {
				cnf.JKT = s
			}
			return mark(&seen, 1)
		case "x5t#S256":
			if s, err := jsonString(v); err == nil {
				cnf.X5TS256 = s
			}
			return mark(&seen, 2)
		}
		return nil
	})
}

func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, errNotObject
	}
	return b, nil
}

// otherKind reports whether a typ names a JWT of another kind than an access token:
// "dpop+jwt", "logout+jwt", "secevent+jwt", "oauth-id-jag+jwt", any "*+jwt" but "at+jwt",
// with or without the "application/" prefix (RFC 7515 §4.1.9; media types compare
// case-insensitively, RFC 2045 §5.1). Plain "JWT" and absent typ are the generic kind.
//
// Parameters are ignored and "+jwt" anywhere counts, so that no spelling of another type
// (" dpop+jwt ", "dpop+jwt; x=y", "x-dpop+jwt-x") slips through as an access token.
func otherKind(typ string) bool {
	if typ == "" || typ == "at+jwt" {
		return false
	}
	mt, _, _ := strings.Cut(typ, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	mt = strings.TrimPrefix(mt, "application/")
	return strings.Contains(mt, "+jwt") && mt != "at+jwt"
}

func isATJWT(typ string) bool {
	return strings.EqualFold(typ, "at+jwt") || strings.EqualFold(typ, "application/at+jwt")
}

func audienceOK(aud, accepted []string) bool {
	for _, a := range aud {
		if slices.Contains(accepted, a) {
			return true
		}
	}
	return false
}
