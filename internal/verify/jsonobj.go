package verify

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// A JWT header or payload is read member by member from its JSON object, with the same
// reading as encoding/json into a map (exact, case-sensitive names; the caller refuses
// duplicates of the names it acts on), without building a map: registered claims go
// straight into fields, and the full claims are decoded only when asked for.

var errNotObject = errors.New("not a JSON object")

// members calls fn for each member of the JSON object data, with the member's name
// unescaped and its value as raw JSON. data must be valid JSON (json.Valid).
func members(data []byte, fn func(name string, value []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errNotObject
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil
	}
	for i < len(data) {
		end := stringEnd(data, i)
		name, err := jsonString(data[i:end])
		if err != nil {
			return err
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // ':'
		vend := valueEnd(data, i)
		if err := fn(name, data[i:vend]); err != nil {
			return err
		}
		i = skipSpace(data, vend)
		if i >= len(data) || data[i] == '}' {
			return nil
		}
		i = skipSpace(data, i+1) // ','
	}
	return errNotObject
}

func skipSpace(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at d[i] == '"'.
func stringEnd(d []byte, i int) int {
	for i++; i < len(d); i++ {
		switch d[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(d)
}

// valueEnd returns the index just past the JSON value starting at d[i].
func valueEnd(d []byte, i int) int {
	if i >= len(d) {
		return i
	}
	switch d[i] {
	case '"':
		return stringEnd(d, i)
	case '{', '[':
		depth := 0
		for ; i < len(d); i++ {
			switch d[i] {
			case '"':
				i = stringEnd(d, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(d)
	}
	for i < len(d) && d[i] != ',' && d[i] != '}' && d[i] != ']' && d[i] != ' ' &&
		d[i] != '\t' && d[i] != '\n' && d[i] != '\r' {
		i++
	}
	return i
}

var errNotString = errors.New("not a JSON string")

// jsonString returns the value of the raw JSON string v. Strings without escapes, the usual
// case, are converted without decoding; invalid UTF-8 is refused rather than replaced, so
// that two readers cannot see two different names.
func jsonString(v []byte) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", errNotString
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", err
			}
			if !utf8.ValidString(s) || containsReplacement(s, inner) {
				return "", errNotString
			}
			return s, nil
		}
	}
	if !utf8.Valid(inner) {
		return "", errNotString
	}
	return string(inner), nil
}

// containsReplacement reports whether decoding produced U+FFFD that the source did not
// spell out: a lone surrogate escape, which encoding/json replaces silently.
func containsReplacement(s string, src []byte) bool {
	for _, r := range s {
		if r == utf8.RuneError {
			return !bytesContainsFFFD(src)
		}
	}
	return false
}

func bytesContainsFFFD(b []byte) bool {
	for i := 0; i+2 < len(b); i++ {
		if b[i] == 0xEF && b[i+1] == 0xBF && b[i+2] == 0xBD {
			return true
		}
		if b[i] == '\\' && i+5 < len(b) && b[i+1] == 'u' && (string(b[i+2:i+6]) == "fffd" || string(b[i+2:i+6]) == "FFFD") {
			return true
		}
	}
	return false
}

// Date bounds for exp, nbf and iat: years 1970 to 9999. A NumericDate outside them is not a
// date any issuer meant, and converting it can overflow into the past.
const (
	minNumericDate = 0
	maxNumericDate = 253402300799 // 9999-12-31T23:59:59Z
)

var errBadDate = errors.New("date claim is not a number of seconds between 1970 and 9999")

// numericDate reads an RFC 7519 NumericDate: a JSON number only, within the bounds.
func numericDate(v []byte) (float64, error) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, errBadDate
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || f < minNumericDate || f > maxNumericDate {
		return 0, errBadDate
	}
	return f, nil
}

// stringOrStrings reads an audience: one string or an array of strings (RFC 7519 §4.1.3).
func stringOrStrings(v []byte, buf []string) ([]string, error) {
	if len(v) > 0 && v[0] == '"' {
		s, err := jsonString(v)
		if err != nil {
			return nil, err
		}
		return append(buf, s), nil
	}
	if len(v) == 0 || v[0] != '[' {
		return nil, errNotString
	}
	i := skipSpace(v, 1)
	if i < len(v) && v[i] == ']' {
		return buf, nil
	}
	for i < len(v) {
		end := valueEnd(v, i)
		s, err := jsonString(v[i:end])
		if err != nil {
			return nil, err
		}
		buf = append(buf, s)
		i = skipSpace(v, end)
		if i >= len(v) || v[i] == ']' {
			return buf, nil
		}
		i = skipSpace(v, i+1)
	}
	return nil, errNotString
}
