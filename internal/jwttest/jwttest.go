// Package jwttest plays an authorization server for tests, benchmarks and the load script
// (bench/mint) only: it generates signing keys, publishes them as JWKs, and signs access
// tokens with them. Nothing in the module itself imports it.
package jwttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key with its kid and JWS alg, as an authorization server holds it.
type Key struct {
	KID    string
	Alg    string
	Signer crypto.Signer
}

// Generate makes a fresh key for alg: RS256 or PS256 (RSA 2048), ES256 (P-256), ES384
// (P-384) or EdDSA (Ed25519).
func Generate(kid, alg string) (*Key, error) {
	var (
		signer crypto.Signer
		err    error
	)
	switch alg {
	case "RS256", "PS256":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("unknown alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return &Key{KID: kid, Alg: alg, Signer: signer}, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// JWK returns the public JWK of the key, as an authorization server publishes it.
func (k *Key) JWK() map[string]any {
	m := map[string]any{"kid": k.KID, "use": "sig", "alg": k.Alg}
	switch pub := k.Signer.Public().(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64(pub.N.Bytes())
		m["e"] = b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		// The uncompressed point is 0x04 || X || Y, 32 bytes each on P-256, 48 on P-384.
		pt, err := pub.Bytes()
		if err != nil || len(pt)%2 != 1 {
			panic(fmt.Sprintf("jwttest: EC key encoding: %v", err))
		}
		size := len(pt) / 2
		m["kty"] = "EC"
		m["crv"] = pub.Curve.Params().Name
		m["x"] = b64(pt[1 : 1+size])
		m["y"] = b64(pt[1+size:])
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64(pub)
	}
	return m
}

// JWKS returns the JSON JWK set holding the public keys.
func JWKS(keys ...*Key) []byte {
	set := []any{}
	for _, k := range keys {
		set = append(set, k.JWK())
	}
	b, err := json.Marshal(map[string]any{"keys": set})
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return b
}

// Sign returns an access token (typ at+jwt, kid of the key) with the given claims. header
// overrides header parameters; a nil value removes one.
func (k *Key) Sign(claims jwt.MapClaims, header map[string]any) (string, error) {
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), claims)
	tok.Header["kid"] = k.KID
	tok.Header["typ"] = "at+jwt"
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	return tok.SignedString(k.Signer)
}

// TB is the part of testing.TB the helpers below use (this package does not import testing,
// so bench/mint does not link it).
type TB interface {
	Helper()
	Fatal(args ...any)
}

// New is Generate for a test: it fails the test if the key cannot be made.
func New(t TB, kid, alg string) *Key {
	t.Helper()
	k, err := Generate(kid, alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Token is Sign for a test: it fails the test if the token cannot be signed.
func (k *Key) Token(t TB, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	s, err := k.Sign(claims, header)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PublicJWK is the key's public JWK with only the members RFC 7638 names (what a DPoP
// client puts in a proof's jwk header).
func (k *Key) PublicJWK() map[string]any {
	m := k.JWK()
	for _, name := range []string{"kid", "use", "alg"} {
		delete(m, name)
	}
	return m
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key: encoding/json writes map
// members sorted and without whitespace, which is the canonical form.
func (k *Key) Thumbprint() string {
	b, err := json.Marshal(k.PublicJWK())
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return b64(sum[:])
}

// ATH is a proof's ath for an access token: base64url(SHA-256(token)) (RFC 9449 §4.2).
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64(sum[:])
}

// SignProof returns a DPoP proof (RFC 9449 §4.2): typ dpop+jwt, the public JWK in the
// header, and claims as given. header overrides header parameters; a nil value removes one.
func (k *Key) SignProof(claims jwt.MapClaims, header map[string]any) (string, error) {
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), claims)
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = k.PublicJWK()
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	return tok.SignedString(k.Signer)
}

// ProofClaims are a fresh proof's claims for a request: a random jti, iat now, htm, htu,
// and ath of token when it is not empty.
func ProofClaims(method, htu, token string, now int64) jwt.MapClaims {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	c := jwt.MapClaims{"jti": b64(jti[:]), "htm": method, "htu": htu, "iat": now}
	if token != "" {
		c["ath"] = ATH(token)
	}
	return c
}

// Proof is SignProof of ProofClaims for a test.
func (k *Key) Proof(t TB, method, htu, token string, now int64) string {
	t.Helper()
	s, err := k.SignProof(ProofClaims(method, htu, token, now), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
