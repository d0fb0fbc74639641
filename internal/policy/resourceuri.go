package policy

import (
	"net/netip"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/rfc3986"
)

// resource_uri patterns are matched against params.uri as a string, but MCP servers do not
// read it as a string. They parse it with the WHATWG URL parser (new URL() in the TypeScript
// SDK, which looks resources up by its href), which lowercases scheme and host, strips tabs,
// newlines and surrounding C0 controls and spaces, reads `\` as `/` in special schemes, drops
// empty and default ports and the `localhost` host of file:, and removes dot segments, %2e
// forms included. For file: URIs, fileURLToPath then decodes every percent-escape and ignores
// query and fragment, and path.resolve collapses `//` and a trailing slash. Each of those
// turns a URI that no pattern names into one that a pattern names: file:///srv/public/../secret/a
// is file:///srv/secret/a to the server.
//
// So a resource URI is judged only when it is already in normal form: it equals its own WHATWG
// serialization, and has none of the spellings a server may still read as another URI. The
// check below does not parse and re-serialize; it accepts a conservative subset of fixed
// points of the WHATWG parser (RFC 3986 syntax, printable ASCII, lowercase scheme, canonical
// host and port, no dot or empty path segment, percent-escapes in uppercase that do not encode
// an unreserved character, a slash, a backslash or NUL) and refuses everything else, so that
// what it accepts reads the same to every server. For file: it also refuses a host, a query
// and a fragment. A test compares its decisions with Node's URL parser on a few thousand
// spellings.
//
// Among accepted file: URIs the same path can still be written two ways where Node's
// pathToFileURL and new URL differ ([, ], |, ^ and ~ literal or escaped), and a file system may
// be case-insensitive. Patterns are therefore also matched against a key with the escapes
// decoded, and for file: with ASCII letters folded and a trailing slash removed (path.resolve
// drops it: an exact file: pattern covers the same path with a trailing slash). Matching more
// URIs only ever adds requirements, so the extra matching fails closed.

// resourceURIMethod reports whether params.uri of method names a resource that
// resource_uri rules apply to (MCP: resources/read, resources/subscribe, resources/unsubscribe).
func resourceURIMethod(method string) bool {
	switch method {
	case mcpjson.MethodResourcesRead, mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe:
		return true
	}
	return false
}

// checkResourceURI returns nil when s is a resource URI in normal form, else why not.
func checkResourceURI(s string) error {
	if s == "" {
		return errURIEmpty
	}
	for i := 0; i < len(s); i++ {
		if !uriByte(s[i]) {
			return errURIChar
		}
	}
	scheme, rest, err := splitScheme(s)
	if err != nil {
		return err
	}
	file := scheme == "file"
	defaultPort, special := specialScheme(scheme)
	if err := checkEscapes(rest, file); err != nil {
		return err
	}

	rest, frag, hasFrag := strings.Cut(rest, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	if file && (hasFrag || hasQuery) {
		return errURIFile
	}
	if hasFrag && strings.IndexByte(frag, '#') >= 0 {
		return errURIChar
	}
	// The special-query percent-encode set adds ' to the query's.
	if special && strings.IndexByte(query, '\'') >= 0 {
		return errURIQuote
	}

	path := rest
	if auth, ok := strings.CutPrefix(rest, "//"); ok {
		path = ""
		if i := strings.IndexByte(auth, '/'); i >= 0 {
			auth, path = auth[:i], auth[i:]
		}
		if file {
			if auth != "" {
				return errURIFile
			}
		} else if err := checkAuthority(auth, special, defaultPort); err != nil {
			return err
		}
	} else if special {
		// The parser adds the missing slashes and takes what follows as the host.
		if file {
			return errURIFile
		}
		return errURISlashes
	}
	if special && path == "" {
		// The serialization of a special URL always has a path, at least "/".
		if file {
			return errURIFile
		}
		return errURISlashes
	}
	return checkPath(path, file)
}

// uriByte reports whether c may appear in a normal resource URI at all: printable ASCII other
// than the characters the parser percent-encodes in every component or reads as a separator
// (a second # is refused where fragments are read).
func uriByte(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '\\', '"', '<', '>', '`', '{', '}':
		return false
	}
	return true
}

// splitScheme splits a lowercase RFC 3986 scheme from the rest.
func splitScheme(s string) (scheme, rest string, err error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' && i > 0:
			return s[:i], s[i+1:], nil
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return "", "", errURIScheme
		}
	}
	return "", "", errURIScheme
}

// specialScheme reports the WHATWG special schemes and their default ports ("" for file).
func specialScheme(scheme string) (defaultPort string, special bool) {
	switch scheme {
	case "http", "ws":
		return "80", true
	case "https", "wss":
		return "443", true
	case "ftp":
		return "21", true
	case "file":
		return "", true
	}
	return "", false
}

// checkEscapes checks every percent-escape: two uppercase hex digits (RFC 3986 §6.2.2.1), not
// an unreserved character (§6.2.2.2: the parser keeps %73, fileURLToPath and many servers
// decode it), and never /, \ or NUL, which would change the path's structure once decoded.
// In file: URIs %7E is accepted because Node's pathToFileURL writes ~ that way; both
// spellings have the same matching key.
func checkEscapes(s string, file bool) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) {
			return errURIEscape
		}
		hi, ok1 := rfc3986.UpperHexVal(s[i+1])
		lo, ok2 := rfc3986.UpperHexVal(s[i+2])
		if !ok1 || !ok2 {
			return errURIEscape
		}
		c := hi<<4 | lo
		switch {
		case c == 0, c == '/', c == '\\':
			return errURIEscape
		case c == '~':
			if !file {
				return errURIEscape
			}
		case rfc3986.Unreserved(c):
			return errURIEscape
		}
		i += 2
	}
	return nil
}

// checkAuthority checks host and port of a URI other than file:. User information is refused:
// the parser re-encodes it and it has no place in a resource URI.
func checkAuthority(auth string, special bool, defaultPort string) error {
	if strings.IndexByte(auth, '@') >= 0 {
		return errURIAuthority
	}
	host, port, hasPort := auth, "", false
	if strings.HasPrefix(auth, "[") {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return errURIAuthority
		}
		host = auth[:end+1]
		switch after := auth[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return errURIAuthority
		}
	} else {
		host, port, hasPort = strings.Cut(auth, ":")
	}
	if hasPort {
		// The parser drops an empty or default port and leading zeros.
		if host == "" || port == "" || len(port) > 5 || port[0] == '0' && len(port) > 1 || port == defaultPort {
			return errURIAuthority
		}
		n := 0
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return errURIAuthority
			}
			n = n*10 + int(port[i]-'0')
		}
		if n > 65535 {
			return errURIAuthority
		}
	}
	switch {
	case strings.HasPrefix(host, "["):
		return checkIPv6(host[1 : len(host)-1])
	case special:
		return checkDomain(host)
	}
	return checkOpaqueHost(host)
}

// checkIPv6 accepts an IPv6 address only as the parser serializes it (RFC 5952: lowercase,
// the first longest run of zeros compressed, no embedded IPv4, no zone).
func checkIPv6(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == ':') {
			return errURIAuthority
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.String() != s {
		return errURIAuthority
	}
	return nil
}

// checkDomain accepts the host of a special URL when the parser keeps it as is: lowercase
// ASCII labels, none empty (no trailing dot either: DNS reads it as the same name), and a
// name that ends in a number only as a dotted-decimal IPv4 address, since the parser reads
// 0x7f.1 or 1.2.3 as addresses and rewrites them. Percent-escapes are decoded by the parser.
func checkDomain(host string) error {
	if host == "" {
		return errURISlashes
	}
	last := host
	labels := 1
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			if i == 0 || i == len(host)-1 || host[i-1] == '.' {
				return errURIAuthority
			}
			last = host[i+1:]
			labels++
		default:
			return errURIAuthority
		}
	}
	if last[0] < '0' || last[0] > '9' {
		return nil
	}
	// An IPv4 address: four decimal parts 0-255 without leading zeros.
	if labels != 4 {
		return errURIAuthority
	}
	for part := range strings.SplitSeq(host, ".") {
		if len(part) > 3 || len(part) > 1 && part[0] == '0' {
			return errURIAuthority
		}
		n := 0
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return errURIAuthority
			}
			n = n*10 + int(part[i]-'0')
		}
		if n > 255 {
			return errURIAuthority
		}
	}
	return nil
}

// checkOpaqueHost accepts the host of a non-special URL when it is RFC 3986 reg-name
// characters (case is kept by the parser).
func checkOpaqueHost(host string) error {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if rfc3986.Unreserved(c) || c == '%' || strings.IndexByte("!$&'()*+,;=", c) >= 0 {
			continue
		}
		return errURIAuthority
	}
	return nil
}

// checkPath refuses dot segments and empty segments (a trailing slash aside) in any path,
// opaque paths included: the parser removes the former, path.resolve and many servers
// collapse or remove both. For file: it also refuses the Windows drive letter spelling C|,
// which the parser rewrites as C:.
func checkPath(path string, file bool) error {
	if path == "" {
		return nil
	}
	start := 0
	if path[0] == '/' {
		start = 1
	}
	first := true
	for start <= len(path) {
		end := strings.IndexByte(path[start:], '/')
		last := end < 0
		if last {
			end = len(path)
		} else {
			end += start
		}
		seg := path[start:end]
		switch {
		case seg == "" && !last:
			return errURIPath
		case seg == "." || seg == "..":
			return errURIPath
		case file && first && len(seg) == 2 && seg[1] == '|' && ('a' <= seg[0]|0x20 && seg[0]|0x20 <= 'z'):
			return errURIFile
		}
		first = false
		start = end + 1
	}
	return nil
}

// appendURIKey appends the key that resource_uri patterns are also matched against: s with
// its percent-escapes decoded, and, when file is set, with ASCII letters folded to lowercase
// and a trailing slash removed (but for the root). s is a URI in normal form, or a pattern.
func appendURIKey(dst []byte, s string, file bool) []byte {
	n := len(s)
	if file && n > len("file:///") && s[n-1] == '/' {
		n--
	}
	for i := 0; i < n; i++ {
		c := s[i]
		if c == '%' && i+2 < n {
			hi, ok1 := rfc3986.HexVal(s[i+1])
			lo, ok2 := rfc3986.HexVal(s[i+2])
			if ok1 && ok2 {
				c = hi<<4 | lo
				i += 2
			}
		}
		if file && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// CheckURIPattern refuses at load a resource_uri pattern that no URI in normal form could
// match as written. An exact pattern must itself be in normal form. A glob is checked for
// what can be judged piece by piece: characters, escapes, the scheme, and for file: the
// file:/// prefix, empty and dot segments, query and fragment.
func CheckURIPattern(p string) error {
	if !strings.Contains(p, "*") {
		return checkResourceURI(p)
	}
	for i := 0; i < len(p); i++ {
		if !uriByte(p[i]) {
			return errURIChar
		}
	}
	file := strings.HasPrefix(p, "file:")
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) || p[i+1] == '*' || p[i+2] == '*' {
			return errURIEscape
		}
		if err := checkEscapes(p[i:i+3], file); err != nil {
			return err
		}
		i += 2
	}
	colon, star := strings.IndexByte(p, ':'), strings.IndexByte(p, '*')
	if colon >= 0 && colon < star {
		scheme, rest, err := splitScheme(p)
		if err != nil {
			return err
		}
		// An authority written out before the first star must be canonical.
		if auth, ok := strings.CutPrefix(rest[:star-colon-1], "//"); ok && !file {
			if i := strings.IndexByte(auth, '/'); i >= 0 {
				defaultPort, special := specialScheme(scheme)
				if err := checkAuthority(auth[:i], special, defaultPort); err != nil {
					return err
				}
			}
		}
	}
	if !file {
		return nil
	}
	prefix := p[:star]
	if !strings.HasPrefix(prefix, "file:///") && !strings.HasPrefix("file:///", prefix) || strings.HasPrefix(prefix, "file:////") {
		return errURIFile
	}
	if strings.ContainsAny(p, "?#") {
		return errURIFile
	}
	if !strings.HasPrefix(prefix, "file:///") {
		return nil // file:* and the like: the star may stand for the prefix itself
	}
	pieces := strings.Split(p[len("file://"):], "*")
	for i, piece := range pieces {
		// The first piece starts a segment (after file://), the others may start anywhere.
		if strings.Contains(piece, "//") || strings.Contains(piece, "/./") || strings.Contains(piece, "/../") ||
			i == len(pieces)-1 && (strings.HasSuffix(piece, "/.") || strings.HasSuffix(piece, "/..")) {
			return errURIPath
		}
	}
	return nil
}
