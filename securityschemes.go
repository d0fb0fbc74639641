package mcpauth

import (
	"sync"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// securitySchemes: with `public`, every tool of a tools/list answer says how it may be called
// (MCP Apps per-tool authorization; the Apps SDK reads `_meta.securitySchemes`), computed from
// the rules because this module is what enforces them, replacing what the server said: a
// public tool `[{"type":"noauth"}]`, any other `[{"type":"oauth2","scopes":[…]}]` with the
// scopes a 403 for it would name to a token holding nothing (the base scopes and those of the
// rules that match a call of it, the first alternative of each any_of).

// noauthSchemes is the value for a public tool.
var noauthSchemes = []byte(`[{"type":"noauth"}]`)

// maxSchemesCache bounds the remembered values: one per distinct set of matching rules.
const maxSchemesCache = 1024

// toolSchemes computes the securitySchemes of tools by name.
type toolSchemes struct {
	rules  *ruleSet
	public *PublicOps
	access *accessPolicy
	// cache maps a set of matching rules (up to 64 rules) to its value: tools of one list
	// mostly share a few.
	mu    sync.RWMutex
	cache map[uint64][]byte
}

func newToolSchemes(rules *ruleSet, public *PublicOps, access *accessPolicy) *toolSchemes {
	return &toolSchemes{rules: rules, public: public, access: access, cache: make(map[uint64][]byte)}
}

// rewrite returns the securitySchemes value of the tool name.
func (s *toolSchemes) rewrite(name string) []byte {
	if matchAny(s.public.tools, name) {
		return noauthSchemes
	}
	var matched matchSet
	s.rules.match(&mcpjson.Message{Method: mcpjson.MethodToolsCall, HasMethod: true, Name: name}, &matched)
	if matched.hi == nil {
		s.mu.RLock()
		v, ok := s.cache[matched.lo]
		s.mu.RUnlock()
		if ok {
			return v
		}
	}
	v := oauth2Schemes(s.access.advertised(s.rules.stepUpScopes(nil, &matched)))
	if matched.hi == nil {
		s.mu.Lock()
		if len(s.cache) < maxSchemesCache {
			s.cache[matched.lo] = v
		}
		s.mu.Unlock()
	}
	return v
}

// oauth2Schemes is `[{"type":"oauth2","scopes":[…]}]`. Scopes are scope-tokens (RFC 6749
// §3.3): no '"' or '\' to escape.
func oauth2Schemes(scopes []string) []byte {
	b := []byte(`[{"type":"oauth2","scopes":[`)
	for i, sc := range scopes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, sc...)
		b = append(b, '"')
	}
	return append(b, "]}]"...)
}

// decorateListWriter adapts the list writer of a signed-in caller to `public`: every tool
// carries its securitySchemes, and tools are hidden only under filter_tools_list or
// filter_lists (public turns the tools list writer on by itself).
func (h *Handler) decorateListWriter(tf *toolsFilter) {
	if h.Public == nil || tf == nil {
		return
	}
	inner := tf.lists.Allowed
	filterTools := h.Public.filterTools
	tf.lists.Allowed = func(k mcpjson.ListKind, key string) bool {
		if k == mcpjson.ListTools && !filterTools {
			return true
		}
		return inner(k, key)
	}
	tf.lists.Schemes = h.schemes.rewrite
}
