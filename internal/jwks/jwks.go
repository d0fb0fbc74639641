// Package jwks holds the keys that verify JWT access tokens: JSON Web Key Sets (RFC 7517)
// read from a file, fetched from a URL, or found through the issuer's RFC 8414 or OpenID
// Connect Discovery metadata; refreshed in the background and, for a token whose kid is not
// known, on demand within a rate limit. It knows nothing of Caddy: the caller shares remote
// sets across configurations, and hands logging and metrics in through Options.
package jwks

import (
	"context"
	"errors"
)

// Lookup errors. ErrKeysUnavailable is the key server's fault (no set could be loaded yet),
// ErrUnknownKey the token's.
var (
	ErrKeysUnavailable = errors.New("no signing keys could be loaded yet")
	ErrUnknownKey      = errors.New("no key matches the token's kid and alg")
)

// Sources are the key sets one verifier trusts. The zero value holds no key.
type Sources struct {
	// File is a static set (a jwks_file), valid for every accepted issuer.
	File *Set
	// URLs are remote sets valid for every accepted issuer.
	URLs []*Remote
	// Issuers are discovered sets, each valid only for tokens of its own issuer, so that a
	// key of issuer A can never vouch for a token claiming issuer B.
	Issuers map[string]*Remote
}

// Lookup returns the keys that may verify a token of issuer iss with this kid and alg (a
// token without kid is tried against every compatible key). An unknown kid makes the remote
// sets fetch again, within their rate limit, and waits for that fetch as long as ctx lives.
// The error is ErrKeysUnavailable when no set has ever been loaded, else ErrUnknownKey.
func (s *Sources) Lookup(ctx context.Context, iss, kid, alg string) ([]*Key, error) {
	var setBuf [4]*Remote
	sets := append(setBuf[:0], s.URLs...)
	if r := s.Issuers[iss]; r != nil {
		sets = append(sets, r)
	}
	var found []*Key
	found = s.File.find(kid, alg, found)
	for _, r := range sets {
		found = r.Keys().find(kid, alg, found)
	}
	if len(found) > 0 {
		return found, nil
	}
	anyLoaded := s.File.Len() > 0
	for _, r := range sets {
		r.refreshForUnknownKID(ctx)
		ks := r.Keys()
		found = ks.find(kid, alg, found)
		if ks != nil {
			anyLoaded = true
		}
	}
	if len(found) > 0 {
		return found, nil
	}
	if !anyLoaded {
		return nil, ErrKeysUnavailable
	}
	return nil, ErrUnknownKey
}
