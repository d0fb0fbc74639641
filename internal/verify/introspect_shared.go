package verify

import (
	"context"
	"encoding/binary"
	"net/netip"
	"time"
)

// SharedAnswers is a cache of introspection answers shared with other instances (a sealed
// store), consulted behind the in-process caches: on a miss there, before the authorization
// server is asked. Keys are the token's SHA-256; values are opaque to it. Errors are its
// own to count and log: a store that cannot answer is a miss, and the answer comes from
// the authorization server.
type SharedAnswers interface {
	Get(ctx context.Context, key [32]byte) ([]byte, bool)
	Set(ctx context.Context, key [32]byte, val []byte, ttl time.Duration)
}

// fetch gets the answer about a token no in-process cache holds. It runs in the flight of
// the token, for the request that started it: ctx is that request's, for its span only (the
// flight serves every request with the token, so no one request's end cancels it).
//
// The shared store comes first, outside the limits (introspect_limits.go): an answer another
// instance fetched costs the authorization server nothing, so it takes no slot and no share
// of the rate. A miss there is an uncached call like any other, admitted or shed by the
// limits. An active answer another instance fetched is used as it was fetched (served until
// its arrival + CacheTTL, never past exp, so sharing never lengthens how long an answer is
// trusted); an active answer fetched here is shared for as long as it may be served. Both
// go into the in-process cache (Answers), so the next request does not ask the store again.
func (v *Introspection) fetch(ctx context.Context, token, key string, client netip.Prefix, proven bool) (*answer, error) {
	ctx = context.WithoutCancel(ctx)
	if a, ok := v.sharedGet(ctx, key); ok {
		v.keep(key, a)
		return a, nil
	}
	a, err := v.limited(token, client, proven)
	if err != nil {
		return nil, err
	}
	v.keep(key, a)
	v.sharedSet(ctx, key, a)
	return a, nil
}

// sharedGet reads an active answer from Shared. A value that cannot be read (another
// version, a broken entry) is a miss.
func (v *Introspection) sharedGet(ctx context.Context, key string) (*answer, bool) {
	if v.Shared == nil {
		return nil, false
	}
	var k [32]byte
	copy(k[:], key)
	val, ok := v.Shared.Get(ctx, k)
	if !ok || len(val) <= 8 {
		return nil, false
	}
	received := time.Unix(0, int64(binary.BigEndian.Uint64(val)))
	a, err := parseAnswer(val[8:], v.ScopeClaims)
	if err != nil || !a.active {
		return nil, false
	}
	// The stamp is the writer's, the lifetime the store's: neither is trusted to lengthen
	// how long an answer is served. An answer stamped ahead of this clock is taken as
	// fetched now; one whose time is up here (a store that kept it past its TTL, or a sealed
	// value copied out and written back later: sealing stops forging, not replaying) is a
	// miss, so that a token revoked since is asked about again.
	now := v.now()
	if received.After(now) {
		received = now
	}
	a.received = received
	if !v.servedUntil(a, received).After(now) {
		return nil, false
	}
	return a, true
}

// sharedSet shares an active answer fetched here, for as long as it may be served. Inactive
// answers stay per instance: they are what a flood of made-up tokens produces, and would
// fill the store for every instance.
func (v *Introspection) sharedSet(ctx context.Context, key string, a *answer) {
	if v.Shared == nil || !a.active {
		return
	}
	ttl := v.servedUntil(a, a.received).Sub(v.now())
	if ttl <= 0 {
		return
	}
	var k [32]byte
	copy(k[:], key)
	val := make([]byte, 8, 8+len(a.raw))
	binary.BigEndian.PutUint64(val, uint64(a.received.UnixNano()))
	v.Shared.Set(ctx, k, append(val, a.raw...), ttl)
}
