package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
)

// Key is one usable public key of a JWK set.
type Key struct {
	// retired is set when a refresh no longer lists the key; tokens it verified must then
	// stop being served from a cache. Keys still listed keep their *Key across refreshes.
	retired atomic.Bool
	kid     string
	alg     string // the JWK's alg, or "" when the JWK does not restrict it
	pub     crypto.PublicKey
}

// Public returns the key to verify a signature with: *rsa.PublicKey, *ecdsa.PublicKey or
// ed25519.PublicKey.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Retired reports whether the key has left its set since it was handed out. A token that
// this key verified would not verify any more.
func (k *Key) Retired() bool { return k.retired.Load() }

// usableFor matches the key type (and the JWK's own alg) to the token's alg, so that a key is
// never handed to a verification method of another family (RFC 8725 §3.1).
func (k *Key) usableFor(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.pub.(*rsa.PublicKey)
		return ok
	case "ES256":
		return ecCurve(k.pub, elliptic.P256())
	case "ES384":
		return ecCurve(k.pub, elliptic.P384())
	case "ES512":
		return ecCurve(k.pub, elliptic.P521())
	case "EdDSA":
		_, ok := k.pub.(ed25519.PublicKey)
		return ok
	}
	return false
}

func ecCurve(key crypto.PublicKey, c elliptic.Curve) bool {
	k, ok := key.(*ecdsa.PublicKey)
	return ok && k.Curve == c
}

// Set is an immutable snapshot of a JWK set; a refresh replaces it as a whole.
type Set struct {
	byKID map[string][]*Key
	all   []*Key
}

// Len is the number of usable keys; 0 for a nil set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.all)
}

// find appends to out the keys that may verify a token with this kid and alg. A token
// without kid is tried against every compatible key.
func (s *Set) find(kid, alg string, out []*Key) []*Key {
	if s == nil {
		return out
	}
	cands := s.all
	if kid != "" {
		cands = s.byKID[kid]
	}
	for _, k := range cands {
		if k.usableFor(alg) {
			out = append(out, k)
		}
	}
	return out
}

// Parse reads a JWK set (RFC 7517 §5) and returns its usable signing keys and how many
// members it skipped. Members that cannot verify signatures (encryption keys, symmetric keys,
// unsupported types, malformed members) are skipped, not fatal: one odd key must not take the
// others down. That is also why the members are decoded one by one: jwkset's whole-set
// decoders (JWKSMarshal, JWKSlice) refuse the set for a single bad member.
func Parse(raw []byte) (*Set, int, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, 0, fmt.Errorf("parsing JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, 0, errors.New(`parsing JWK set: no "keys" member`)
	}
	s := &Set{byKID: make(map[string][]*Key, len(doc.Keys)), all: make([]*Key, 0, len(doc.Keys))}
	skipped := 0
	for _, member := range doc.Keys {
		// Private: true reads private members too (their public half is kept below); the
		// default validation refuses unregistered kty, use and key_ops values.
		jwk, err := jwkset.NewJWKFromRawJSON(member, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		if err != nil {
			skipped++
			continue
		}
		m := jwk.Marshal()
		if m.USE != "" && m.USE != jwkset.UseSig {
			skipped++
			continue
		}
		pub := publicOf(jwk.Key())
		if pub == nil {
			skipped++
			continue
		}
		k := &Key{kid: m.KID, alg: m.ALG.String(), pub: pub}
		s.all = append(s.all, k)
		s.byKID[k.kid] = append(s.byKID[k.kid], k)
	}
	return s, skipped, nil
}

// publicOf returns the public half of an asymmetric key, or nil for anything else.
func publicOf(key any) crypto.PublicKey {
	switch k := key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}

// carryOver builds the set that replaces old: a key present in both keeps its old *Key, so
// tokens it verified stay cached; a key that left is marked retired.
func carryOver(old, next *Set) *Set {
	if old == nil {
		return next
	}
	kept := make(map[*Key]bool, len(old.all))
	out := &Set{byKID: make(map[string][]*Key, len(next.byKID)), all: make([]*Key, 0, len(next.all))}
	for _, k := range next.all {
		for _, o := range old.byKID[k.kid] {
			if o.alg == k.alg && sameKey(o.pub, k.pub) {
				k = o
				kept[o] = true
				break
			}
		}
		out.all = append(out.all, k)
		out.byKID[k.kid] = append(out.byKID[k.kid], k)
	}
	for _, o := range old.all {
		if !kept[o] {
			o.retired.Store(true)
		}
	}
	return out
}

func sameKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
