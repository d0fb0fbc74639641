// Package clientauth authenticates this resource server, as an OAuth client, at an
// authorization server's endpoints: the introspection endpoint (RFC 7662) and the token
// endpoint for token exchange (RFC 8693). It knows nothing of Caddy.
package clientauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Client authentication methods, named as in the OAuth Token Endpoint Authentication
// Methods registry (RFC 7591 §2).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	PrivateKeyJWT     = "private_key_jwt"
)

// assertionLifetime is the exp of a private_key_jwt client assertion: short, as RFC 7523
// §3 advises, since it is made for one call.
const assertionLifetime = time.Minute

// Credentials are a client's identity and how it proves it. The zero Method is
// client_secret_basic.
type Credentials struct {
	ClientID     string
	ClientSecret string
	Method       string
	// PrivateKey signs the private_key_jwt client assertion (RSA: RS256, P-256/384/521:
	// ES256/384/512, Ed25519: EdDSA).
	PrivateKey crypto.Signer
	// AssertionAudience is the aud of the client assertion: the authorization server's
	// issuer identifier (RFC 7523 §3). Empty: the endpoint URL.
	AssertionAudience string
	// Now is the clock of the assertion's iat and exp; nil is time.Now.
	Now func() time.Time
}

// MethodName is Method, or its default.
func (c *Credentials) MethodName() string {
	if c.Method == "" {
		return ClientSecretBasic
	}
	return c.Method
}

// NewRequest builds the form POST to endpoint carrying form and the client authentication.
// form is changed (client_secret_post and private_key_jwt add their parameters to it).
func (c *Credentials) NewRequest(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	basic := false
	switch c.MethodName() {
	case ClientSecretPost:
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
	case PrivateKeyJWT:
		assertion, err := c.assertion(endpoint)
		if err != nil {
			return nil, err
		}
		form.Set("client_id", c.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	default:
		basic = true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and
		// base64-encoded (net/http's SetBasicAuth does not encode them).
		cred := url.QueryEscape(c.ClientID) + ":" + url.QueryEscape(c.ClientSecret)
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	}
	return req, nil
}

// assertion makes an RFC 7523 §2.2 client assertion: iss = sub = client_id, aud = the
// authorization server, a unique jti, and a short exp.
func (c *Credentials) assertion(endpoint string) (string, error) {
	method, err := SigningMethodFor(c.PrivateKey)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	aud := c.AssertionAudience
	if aud == "" {
		aud = endpoint
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	claims := jwt.MapClaims{
		"iss": c.ClientID,
		"sub": c.ClientID,
		"aud": aud,
		"jti": hex.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	return jwt.NewWithClaims(method, claims).SignedString(c.PrivateKey)
}

// SigningMethodFor picks the JWS algorithm for a private key: RS256 for RSA, ES256/384/512
// by curve, EdDSA for Ed25519.
func SigningMethodFor(k crypto.Signer) (jwt.SigningMethod, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jwt.SigningMethodES256, nil
		case elliptic.P384():
			return jwt.SigningMethodES384, nil
		case elliptic.P521():
			return jwt.SigningMethodES512, nil
		}
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, nil
	}
	return nil, fmt.Errorf("private key of type %T: not RSA, ECDSA P-256/384/521 or Ed25519", k)
}

// NewHTTPClient is an HTTP client for an authorization server's endpoints: bounded by
// timeout, and never following a redirect, which would carry tokens (and, to the same
// host, the credentials) to where the configuration did not say.
func NewHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
