package mcpauth

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// The introspection answers survive configuration reloads, as the key sets do: a reload
// would otherwise send every active opaque token back to the authorization server, and
// answer 503 to users already accepted whenever the server is down or slow at that moment.
//
// The cache holds the server's answers as read, not verdicts (internal/verify judges an
// answer again on every use, with the configuration in force), so two configurations may
// share one when the server would answer them alike: the same endpoint (or the issuer it is
// discovered from), the same client_id (servers answer per client: Keycloak and others
// report a token active only to a client of its audience), and the same scope claims (read
// from the answer when it is stored).
var introspectionCaches = caddy.NewUsagePool()

type sharedAnswers struct{ *verify.AnswerCache }

func (sharedAnswers) Destruct() error { return nil }

// answerCacheKey names the answers that configurations may share.
func (in *Introspection) answerCacheKey(h *Handler) string {
	ep := in.Endpoint
	if ep == "" {
		ep = "discovered from " + h.AuthorizationServers[0]
	}
	return ep + "\x00" + in.ClientID + "\x00" + strings.Join(h.ScopeClaim, " ")
}

// acquireAnswers gets the shared cache of answers for h, making it on first use (sized by
// the first configuration's token_cache_size); nil when token_cache_size turns caching off.
func (in *Introspection) acquireAnswers(h *Handler) *verify.AnswerCache {
	size := defaultTokenCacheSize
	if h.TokenCacheSize != nil {
		size = *h.TokenCacheSize
	}
	if size <= 0 {
		return nil
	}
	key := in.answerCacheKey(h)
	v, _, _ := introspectionCaches.LoadOrNew(key, func() (caddy.Destructor, error) {
		return sharedAnswers{verify.NewAnswerCache(size, h.now)}, nil
	})
	in.cacheKey = key
	return v.(sharedAnswers).AnswerCache
}

// releaseAnswers lets go of the shared cache, once.
func (in *Introspection) releaseAnswers() {
	if in.cacheKey != "" {
		_, _ = introspectionCaches.Delete(in.cacheKey)
		in.cacheKey = ""
	}
}
