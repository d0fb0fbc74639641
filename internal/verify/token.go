package verify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// TokenHash is the SHA-256 of a raw access token. The handler computes it at most once per
// request and hands it to everything that needs a digest of the token: the cache key of an
// opaque token (OpaqueCacheKey), introspection's singleflight and negative cache, the DPoP
// `ath` (RFC 9449 §4.2), the audit token_id and the session anchor.
type TokenHash [sha256.Size]byte

// HashToken computes the TokenHash of token.
func HashToken(token string) TokenHash {
	// Tokens are short; copied to the stack, hashing one allocates nothing (a []byte(token)
	// conversion would, beyond 32 bytes).
	var tb [1024]byte
	if len(token) <= len(tb) {
		return sha256.Sum256(tb[:copy(tb[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

// OpaqueCacheKey is the cache key of an opaque token: "sha256:" and the raw digest, so the
// cache never holds the token itself. It writes into buf and returns the slice.
func (h *TokenHash) OpaqueCacheKey(buf *[OpaqueCacheKeyLen]byte) []byte {
	copy(buf[:], opaqueKeyPrefix)
	copy(buf[len(opaqueKeyPrefix):], h[:])
	return buf[:]
}

const opaqueKeyPrefix = "sha256:"

// OpaqueCacheKeyLen is the length of an OpaqueCacheKey.
const OpaqueCacheKeyLen = len(opaqueKeyPrefix) + sha256.Size

// ShortID is the first 8 bytes in hex: it tells tokens apart in a log without being usable
// as one.
func (h *TokenHash) ShortID() string { return hex.EncodeToString(h[:8]) }

// athLen is the length of base64url(SHA-256), unpadded.
const athLen = 43

// matchesATH reports whether ath is base64url(SHA-256(token)) (RFC 9449 §4.2).
func (h *TokenHash) matchesATH(ath string) bool {
	var b [athLen]byte
	base64.RawURLEncoding.Encode(b[:], h[:])
	return ath == string(b[:])
}

type tokenHashKey struct{}

// WithTokenHash hands the request's TokenHash of token to the verifiers below (introspection
// keys its singleflight and negative cache by it), so that they do not hash the token again.
func WithTokenHash(ctx context.Context, h *TokenHash) context.Context {
	return context.WithValue(ctx, tokenHashKey{}, h)
}

// tokenHashOf is the TokenHash the context carries, or that of token when none.
func tokenHashOf(ctx context.Context, token string) TokenHash {
	if h, ok := ctx.Value(tokenHashKey{}).(*TokenHash); ok && h != nil {
		return *h
	}
	return HashToken(token)
}
