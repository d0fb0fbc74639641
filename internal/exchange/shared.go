package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// SharedTokens is a cache of exchanged tokens shared with other instances (a sealed store),
// consulted behind the in-process cache: on a miss there, before a slot is taken and the
// token endpoint asked. Keys are hashes; values are opaque to it and hold a token, so the
// implementation must seal them. Errors are its own to count and log: a store that cannot
// answer is a miss, and the token comes from the authorization server.
type SharedTokens interface {
	Get(ctx context.Context, key [32]byte) ([]byte, bool)
	Set(ctx context.Context, key [32]byte, val []byte, ttl time.Duration)
}

// sharedVersion starts every value, so that a value of another layout reads as a miss.
const sharedVersion = 1

// targetIDs hashes what each target asks for (audiences, resource, scopes, each field
// length-prefixed), so that instances share a token only for the same request to the token
// endpoint, whatever the order of their rules.
func targetIDs(targets []Target) [][sha256.Size]byte {
	ids := make([][sha256.Size]byte, len(targets))
	for i, t := range targets {
		h := sha256.New()
		field := func(tag byte, v string) {
			var n [5]byte
			n[0] = tag
			binary.BigEndian.PutUint32(n[1:], uint32(len(v)))
			h.Write(n[:])
			h.Write([]byte(v))
		}
		for _, a := range t.Audiences {
			field('a', a)
		}
		field('r', t.Resource)
		for _, s := range t.Scopes {
			field('s', s)
		}
		h.Sum(ids[i][:0])
	}
	return ids
}

// sharedKey is the key of (incoming token, target) in Shared: the SHA-256 of the incoming
// token's digest and the target's id. Never a token.
func (c *Client) sharedKey(digest *[sha256.Size]byte, target int) [32]byte {
	h := sha256.New()
	h.Write(digest[:])
	h.Write(c.ids[target][:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// sharedSet shares a token exchanged here, for as long as it is served here: the value is
// the version, when it stops being served (Unix nanoseconds), the jti and the token, each
// length-prefixed. Refusals stay per instance: they are short-lived, and a flood of
// refused tokens would fill the store for every instance.
func (c *Client) sharedSet(ctx context.Context, digest *[sha256.Size]byte, target int, t *Token) {
	if c.Shared == nil {
		return
	}
	ttl := t.until.Sub(c.now())
	if ttl <= 0 {
		return
	}
	val := make([]byte, 0, 1+8+4+len(t.JTI)+4+len(t.raw))
	val = append(val, sharedVersion)
	val = binary.BigEndian.AppendUint64(val, uint64(t.until.UnixNano()))
	val = binary.BigEndian.AppendUint32(val, uint32(len(t.JTI)))
	val = append(val, t.JTI...)
	val = binary.BigEndian.AppendUint32(val, uint32(len(t.raw)))
	val = append(val, t.raw...)
	c.Shared.Set(ctx, c.sharedKey(digest, target), val, ttl)
}

// sharedGet reads a token another instance exchanged. It is served until the earliest of
// when that instance would stop serving it (its exp less the leeway, that instance's
// cache_ttl, the incoming token's exp), this instance's cache_ttl from now and the incoming
// token's exp: sharing never lengthens how long a token is used. A value that cannot be
// read is a miss.
func (c *Client) sharedGet(ctx context.Context, digest *[sha256.Size]byte, subjectExp time.Time, target int) (*Token, bool) {
	if c.Shared == nil {
		return nil, false
	}
	val, ok := c.Shared.Get(ctx, c.sharedKey(digest, target))
	if !ok || len(val) < 1+8+4 || val[0] != sharedVersion {
		return nil, false
	}
	now := c.now()
	until := time.Unix(0, int64(binary.BigEndian.Uint64(val[1:])))
	if t := now.Add(c.CacheTTL); t.Before(until) {
		until = t
	}
	if !subjectExp.IsZero() && subjectExp.Before(until) {
		until = subjectExp
	}
	if !now.Before(until) {
		return nil, false
	}
	rest := val[9:]
	jti, rest, ok := lengthPrefixed(rest)
	if !ok {
		return nil, false
	}
	raw, rest, ok := lengthPrefixed(rest)
	if !ok || len(rest) != 0 || len(raw) == 0 {
		return nil, false
	}
	return c.newToken(string(raw), string(jti), until), true
}

func lengthPrefixed(b []byte) (v, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}
