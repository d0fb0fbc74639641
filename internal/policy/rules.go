package policy

import (
	"slices"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// compiledRule is a Rule ready for matching.
type compiledRule struct {
	tools, prompts, methods []pattern
	uris                    []uriPattern
	own                     requirement // the rule's scopes and any_of
	conds                   []int       // client and claim conditions, indices into Policy.conds
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

// checkURIs refuses a request with a resource URI that is not in normal form, while any
// rule has resource_uri patterns. Without such patterns no URI decides anything and the
// server's own reading of it is harmless, so no request is refused for its URI spelling.
func (p *Policy) checkURIs(msgs []mcpjson.Message) error {
	if !p.uriRules {
		return nil
	}
	return checkMessageURIs(msgs)
}

// checkMessageURIs refuses the first resource URI of msgs that is not in normal form.
func checkMessageURIs(msgs []mcpjson.Message) error {
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

// matchSet is a set of small integers: the rules that apply to a request (the union over
// its messages), or the conditions a subject holds. Up to 64 fit without allocating.
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
func (p *Policy) match(m *mcpjson.Message, s *matchSet) {
	if p.uriRules && (resourceURIMethod(m.Method) || m.Ref == mcpjson.RefResource) {
		p.matchResource(m, s)
		return
	}
	for i := range p.rules {
		if p.rules[i].appliesTo(m, nil) {
			s.add(i)
		}
	}
}

// matchResource is match for a message with a resource URI, whose key is built on the stack.
func (p *Policy) matchResource(m *mcpjson.Message, s *matchSet) {
	var buf [256]byte
	k := newURIKey(buf[:0], m.Name)
	for i := range p.rules {
		if p.rules[i].appliesTo(m, &k) {
			s.add(i)
		}
	}
}

// conditionRefusal returns the refusal of the first matched rule whose client or claim
// condition the subject fails, and that rule, or Allow. It is judged before scopes: a token
// with more scopes would fail it all the same.
func (p *Policy) conditionRefusal(held, matched *matchSet) (Outcome, int) {
	if !p.ruleConds {
		return Allow, BaseRule
	}
	for i := range p.rules {
		if matched.has(i) && len(p.rules[i].conds) > 0 {
			if o := p.firstFailed(p.rules[i].conds, held); o != Allow {
				return o, i
			}
		}
	}
	return Allow, BaseRule
}

// rulesMetBy reports whether granted meets the own requirement of every matched rule.
func (p *Policy) rulesMetBy(granted []string, matched *matchSet) bool {
	for i := range p.rules {
		if matched.has(i) && !p.rules[i].own.metBy(granted) {
			return false
		}
	}
	return true
}

// decidingRule names the rule that decided a request that matched s: the first matched rule
// the token does not meet (or the base policy) when it is refused, else the first matched
// rule, or the base policy when none matched.
func (p *Policy) decidingRule(s *Subject, matched *matchSet, allowed bool) int {
	if !allowed && !s.baseScopesMet {
		return BaseRule
	}
	for i := range p.rules {
		if matched.has(i) && (allowed || !p.rules[i].own.metBy(s.granted)) {
			return i
		}
	}
	return BaseRule
}

// stepUpScopes is the `scope` of a 403 for a request that matched s: the base scopes, then
// each matched rule's scopes, in configuration order and without repeats. From each any_of
// list it names the alternative the token already holds, or the first (preferred) one when
// it holds none, so a token requested with exactly these scopes passes.
func (p *Policy) stepUpScopes(granted []string, matched *matchSet) []string {
	out := make([]string, 0, 8)
	add := func(q requirement) {
		for _, sc := range q.allOf {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
		if len(q.anyOf) == 0 {
			return
		}
		pick := q.anyOf[0]
		for _, sc := range q.anyOf {
			if slices.Contains(granted, sc) {
				pick = sc
				break
			}
		}
		if !slices.Contains(out, pick) {
			out = append(out, pick)
		}
	}
	add(p.base)
	for i := range p.rules {
		if matched.has(i) {
			add(p.rules[i].own)
		}
	}
	return out
}

// met reports whether the subject meets rule r: its scopes, and its client and claim
// conditions.
func (p *Policy) met(r *compiledRule, s *Subject) bool {
	if !r.own.metBy(s.granted) {
		return false
	}
	return len(r.conds) == 0 || p.firstFailed(r.conds, &s.held) == Allow
}

// allowed reports whether the subject meets every rule that applies to m.
func (p *Policy) allowed(m *mcpjson.Message, k *uriKey, s *Subject) bool {
	for i := range p.rules {
		if p.rules[i].appliesTo(m, k) && !p.met(&p.rules[i], s) {
			return false
		}
	}
	return true
}

// resourceAllowed reports whether a resources/read of uri would pass the rules. A URI not in
// normal form is hidden while resource_uri rules exist: reading it would be refused.
func (p *Policy) resourceAllowed(uri string, s *Subject) bool {
	m := mcpjson.Message{Method: mcpjson.MethodResourcesRead, HasMethod: true, Name: uri}
	if !p.uriRules {
		return p.allowed(&m, nil, s)
	}
	if checkResourceURI(uri) != nil {
		return false
	}
	var buf [256]byte
	k := newURIKey(buf[:0], uri)
	return p.allowed(&m, &k, s)
}

// templateAllowed reports whether a resource template stays in resources/templates/list: it
// is hidden only when every resources/read of one of its expansions falls under a rule the
// token fails, which is when such a rule names resources/read among its methods, or has a
// resource_uri pattern that is a literal part and one final "*" which the template's literal
// prefix (before its first "{") starts with. A template only partly covered stays: its
// reads are judged one by one. A template without expressions is the one URI it names.
func (p *Policy) templateAllowed(tmpl string, s *Subject) bool {
	if strings.IndexByte(tmpl, '{') < 0 {
		return p.resourceAllowed(tmpl, s)
	}
	var buf [256]byte
	k := newURIKey(buf[:0], tmpl)
	for i := range p.rules {
		r := &p.rules[i]
		if p.met(r, s) {
			continue
		}
		if matchAny(r.methods, mcpjson.MethodResourcesRead) || coversTemplate(r.uris, &k) {
			return false
		}
	}
	return true
}
