package verify

import "encoding/json"

// ParseConfirmation reads a cnf claim (RFC 7800 §3.1) given as raw JSON into the
// Confirmation that CheckBinding checks, the way token claims and introspection answers are
// read (readConfirmation). Any cnf, even one with no member this module knows, is Present.
// Only the tests of package verify_test call it.
func ParseConfirmation(raw []byte) (Confirmation, error) {
	var c Confirmation
	if !json.Valid(raw) {
		return Confirmation{Present: true}, errNotObject
	}
	err := readConfirmation(raw, &c)
	return c, err
}

// Hashed is the TokenHash of token, as the handler hands it to DPoP.Check.
func Hashed(token string) *TokenHash {
	h := HashToken(token)
	return &h
}
