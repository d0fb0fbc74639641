package policy

import "slices"

// requirement is a scope requirement: every one of allOf, and one of anyOf when set. The
// base policy is one (scopes, any_of; empty with skip_scopes, and then always met), and so
// is each rule's own.
type requirement struct {
	allOf []string
	anyOf []string
}

// metBy reports whether the granted scopes meet the requirement.
func (q requirement) metBy(granted []string) bool {
	for _, s := range q.allOf {
		if !slices.Contains(granted, s) {
			return false
		}
	}
	if len(q.anyOf) == 0 {
		return true
	}
	for _, s := range q.anyOf {
		if slices.Contains(granted, s) {
			return true
		}
	}
	return false
}

// challengeScope is what the `scope` challenge parameter names: every required scope and the
// first (preferred) alternative.
func (q requirement) challengeScope() []string {
	out := slices.Clone(q.allOf)
	if len(q.anyOf) > 0 && !slices.Contains(out, q.anyOf[0]) {
		out = append(out, q.anyOf[0])
	}
	return out
}
