package verify

import (
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/tokencache"
)

// AnswerCache holds the authorization server's answers by the token's SHA-256, so that they
// outlive one configuration: the caller shares one AnswerCache among the configurations that
// ask the same server the same way (the same endpoint, client_id and scope claim), across
// reloads. It holds answers as read (strictly, RFC 7662 §2.2), not verdicts: every use
// judges the answer again with the configuration in force (issuers, audiences, leeway,
// cache_ttl), so a reload that changes what is accepted takes effect at once, and a reload
// that changes nothing sends no token back to the server.
//
// Active and inactive answers are held apart, so that a flood of made-up tokens (inactive)
// never evicts the answers of real ones.
type AnswerCache struct {
	active   *tokencache.Cache[cachedAnswer]
	inactive *tokencache.Cache[cachedAnswer]
}

// NewAnswerCache makes a cache of at most size active and size inactive answers.
func NewAnswerCache(size int, now func() time.Time) *AnswerCache {
	return &AnswerCache{
		active:   tokencache.New[cachedAnswer](size, now),
		inactive: tokencache.New[cachedAnswer](size, now),
	}
}

// Len is the number of answers held, for tests.
func (c *AnswerCache) Len() int { return c.active.Len() + c.inactive.Len() }

type cachedAnswer struct {
	a     *answer
	until time.Time
}

func (c cachedAnswer) StillValid(now time.Time) bool { return now.Before(c.until) }

// cached returns the answer held for key that this configuration may still use: an active
// one within cache_ttl of its arrival (never past exp), an inactive one within negative_ttl.
func (v *Introspection) cached(key string, now time.Time) (*answer, bool) {
	if v.Answers == nil {
		return nil, false
	}
	if c, ok := v.Answers.active.Get(key); ok && now.Before(v.servedUntil(c.a, now)) {
		return c.a, true
	}
	if c, ok := v.Answers.inactive.Get(key); ok && now.Before(c.a.received.Add(v.NegativeTTL)) {
		return c.a, true
	}
	return nil, false
}

// keep holds a fresh answer.
func (v *Introspection) keep(key string, a *answer) {
	if v.Answers == nil {
		return
	}
	if a.active {
		if until := v.servedUntil(a, a.received); until.After(a.received) {
			v.Answers.active.Put(key, cachedAnswer{a: a, until: until})
		}
		return
	}
	if v.NegativeTTL > 0 {
		v.Answers.inactive.Put(key, cachedAnswer{a: a, until: a.received.Add(v.NegativeTTL)})
	}
}
