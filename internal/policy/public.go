package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// Public operations: what a caller without a token may do. One MCP server often has tools
// anyone may use beside tools that need the user (MCP Apps "per-tool authorization", Claude's
// "lazy authentication", the Apps SDK's per-tool securitySchemes). A request without a token
// passes when every one of its messages is lifecycle or discovery, or a listed public
// operation; any other gets the 401 that names what its messages need, so that a client signs
// in exactly when the user asks for something protected.
//
// Three more questions, answered here as the signed-in ones are:
//
//	v := p.DecideAnonymous(msgs)             // Allow, or MissingToken with the scopes a 401 names
//	p.ToolSchemes(name)                      // a tool's securitySchemes, as JSON
//	p.EntryVisibleAnonymous(kind, name)      // does a list entry stay for a caller without a token?

// Public lists what a caller without a token may do. Patterns are matched as rule patterns
// are: exact, or globs with `*`, byte for byte (no case folding, no trimming, no Unicode
// normalisation).
type Public struct {
	// Tools, Prompts and ResourceURIs are patterns of the tools a caller without a token
	// may call, the prompts it may get (and complete), and the resource URIs it may read,
	// subscribe to and unsubscribe from.
	Tools, Prompts, ResourceURIs []string
	// Methods are patterns of further JSON-RPC methods it may send (CheckPublicMethod).
	Methods []string
}

// anonymousMethods are the lifecycle and discovery methods a caller without a token may
// always send once public operations are configured (notifications/* too).
var anonymousMethods = []string{"initialize", "ping", "server/discover",
	mcpjson.MethodToolsList, "prompts/list", "resources/list", "resources/templates/list"}

// namedMethods are the methods whose tool, prompt or resource the policy reads: public only
// through the tool, prompt and resource_uri patterns, never through a method pattern.
var namedMethods = []string{mcpjson.MethodToolsCall, mcpjson.MethodPromptsGet, mcpjson.MethodResourcesRead,
	mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe, mcpjson.MethodCompletionComplete}

// CheckPublicMethod refuses a public method pattern that matches a method whose names are
// judged (tools/call, prompts/get, the resource reads, completion/complete): `tools/call`,
// `tools/*` or `*` would let every tool be called without a token while the tools list
// still advertised them as oauth2.
func CheckPublicMethod(m string) error {
	pat := compilePatterns([]string{m})
	for _, named := range namedMethods {
		if matchAny(pat, named) {
			return fmt.Errorf("%q matches %s: %w", m, named, ErrPublicNamedMethod)
		}
	}
	return nil
}

// publicOps is Public compiled, with what is derived from it once.
type publicOps struct {
	tools, prompts, methods []pattern
	uris                    []uriPattern
	// plain is a caller who signed in and holds exactly the base policy: the base scopes
	// (the first any_of alternative) and every base condition. With filtered lists a caller
	// without a token sees what such a caller may use, besides the public operations.
	plain Subject
	// schemes caches the oauth2 securitySchemes by the set of rules a tool matches (up to
	// 64 rules): the tools of one list mostly share a few sets. Read without a lock (every
	// tool of every tools/list answer asks), replaced whole under mu when a set is added.
	mu      sync.Mutex
	schemes atomic.Pointer[map[uint64][]byte]
}

// maxSchemesCache bounds the cached securitySchemes values: one per set of matching rules.
const maxSchemesCache = 1024

// compilePublic compiles the public operations, once the base policy is compiled.
func (p *Policy) compilePublic(c *Public) {
	pub := &publicOps{
		tools:   compilePatterns(c.Tools),
		prompts: compilePatterns(c.Prompts),
		methods: compilePatterns(c.Methods),
		uris:    compileURIPatterns(c.ResourceURIs),
	}
	pub.schemes.Store(new(map[uint64][]byte))
	pub.plain = p.plainSubject()
	p.public = pub
}

// HasPublic reports whether public operations are configured: without them nothing is
// allowed without a token.
func (p *Policy) HasPublic() bool { return p.public != nil }

// DecideAnonymous judges a request without a token carrying msgs: Allow when every message
// is lifecycle, discovery or a public operation; ResourceURINotNormal when a message names a
// resource URI not in normal form while resource_uri rules or public resource_uri patterns
// exist (no pattern is matched against a URI a server could read as another); otherwise
// MissingToken, whose StepUp is the `scope` of the 401: the base scopes and those of every
// rule the messages match, as a 403 names them to a token that holds nothing (the first
// any_of alternative of each). Rule is the first rule the messages match, or BaseRule. It
// does not allocate unless it refuses.
func (p *Policy) DecideAnonymous(msgs []mcpjson.Message) Verdict {
	if err := p.checkURIs(msgs); err != nil {
		return Verdict{Outcome: ResourceURINotNormal, Rule: BaseRule, Err: err}
	}
	if err := p.public.checkURIs(msgs); err != nil {
		return Verdict{Outcome: ResourceURINotNormal, Rule: BaseRule, Err: err}
	}
	allowed := p.public != nil
	for i := range msgs {
		if !allowed {
			break
		}
		allowed = p.public.allows(&msgs[i])
	}
	if allowed {
		return Verdict{Outcome: Allow, Rule: BaseRule}
	}
	var matched matchSet
	for i := range msgs {
		p.match(&msgs[i], &matched)
	}
	v := Verdict{Outcome: MissingToken, Rule: BaseRule, StepUp: p.Advertised(p.stepUpScopes(nil, &matched))}
	for i := range p.rules {
		if matched.has(i) {
			v.Rule = i
			break
		}
	}
	return v
}

// allows reports whether a caller without a token may send m: lifecycle and discovery, or a
// public operation. A response (no method) is not allowed: such a caller answers no request
// of the server.
func (pub *publicOps) allows(m *mcpjson.Message) bool {
	if !m.HasMethod {
		return false
	}
	if strings.HasPrefix(m.Method, "notifications/") || slices.Contains(anonymousMethods, m.Method) {
		return true
	}
	if matchAny(pub.methods, m.Method) {
		return true
	}
	switch m.Method {
	case mcpjson.MethodToolsCall:
		return matchAny(pub.tools, m.Name)
	case mcpjson.MethodPromptsGet:
		return matchAny(pub.prompts, m.Name)
	case mcpjson.MethodResourcesRead, mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe:
		return pub.publicURI(m.Name)
	case mcpjson.MethodCompletionComplete:
		switch m.Ref {
		case mcpjson.RefPrompt:
			return matchAny(pub.prompts, m.Name)
		case mcpjson.RefResource:
			return pub.publicRef(m.Name)
		}
	}
	return false
}

// publicURI reports whether uri, in normal form, matches a public resource_uri pattern.
func (pub *publicOps) publicURI(uri string) bool {
	if len(pub.uris) == 0 || checkResourceURI(uri) != nil {
		return false
	}
	var buf [256]byte
	k := newURIKey(buf[:0], uri)
	return matchURI(pub.uris, uri, &k)
}

// publicRef reports whether a resource URI or URI template (a completion's ref, a listed
// template) is public: a template only when every expansion is, since a completion reveals
// values of them all.
func (pub *publicOps) publicRef(ref string) bool {
	if len(pub.uris) == 0 || checkRefURI(ref) != nil {
		return false
	}
	var buf [256]byte
	k := newURIKey(buf[:0], ref)
	if k.template {
		return coversTemplate(pub.uris, &k)
	}
	return matchURI(pub.uris, ref, &k)
}

// checkURIs refuses a resource URI not in normal form while public resource_uri patterns
// exist, as Policy.checkURIs does for the rules'.
func (pub *publicOps) checkURIs(msgs []mcpjson.Message) error {
	if pub == nil || len(pub.uris) == 0 {
		return nil
	}
	return checkMessageURIs(msgs)
}

// noauthSchemes is the securitySchemes of a public tool.
var noauthSchemes = []byte(`[{"type":"noauth"}]`)

// ToolSchemes is the securitySchemes of the tool name, as JSON, for tools/list answers
// (MCP Apps per-tool authorization; the Apps SDK reads `_meta.securitySchemes`): a public
// tool `[{"type":"noauth"}]`, any other `[{"type":"oauth2","scopes":[…]}]` with the scopes a
// 403 for a call of it would name to a token that holds nothing (the base scopes and those of
// every rule a call of it matches, the first any_of alternative of each), in the advertised
// form. The slice is shared: callers must not modify it. Without public operations it
// answers the oauth2 form for every tool.
func (p *Policy) ToolSchemes(name string) []byte {
	pub := p.public
	if pub != nil && matchAny(pub.tools, name) {
		return noauthSchemes
	}
	var matched matchSet
	p.match(&mcpjson.Message{Method: mcpjson.MethodToolsCall, HasMethod: true, Name: name}, &matched)
	cached := pub != nil && matched.hi == nil
	if cached {
		if v, ok := (*pub.schemes.Load())[matched.lo]; ok {
			return v
		}
	}
	v := oauth2Schemes(p.Advertised(p.stepUpScopes(nil, &matched)))
	if cached {
		pub.mu.Lock()
		if old := *pub.schemes.Load(); len(old) < maxSchemesCache {
			m := make(map[uint64][]byte, len(old)+1)
			maps.Copy(m, old)
			m[matched.lo] = v
			pub.schemes.Store(&m)
		}
		pub.mu.Unlock()
	}
	return v
}

// oauth2Schemes is `[{"type":"oauth2","scopes":[…]}]`. Scopes are scope-tokens (RFC 6749
// §3.3), which hold no '"' or '\' to escape.
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

// EntryVisibleAnonymous reports whether a list entry of kind, named key, stays in a filtered
// list answered to a caller without a token: the public entries, and those a plain sign-in
// unlocks (no rule beyond the base policy applies: no further scopes, clients or claims).
// Without public operations it reports what a plain sign-in unlocks.
func (p *Policy) EntryVisibleAnonymous(kind mcpjson.ListKind, key string) bool {
	pub := p.public
	if pub == nil {
		plain := p.plainSubject()
		return p.EntryAllowed(&plain, kind, key)
	}
	switch kind {
	case mcpjson.ListTools:
		if matchAny(pub.tools, key) {
			return true
		}
	case mcpjson.ListPrompts:
		if matchAny(pub.prompts, key) {
			return true
		}
	case mcpjson.ListResources:
		if pub.publicURI(key) {
			return true
		}
	case mcpjson.ListResourceTemplates:
		if pub.publicRef(key) {
			return true
		}
	}
	return p.EntryAllowed(&pub.plain, kind, key)
}

// plainSubject is a subject that holds exactly the base policy.
func (p *Policy) plainSubject() Subject {
	s := Subject{granted: p.effectiveScopes(p.base.challengeScope()), baseRefusal: Allow, baseScopesMet: true}
	for _, i := range p.baseConds {
		s.held.add(i)
	}
	bare := p.Decide(&s, nil)
	s.bareAllowed = bare.Allowed()
	return s
}
