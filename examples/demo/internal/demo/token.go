package demo

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenOptions are the claims of a demo access token.
type TokenOptions struct {
	Issuer   string
	Audience string
	Subject  string
	ClientID string
	Scope    string        // space-separated; empty leaves the claim out
	Lifetime time.Duration // negative mints an already expired token
	Now      time.Time     // zero means time.Now()
}

// Mint signs an RFC 9068 JWT access token (typ at+jwt) with the demo key.
func (k *Key) Mint(o TokenOptions) (string, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"iss":       o.Issuer,
		"aud":       o.Audience,
		"sub":       o.Subject,
		"client_id": o.ClientID,
		"iat":       now.Unix(),
		"exp":       now.Add(o.Lifetime).Unix(),
		"jti":       hex.EncodeToString(jti[:]),
	}
	if o.Scope != "" {
		claims["scope"] = o.Scope
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = k.KID
	return tok.SignedString(k.Private)
}
