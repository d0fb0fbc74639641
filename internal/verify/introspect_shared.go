package verify

import (
	"context"
	"encoding/binary"
	"time"
)

// SharedAnswers is a cache of introspection answers shared with other instances (a sealed
// store), consulted behind the in-process cache: on a miss there, before the authorization
// server is asked. Keys are the token's SHA-256; values are opaque to it. Errors are its
// own to count and log: a store that cannot answer is a miss, and the answer comes from
// the authorization server.
type SharedAnswers interface {
	Get(ctx context.Context, key [32]byte) ([]byte, bool)
	Set(ctx context.Context, key [32]byte, val []byte, ttl time.Duration)
}

// callShared is call behind Shared: an active answer another instance fetched is used as
// it was fetched (served until its fetch time + CacheTTL, never past exp, so sharing never
// lengthens how long an answer is trusted), and an active answer fetched here is shared
// for as long as it may be served.
func (v *Introspection) callShared(token, key string) (*answer, error) {
	if v.Shared == nil {
		return v.call(token)
	}
	var k [32]byte
	copy(k[:], key)
	ctx := context.Background()
	if val, ok := v.Shared.Get(ctx, k); ok && len(val) > 8 {
		fetched := time.Unix(0, int64(binary.BigEndian.Uint64(val)))
		if a, err := parseAnswer(val[8:], v.ScopeClaim); err == nil && a.active {
			a.fetched = fetched
			return a, nil
		}
	}
	a, err := v.call(token)
	if err != nil || !a.active {
		return a, err
	}
	now := v.now()
	a.fetched = now
	if ttl := v.servedUntil(a, now).Sub(now); ttl > 0 {
		val := make([]byte, 8, 8+len(a.raw))
		binary.BigEndian.PutUint64(val, uint64(now.UnixNano()))
		v.Shared.Set(ctx, k, append(val, a.raw...), ttl)
	}
	return a, nil
}
