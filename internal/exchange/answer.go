package exchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// answer is a successful token exchange response (RFC 8693 §2.2.1), read strictly.
type answer struct {
	accessToken  string
	expiresIn    int64
	hasExpiresIn bool
	// jwtExp and jti are read from the new token when it is a JWT: its exp bounds the
	// cache too, and its jti names it in the audit event. The token is not verified here:
	// the upstream does that; these only shorten a lifetime and label an event.
	jwtExp time.Time
	jti    string
}

// maxExpiresIn bounds expires_in (ten years): a larger value is no lifetime a server meant.
const maxExpiresIn = 10 * 365 * 24 * 3600

var (
	errTooBig     = fmt.Errorf("answer larger than %d bytes", MaxAnswerBytes)
	errNotJSON    = errors.New("answer is not a JSON object")
	errNotUTF8    = errors.New("answer is not valid UTF-8")
	errDuplicate  = errors.New("a member appears more than once")
	errNoToken    = errors.New("member access_token: missing or empty")
	errTokenChars = errors.New("member access_token: not a b64token (RFC 6750 §2.1), cannot go in an HTTP header")
)

// parseAnswer reads a token exchange response. Every member appears at most once (parsers
// disagree on duplicates, and the answer must mean one thing); access_token is a non-empty
// b64token; issued_token_type says an access token was issued (this module asked for one,
// and hands it on as one); token_type is Bearer or N_A (RFC 8693 §2.2.1; compared without
// case, as RFC 6749 §5.1 says of token_type), since the upstream request carries the token
// as a bearer token and this module holds no key for a bound one; expires_in, when present,
// a whole non-negative JSON number.
func parseAnswer(raw []byte) (*answer, error) {
	if len(raw) > MaxAnswerBytes {
		return nil, errTooBig
	}
	if !utf8.Valid(raw) {
		return nil, errNotUTF8
	}
	if !json.Valid(raw) {
		return nil, errNotJSON
	}
	ms, err := readMembers(raw)
	if err != nil {
		return nil, err
	}
	a := &answer{}
	str := func(name string) (string, bool, error) {
		v, ok := ms[name]
		if !ok {
			return "", false, nil
		}
		if len(v) == 0 || v[0] != '"' {
			return "", true, fmt.Errorf("member %s: not a JSON string", name)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", true, fmt.Errorf("member %s: %w", name, err)
		}
		return s, true, nil
	}
	tok, _, err := str("access_token")
	if err != nil {
		return nil, err
	}
	if tok == "" {
		return nil, errNoToken
	}
	if !isB64Token(tok) {
		return nil, errTokenChars
	}
	a.accessToken = tok
	itt, ok, err := str("issued_token_type")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, errors.New("member issued_token_type: missing (RFC 8693 §2.2.1 requires it)")
	case itt != AccessTokenType:
		return nil, fmt.Errorf("member issued_token_type: %q is not %s", clip(itt), AccessTokenType)
	}
	tt, ok, err := str("token_type")
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, errors.New("member token_type: missing (RFC 6749 §5.1 requires it)")
	case !strings.EqualFold(tt, "Bearer") && !strings.EqualFold(tt, "N_A"):
		return nil, fmt.Errorf("member token_type: %q is not Bearer or N_A", clip(tt))
	}
	if v, ok := ms["expires_in"]; ok {
		n, err := wholeNumber(v)
		if err != nil {
			return nil, fmt.Errorf("member expires_in: %w", err)
		}
		a.expiresIn, a.hasExpiresIn = n, true
	}
	a.readJWT(tok)
	return a, nil
}

// readMembers splits the top-level object into its members, refusing duplicates.
func readMembers(raw []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil || t != json.Delim('{') {
		return nil, errNotJSON
	}
	ms := make(map[string]json.RawMessage, 8)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errNotJSON
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errNotJSON
		}
		if _, dup := ms[name]; dup {
			return nil, fmt.Errorf("member %s: %w", clip(name), errDuplicate)
		}
		ms[name] = v
	}
	return ms, nil
}

// wholeNumber reads a JSON number that is a whole number of seconds, 0 to maxExpiresIn.
// A string ("3600") is refused: RFC 6749 §5.1 makes expires_in a number.
func wholeNumber(v []byte) (int64, error) {
	if len(v) == 0 || v[0] < '0' || v[0] > '9' {
		return 0, errors.New("not a non-negative JSON number")
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || f > maxExpiresIn {
		return 0, fmt.Errorf("%s is not a whole number of seconds up to %d", clip(string(v)), maxExpiresIn)
	}
	return int64(f), nil
}

// readJWT takes exp and jti from a token shaped as a JWS; any other token is opaque.
func (a *answer) readJWT(tok string) {
	_, rest, ok1 := strings.Cut(tok, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return
	}
	var c struct {
		Exp *float64 `json:"exp"`
		JTI string   `json:"jti"`
	}
	if json.Unmarshal(b, &c) != nil {
		return
	}
	if c.Exp != nil && *c.Exp >= 0 && *c.Exp < 253402300800 {
		a.jwtExp = time.Unix(int64(*c.Exp), 0)
	}
	if len(c.JTI) <= 256 {
		a.jti = c.JTI
	}
}

// errorCode reads the `error` of an RFC 6749 §5.2 error response; "" when there is none. Only
// codes in the RFC's character set are returned: the value is logged.
func errorCode(raw []byte) string {
	if len(raw) > MaxAnswerBytes || !json.Valid(raw) {
		return ""
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(raw, &e) != nil || len(e.Error) > 64 {
		return ""
	}
	for i := 0; i < len(e.Error); i++ {
		// RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E
		if c := e.Error[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return ""
		}
	}
	return e.Error
}

// clip shortens a value for an error message: it comes from the server.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// isB64Token checks b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

func b64(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}
