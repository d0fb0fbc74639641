package integration

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// Attacks by duplicate members: a JSON object that names a member twice is read as its first
// value by some readers and its last by others (RFC 8259 §4). Every member that decides
// anything — the key (cnf.jkt) and certificate (cnf.x5t#S256) a token is bound to, and a
// custom scope claim — refuses the token when it appears twice, in a JWT and in an
// introspection answer, whichever value comes first, and however its name is spelled. A
// claim handed on as a placeholder is handed on empty when the token names it (or a member
// inside it) twice.

func TestAttackDuplicateMembers(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
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

	up := newUpstream(t)
	f := newFixture(t, up)
	as := newIntrospectionAS(t, f.key)
	// One TLS site that asks for client certificates, behind a trusted proxy; the token's
	// binding (DPoP, certificate), a custom scope claim, JWTs and introspection; two claims
	// handed on to the upstream as headers.
	f.start(t, caddyfileOf(trustLoopback, siteAt("https://localhost:9443",
		"tls "+certPath+" "+keyPath+" {\nclient_auth {\nmode verify_if_given\ntrust_pool inline {\ntrust_der "+
			base64.StdEncoding.EncodeToString(ca.cert.Raw)+"\n}\n}\n}",
		f.proxyDirective("header_up X-Claim-Role {http.auth.mcp.claim.role}", "header_up X-Claim-Org {http.auth.mcp.claim.org}"),
		mcpAuthDirective(introspected(resource, as.URL, "jwks_url "+f.jwksURL()+"\nscope_claim perms\ndpop\nmtls_bound", "")),
	)), "caddyfile")

	client := jwttest.New(t, "", "ES256") // the client's DPoP key
	other := jwttest.New(t, "", "ES256")  // a key the attacker holds
	jktC, jktO := client.Thumbprint(), other.Thumbprint()
	x5tA, x5tM := x5tS256(alice), x5tS256(mallory)

	// A request as a client behind a trusted proxy addresses it: htu is the resource itself.
	type presentation struct {
		proof *jwttest.Key     // DPoP proof by this key (the DPoP scheme), or Bearer when nil
		cert  *tls.Certificate // TLS client certificate
	}
	send := func(t *testing.T, token string, p presentation) (int, http.Header, string) {
		t.Helper()
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
		if p.cert != nil {
			cfg.Certificates = []tls.Certificate{*p.cert}
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		defer hc.CloseIdleConnections()
		// Right after a load the previous config's TLS server, which shares the port, may
		// still take a connection and then fail it: try again at once, on a new connection
		// (each attempt is a whole handshake and exchange); an HTTP answer is never retried.
		var resp *http.Response
		for attempt := 1; ; attempt++ {
			hc.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodPost, "https://localhost:9443/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", "mcp.example.com")
			if p.proof != nil {
				req.Header.Set("Authorization", "DPoP "+token)
				req.Header.Set("DPoP", p.proof.Proof(t, http.MethodPost, resource, token, time.Now().Unix()))
			} else {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			if resp, err = hc.Do(req); err == nil || attempt == 20 {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}

	// Members common to every token and answer; each case adds the ones under attack, as
	// written.
	exp := itoa(int(time.Now().Add(time.Hour).Unix()))
	jwtPayload := func(members string) string {
		return `{"iss":"` + as.issuer + `","aud":"` + resource + `","sub":"dup-user","client_id":"dup-client","exp":` + exp + `,` + members + `}`
	}
	answer := func(members string) string {
		return `{"active":true,"iss":"` + as.issuer + `","aud":"` + resource + `","sub":"dup-user","client_id":"dup-client","exp":` + exp + `,` + members + `}`
	}
	q := func(s string) string { return `"` + s + `"` }
	perms := `"perms":"mcp:read"`

	// Each duplicate is tried in both orders: this module's reader kept the last value, others
	// keep the first; neither may decide.
	cases := []struct {
		name    string
		members string
		p       presentation
		ok      bool // a control case that passes
	}{
		{"jkt once", perms + `,"cnf":{"jkt":` + q(jktC) + `}`, presentation{proof: client}, true},
		{"jkt twice, the prover's key last", perms + `,"cnf":{"jkt":` + q(jktO) + `,"jkt":` + q(jktC) + `}`, presentation{proof: client}, false},
		{"jkt twice, the prover's key first", perms + `,"cnf":{"jkt":` + q(jktC) + `,"jkt":` + q(jktO) + `}`, presentation{proof: client}, false},
		{"jkt twice, the same", perms + `,"cnf":{"jkt":` + q(jktC) + `,"jkt":` + q(jktC) + `}`, presentation{proof: client}, false},
		{"jkt twice, second name escaped", perms + `,"cnf":{"jkt":` + q(jktO) + `,"j\u006bt":` + q(jktC) + `}`, presentation{proof: client}, false},
		{"jkt twice, one not a string", perms + `,"cnf":{"jkt":7,"jkt":` + q(jktC) + `}`, presentation{proof: client}, false},
		{"x5t#S256 once", perms + `,"cnf":{"x5t#S256":` + q(x5tA) + `}`, presentation{cert: &alice}, true},
		{"x5t#S256 twice, the presenter's last", perms + `,"cnf":{"x5t#S256":` + q(x5tM) + `,"x5t#S256":` + q(x5tA) + `}`, presentation{cert: &alice}, false},
		{"x5t#S256 twice, the presenter's first", perms + `,"cnf":{"x5t#S256":` + q(x5tA) + `,"x5t#S256":` + q(x5tM) + `}`, presentation{cert: &alice}, false},
		{"x5t#S256 twice, name escaped", perms + `,"cnf":{"x5t#S256":` + q(x5tM) + `,"x5t\u0023S256":` + q(x5tA) + `}`, presentation{cert: &alice}, false},
		{"custom scope claim once", perms, presentation{}, true},
		{"custom scope claim twice, granting last", `"perms":"none","perms":"mcp:read"`, presentation{}, false},
		{"custom scope claim twice, granting first", `"perms":"mcp:read","perms":"none"`, presentation{}, false},
		{"custom scope claim twice, array then string", `"perms":["none"],"perms":"mcp:read"`, presentation{}, false},
		{"custom scope claim twice, name escaped", `"perms":"none","p\u0065rms":"mcp:read"`, presentation{}, false},
		{"custom scope claim twice, null first", `"perms":null,"perms":"mcp:read"`, presentation{}, false},
	}
	for i, c := range cases {
		for _, kind := range []string{"jwt", "introspection"} {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				var token string
				if kind == "jwt" {
					token = forge(t, f.key.Alg, f.key.Signer, `{"alg":"RS256","kid":"rsa-1","typ":"at+jwt"}`, jwtPayload(c.members))
				} else {
					token = "dup-opaque-" + itoa(i)
					as.answerRaw(token, answer(c.members))
				}
				before := up.hits.Load()
				code, hdr, body := send(t, token, c.p)
				if c.ok {
					if code != http.StatusOK || body != upstreamBody {
						t.Errorf("control: status %d body %.200q", code, body)
					}
					return
				}
				if code != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("status %d, WWW-Authenticate %q; want 401 invalid_token", code, hdr.Values("WWW-Authenticate"))
				}
				if up.hits.Load() != before {
					t.Error("a token with a duplicate member reached the MCP server")
				}
			})
		}
	}

	// Placeholders: a claim named twice is handed on empty, never as one reader's choice;
	// the token itself decides nothing by it and passes.
	for i, c := range []struct{ name, members, role, org string }{
		{"role once", `"role":"admin","org":{"id":"o1"}`, "admin", `{"id":"o1"}`},
		{"role twice", `"role":"user","role":"admin","org":{"id":"o1"}`, "", `{"id":"o1"}`},
		{"role twice, name escaped", `"role":"user","r\u006fle":"admin"`, "", ""},
		{"member inside org twice", `"role":"admin","org":{"id":"o1","id":"o2"}`, "admin", ""},
	} {
		for _, kind := range []string{"jwt", "introspection"} {
			t.Run("placeholder/"+kind+"/"+c.name, func(t *testing.T) {
				var token string
				if kind == "jwt" {
					token = forge(t, f.key.Alg, f.key.Signer, `{"alg":"RS256","kid":"rsa-1","typ":"at+jwt"}`, jwtPayload(perms+","+c.members))
				} else {
					token = "dup-placeholder-" + itoa(i)
					as.answerRaw(token, answer(perms+","+c.members))
				}
				if code, _, body := send(t, token, presentation{}); code != http.StatusOK {
					t.Fatalf("status %d body %.200q", code, body)
				}
				hdr := up.lastHeader()
				if got := hdr.Get("X-Claim-Role"); got != c.role {
					t.Errorf("{http.auth.mcp.claim.role} = %q, want %q", got, c.role)
				}
				if got := hdr.Get("X-Claim-Org"); got != c.org {
					t.Errorf("{http.auth.mcp.claim.org} = %q, want %q", got, c.org)
				}
			})
		}
	}
}
