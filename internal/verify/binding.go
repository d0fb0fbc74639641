package verify

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
)

// Presentation says how a request presented its access token, for CheckBinding.
type Presentation struct {
	// DPoP: the token came with the DPoP scheme, and ProofJKT is the thumbprint of the key
	// of its verified proof.
	DPoP     bool
	ProofJKT string
	// CheckCert: certificate-bound tokens are honoured (mtls_bound). Cert is the client
	// certificate of the TLS connection, nil without one.
	CheckCert bool
	Cert      *x509.Certificate
}

// CheckBinding checks a token's confirmation (cnf, RFC 7800) against how it was presented.
// It is the one place where binding is decided, for tokens of every mechanism (JWT,
// introspection):
//   - cnf.jkt (RFC 9449 §6): only with the DPoP scheme and a proof by that key;
//   - cnf.x5t#S256 (RFC 8705 §3): only when certificate binding is on and the request came
//     with the certificate of that SHA-256 thumbprint;
//   - a token without cnf.jkt is refused with the DPoP scheme (RFC 9449 §7.1);
//   - a cnf with neither member is a binding this module cannot check: refused.
func CheckBinding(c Confirmation, p Presentation) error {
	switch {
	case c.JKT != "" && !p.DPoP:
		return fail(Bound)
	case c.JKT != "" && p.ProofJKT != c.JKT:
		return fail(WrongKey)
	case c.JKT == "" && p.DPoP:
		return fail(NotBound)
	}
	if c.X5TS256 != "" {
		if !p.CheckCert {
			return fail(Bound)
		}
		if p.Cert == nil || !certMatches(p.Cert, c.X5TS256) {
			return fail(WrongCert)
		}
	}
	if c.Present && c.JKT == "" && c.X5TS256 == "" {
		return fail(Bound)
	}
	return nil
}

// CertThumbprint is x5t#S256 of a certificate: base64url(SHA-256(DER)) (RFC 8705 §3.1).
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// certMatches reports whether cert's x5t#S256 is want, without allocating.
func certMatches(cert *x509.Certificate, want string) bool {
	sum := sha256.Sum256(cert.Raw)
	var enc [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(enc[:], sum[:])
	return string(enc[:]) == want
}
