package verify

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
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
	keys []Retirable
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
	// dups are the dotted paths of object members that the payload holds more than once.
	// encoding/json keeps the last of them; another reader may keep the first, so a
	// condition on such a claim cannot be judged with certainty (ClaimAt).
	dups []string
}

// Confirmation holds the members of cnf that this module can check.
type Confirmation struct {
	Present bool   // cnf was present (even with members this module does not know)
	JKT     string // RFC 9449 §6: JWK SHA-256 thumbprint of the DPoP key
	X5TS256 string // RFC 8705 §3.1: SHA-256 thumbprint of the client certificate
}

// Retirable is a verification key as the token cache sees it: a key that can be withdrawn,
// and withdrawn keys invalidate what they verified.
type Retirable interface {
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
			lc.dups = duplicatePaths(src, "", nil)
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

// ClaimOnce returns one top-level claim, or nothing when the token names it, or a member
// inside it, more than once: readers disagree on which duplicate counts, so a placeholder
// must not hand one of them on as the claim's value.
func (id *Identity) ClaimOnce(name string) (any, bool) {
	m := id.Claims()
	if m == nil {
		return nil, false
	}
	for _, d := range id.claims.dups {
		if d == "" || d == name || len(d) > len(name) && d[len(name)] == '.' && d[:len(name)] == name {
			return nil, false
		}
	}
	v, ok := m[name]
	return v, ok
}

// ClaimPath is a claim name, or a dotted path into nested objects (realm_access.roles).
type ClaimPath struct {
	name string
	segs []string
}

// NewClaimPath reads a claim name. Dots separate the members of nested objects, so a claim
// whose own name contains a dot cannot be named; an empty segment ("a..b", ".a", "a.") is
// refused.
func NewClaimPath(name string) (ClaimPath, error) {
	segs := strings.Split(name, ".")
	for _, s := range segs {
		if s == "" {
			return ClaimPath{}, errors.New("empty member name in claim path")
		}
	}
	return ClaimPath{name: name, segs: segs}, nil
}

// String is the path as written.
func (p ClaimPath) String() string { return p.name }

// ClaimAt returns the value at p. ambiguous is true when a member on the path occurs more
// than once in the token's JSON (RFC 8259 §4: names SHOULD be unique, and readers disagree
// on which duplicate counts); the caller then fails closed. It does not allocate once the
// claims are decoded.
func (id *Identity) ClaimAt(p ClaimPath) (v any, ok, ambiguous bool) {
	m := id.Claims()
	if m == nil {
		return nil, false, false
	}
	for _, d := range id.claims.dups {
		if d == "" || d == p.name || len(p.name) > len(d) && p.name[len(d)] == '.' && p.name[:len(d)] == d {
			return nil, false, true
		}
	}
	var cur any = m
	for _, s := range p.segs {
		obj, isObj := cur.(map[string]any)
		if !isObj {
			return nil, false, false
		}
		if cur, ok = obj[s]; !ok {
			return nil, false, false
		}
	}
	return cur, true, false
}

// duplicatePaths lists the dotted paths of members that occur twice in an object of data
// (valid JSON), recursing into member values that are objects.
func duplicatePaths(data []byte, prefix string, out []string) []string {
	var seen map[string]bool
	err := members(data, func(name string, val []byte) error {
		if seen == nil {
			seen = make(map[string]bool)
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if seen[name] {
			if !slices.Contains(out, path) {
				out = append(out, path)
			}
		}
		seen[name] = true
		if len(val) > 0 && val[0] == '{' {
			out = duplicatePaths(val, path, out)
		}
		return nil
	})
	if err != nil {
		// A name this reader refuses (a lone surrogate escape, which encoding/json turns
		// into U+FFFD, so that two such names collide): the whole object is ambiguous.
		out = append(out, prefix)
	}
	return out
}

// WithClaims returns a copy of id whose Claims are decoded from the JSON object claimsJSON
// (introspection answers, tests).
func (id Identity) WithClaims(claimsJSON []byte) *Identity {
	id.claims = &lazyClaims{src: string(claimsJSON), json: true}
	return &id
}
