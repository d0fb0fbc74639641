package policy

import (
	"fmt"
	"strings"
)

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

// CheckClientPattern refuses a `*` in the host of a URL pattern other than whole leading
// labels followed by at least two literal ones.
func CheckClientPattern(s string) error {
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
		return fmt.Errorf("%q: %w", s, ErrWildcardHost)
	}
	return nil
}

// newClientPattern compiles a client pattern (checked by CheckClientPattern).
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
