package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Certificate-bound tokens (RFC 8705) end to end: oidc-provider binds the token of the client
// mtls-cc to the certificate the test driver presents (features.mTLS.certificateBoundAccessTokens,
// see as.mjs), and a Caddy site with TLS client_auth and mtls_bound accepts the token only
// with that certificate. A test CA issues the server and client certificates.

// mtlsSite is the TLS site of the end-to-end Caddy for certificate-bound tokens.
type mtlsSite struct {
	base, resource string
	pool           *x509.CertPool
	client, other  tls.Certificate
	caddyfile      string
}

func newMTLSSite(t *testing.T, dir, issuer, upstreamHost string, port int) *mtlsSite {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, server bool) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "e2e-" + strconv.FormatInt(serial, 10)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	server := issue(2, true)
	certPath, keyPath := filepath.Join(dir, "mtls-server.pem"), filepath.Join(dir, "mtls-server-key.pem")
	keyDER, err := x509.MarshalECPrivateKey(server.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{certPath: {Type: "CERTIFICATE", Bytes: server.Certificate[0]}, keyPath: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A name, not an IP address: with client_auth Caddy requires the Host to match the TLS
	// server name (strict_sni_host), and a client sends no server name for an address.
	s := &mtlsSite{base: "https://localhost:" + strconv.Itoa(port), pool: x509.NewCertPool(), client: issue(3, false), other: issue(4, false)}
	s.pool.AddCert(ca)
	s.resource = s.base + "/mcp"
	s.caddyfile = fmt.Sprintf(`%s {
	tls %s %s {
		client_auth {
			mode request
		}
	}
	mcp_auth {
		resource %s
		authorization_servers %s
		scopes %s
		mtls_bound
	}
	reverse_proxy %s
}
`, s.base, certPath, keyPath, s.resource, issuer, scopeRead, upstreamHost)
	return s
}

// httpClient connects to the site, presenting cert when not nil.
func (s *mtlsSite) httpClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: s.pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// requestBoundToken asks the AS for a token bound to cert: the test driver hands the
// certificate over in a header, standing in for a TLS-terminating proxy in front of the AS.
func requestBoundToken(t *testing.T, hc *http.Client, endpoint, resource string, cert tls.Certificate) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scopeRead}, "resource": {resource}}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("mtls-cc", "mtls-cc-secret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-E2E-Client-Cert", base64.StdEncoding.EncodeToString(cert.Certificate[0]))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer drain(resp)
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token request: status %d, error %q (%v)", resp.StatusCode, body.Error, err)
	}
	return body.AccessToken
}

// tokenCnf reads the cnf claim of a JWT without verifying it (the driver's own check of what
// the AS issued).
func tokenCnf(t *testing.T, token string) map[string]string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Cnf map[string]string `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cnf
}

func testMTLSBound(t *testing.T, hc *http.Client, tokenEndpoint string, s *mtlsSite) {
	tok := requestBoundToken(t, hc, tokenEndpoint, s.resource, s.client)
	sum := sha256.Sum256(s.client.Certificate[0])
	if got, want := tokenCnf(t, tok)["x5t#S256"], base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("token cnf.x5t#S256 = %q, want the client certificate's %q", got, want)
	}
	wantStatus(t, mcpInitialize(t, s.httpClient(&s.client), s.resource, tok), http.StatusOK)
	for name, cert := range map[string]*tls.Certificate{"without a certificate": nil, "with another certificate": &s.other} {
		resp := mcpInitialize(t, s.httpClient(cert), s.resource, tok)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d %s", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}
