package mcpauth

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/exchange"
	"github.com/mcpauth/caddy-mcp-auth/internal/store"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// Introspection answers in the shared store: the hook between the introspection verifier
// and the sealed store, kept apart from introspection.go.

// storeNSIntrospection is the namespace of introspection answers in the store.
const storeNSIntrospection = "introspection"

// storeAnswers is where the introspection verifier keeps its answers for the other
// instances: the store, when it has an encryption key (without one nothing about tokens goes
// there), else nil. The store group provisions before introspection.
func (h *Handler) storeAnswers() verify.SharedAnswers {
	sc := h.sealedCache()
	if sc == nil || h.Introspection == nil {
		return nil
	}
	return sealedAnswers{c: sc, ns: storeNSIntrospection, logger: h.Store.logger,
		scope: h.Introspection.answerCacheKey(h)}
}

// sealedAnswers adapts a SealedCache namespace to verify.SharedAnswers. A store that cannot
// answer is a miss: the authorization server is asked, whatever on_error says.
type sealedAnswers struct {
	c      store.SealedCache
	ns     string
	logger *zap.Logger
	// scope names who asked: the endpoint and client_id (answerCacheKey). Servers answer
	// per client (Keycloak calls a token active only to a client of its audience), so an
	// answer is shared only with instances that ask the same server as the same client, as
	// the in-process answers are (introspection_cache.go).
	scope string
}

// key is the store key of a token's SHA-256 under s.scope.
func (s sealedAnswers) key(token [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(s.scope))
	h.Write([]byte{0})
	h.Write(token[:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (s sealedAnswers) Get(ctx context.Context, key [32]byte) ([]byte, bool) {
	v, ok, err := s.c.Get(ctx, s.ns, s.key(key))
	if err != nil {
		if ce := s.logger.Check(zap.DebugLevel, "store read failed, asking the authorization server"); ce != nil {
			ce.Write(zap.String("namespace", s.ns), zap.Error(err))
		}
		return nil, false
	}
	return v, ok
}

func (s sealedAnswers) Set(ctx context.Context, key [32]byte, val []byte, ttl time.Duration) {
	if err := s.c.Set(ctx, s.ns, s.key(key), val, ttl); err != nil {
		if ce := s.logger.Check(zap.DebugLevel, "store write failed"); ce != nil {
			ce.Write(zap.String("namespace", s.ns), zap.Error(err))
		}
	}
}

// storeNSExchange is the namespace of exchanged tokens in the store.
const storeNSExchange = "exchange"

// storeTokens is where the exchange client keeps the tokens it exchanged for the other
// instances: the store, when it has an encryption key, else nil (exchanged tokens stay per
// instance). The store group provisions before token exchange.
func (x *TokenExchange) storeTokens(h *Handler) exchange.SharedTokens {
	sc := h.sealedCache()
	if sc == nil {
		return nil
	}
	// A token is shared only with instances that ask the same token endpoint (or the same
	// issuer's) as the same client: what it may be exchanged for is that client's grant.
	ep := x.Endpoint
	if ep == "" {
		ep = "issuer " + h.AuthorizationServers[0]
	}
	return sealedAnswers{c: sc, ns: storeNSExchange, logger: h.Store.logger, scope: ep + "\x00" + x.ClientID}
}

// sealedCache is the store's sealed cache for other caches that follow the introspection
// one (exchanged tokens, namespace "exchange"): nil without a store or an encryption_key, in
// which case those caches stay per instance.
func (h *Handler) sealedCache() store.SealedCache {
	if h.Store == nil || h.Store.sealed == nil {
		return nil
	}
	return h.Store.sealed
}
