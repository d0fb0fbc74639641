package integration

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
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Certificate-bound access tokens (RFC 8705) through Caddy's own TLS: a test CA issues the
// server certificate and two client certificates; Caddy asks for a client certificate
// (client_auth) and mcp_auth matches it against the token's cnf.x5t#S256.

// mtlsConfig is the usual site with scope mcp:read and mtls_bound, served by Caddy's TLS on
// https://localhost:9443 with the server certificate in certPath and keyPath, asking for a
// client certificate of ca (verify_if_given).
func (s *setup) mtlsConfig(format, certPath, keyPath string, ca *x509.Certificate) string {
	caDER := base64.StdEncoding.EncodeToString(ca.Raw)
	if format == "caddyfile" {
		return readdressed(s.caddyfile("scopes mcp:read\nmtls_bound",
			"tls "+certPath+" "+keyPath+" {\nclient_auth {\nmode verify_if_given\ntrust_pool inline {\ntrust_der "+caDER+"\n}\n}\n}",
			"reverse_proxy "+s.up.dial()), "https://localhost:9443")
	}
	cfg := s.json(map[string]any{"scopes": []string{"mcp:read"}, "mtls_bound": true})
	cfg = jsonWith(cfg, "apps.http.servers.mcp", map[string]any{
		"listen": []string{":9443"},
		"tls_connection_policies": []any{map[string]any{
			"certificate_selection": map[string]any{"any_tag": []string{"test"}},
			"client_authentication": map[string]any{
				"ca":   map[string]any{"provider": "inline", "trusted_ca_certs": []string{caDER}},
				"mode": "verify_if_given",
			},
		}},
	})
	return jsonWith(cfg, "apps.tls", map[string]any{"certificates": map[string]any{
		"load_files": []any{map[string]any{"certificate": certPath, "key": keyPath, "tags": []string{"test"}}},
	}})
}

// testCA is a certificate authority for the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcp_auth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue returns a leaf certificate for name, as a client or server.
func (ca *testCA) issue(t *testing.T, name string, server bool, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.DNSNames = []string{name}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// x5tS256 is the cnf member of a token bound to cert (RFC 8705 §3.1), computed here apart
// from the module's code.
func x5tS256(c tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMTLSBoundThroughCaddy(t *testing.T) {
	ca := newTestCA(t)
	server := ca.issue(t, "localhost", true, 2)
	alice := ca.issue(t, "alice", false, 3)
	mallory := ca.issue(t, "mallory", false, 4)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	writePEM(t, certPath, "CERTIFICATE", server.Certificate[0])
	keyDER, err := x509.MarshalECPrivateKey(server.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyPath, "EC PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	for _, format := range []string{"caddyfile", "json"} {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t)
			startCaddy(t, s.mtlsConfig(format, certPath, keyPath, ca.cert), format)

			get := func(path, token string, cert *tls.Certificate) (int, http.Header, string) {
				t.Helper()
				cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
				if cert != nil {
					cfg.Certificates = []tls.Certificate{*cert}
				}
				client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
				req, _ := http.NewRequest(http.MethodGet, "https://localhost:9443"+path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				// A connection may meet the previous config's server as it closes: try again
				// at once, on a new connection (bounded), until the TLS server answers.
				var resp *http.Response
				for deadline := time.Now().Add(10 * time.Second); ; {
					if resp, err = client.Do(req); err == nil || time.Now().After(deadline) {
						break
					}
					client.CloseIdleConnections()
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header, string(body)
			}

			_, _, body := get(prmPath, "", nil)
			var doc map[string]any
			if err := json.Unmarshal([]byte(body), &doc); err != nil || doc["tls_client_certificate_bound_access_tokens"] != true {
				t.Errorf("PRM %s: want tls_client_certificate_bound_access_tokens true", body)
			}

			c := claims(resource, "mcp:read")
			c["cnf"] = map[string]any{"x5t#S256": x5tS256(alice)}
			token := s.rsaKey.Token(t, c, nil)
			if code, _, body := get("/mcp", token, &alice); code != 200 || body != upstreamBody {
				t.Errorf("bound token with its certificate: %d %q", code, body)
			}
			// Mallory's own certificate, with Alice's (public) certificate sent beside it in
			// the chain: only the leaf, whose key signed the handshake, counts (RFC 8705 §3.1).
			malloryChain := mallory
			malloryChain.Certificate = [][]byte{mallory.Certificate[0], alice.Certificate[0]}
			// Twice: the cached token is checked against the certificate again.
			for _, tt := range []struct {
				name string
				cert *tls.Certificate
			}{{"without a client certificate", nil}, {"with another certificate of the same CA", &mallory},
				{"with another certificate, the bound one as a chain member", &malloryChain}} {
				for i := range 2 {
					code, hdr, _ := get("/mcp", token, tt.cert)
					want := challenge("invalid_token", "The access token is bound to another client certificate.", "mcp:read")
					if code != 401 || hdr.Get("WWW-Authenticate") != want {
						t.Errorf("%s (%d): %d %s", tt.name, i, code, hdr.Get("WWW-Authenticate"))
					}
				}
			}
			// An unbound token needs no certificate.
			if code, _, _ := get("/mcp", s.rsaKey.Token(t, claims(resource, "mcp:read"), nil), nil); code != 200 {
				t.Errorf("unbound token: %d", code)
			}
			if n := s.up.hits.Load(); n != 2 {
				t.Errorf("upstream reached %d times, want 2", n)
			}
			if strings.Contains(body, "x5t") {
				t.Error("PRM leaks a thumbprint")
			}
		})
	}
}
