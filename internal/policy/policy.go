// Package policy decides who may do what: the authorization policy of mcp_auth, compiled
// once from the configuration and asked once per request. It knows nothing of Caddy or HTTP:
// it reads verified identities (internal/verify) and JSON-RPC messages (internal/mcpjson).
//
// The policy holds the base scope requirement (scopes, any_of; none with skip_scopes), the
// base client and claim conditions (clients, require_claim), the scope hierarchy
// (scope_implies), the advertised scope form (scope_prefix), the per-operation rules (tool,
// prompt, resource_uri and method patterns, each with its own scopes, any_of, clients and
// claim conditions) and the normal form of resource URIs those rules are matched against.
//
// Three questions, each answered here and nowhere else:
//
//	p, err := policy.Compile(cfg)     // at load
//	s := p.NewSubject(identity)       // once per token; cache it with the identity
//	v := p.Decide(&s, msgs)           // per request: what does this caller get for these messages?
//	v.Outcome                         // Allow, or which refusal
//	v.StepUp                          // on InsufficientScope: the scopes a new token must hold
//	v.Rule                            // which rule decided (an index into Config.Rules, or BaseRule)
//	p.EntryAllowed(&s, kind, name)    // per list entry: does it stay in a filtered list?
//
// Beside them, RuleMatches(i, msg) says whether rule i names a message, for what a rule
// configures that is not policy (the upstream token a tool gets, token exchange): it matches
// as Decide does, and decides nothing.
// With public operations (Config.Public), a request without a token is asked about too:
// p.DecideAnonymous(msgs) (Allow, or MissingToken and the scopes its 401 names),
// p.ToolSchemes(name) (a tool's securitySchemes) and p.EntryVisibleAnonymous(kind, name);
// see public.go.
//
// Decide with no messages judges the base policy alone (a GET stream, a DELETE, a request
// whose body is not read). The caller maps the Outcome to its answer (403 insufficient_scope
// with a step-up challenge, 403 access_denied, 400 invalid_request); nothing here writes one.
package policy

import (
	"fmt"
	"slices"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// Config is the policy as configured. The caller validates it first (field by field, so
// that errors name the configuration); Compile only refuses what it cannot build.
type Config struct {
	// AllOf and AnyOf are the base scope requirement: every one of AllOf, and one of AnyOf
	// when set. Both empty requires no scope (skip_scopes).
	AllOf, AnyOf []string
	// Clients and Claims are the base conditions: the client must match one of Clients
	// (when set) and every claim condition must hold.
	Clients []string
	Claims  []Claim
	// Implies maps a scope to the scopes holding it counts as holding (scope_implies).
	Implies map[string][]string
	// Prefix is scope_prefix: a granted scope counts with and without it, and scopes are
	// advertised with it.
	Prefix string
	// Rules are the per-operation rules, in configuration order.
	Rules []Rule
	// Public, when set, lists what a caller without a token may do (public.go).
	Public *Public
}

// Rule is a per-operation rule: it applies to a message that one of its patterns names, and
// then its requirement adds to the base policy.
type Rule struct {
	Tools, Prompts, ResourceURIs, Methods []string
	Scopes, AnyOf                         []string
	Clients                               []string
	Claims                                []Claim
}

// Claim requires the claim at a dotted path to be one of Values: a string equal to one, or
// an array holding one as a string element.
type Claim struct {
	Claim  string
	Values []string
}

// Policy is a compiled policy. It is immutable (but for a bounded cache of securitySchemes
// values, safe for concurrent use), so concurrent requests share it.
type Policy struct {
	base      requirement
	baseConds []int // indices into conds of the base client and claim conditions
	rules     []compiledRule
	// uriRules is set when a rule has resource_uri patterns: then resource URIs must be
	// in normal form.
	uriRules bool
	// ruleConds is set when a rule has client or claim conditions of its own.
	ruleConds bool
	conds     []condition
	// implies maps a scope to every scope it implies, transitively (closure of scope_implies).
	implies map[string][]string
	prefix  string
	// public is nil unless public operations are configured.
	public *publicOps
}

// Compile builds the policy.
func Compile(c Config) (*Policy, error) {
	p := &Policy{base: requirement{allOf: c.AllOf, anyOf: c.AnyOf}, prefix: c.Prefix, rules: make([]compiledRule, len(c.Rules))}
	var err error
	if p.implies, err = scopeClosure(c.Implies); err != nil {
		return nil, err
	}
	if p.baseConds, err = p.addConditions(c.Clients, c.Claims); err != nil {
		return nil, err
	}
	for i, r := range c.Rules {
		p.rules[i] = compiledRule{
			tools:   compilePatterns(r.Tools),
			prompts: compilePatterns(r.Prompts),
			uris:    compileURIPatterns(r.ResourceURIs),
			methods: compilePatterns(r.Methods),
			own:     requirement{allOf: r.Scopes, anyOf: r.AnyOf},
		}
		if p.rules[i].conds, err = p.addConditions(r.Clients, r.Claims); err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
		p.ruleConds = p.ruleConds || len(p.rules[i].conds) > 0
		p.uriRules = p.uriRules || len(r.ResourceURIs) > 0
	}
	if c.Public != nil {
		p.compilePublic(c.Public)
	}
	return p, nil
}

// Subject is a caller as the policy sees it: derived once per token from its verified
// identity, immutable after, so a cached one is shared by concurrent requests.
type Subject struct {
	// granted are the token's scopes as the policy reads them (scope_prefix, scope_implies).
	granted []string
	// held has the bit of every client and claim condition the token meets.
	held matchSet
	// baseRefusal is the refusal of the first base condition the token fails, or Allow;
	// baseScopesMet says whether it meets the base scope requirement.
	baseRefusal   Outcome
	baseScopesMet bool
	// bareAllowed: Decide allows a request without messages, judged once (false in a
	// zero Subject: fails closed).
	bareAllowed bool
}

// NewSubject judges once what of the policy a token meets by itself: the base requirement
// and every client and claim condition.
func (p *Policy) NewSubject(id *verify.Identity) Subject {
	s := Subject{granted: p.effectiveScopes(id.Scopes)}
	p.evaluate(id, &s.held)
	s.baseRefusal = p.firstFailed(p.baseConds, &s.held)
	s.baseScopesMet = p.base.metBy(s.granted)
	bare := p.Decide(&s, nil)
	s.bareAllowed = bare.Allowed()
	return s
}

// BareAllowed says whether Decide allows a request without messages (a site without
// per-operation rules, a GET or DELETE), judged once when the subject was built: the
// request path of a cached token asks nothing else then. When it does not, Decide(s, nil)
// says why.
func (s *Subject) BareAllowed() bool { return s.bareAllowed }

// Granted is the subject's scopes as the policy reads them: with the implied ones, and in
// both forms when scope_prefix is set.
func (s *Subject) Granted() []string { return s.granted }

// BaseRefusal is the refusal of the first base client or claim condition the subject fails,
// or Allow: a subject that fails one can pass no request, so a caller may ask this before
// it reads anything of the request. Decide answers the same first.
func (s *Subject) BaseRefusal() Outcome { return s.baseRefusal }

// Outcome is what a request gets.
type Outcome uint8

const (
	// Allow lets the request through.
	Allow Outcome = iota
	// InsufficientScope: a token with more scopes (Verdict.StepUp) would pass.
	InsufficientScope
	// ClientNotAllowed and ClaimNotSatisfied: a condition no scope fixes.
	ClientNotAllowed
	ClaimNotSatisfied
	// ResourceURINotNormal: a message names a resource URI a server could read as another
	// (Verdict.Err says how), while resource_uri rules exist.
	ResourceURINotNormal
	// MissingToken: a request without a token that is not public (DecideAnonymous); a
	// token with Verdict.StepUp would pass the scope requirement.
	MissingToken
)

// BaseRule is Verdict.Rule when the base policy decided.
const BaseRule = -1

// Verdict is the answer to one request.
type Verdict struct {
	Outcome Outcome
	// Rule is the index in Config.Rules of the rule that decided, or BaseRule: for
	// InsufficientScope the first matched rule the token fails (BaseRule when it fails the
	// base scopes), for Allow the first matched rule, for a failed condition the rule that
	// holds it.
	Rule int
	// StepUp, for InsufficientScope, is the `scope` of the challenge, in the advertised form:
	// the base scopes and those of every matched rule, picking from each any_of list the
	// alternative held, else the first. A token with exactly these passes.
	StepUp []string
	// Err, for ResourceURINotNormal, says why (it wraps ErrURINotNormal).
	Err error
}

// Allowed reports whether the request may pass.
func (v *Verdict) Allowed() bool { return v.Outcome == Allow }

// Decide judges a request of subject s carrying msgs (none for a request without a body
// judged): the base conditions, the normal form of resource URIs, then the client and claim
// conditions of the rules the messages match, and last the base scopes with the scopes of
// every matched rule, all of which must hold. It does not allocate unless it refuses for
// scopes or more than 64 rules match.
func (p *Policy) Decide(s *Subject, msgs []mcpjson.Message) Verdict {
	if s.baseRefusal != Allow {
		return Verdict{Outcome: s.baseRefusal, Rule: BaseRule}
	}
	// A resource URI is judged only in normal form, before any rule is matched against it.
	if err := p.checkURIs(msgs); err != nil {
		return Verdict{Outcome: ResourceURINotNormal, Rule: BaseRule, Err: err}
	}
	var matched matchSet
	for i := range msgs {
		p.match(&msgs[i], &matched)
	}
	// A client or claim condition no scope can fix wins over missing scopes: asking for a
	// new token would not help (access_denied, no step-up).
	if o, rule := p.conditionRefusal(&s.held, &matched); o != Allow {
		return Verdict{Outcome: o, Rule: rule}
	}
	ok := s.baseScopesMet && p.rulesMetBy(s.granted, &matched)
	v := Verdict{Rule: p.decidingRule(s, &matched, ok)}
	if !ok {
		v.Outcome = InsufficientScope
		v.StepUp = p.Advertised(p.stepUpScopes(s.granted, &matched))
	}
	return v
}

// EntryAllowed reports whether a list entry of kind, named key (a tool or prompt name, a
// resource URI, a resource template), stays in a filtered list for a subject that passed the
// base policy: whether the call, get or read it stands for would pass the rules, their
// client and claim conditions included. A resource URI not in normal form is hidden while
// resource_uri rules exist (reading it would be refused); a template is hidden only when a
// rule the subject fails covers every one of its expansions.
func (p *Policy) EntryAllowed(s *Subject, kind mcpjson.ListKind, key string) bool {
	switch kind {
	case mcpjson.ListTools:
		return p.allowed(&mcpjson.Message{Method: mcpjson.MethodToolsCall, HasMethod: true, Name: key}, nil, s)
	case mcpjson.ListPrompts:
		return p.allowed(&mcpjson.Message{Method: mcpjson.MethodPromptsGet, HasMethod: true, Name: key}, nil, s)
	case mcpjson.ListResources:
		return p.resourceAllowed(key, s)
	case mcpjson.ListResourceTemplates:
		return p.templateAllowed(key, s)
	}
	return false
}

// RuleMatches reports whether rule i (an index into Config.Rules) names message m: the
// matching Decide applies, without judging anything. It serves what a rule configures
// beside the policy (which upstream token a tools/call gets), so that it names the same
// messages the rule's scopes do. It does not allocate.
func (p *Policy) RuleMatches(i int, m *mcpjson.Message) bool {
	if i < 0 || i >= len(p.rules) {
		return false
	}
	if p.uriRules && (resourceURIMethod(m.Method) || m.Ref == mcpjson.RefResource) {
		var buf [256]byte
		k := newURIKey(buf[:0], m.Name)
		return p.rules[i].appliesTo(m, &k)
	}
	return p.rules[i].appliesTo(m, nil)
}

// Scopes lists every scope the policy names, base first and then the rules', each once:
// the default scopes_supported (before Advertised).
func (p *Policy) Scopes() []string {
	var out []string
	add := func(q requirement) {
		for _, s := range slices.Concat(q.allOf, q.anyOf) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	add(p.base)
	for _, r := range p.rules {
		add(r.own)
	}
	return out
}

// ChallengeScope is the `scope` of the usual insufficient_scope challenge, in the
// advertised form: every base scope and the first (preferred) any_of alternative.
func (p *Policy) ChallengeScope() []string { return p.Advertised(p.base.challengeScope()) }

// MatchClients compiles client patterns (checked by CheckClientPattern) into a matcher of
// client IDs; an empty client ID matches nothing.
func MatchClients(patterns []string) func(clientID string) bool {
	pats := compileClientPatterns(patterns)
	return func(clientID string) bool { return clientID != "" && matchAny(pats, clientID) }
}
