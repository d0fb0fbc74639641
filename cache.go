package mcpauth

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
)

// Verified-token cache. MCP clients send the same token on every request of a session, so a
// token is verified once and later requests only look it up. An entry is served only while
// the token would still verify: before its exp (plus leeway, as verification allows) and while
// every key that could have signed it is still in its key set.
const (
	defaultTokenCacheSize = 10000
	// maxCachedTokenBytes keeps the cache's memory bounded by size × this, whatever tokens
	// clients send; larger tokens (rare) are verified every time.
	maxCachedTokenBytes = 4096
	cacheShards         = 32
)

// identity is what the request path needs of a verified token. It is immutable once built,
// so cached identities are shared by concurrent requests.
type identity struct {
	claims   jwt.MapClaims
	granted  []string
	scope    string
	id       string
	clientID string
	iss      string
	baseOK   bool      // the handler's base scope policy is met
	expires  time.Time // exp + leeway: not served from the cache after this
	keys     []*jwks.Key
	// provider answers the placeholders; built once so a request only registers it.
	provider caddy.ReplacerFunc
}

func newIdentity(claims jwt.MapClaims, p policy, leeway time.Duration, keys []*jwks.Key) *identity {
	id := &identity{claims: claims, keys: keys}
	id.granted = p.grantedScopes(claims)
	id.scope = strings.Join(id.granted, " ")
	id.baseOK = p.satisfiedBy(id.granted)
	sub, _ := claims["sub"].(string)
	id.clientID, _ = claims["client_id"].(string)
	if id.clientID == "" {
		id.clientID, _ = claims["azp"].(string)
	}
	id.id = sub
	if id.id == "" {
		id.id, _ = claims["client_id"].(string)
	}
	id.iss, _ = claims["iss"].(string)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.expires = exp.Add(leeway)
	}
	id.provider = id.placeholder
	return id
}

// placeholder resolves {http.auth.user.*} and {http.auth.mcp.claim.*}.
func (id *identity) placeholder(key string) (any, bool) {
	rest, ok := strings.CutPrefix(key, "http.auth.")
	if !ok {
		return nil, false
	}
	switch rest {
	case "user.id":
		return id.id, true
	case "user.client_id":
		return id.clientID, true
	case "user.scope":
		return id.scope, true
	case "user.iss":
		return id.iss, true
	}
	if name, ok := strings.CutPrefix(rest, "mcp.claim."); ok {
		return claimString(id.claims[name]), true
	}
	return nil, false
}

// valid reports whether a cached identity may still be served at now.
func (id *identity) valid(now time.Time) bool {
	if !now.Before(id.expires) {
		return false
	}
	for _, k := range id.keys {
		if k.Retired() {
			return false
		}
	}
	return true
}

// tokenCache maps raw tokens to identities. It is split in shards, each with its own lock, so
// concurrent requests rarely wait on each other; the shard is picked from the token's
// signature, which is random for every token that verified.
type tokenCache struct {
	shards []cacheShard
	now    func() time.Time
}

type cacheShard struct {
	mu  sync.RWMutex
	m   map[string]*identity
	cap int
	_   [24]byte // keep hot shards off each other's cache lines
}

// newTokenCache makes a cache of at most size entries, or nil (no cache) for size 0.
func newTokenCache(size int, now func() time.Time) *tokenCache {
	if size <= 0 {
		return nil
	}
	n := min(size, cacheShards)
	c := &tokenCache{shards: make([]cacheShard, n), now: now}
	for i := range c.shards {
		// The shard capacities add up to size exactly.
		c.shards[i].cap = size / n
		if i < size%n {
			c.shards[i].cap++
		}
		c.shards[i].m = make(map[string]*identity)
	}
	return c
}

// shard picks a shard from a hash of the token's last bytes, its signature: random for every
// token that verified, and seeded per process so clients cannot aim at one shard.
func (c *tokenCache) shard(tok string) *cacheShard {
	tail := tok[max(0, len(tok)-16):]
	return &c.shards[maphash.String(shardSeed, tail)%uint64(len(c.shards))]
}

var shardSeed = maphash.MakeSeed()

func (c *tokenCache) get(tok string) *identity {
	s := c.shard(tok)
	s.mu.RLock()
	id := s.m[tok]
	s.mu.RUnlock()
	if id == nil {
		return nil
	}
	if !id.valid(c.now()) {
		s.mu.Lock()
		if s.m[tok] == id {
			delete(s.m, tok)
		}
		s.mu.Unlock()
		return nil
	}
	return id
}

func (c *tokenCache) put(tok string, id *identity) {
	if len(tok) > maxCachedTokenBytes || id.expires.IsZero() {
		return
	}
	s := c.shard(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.cap {
		// Evict one entry in map order, which is as good as random and cannot be steered
		// by clients; expired entries also leave on their next lookup.
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	// Copy the key: the token is a slice of the request's header, which must not be kept
	// alive by the cache beyond the bytes it needs.
	s.m[strings.Clone(tok)] = id
}

// len counts the entries, for tests and metrics.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
