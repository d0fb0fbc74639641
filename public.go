package mcpauth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// public: what a caller without a token may do. One MCP server often has tools anyone may
// use beside tools that need the user (MCP Apps "per-tool authorization", Claude's "lazy
// authentication", the Apps SDK's per-tool securitySchemes). A POST without an
// Authorization header passes when every message of its body is lifecycle or discovery, or
// a listed public operation; any other gets the 401 that names what its messages need, so
// a client signs in exactly when the user asks for something protected.
//
// The decision is kept behind a narrow seam (anonymousAllows, anonymousScopes,
// toolSchemes): given the parsed messages and the compiled rules, is an anonymous caller
// allowed, and which scopes would a 401 name.

// PublicOps is the `public` block: the operations a caller without a token may use. Patterns
// are matched as rule patterns are: exact, or globs with `*`, byte for byte (no case folding,
// no trimming, no Unicode normalisation).
type PublicOps struct {
	// Tools are patterns of tool names a caller without a token may call (tools/call).
	//
	// JSON: `public.tools`. Caddyfile: `tool` inside `public`.
	Tools []string `json:"tools,omitempty"`

	// Prompts are patterns of prompt names a caller without a token may get (prompts/get, and
	// completion/complete on them).
	//
	// JSON: `public.prompts`. Caddyfile: `prompt` inside `public`.
	Prompts []string `json:"prompts,omitempty"`

	// ResourceURIs are patterns of resource URIs a caller without a token may read,
	// subscribe to and unsubscribe from. A URI not in normal form is refused with 400, as
	// with resource_uri rules.
	//
	// JSON: `public.resource_uris`. Caddyfile: `resource_uri` inside `public`.
	ResourceURIs []string `json:"resource_uris,omitempty"`

	// Methods are patterns of JSON-RPC methods a caller without a token may send, beyond
	// lifecycle and discovery, which are always allowed once `public` is set.
	//
	// JSON: `public.methods`. Caddyfile: `method` inside `public`.
	Methods []string `json:"methods,omitempty"`

	tools, prompts, methods []pattern
	uris                    []uriPattern
	// plain is a caller who signed in and holds exactly the base policy: with filter_lists,
	// an anonymous caller sees what such a caller may use, besides the public operations.
	plain *caller
	// filterTools: filter_tools_list or filter_lists is on.
	filterTools bool
}

// anonymousMethods are the lifecycle and discovery methods a caller without a token may
// always send once `public` is set (notifications/* too, see anonymousAllows).
var anonymousMethods = []string{"initialize", "ping", "server/discover",
	mcpjson.MethodToolsList, "prompts/list", "resources/list", "resources/templates/list"}

// Validate checks the patterns.
func (p *PublicOps) Validate() error {
	for _, f := range []namedList{{"tools", p.Tools}, {"prompts", p.Prompts}, {"resource_uris", p.ResourceURIs}, {"methods", p.Methods}} {
		if slices.Contains(f.list, "") {
			return fmt.Errorf("public.%s: %w", f.name, errRuleEmptyMatch)
		}
	}
	for _, u := range p.ResourceURIs {
		if err := checkURIPattern(u); err != nil {
			return fmt.Errorf("public.resource_uris: %q: write patterns in the normal form of the URIs they name: %w", u, err)
		}
	}
	for _, m := range p.Methods {
		pat := compilePatterns([]string{m})
		for _, named := range namedMethods {
			if matchAny(pat, named) {
				// `method tools/call` (or `*`, `tools/*`) would let every tool be called without
				// a token while the tools list still advertised them as oauth2: the names of
				// these methods are what tool, prompt and resource_uri are for.
				return fmt.Errorf("public.methods: %q matches %s, whose names are judged: list them with tool, prompt or resource_uri (tool * for every tool)", m, named)
			}
		}
	}
	return nil
}

// namedMethods are the methods whose tool, prompt or resource the policy reads: public only
// through the tool, prompt and resource_uri patterns, never through a method pattern.
var namedMethods = []string{mcpjson.MethodToolsCall, mcpjson.MethodPromptsGet, mcpjson.MethodResourcesRead,
	mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe, mcpjson.MethodCompletionComplete}

// Provision compiles the patterns and the plain signed-in caller. It runs once the access
// policy and the rules are built (h.access, h.ops).
func (p *PublicOps) Provision(_ caddy.Context, h *Handler) error {
	if err := p.Validate(); err != nil {
		return err
	}
	p.tools = compilePatterns(p.Tools)
	p.prompts = compilePatterns(p.Prompts)
	p.methods = compilePatterns(p.Methods)
	p.uris = compileURIPatterns(p.ResourceURIs)
	p.filterTools = h.FilterToolsList || h.FilterLists
	plain := &caller{id: &verify.Identity{}, baseDeny: denyNone}
	plain.effective = h.access.effectiveScopes(h.policy.challengeScope())
	for _, i := range h.access.base {
		plain.condOK.add(i)
	}
	plain.baseOK = true
	p.plain = plain
	return nil
}

// anonymousAllows reports whether a caller without a token may send m: lifecycle and
// discovery, or a public operation. A response (no method) is not allowed: an anonymous
// caller answers no server request.
func (p *PublicOps) anonymousAllows(m *mcpjson.Message) bool {
	if !m.HasMethod {
		return false
	}
	if strings.HasPrefix(m.Method, "notifications/") || slices.Contains(anonymousMethods, m.Method) {
		return true
	}
	if matchAny(p.methods, m.Method) {
		return true
	}
	switch m.Method {
	case mcpjson.MethodToolsCall:
		return matchAny(p.tools, m.Name)
	case mcpjson.MethodPromptsGet:
		return matchAny(p.prompts, m.Name)
	case mcpjson.MethodResourcesRead, mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe:
		return p.publicURI(m.Name)
	case mcpjson.MethodCompletionComplete:
		switch m.Ref {
		case mcpjson.RefPrompt:
			return matchAny(p.prompts, m.Name)
		case mcpjson.RefResource:
			if len(p.uris) == 0 || checkRefURI(m.Name) != nil {
				return false
			}
			var buf [256]byte
			k := newURIKey(buf[:0], m.Name)
			if k.template {
				// Public only if every expansion is: a completion reveals values of them all.
				return coversTemplate(p.uris, &k)
			}
			return matchURI(p.uris, m.Name, &k)
		}
	}
	return false
}

// publicURI reports whether uri, in normal form, matches a public resource_uri pattern.
func (p *PublicOps) publicURI(uri string) bool {
	if len(p.uris) == 0 || checkResourceURI(uri) != nil {
		return false
	}
	var buf [256]byte
	k := newURIKey(buf[:0], uri)
	return matchURI(p.uris, uri, &k)
}

// checkURIs refuses (400) a public resource URI check on a URI not in normal form: a public
// pattern is never matched against a URI a server could read as another one. The rules do
// the same for theirs (ruleSet.checkURIs).
func (p *PublicOps) checkURIs(msgs []mcpjson.Message) error {
	if len(p.uris) == 0 {
		return nil
	}
	for i := range msgs {
		m := &msgs[i]
		switch {
		case resourceURIMethod(m.Method):
			if err := checkResourceURI(m.Name); err != nil {
				return err
			}
		case m.Method == mcpjson.MethodCompletionComplete && m.Ref == mcpjson.RefResource:
			if err := checkRefURI(m.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// anonymousScopes is the `scope` of the 401 for messages a caller without a token may not
// send: the base scopes and those of every rule they match, as a 403 names them for a token
// that holds nothing (the first any_of alternative of each).
func anonymousScopes(rules *ruleSet, msgs []mcpjson.Message) []string {
	var matched matchSet
	for i := range msgs {
		rules.match(&msgs[i], &matched)
	}
	return rules.stepUpScopes(nil, &matched)
}

// entryVisible reports whether a list entry stays in a list answered to a caller without a
// token, with filter_lists (or filter_tools_list, for tools): public entries, and those a
// plain sign-in unlocks (no rule beyond the base policy applies).
func (p *PublicOps) entryVisible(rules *ruleSet, kind mcpjson.ListKind, key string) bool {
	switch kind {
	case mcpjson.ListTools:
		if matchAny(p.tools, key) {
			return true
		}
	case mcpjson.ListPrompts:
		if matchAny(p.prompts, key) {
			return true
		}
	case mcpjson.ListResources:
		if p.publicURI(key) {
			return true
		}
	case mcpjson.ListResourceTemplates:
		if len(p.uris) > 0 && checkRefURI(key) == nil {
			var buf [256]byte
			k := newURIKey(buf[:0], key)
			if k.template && coversTemplate(p.uris, &k) || !k.template && matchURI(p.uris, key, &k) {
				return true
			}
		}
	}
	return rules.entryAllowed(kind, key, p.plain)
}

// unmarshalPublic reads the `public` block:
//
//	public {
//		tool         <name-pattern...>
//		prompt       <name-pattern...>
//		resource_uri <uri-pattern...>
//		method       <jsonrpc-method...>
//	}
func unmarshalPublic(d *caddyfile.Dispenser) (*PublicOps, error) {
	if d.NextArg() {
		return nil, d.Errf("public: takes no value, only a block")
	}
	p := new(PublicOps)
	nesting := d.Nesting()
	for d.NextBlock(nesting) {
		kind := d.Val()
		var dst *[]string
		switch kind {
		case "tool":
			dst = &p.Tools
		case "prompt":
			dst = &p.Prompts
		case "resource_uri":
			dst = &p.ResourceURIs
		case "method":
			dst = &p.Methods
		default:
			return nil, d.Errf("public: unrecognized subdirective %q (tool, prompt, resource_uri or method)", kind)
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return nil, d.Errf("public: %s: needs at least one pattern", kind)
		}
		if slices.Contains(args, "") {
			return nil, d.Errf("public: %s: empty pattern", kind)
		}
		if d.NextBlock(nesting + 1) {
			return nil, d.Errf("public: %s: takes no block", kind)
		}
		*dst = append(*dst, args...)
	}
	if err := p.Validate(); err != nil {
		return nil, d.WrapErr(err)
	}
	return p, nil
}

// provisionPublic sets up public and challenge_in_result once the rules and the access policy
// are compiled.
func (h *Handler) provisionPublic(ctx caddy.Context, rules *ruleSet, access *accessPolicy) error {
	h.inResult = newInResultClients(h.ChallengeInResult)
	if h.Public == nil {
		return nil
	}
	h.access = access
	if err := h.Public.Provision(ctx, h); err != nil {
		return err
	}
	h.schemes = newToolSchemes(rules, h.Public, access)
	return nil
}

// provisionPublicSessions lets callers with a token use sessions opened without one.
func (h *Handler) provisionPublicSessions() {
	if h.Public != nil && h.sessions != nil {
		h.sessions.anonymousOK = true
	}
}
