// Package rfc3986 holds the RFC 3986 character rules that both the resource-URI normal form
// (internal/policy) and the DPoP htu comparison (internal/verify) apply: one definition of
// unreserved characters and of percent-encoding.
package rfc3986

import "strings"

// Unreserved reports RFC 3986 §2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~".
func Unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// UpperHexVal is the value of a hex digit in the form RFC 3986 §2.1 says producers should
// use: 0-9 and A-F.
func UpperHexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// HexVal is the value of a hex digit of either case (RFC 3986 §2.1: HEXDIG is
// case-insensitive).
func HexVal(c byte) (byte, bool) {
	if v, ok := UpperHexVal(c); ok {
		return v, true
	}
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 10, true
	}
	return 0, false
}

// NormalizePercent upper-cases percent-encodings and decodes those of unreserved characters
// (RFC 3986 §6.2.2.1, §6.2.2.2). A '%' not followed by two hex digits is left as it is.
func NormalizePercent(p string) string {
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			hi, ok1 := HexVal(p[i+1])
			lo, ok2 := HexVal(p[i+2])
			if ok1 && ok2 {
				if c := hi<<4 | lo; Unreserved(c) {
					b.WriteByte(c)
				} else {
					b.WriteByte('%')
					b.WriteString(strings.ToUpper(p[i+1 : i+3]))
				}
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// RemoveDotSegments is RFC 3986 §5.2.4 on a path.
func RemoveDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	var out []string
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch s {
		case ".":
			if i == len(segs)-1 {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if i == len(segs)-1 {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}
