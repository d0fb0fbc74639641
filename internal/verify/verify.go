// Package verify is the seam between the Caddy handler and the ways a caller can be proven:
// a Verifier turns the credentials of a request into an Identity, or into an *Error whose
// Reason says which answer the handler gives. The package knows nothing of Caddy; the JWT
// verifier (RFC 9068 access tokens, checked as RFC 8725 advises) is the first
// implementation, and new mechanisms (RFC 7662 introspection, RFC 9449 DPoP, RFC 8705
// certificate binding) are added beside it as files of their own.
package verify

import (
	"context"
	"errors"
	"net/http"
)

// Verifier checks an access token presented with request r and returns the caller's
// identity. It is the model of the Go MCP SDK's auth.TokenVerifier. A failure is always an
// *Error, so the caller can tell which challenge to send without knowing the mechanism.
type Verifier interface {
	Verify(ctx context.Context, token string, r *http.Request) (*Identity, error)
}

// Reason is why a token was refused. The handler maps each to one status, one RFC 6750
// error code and one fixed description.
type Reason uint8

const (
	// Malformed: not a well-formed token of the kind this verifier reads, or a registered
	// claim of the wrong JSON type.
	Malformed Reason = iota
	Signature
	UnknownKey
	Algorithm
	Expired
	NoExpiry
	NotYetValid
	IssuedInFuture
	Issuer
	Audience
	// Type: the header typ is not at+jwt where that is required.
	Type
	// OtherKind: the token is a JWT of another kind (its typ names one), never an access
	// token, whatever the options (RFC 8725 §3.11).
	OtherKind
	// Bound: the token is bound to a key or certificate (cnf) and was presented as a plain
	// bearer token (RFC 9449 §7.2, RFC 8705 §3).
	Bound
	// BadProof: the DPoP proof failed a check of RFC 9449 §4.3 (invalid_dpop_proof).
	BadProof
	// UseNonce: the DPoP proof lacks the current server nonce (RFC 9449 §8).
	UseNonce
	// NotBound: a token not bound to a key was presented with the DPoP scheme.
	NotBound
	// WrongKey: the DPoP proof is signed by another key than the token's cnf.jkt.
	WrongKey
	// WrongCert: the TLS client certificate is not the token's cnf.x5t#S256, or absent.
	WrongCert
	// Unavailable: the verifier cannot decide now (no signing keys could be loaded yet).
	// The token is not at fault.
	Unavailable
	// Inactive: the authorization server says the token is not active (RFC 7662 §2.2):
	// revoked, expired, or never issued.
	Inactive
	// BadAnswer: the introspection answer is not a JSON object of the RFC 7662 shape (too
	// large, `active` or a date of the wrong type). The token is refused: nothing vouches for it.
	BadAnswer
	// ASUnavailable: the introspection endpoint cannot be reached, answers 5xx or refuses
	// our client credentials, or every slot for calls to it stayed busy. The token is not at
	// fault.
	ASUnavailable
	NumReasons
)

var reasonNames = [NumReasons]string{
	Malformed: "malformed", Signature: "bad signature", UnknownKey: "unknown key",
	Algorithm: "algorithm not accepted", Expired: "expired", NoExpiry: "no expiry",
	NotYetValid: "not valid yet", IssuedInFuture: "issued in the future",
	Issuer: "issuer not accepted", Audience: "audience not accepted", Type: "typ is not at+jwt",
	OtherKind: "not an access token", Bound: "bound token presented as bearer",
	BadProof: "invalid DPoP proof", UseNonce: "DPoP nonce required",
	NotBound: "unbound token presented with DPoP", WrongKey: "DPoP key is not the token's",
	WrongCert:   "client certificate is not the token's",
	Unavailable: "keys unavailable", Inactive: "token not active",
	BadAnswer: "unusable introspection answer", ASUnavailable: "introspection unavailable",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Error is a refused token. Err, when set, carries detail for debug logs; it never holds
// the token.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason.String() + ": " + e.Err.Error()
	}
	return e.Reason.String()
}

func (e *Error) Unwrap() error { return e.Err }

// refusal values without detail are allocated once: a flood of bad tokens costs no garbage.
var plain = func() (v [NumReasons]*Error) {
	for r := range NumReasons {
		v[r] = &Error{Reason: r}
	}
	return v
}()

func fail(r Reason) error { return plain[r] }

func failWith(r Reason, err error) error { return &Error{Reason: r, Err: err} }

// ReasonOf returns the Reason of an error returned by a Verifier (Malformed for an error
// that is not an *Error, which no verifier returns).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return Malformed
}
