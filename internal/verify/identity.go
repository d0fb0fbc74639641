package verify

import (
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"
)

// Identity is a verified caller: who, for which client, with which scopes, until when, and
// bound to which key. It is immutable once returned, so a cached Identity is shared by
// concurrent requests.
type Identity struct {
	Issuer   string
	Subject  string
	ClientID string // client_id, else azp
	TokenID  string // jti
	// Scopes are the granted scope-tokens, read strictly (RFC 6749 §3.3).
	Scopes []string
	// Expiry is the token's exp. A zero Expiry is never cached.
	Expiry time.Time
	// Confirmation is the cnf claim (RFC 7800): the key or certificate the token is bound to.
	Confirmation Confirmation

	// keys are what vouched for the token; stillValid fails once one of them is withdrawn.
	keys []Key
	// servedUntil, when set, bounds how long the identity may be served without asking
	// again: an introspection answer is remembered for min(exp, cache_ttl), so that a token
	// revoked at the authorization server stops working within cache_ttl (RFC 7662 §4).
	// No leeway applies to it.
	servedUntil time.Time

	// The full claims are decoded only when a placeholder or a rule asks for them.
	claims *lazyClaims
}

type lazyClaims struct {
	once sync.Once
	src  string // base64url JWT payload, or raw JSON when json
	json bool
	m    map[string]any
}

// Confirmation holds the members of cnf that this module can check.
type Confirmation struct {
	Present bool   // cnf was present (even with members this module does not know)
	JKT     string // RFC 9449 §6: JWK SHA-256 thumbprint of the DPoP key
	X5TS256 string // RFC 8705 §3.1: SHA-256 thumbprint of the client certificate
}

// Key is a verification key as the token cache sees it: withdrawn keys invalidate what they
// verified.
type Key interface {
	Retired() bool
}

// StillValid reports whether the identity may still be served at now, leeway included:
// before exp plus leeway, and while every key that could have signed the token is still
// published.
func (id *Identity) StillValid(now time.Time, leeway time.Duration) bool {
	if id.Expiry.IsZero() || !now.Before(id.Expiry.Add(leeway)) {
		return false
	}
	if !id.servedUntil.IsZero() && !now.Before(id.servedUntil) {
		return false
	}
	for _, k := range id.keys {
		if k.Retired() {
			return false
		}
	}
	return true
}

// Claims returns every top-level claim, decoded on first use. Nil when there are none.
func (id *Identity) Claims() map[string]any {
	lc := id.claims
	if lc == nil {
		return nil
	}
	lc.once.Do(func() {
		src := []byte(lc.src)
		if !lc.json {
			var err error
			if src, err = base64.RawURLEncoding.DecodeString(lc.src); err != nil {
				return
			}
		}
		var m map[string]any
		if json.Unmarshal(src, &m) == nil {
			lc.m = m
		}
		lc.src = ""
	})
	return lc.m
}

// Claim returns one top-level claim.
func (id *Identity) Claim(name string) (any, bool) {
	v, ok := id.Claims()[name]
	return v, ok
}

// WithClaims returns a copy of id whose Claims are decoded from the JSON object claimsJSON
// (introspection answers, tests).
func (id Identity) WithClaims(claimsJSON []byte) *Identity {
	id.claims = &lazyClaims{src: string(claimsJSON), json: true}
	return &id
}
