package verify

import (
	"hash/maphash"
	"sync"
)

// ReplayCache remembers the jtis of accepted DPoP proofs until their iat leaves the accepted
// window (RFC 9449 §11.1). It is bounded: it holds at most the configured number of entries,
// of 24 bytes each plus map overhead, and when full it forgets the oldest first. It lives in
// one process: instances behind a load balancer each have their own.
//
// An entry is a 64-bit keyed hash of the proof key's thumbprint and the jti, not the jti
// itself: the seed is random per process, so no client can aim for another's entries, and a
// collision (about 1 in 10^7 at a million entries) only refuses one proof, which the client
// retries with a new one.
type ReplayCache struct {
	seed   maphash.Seed
	shards [replayShards]replayShard
}

const replayShards = 16

type replayShard struct {
	mu   sync.Mutex
	m    map[uint64]int64 // hash -> unix second until which it is remembered
	ring []replayEntry    // insertion order, for eviction
	head int
	full bool
}

type replayEntry struct {
	h     uint64
	until int64
}

// NewReplayCache returns a cache for size entries; nil for size <= 0 (the check is off).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		return nil
	}
	c := &ReplayCache{seed: maphash.MakeSeed()}
	per := (size + replayShards - 1) / replayShards
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]int64)
		c.shards[i].ring = make([]replayEntry, per)
	}
	return c
}

// Seen reports whether jti was already recorded for the key jkt and is still remembered at
// now; if not, it records it until the unix second until.
func (c *ReplayCache) Seen(jkt, jti string, until, now int64) bool {
	var mh maphash.Hash
	mh.SetSeed(c.seed)
	mh.WriteString(jkt)
	mh.WriteByte(0)
	mh.WriteString(jti)
	h := mh.Sum64()
	s := &c.shards[h%replayShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.m[h]; ok && u >= now {
		return true
	}
	old := s.ring[s.head]
	if s.full && s.m[old.h] == old.until {
		delete(s.m, old.h)
	}
	s.ring[s.head] = replayEntry{h: h, until: until}
	s.m[h] = until
	s.head++
	if s.head == len(s.ring) {
		s.head = 0
		s.full = true
	}
	return false
}

// Len is the number of jtis remembered.
func (c *ReplayCache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
