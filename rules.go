package mcpauth

import (
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"

	"errors"
	"fmt"
	"slices"
	"strings"
)

// Rule is a per-operation requirement. It applies to a JSON-RPC message that any of its
// lists names, and then adds its Scopes and AnyOf to the base policy: the base policy and
// every rule that applies must all hold.
type Rule struct {
	// Tools are patterns of tool names: the rule applies to a `tools/call` whose
	// `params.name` matches one of them.
	Tools []string `json:"tools,omitempty"`

	// Prompts are patterns of prompt names: the rule applies to a `prompts/get` whose
	// `params.name` matches one of them.
	Prompts []string `json:"prompts,omitempty"`

	// ResourceURIs are patterns of resource URIs: the rule applies to a `resources/read`,
	// `resources/subscribe` or `resources/unsubscribe` whose `params.uri` matches one of
	// them. While any rule has such patterns, a `params.uri` that is not in normal form (a
	// spelling a server could read as another URI) is refused with 400. A `file:` pattern
	// also matches the same path with escapes decoded, in another ASCII case, or with a
	// trailing slash.
	ResourceURIs []string `json:"resource_uris,omitempty"`

	// Methods are patterns of JSON-RPC methods: the rule applies to any request or
	// notification whose `method` matches one of them.
	Methods []string `json:"methods,omitempty"`

	// Scopes are required when the rule applies: the token must hold every one of them.
	Scopes []string `json:"scopes,omitempty"`

	// AnyOf are alternatives required when the rule applies: the token must hold at least
	// one of them. The first one is the preferred one, named in challenges.
	AnyOf []string `json:"any_of,omitempty"`

	// Clients, when set, are the only clients (client_id, else azp; exact or glob) allowed
	// the operations the rule names; another client gets 403 access_denied.
	Clients []string `json:"clients,omitempty"`

	// RequireClaims are claim conditions that must all hold when the rule applies; a
	// failing one is answered 403 access_denied.
	RequireClaims []ClaimCondition `json:"require_claims,omitempty"`
}

// Patterns are exact strings, or globs where each `*` stands for any run of characters,
// `/` included. There is no escape: a pattern cannot match a literal `*` only.
type pattern struct {
	s    string
	glob bool
	// url is set for a client pattern with a wildcard in its host (newClientPattern).
	url *hostPattern
}

func newPattern(s string) pattern {
	return pattern{s: s, glob: strings.Contains(s, "*")}
}

func (p pattern) match(s string) bool {
	if !p.glob {
		return p.s == s
	}
	if p.url != nil {
		return p.url.match(s)
	}
	return globMatch(p.s, s)
}

// matchBytes is match for a key built in a buffer.
func (p pattern) matchBytes(s []byte) bool {
	if !p.glob {
		return p.s == string(s)
	}
	return globMatch(p.s, s)
}

// globMatch matches s against a pattern whose only wildcard is '*'. Each '*' is tried
// greedily and, on a mismatch, only the last one is extended, so the work is bounded by
// len(pattern)*len(s) whatever the input.
func globMatch[S string | []byte](pat string, s S) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pat) && pat[px] == '*':
			starPx, starSx = px, sx
			px++
		case px < len(pat) && pat[px] == s[sx]:
			px++
			sx++
		case starPx >= 0:
			starSx++
			px, sx = starPx+1, starSx
		default:
			return false
		}
	}
	for px < len(pat) && pat[px] == '*' {
		px++
	}
	return px == len(pat)
}

// compiledRule is a Rule ready for matching.
type compiledRule struct {
	tools, prompts, methods []pattern
	uris                    []uriPattern
	allOf, anyOf            []string
	conds                   []int // client and claim conditions, indices into access.conds
}

// uriPattern is a resource_uri pattern with its matching keys (see appendURIKey): a URI
// matches when the pattern matches the URI as sent, or the pattern's key matches the URI's.
type uriPattern struct {
	raw, key, fileKey pattern
}

func compileURIPatterns(list []string) []uriPattern {
	out := make([]uriPattern, len(list))
	for i, s := range list {
		out[i] = uriPattern{
			raw:     newPattern(s),
			key:     pattern{s: string(appendURIKey(nil, s, false)), glob: strings.Contains(s, "*")},
			fileKey: pattern{s: string(appendURIKey(nil, s, true)), glob: strings.Contains(s, "*")},
		}
	}
	return out
}

// uriKey is the matching key of a resource URI, built once per message. For a URI template
// (RFC 6570) it is the key of the template's literal prefix, the part before the first "{",
// which every expansion starts with.
type uriKey struct {
	key      []byte
	file     bool
	template bool
	prefix   string // the template's literal prefix
}

func newURIKey(buf []byte, uri string) uriKey {
	file := strings.HasPrefix(uri, "file:")
	if i := strings.IndexByte(uri, '{'); i >= 0 {
		// The key of a prefix, without the trailing slash that a file: key drops from a
		// whole URI: built for prefix+"x", then the "x" cut off.
		p := uri[:i]
		key := appendURIKey(buf, p+"x", file)
		return uriKey{key: key[:len(key)-1], file: file, template: true, prefix: p}
	}
	return uriKey{key: appendURIKey(buf, uri, file), file: file}
}

// literalPrefix returns the part of a pattern before its first "*", and whether that is all
// of it but one final "*".
func literalPrefix(p pattern) (string, bool) {
	i := strings.IndexByte(p.s, '*')
	if i < 0 {
		return p.s, false
	}
	return p.s[:i], i == len(p.s)-1
}

// mayMatchTemplate reports whether a pattern could match some expansion of the template k
// stands for: its literal part before the first "*" and the template's literal prefix agree
// as far as both go (for an exact pattern: the pattern starts with the prefix). It errs on
// the side of matching: a completion on a template is judged by every rule that could name
// one of its resources.
func mayMatchTemplate(pats []uriPattern, k *uriKey) bool {
	agrees := func(p pattern, prefix string) bool {
		lit, _ := literalPrefix(p)
		return strings.HasPrefix(lit, prefix) || p.glob && strings.HasPrefix(prefix, lit)
	}
	for i := range pats {
		p := &pats[i]
		key := p.key
		if k.file {
			key = p.fileKey
		}
		if agrees(p.raw, k.prefix) || agrees(key, string(k.key)) {
			return true
		}
	}
	return false
}

// coversTemplate reports whether a pattern matches every expansion of the template k stands
// for: it is a literal part and one final "*", and the template's literal prefix starts with
// that part. Every expansion starts with the prefix (RFC 6570 copies literals), and "*"
// stands for any rest.
func coversTemplate(pats []uriPattern, k *uriKey) bool {
	covers := func(p pattern, prefix string) bool {
		lit, starEnd := literalPrefix(p)
		return starEnd && strings.HasPrefix(prefix, lit)
	}
	for i := range pats {
		p := &pats[i]
		key := p.key
		if k.file {
			key = p.fileKey
		}
		if covers(p.raw, k.prefix) || covers(key, string(k.key)) {
			return true
		}
	}
	return false
}

func matchURI(pats []uriPattern, uri string, k *uriKey) bool {
	for i := range pats {
		p := &pats[i]
		if p.raw.match(uri) {
			return true
		}
		if k.file && p.fileKey.matchBytes(k.key) || !k.file && p.key.matchBytes(k.key) {
			return true
		}
	}
	return false
}

// Client patterns (clients, allow_missing_audience_for) name client IDs, and clients that
// use a client ID metadata document are URLs the client chooses: an attacker can publish one
// at https://evil.net/a.example.com/c.json or https://app.example.com.evil.net/. So in the
// host of a URL pattern, `*` is one whole leading DNS label (as in a TLS wildcard name,
// RFC 6125 §6.4.3): https://*.example.com/* matches https://app.example.com/c.json and
// nothing whose host is elsewhere. Elsewhere in the pattern, and in patterns that are not
// URLs, `*` is as in other patterns.

// hostPattern is a URL client pattern with wildcard labels in its host.
type hostPattern struct {
	scheme string   // up to and including "://"
	labels []string // the host's labels, "*" for a wildcard; the port stays on the last
	rest   pattern  // from the first '/', '?' or '#' after the host, or ""
}

// splitURLPattern cuts a URL pattern (or client ID) into scheme, authority and the rest.
func splitURLPattern(s string) (scheme, authority, rest string, ok bool) {
	i := strings.Index(s, "://")
	if i < 0 {
		return "", "", "", false
	}
	scheme, after := s[:i+3], s[i+3:]
	end := strings.IndexAny(after, "/?#")
	if end < 0 {
		end = len(after)
	}
	return scheme, after[:end], after[end:], true
}

// checkClientPattern refuses a `*` in the host of a URL pattern other than whole leading
// labels followed by at least two literal ones.
func checkClientPattern(s string) error {
	_, auth, _, ok := splitURLPattern(s)
	if !ok || !strings.Contains(auth, "*") {
		return nil
	}
	labels := strings.Split(auth, ".")
	lead := 0
	for lead < len(labels) && labels[lead] == "*" {
		lead++
	}
	if len(labels)-lead < 2 || strings.Contains(strings.Join(labels[lead:], "."), "*") {
		return fmt.Errorf("%q: in a host, * stands only for whole leading labels (https://*.example.com/*): "+
			"a client chooses its URL, and https://app.example.com* also matches https://app.example.com.evil.net/", s)
	}
	return nil
}

// newClientPattern compiles a client pattern (checked by checkClientPattern).
func newClientPattern(s string) pattern {
	p := newPattern(s)
	if scheme, auth, rest, ok := splitURLPattern(s); ok && strings.Contains(auth, "*") {
		p.url = &hostPattern{scheme: scheme, labels: strings.Split(auth, "."), rest: newPattern(rest)}
	}
	return p
}

func (h *hostPattern) match(s string) bool {
	scheme, auth, rest, ok := splitURLPattern(s)
	if !ok || scheme != h.scheme || strings.Count(auth, ".") != len(h.labels)-1 || !h.rest.match(rest) {
		return false
	}
	for _, want := range h.labels {
		label, more, _ := strings.Cut(auth, ".")
		auth = more
		if want == "*" {
			if !isHostLabel(label) {
				return false
			}
		} else if label != want {
			return false
		}
	}
	return true
}

// isHostLabel reports an LDH label (RFC 1123 §2.1): letters, digits and '-', not empty.
func isHostLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func compileClientPatterns(list []string) []pattern {
	out := make([]pattern, len(list))
	for i, s := range list {
		out[i] = newClientPattern(s)
	}
	return out
}

func compilePatterns(list []string) []pattern {
	out := make([]pattern, len(list))
	for i, s := range list {
		out[i] = newPattern(s)
	}
	return out
}

func matchAny(pats []pattern, s string) bool {
	for _, p := range pats {
		if p.match(s) {
			return true
		}
	}
	return false
}

// appliesTo reports whether the rule names the message. k is the key of a resource URI
// (nil for other messages).
func (r *compiledRule) appliesTo(m *mcpjson.Message, k *uriKey) bool {
	if !m.HasMethod {
		return false
	}
	switch m.Method {
	case mcpjson.MethodToolsCall:
		if matchAny(r.tools, m.Name) {
			return true
		}
	case mcpjson.MethodPromptsGet:
		if matchAny(r.prompts, m.Name) {
			return true
		}
	case mcpjson.MethodResourcesRead, mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe:
		if k != nil && matchURI(r.uris, m.Name, k) {
			return true
		}
	case mcpjson.MethodCompletionComplete:
		// A completion suggests values of a prompt's arguments or of a resource template's
		// variables: it is judged by the prompt, or the resources, it names.
		switch m.Ref {
		case mcpjson.RefPrompt:
			if matchAny(r.prompts, m.Name) {
				return true
			}
		case mcpjson.RefResource:
			if k != nil && (k.template && mayMatchTemplate(r.uris, k) || !k.template && matchURI(r.uris, m.Name, k)) {
				return true
			}
		}
	}
	return matchAny(r.methods, m.Method)
}

// metBy reports whether granted holds the rule's own requirement.
func (r *compiledRule) metBy(granted []string) bool {
	return policy{allOf: r.allOf, anyOf: r.anyOf}.satisfiedBy(granted)
}

// ruleSet is the compiled per-operation policy: the base policy and the rules.
type ruleSet struct {
	base  policy
	rules []compiledRule
	// uriRules is set when a rule has resource_uri patterns: then resource URIs must be
	// in normal form.
	uriRules bool
	// access holds the conditions the rules' conds index.
	access *accessPolicy
}

func newRuleSet(base policy, rules []*Rule) *ruleSet {
	rs := &ruleSet{base: base, rules: make([]compiledRule, len(rules))}
	for i, r := range rules {
		rs.rules[i] = compiledRule{
			tools:   compilePatterns(r.Tools),
			prompts: compilePatterns(r.Prompts),
			uris:    compileURIPatterns(r.ResourceURIs),
			methods: compilePatterns(r.Methods),
			allOf:   r.Scopes,
			anyOf:   r.AnyOf,
		}
		rs.uriRules = rs.uriRules || len(r.ResourceURIs) > 0
	}
	return rs
}

// checkURIs refuses a request with a resource URI that is not in normal form, while any
// rule has resource_uri patterns. Without such patterns no URI decides anything and the
// server's own reading of it is harmless, so no request is refused for its URI spelling.
func (rs *ruleSet) checkURIs(msgs []mcpjson.Message) error {
	if !rs.uriRules {
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

// checkRefURI checks the params.ref.uri of a completion: a URI in normal form, or a URI
// template whose literal prefix is the start of one (checked with an "x" in place of the
// first expression: an incomplete escape, authority or scheme before it is refused).
func checkRefURI(s string) error {
	if i := strings.IndexByte(s, '{'); i >= 0 {
		return checkResourceURI(s[:i] + "x")
	}
	return checkResourceURI(s)
}

// matchSet records which rules apply to a request: the union over its messages. Up to 64
// rules fit without allocating.
type matchSet struct {
	lo uint64
	hi []uint64
}

func (s *matchSet) add(i int) {
	if i < 64 {
		s.lo |= 1 << i
		return
	}
	w := i/64 - 1
	for len(s.hi) <= w {
		s.hi = append(s.hi, 0)
	}
	s.hi[w] |= 1 << (i % 64)
}

func (s *matchSet) has(i int) bool {
	if i < 64 {
		return s.lo&(1<<i) != 0
	}
	w := i/64 - 1
	return w < len(s.hi) && s.hi[w]&(1<<(i%64)) != 0
}

// match adds the rules that apply to m.
func (rs *ruleSet) match(m *mcpjson.Message, s *matchSet) {
	if rs.uriRules && (resourceURIMethod(m.Method) || m.Ref == mcpjson.RefResource) {
		rs.matchResource(m, s)
		return
	}
	for i := range rs.rules {
		if rs.rules[i].appliesTo(m, nil) {
			s.add(i)
		}
	}
}

// matchResource is match for a message with a resource URI, whose key is built on the stack.
func (rs *ruleSet) matchResource(m *mcpjson.Message, s *matchSet) {
	var buf [256]byte
	k := newURIKey(buf[:0], m.Name)
	for i := range rs.rules {
		if rs.rules[i].appliesTo(m, &k) {
			s.add(i)
		}
	}
}

// setAccess compiles the rules' client and claim conditions into a.
func (rs *ruleSet) setAccess(a *accessPolicy, rules []*Rule) error {
	rs.access = a
	for i, r := range rules {
		idx, err := a.add(r.Clients, r.RequireClaims)
		if err != nil {
			return fmt.Errorf("rules[%d]: %w", i, err)
		}
		rs.rules[i].conds = idx
	}
	return nil
}

// accessDenial returns the denial of the first matched rule whose client or claim condition
// the caller fails, or denyNone. It is judged before scopes: a token with more scopes would
// fail it all the same.
func (rs *ruleSet) accessDenial(c *caller, s *matchSet) denial {
	if rs.access == nil {
		return denyNone
	}
	for i := range rs.rules {
		if s.has(i) && len(rs.rules[i].conds) > 0 {
			if d := rs.access.firstFailed(rs.rules[i].conds, &c.condOK); d != denyNone {
				return d
			}
		}
	}
	return denyNone
}

// satisfiedBy reports whether granted meets the base policy and every matched rule.
func (rs *ruleSet) satisfiedBy(granted []string, s *matchSet) bool {
	if !rs.base.satisfiedBy(granted) {
		return false
	}
	for i := range rs.rules {
		if s.has(i) && !rs.rules[i].metBy(granted) {
			return false
		}
	}
	return true
}

// stepUpScopes is the `scope` of a 403 for a request that matched s: the base scopes, then
// each matched rule's scopes, in configuration order and without repeats. From each any_of
// list it names the alternative the token already holds, or the first (preferred) one when
// it holds none, so a token requested with exactly these scopes passes.
func (rs *ruleSet) stepUpScopes(granted []string, s *matchSet) []string {
	out := make([]string, 0, 8)
	add := func(allOf, anyOf []string) {
		for _, sc := range allOf {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
		if len(anyOf) == 0 {
			return
		}
		pick := anyOf[0]
		for _, sc := range anyOf {
			if slices.Contains(granted, sc) {
				pick = sc
				break
			}
		}
		if !slices.Contains(out, pick) {
			out = append(out, pick)
		}
	}
	add(rs.base.allOf, rs.base.anyOf)
	for i := range rs.rules {
		if s.has(i) {
			add(rs.rules[i].allOf, rs.rules[i].anyOf)
		}
	}
	return out
}

// toolAllowed reports whether a tools/call of name would pass the rules for a caller that
// already passed the base policy: their scopes, clients and claims. It is what
// filter_tools_list hides tools by.
func (rs *ruleSet) toolAllowed(name string, c *caller) bool {
	return rs.allowed(&mcpjson.Message{Method: mcpjson.MethodToolsCall, HasMethod: true, Name: name}, nil, c)
}

// met reports whether the caller meets rule r: its scopes, and its client and claim
// conditions.
func (rs *ruleSet) met(r *compiledRule, c *caller) bool {
	if !r.metBy(c.granted()) {
		return false
	}
	return len(r.conds) == 0 || (rs.access != nil && rs.access.firstFailed(r.conds, &c.condOK) == denyNone)
}

// entryAllowed reports whether a list entry of kind named key stays in the list for a token
// that already passed the base policy: filter_tools_list and filter_lists hide by it.
func (rs *ruleSet) entryAllowed(kind mcpjson.ListKind, key string, c *caller) bool {
	switch kind {
	case mcpjson.ListTools:
		return rs.toolAllowed(key, c)
	case mcpjson.ListPrompts:
		return rs.allowed(&mcpjson.Message{Method: mcpjson.MethodPromptsGet, HasMethod: true, Name: key}, nil, c)
	case mcpjson.ListResources:
		return rs.resourceAllowed(key, c)
	case mcpjson.ListResourceTemplates:
		return rs.templateAllowed(key, c)
	}
	return false
}

// allowed reports whether the caller meets every rule that applies to m.
func (rs *ruleSet) allowed(m *mcpjson.Message, k *uriKey, c *caller) bool {
	for i := range rs.rules {
		if rs.rules[i].appliesTo(m, k) && !rs.met(&rs.rules[i], c) {
			return false
		}
	}
	return true
}

// resourceAllowed reports whether a resources/read of uri would pass the rules. A URI not in
// normal form is hidden while resource_uri rules exist: reading it would be refused.
func (rs *ruleSet) resourceAllowed(uri string, c *caller) bool {
	m := mcpjson.Message{Method: mcpjson.MethodResourcesRead, HasMethod: true, Name: uri}
	if !rs.uriRules {
		return rs.allowed(&m, nil, c)
	}
	if checkResourceURI(uri) != nil {
		return false
	}
	var buf [256]byte
	k := newURIKey(buf[:0], uri)
	return rs.allowed(&m, &k, c)
}

// templateAllowed reports whether a resource template stays in resources/templates/list: it
// is hidden only when every resources/read of one of its expansions falls under a rule the
// token fails, which is when such a rule names resources/read among its methods, or has a
// resource_uri pattern that is a literal part and one final "*" which the template's literal
// prefix (before its first "{") starts with. A template only partly covered stays: its
// reads are judged one by one. A template without expressions is the one URI it names.
func (rs *ruleSet) templateAllowed(tmpl string, c *caller) bool {
	if strings.IndexByte(tmpl, '{') < 0 {
		return rs.resourceAllowed(tmpl, c)
	}
	var buf [256]byte
	k := newURIKey(buf[:0], tmpl)
	for i := range rs.rules {
		r := &rs.rules[i]
		if rs.met(r, c) {
			continue
		}
		if matchAny(r.methods, mcpjson.MethodResourcesRead) || coversTemplate(r.uris, &k) {
			return false
		}
	}
	return true
}

// scopes lists every scope the rules name, for the default scopes_supported.
func (rs *ruleSet) scopes() []string {
	var out []string
	for _, r := range rs.rules {
		for _, s := range slices.Concat(r.allOf, r.anyOf) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Configuration errors of rules.
var (
	errRuleNoTarget   = errors.New("names no tools, prompts, resource_uris or methods")
	errRuleNoScope    = errors.New("requires nothing: set scopes, any_of, clients or require_claim")
	errRuleEmptyMatch = errors.New("empty pattern")
)

type namedList struct {
	name string
	list []string
}

// validateRules checks the rules of the configuration.
func validateRules(rules []*Rule) error {
	for i, r := range rules {
		if r == nil {
			return fmt.Errorf("rules[%d]: empty rule", i)
		}
		if len(r.Tools)+len(r.Prompts)+len(r.ResourceURIs)+len(r.Methods) == 0 {
			return fmt.Errorf("rules[%d]: %w", i, errRuleNoTarget)
		}
		for _, f := range []namedList{{"tools", r.Tools}, {"prompts", r.Prompts}, {"resource_uris", r.ResourceURIs}, {"methods", r.Methods}} {
			if slices.Contains(f.list, "") {
				return fmt.Errorf("rules[%d].%s: %w", i, f.name, errRuleEmptyMatch)
			}
		}
		for _, p := range r.ResourceURIs {
			if err := checkURIPattern(p); err != nil {
				return fmt.Errorf("rules[%d].resource_uris: %q: write patterns in the normal form of the URIs they name: %w", i, p, err)
			}
		}
		if len(r.Scopes)+len(r.AnyOf)+len(r.Clients)+len(r.RequireClaims) == 0 {
			return fmt.Errorf("rules[%d]: %w", i, errRuleNoScope)
		}
		if err := validateRuleAccess(i, r); err != nil {
			return err
		}
		for _, f := range []namedList{{"scopes", r.Scopes}, {"any_of", r.AnyOf}} {
			for _, s := range f.list {
				if err := checkScope(s); err != nil {
					return fmt.Errorf("rules[%d].%s: %q: %w", i, f.name, s, err)
				}
			}
		}
	}
	return nil
}
