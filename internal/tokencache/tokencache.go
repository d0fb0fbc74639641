// Package tokencache is the bounded cache of verified callers. MCP clients send the same
// token on every request of a session, so a token is verified once and later requests only
// look it up. The cache knows nothing of how a token was verified: an entry says itself
// whether it may still be served.
//
// With the real clock, a lookup reads the clock once: the cache reads the wall clock at most
// once a second (time.Now reads two clocks, a syscall each where the clock has no vDSO, as
// on many VMs) and in between counts from that reading on the monotonic clock. A step of
// the wall clock, or a suspend (the monotonic clock stops while the machine sleeps), is seen
// within a second of running time.
package tokencache

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxKeyBytes bounds the memory of the cache by size × this, whatever tokens clients send;
// larger keys (rare) are not cached, and their tokens are verified every time.
const MaxKeyBytes = 4096

// shards is the most shards a cache has (a power of two).
const shards = 32

// Entry is a cached value: it reports whether it may still be served at now (before its
// expiry, and while whatever vouched for it still stands).
type Entry interface {
	StillValid(now time.Time) bool
}

// Cache maps keys (a JWT itself, or the SHA-256 of an opaque token) to entries. It is split
// in shards, each with its own lock, so concurrent requests rarely wait on each other.
// Entries that are no longer valid are never served and leave on their next lookup; a full
// shard evicts one entry in map order, which clients cannot steer.
type Cache[V Entry] struct {
	shards []shard[V]       // a power of two of them
	mask   uint64           // len(shards)-1: a shard is picked with a mask, not a division
	now    func() time.Time // a test's clock; nil for the real one
	// anchor is the last reading of the real clock (wall and monotonic).
	anchor atomic.Pointer[time.Time]
}

// anchorLife is how long a reading of the wall clock is counted from on the monotonic clock.
const anchorLife = time.Second

type shard[V Entry] struct {
	mu  sync.RWMutex
	m   map[string]V
	cap int
	_   [24]byte // keep hot shards off each other's cache lines
}

// clock is the time of a lookup: a test's clock, or the last reading of the real clock plus
// the time elapsed since on the monotonic clock, read anew once anchorLife has passed.
func (c *Cache[V]) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	if a := c.anchor.Load(); a != nil {
		if d := time.Since(*a); d >= 0 && d < anchorLife {
			return a.Add(d)
		}
	}
	t := time.Now()
	c.anchor.Store(&t)
	return t
}

// New makes a cache of at most size entries, or nil (no cache) for size <= 0. A nil *Cache
// is usable: it holds nothing. now is nil for the real clock, or a test's clock.
func New[V Entry](size int, now func() time.Time) *Cache[V] {
	if size <= 0 {
		return nil
	}
	n := 1
	for n*2 <= min(size, shards) {
		n *= 2
	}
	c := &Cache[V]{shards: make([]shard[V], n), mask: uint64(n - 1), now: now}
	for i := range c.shards {
		// The shard capacities add up to size exactly.
		c.shards[i].cap = size / n
		if i < size%n {
			c.shards[i].cap++
		}
		c.shards[i].m = make(map[string]V)
	}
	return c
}

// shard picks a shard from a hash of the key's last bytes (a JWT's signature, random for
// every token that verified), seeded per process so that clients cannot aim at one shard.
func (c *Cache[V]) shard(key string) *shard[V] {
	tail := key[max(0, len(key)-16):]
	return &c.shards[maphash.String(seed, tail)&c.mask]
}

var seed = maphash.MakeSeed()

// Get returns the entry for key if it may still be served.
func (c *Cache[V]) Get(key string) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	s := c.shard(key)
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	if !ok {
		return zero, false
	}
	if !v.StillValid(c.clock()) {
		s.mu.Lock()
		if cur, ok := s.m[key]; ok && any(cur) == any(v) {
			delete(s.m, key)
		}
		s.mu.Unlock()
		return zero, false
	}
	return v, true
}

// GetBytes is Get for a key held in a byte slice (the hash of an opaque token, built on the
// stack): looking it up costs no allocation.
func (c *Cache[V]) GetBytes(key []byte) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	s := &c.shards[maphash.Bytes(seed, key[max(0, len(key)-16):])&c.mask]
	s.mu.RLock()
	v, ok := s.m[string(key)]
	s.mu.RUnlock()
	if !ok {
		return zero, false
	}
	if !v.StillValid(c.clock()) {
		s.mu.Lock()
		if cur, ok := s.m[string(key)]; ok && any(cur) == any(v) {
			delete(s.m, string(key))
		}
		s.mu.Unlock()
		return zero, false
	}
	return v, true
}

// Put stores v under key, unless the key is too large or v is already invalid.
func (c *Cache[V]) Put(key string, v V) {
	if c == nil || len(key) > MaxKeyBytes || !v.StillValid(c.clock()) {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= s.cap {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	// Copy the key: it is usually a slice of the request's header, which the cache must not
	// keep alive beyond the bytes it needs.
	s.m[strings.Clone(key)] = v
}

// Len counts the entries, for tests and metrics.
func (c *Cache[V]) Len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
