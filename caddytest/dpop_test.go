package integration

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// DPoP (RFC 9449) through a real Caddy, configured by Caddyfile and by JSON, with proofs made
// by hand as a client makes them (golang-jwt, an ECDSA key).

const (
	// dpopHTU is what a client's proof names: the resource's origin and the path it
	// addresses. The tests address Caddy as baseURL; the resource's origin is another.
	dpopHTU      = "https://mcp.example.com/mcp"
	dpopAlgs     = `algs="ES256 ES384 EdDSA PS256 RS256"`
	descProof    = "The DPoP proof is invalid."
	descNonce    = "The DPoP proof must carry the nonce of the DPoP-Nonce header."
	descNotBound = "The access token is not bound to a DPoP key."
	descWrongKey = "The access token is bound to another key than the DPoP proof."
	descRequired = "This resource accepts only DPoP-bound access tokens."
	dpopNonceEnv = "MCPAUTH_TEST_DPOP_NONCE_KEY"
)

// dpopConfig is the usual site with scope mcp:read and DPoP, and names its adapter:
// dpopBlock is the Caddyfile `dpop` line or block, dpopJSONValue the same as JSON; trusted
// makes 127.0.0.1 a trusted proxy.
func (s *setup) dpopConfig(format, dpopBlock, dpopJSONValue string, trusted bool) (string, string) {
	if format == "caddyfile" {
		cfg := s.caddyfile("scopes mcp:read\n" + dpopBlock)
		if trusted {
			cfg = withGlobal(cfg, "servers {\ntrusted_proxies static 127.0.0.1/8\n}")
		}
		return cfg, "caddyfile"
	}
	cfg := s.json(map[string]any{"scopes": []string{"mcp:read"}, "dpop": json.RawMessage(dpopJSONValue)})
	if trusted {
		cfg = jsonWith(cfg, "apps.http.servers.mcp", map[string]any{
			"trusted_proxies": map[string]any{"source": "static", "ranges": []string{"127.0.0.1/8"}},
		})
	}
	return cfg, "json"
}

// dpopReq is a request to Caddy with an Authorization header and any number of DPoP headers
// (and other headers).
type dpopReq struct {
	method, auth string
	host         string // the Host header, when not baseURL's
	proofs       []string
	header       map[string]string
}

func sendDPoP(t *testing.T, tc *caddytest.Tester, r dpopReq) (int, http.Header, string) {
	t.Helper()
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, baseURL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	req.Header["Dpop"] = r.proofs
	if r.host != "" {
		req.Host = r.host
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	tc.Client.CloseIdleConnections()
	resp, err := tc.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// dpopChallenge is the WWW-Authenticate value with DPoP on: the Bearer challenge (unless
// required) then the DPoP one; DPoP-only error codes appear on the DPoP challenge alone.
func dpopChallenge(code, desc string, required bool) string {
	params := func(code, desc string) string {
		p := ""
		if code != "" {
			p = `error="` + code + `", error_description="` + desc + `", `
		}
		return p + `scope="mcp:read", resource_metadata="` + prmURL + `"`
	}
	d := "DPoP " + params(code, desc) + ", " + dpopAlgs
	if required {
		return d
	}
	bc, bd := code, desc
	if code == "invalid_dpop_proof" || code == "use_dpop_nonce" {
		bc, bd = "", ""
	}
	return "Bearer " + params(bc, bd) + ", " + d
}

func TestDPoPThroughCaddy(t *testing.T) {
	for _, format := range []string{"caddyfile", "json"} {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t)
			cfg, ct := s.dpopConfig(format, "dpop", "{}", false)
			tc := startCaddy(t, cfg, ct)

			client := jwttest.New(t, "", "ES256") // the client's DPoP key
			bound := func(jkt string) string {
				c := claims(resource, "mcp:read")
				c["cnf"] = map[string]any{"jkt": jkt}
				return s.rsaKey.Token(t, c, nil)
			}
			token := bound(client.Thumbprint())
			unbound := s.rsaKey.Token(t, claims(resource, "mcp:read"), nil)
			now := func() int64 { return time.Now().Unix() }
			proof := func() string { return client.Proof(t, http.MethodPost, dpopHTU, token, now()) }
			signed := func(c jwt.MapClaims, hdr map[string]any) string {
				p, err := client.SignProof(c, hdr)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			good := func() jwt.MapClaims { return jwttest.ProofClaims(http.MethodPost, dpopHTU, token, now()) }
			with := func(k string, v any) string { c := good(); c[k] = v; return signed(c, nil) }
			without := func(k string) string { c := good(); delete(c, k); return signed(c, nil) }
			jwkWith := func(k string, v any) string {
				m := client.PublicJWK()
				m[k] = v
				return signed(good(), map[string]any{"jwk": m})
			}

			// PRM advertises the algorithms, not the required flag.
			_, _, body := request(t, tc, http.MethodGet, prmPath, "")
			var doc map[string]any
			if err := json.Unmarshal([]byte(body), &doc); err != nil {
				t.Fatal(err)
			}
			if algs, _ := json.Marshal(doc["dpop_signing_alg_values_supported"]); string(algs) != `["ES256","ES384","EdDSA","PS256","RS256"]` {
				t.Errorf("PRM dpop_signing_alg_values_supported = %s", algs)
			}
			if _, ok := doc["dpop_bound_access_tokens_required"]; ok {
				t.Error("PRM says dpop_bound_access_tokens_required without required")
			}

			// A good request, and the same proof again.
			first := proof()
			if code, _, body := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{first}}); code != 200 || body != upstreamBody {
				t.Fatalf("good proof: %d %q", code, body)
			}
			code, hdr, body := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{first}})
			if code != 401 {
				t.Errorf("replayed proof: %d, want 401", code)
			}
			checkDPoPChallenge(t, hdr, dpopChallenge("invalid_dpop_proof", descProof, false))
			checkErrorBody(t, body, "invalid_dpop_proof", descProof)
			// The token is cached now; a fresh proof still passes, none does not.
			if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{proof()}}); code != 200 {
				t.Errorf("cached token, fresh proof: %d", code)
			}
			// An unbound bearer token still works (dpop is not required).
			if code, _, _ := sendDPoP(t, tc, dpopReq{auth: bearer(unbound)}); code != 200 {
				t.Errorf("unbound bearer token: %d", code)
			}
			// No credentials: both challenges, no error.
			if code, hdr, _ := sendDPoP(t, tc, dpopReq{}); code != 401 {
				t.Errorf("no token: %d", code)
			} else {
				checkDPoPChallenge(t, hdr, dpopChallenge("", "", false))
			}

			other := jwttest.New(t, "", "ES256")
			big := strings.Repeat("x", 8<<10)
			tests := []struct {
				name   string
				r      dpopReq
				code   string
				desc   string
				header string
			}{
				{"no DPoP header", dpopReq{auth: "DPoP " + token}, "invalid_dpop_proof", descProof, ""},
				{"two DPoP headers", dpopReq{auth: "DPoP " + token, proofs: []string{proof(), proof()}}, "invalid_dpop_proof", descProof, ""},
				{"proof over 8 KiB", dpopReq{auth: "DPoP " + token, proofs: []string{with("pad", big)}}, "invalid_dpop_proof", descProof, ""},
				{"jwk with d", dpopReq{auth: "DPoP " + token, proofs: []string{jwkWith("d", "AAAA")}}, "invalid_dpop_proof", descProof, ""},
				{"jwk with p", dpopReq{auth: "DPoP " + token, proofs: []string{jwkWith("p", "AAAA")}}, "invalid_dpop_proof", descProof, ""},
				{"jwk with q", dpopReq{auth: "DPoP " + token, proofs: []string{jwkWith("q", "AAAA")}}, "invalid_dpop_proof", descProof, ""},
				{"jwk kty oct", dpopReq{auth: "DPoP " + token, proofs: []string{jwkWith("kty", "oct")}}, "invalid_dpop_proof", descProof, ""},
				{"alg none", dpopReq{auth: "DPoP " + token, proofs: []string{algNoneProof(t, client, good())}}, "invalid_dpop_proof", descProof, ""},
				{"alg HS256", dpopReq{auth: "DPoP " + token, proofs: []string{hs256Proof(t, good())}}, "invalid_dpop_proof", descProof, ""},
				{"typ missing", dpopReq{auth: "DPoP " + token, proofs: []string{signed(good(), map[string]any{"typ": nil})}}, "invalid_dpop_proof", descProof, ""},
				{"typ JWT", dpopReq{auth: "DPoP " + token, proofs: []string{signed(good(), map[string]any{"typ": "JWT"})}}, "invalid_dpop_proof", descProof, ""},
				{"jti missing", dpopReq{auth: "DPoP " + token, proofs: []string{without("jti")}}, "invalid_dpop_proof", descProof, ""},
				{"htm missing", dpopReq{auth: "DPoP " + token, proofs: []string{without("htm")}}, "invalid_dpop_proof", descProof, ""},
				{"htu missing", dpopReq{auth: "DPoP " + token, proofs: []string{without("htu")}}, "invalid_dpop_proof", descProof, ""},
				{"iat missing", dpopReq{auth: "DPoP " + token, proofs: []string{without("iat")}}, "invalid_dpop_proof", descProof, ""},
				{"iat 6 minutes old", dpopReq{auth: "DPoP " + token, proofs: []string{with("iat", now()-360)}}, "invalid_dpop_proof", descProof, ""},
				{"iat 6 minutes ahead", dpopReq{auth: "DPoP " + token, proofs: []string{with("iat", now()+360)}}, "invalid_dpop_proof", descProof, ""},
				{"htm GET for a POST", dpopReq{auth: "DPoP " + token, proofs: []string{with("htm", "GET")}}, "invalid_dpop_proof", descProof, ""},
				{"htu of the connection's host, not the resource's", dpopReq{auth: "DPoP " + token, proofs: []string{with("htu", baseURL+"/mcp")}}, "invalid_dpop_proof", descProof, ""},
				{"htu of another host, Host set to it", dpopReq{auth: "DPoP " + token, host: "other.example", proofs: []string{with("htu", "http://other.example/mcp")}}, "invalid_dpop_proof", descProof, ""},
				{"htu of another path", dpopReq{auth: "DPoP " + token, proofs: []string{with("htu", "https://mcp.example.com/other")}}, "invalid_dpop_proof", descProof, ""},
				{"htu of the resource over http", dpopReq{auth: "DPoP " + token, proofs: []string{with("htu", "http://mcp.example.com/mcp")}}, "invalid_dpop_proof", descProof, ""},
				{"X-Forwarded-Host from an untrusted peer", dpopReq{auth: "DPoP " + token, proofs: []string{with("htu", "https://other.example/mcp")},
					header: map[string]string{"X-Forwarded-Host": "other.example", "X-Forwarded-Proto": "https"}}, "invalid_dpop_proof", descProof, ""},
				{"ath of another token", dpopReq{auth: "DPoP " + token, proofs: []string{with("ath", jwttest.ATH(unbound))}}, "invalid_dpop_proof", descProof, ""},
				{"proof key other than cnf.jkt", dpopReq{auth: "DPoP " + token, proofs: []string{other.Proof(t, http.MethodPost, dpopHTU, token, now())}}, "invalid_token", descWrongKey, ""},
				{"bound token as Bearer", dpopReq{auth: bearer(token)}, "invalid_token", descBound, ""},
				{"bound token as Bearer with a proof", dpopReq{auth: bearer(token), proofs: []string{proof()}}, "invalid_token", descBound, ""},
				{"unbound token as DPoP", dpopReq{auth: "DPoP " + unbound, proofs: []string{client.Proof(t, http.MethodPost, dpopHTU, unbound, now())}}, "invalid_token", descNotBound, ""},
			}
			for _, tt := range tests {
				code, hdr, body := sendDPoP(t, tc, tt.r)
				if code != 401 {
					t.Errorf("%s: status %d, want 401", tt.name, code)
					continue
				}
				if want := dpopChallenge(tt.code, tt.desc, false); hdr.Get("WWW-Authenticate") != want {
					t.Errorf("%s: WWW-Authenticate\n got %s\nwant %s", tt.name, hdr.Get("WWW-Authenticate"), want)
				}
				checkErrorBody(t, body, tt.code, tt.desc)
			}
			if n := s.up.hits.Load(); n != 3 {
				t.Errorf("upstream reached %d times, want 3", n)
			}
		})
	}
}

// TestDPoPRequiredAndNonce: `required` refuses bearer tokens; `nonce` with a shared key from
// the environment makes the client go round once with use_dpop_nonce.
func TestDPoPRequiredAndNonce(t *testing.T) {
	t.Setenv(dpopNonceEnv, "a-nonce-key-shared-by-every-instance")
	for _, format := range []string{"caddyfile", "json"} {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t)
			cfg, ct := s.dpopConfig(format, "dpop {\n\t\t\trequired\n\t\t\tnonce {env."+dpopNonceEnv+"}\n\t\t\tmax_age 1m\n\t\t}",
				`{"required": true, "nonce": true, "nonce_key": "{env.`+dpopNonceEnv+`}", "max_age": "1m"}`, false)
			tc := startCaddy(t, cfg, ct)
			client := jwttest.New(t, "", "EdDSA")
			c := claims(resource, "mcp:read")
			c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
			token := s.ecKey.Token(t, c, nil)

			_, _, body := request(t, tc, http.MethodGet, prmPath, "")
			if !strings.Contains(body, `"dpop_bound_access_tokens_required":true`) {
				t.Errorf("PRM %s lacks dpop_bound_access_tokens_required", body)
			}

			code, hdr, _ := sendDPoP(t, tc, dpopReq{auth: bearer(s.rsaKey.Token(t, claims(resource, "mcp:read"), nil))})
			if code != 401 || hdr.Get("WWW-Authenticate") != dpopChallenge("invalid_token", descRequired, true) {
				t.Errorf("bearer token under required: %d %s", code, hdr.Get("WWW-Authenticate"))
			}

			// Without a nonce: use_dpop_nonce and a nonce to use.
			code, hdr, body = sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{client.Proof(t, http.MethodPost, dpopHTU, token, time.Now().Unix())}})
			nonce := hdr.Get("DPoP-Nonce")
			if code != 401 || nonce == "" {
				t.Fatalf("proof without nonce: %d, DPoP-Nonce %q", code, nonce)
			}
			if got := hdr.Get("WWW-Authenticate"); got != dpopChallenge("use_dpop_nonce", descNonce, true) {
				t.Errorf("WWW-Authenticate %s", got)
			}
			if got := hdr.Get("Access-Control-Expose-Headers"); got != "WWW-Authenticate, DPoP-Nonce" {
				t.Errorf("Access-Control-Expose-Headers %q", got)
			}
			checkErrorBody(t, body, "use_dpop_nonce", descNonce)
			// A made-up nonce: the same answer.
			pc := jwttest.ProofClaims(http.MethodPost, dpopHTU, token, time.Now().Unix())
			pc["nonce"] = "AAAAAAAAAAAAAAAAAAAAAA"
			bad, _ := client.SignProof(pc, nil)
			if code, hdr, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{bad}}); code != 401 || hdr.Get("DPoP-Nonce") != nonce {
				t.Errorf("made-up nonce: %d, DPoP-Nonce %q", code, hdr.Get("DPoP-Nonce"))
			}
			// With it: through.
			pc = jwttest.ProofClaims(http.MethodPost, dpopHTU, token, time.Now().Unix())
			pc["nonce"] = nonce
			good, _ := client.SignProof(pc, nil)
			if code, _, body := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{good}}); code != 200 || body != upstreamBody {
				t.Errorf("proof with the nonce: %d %q", code, body)
			}
		})
	}
}

// TestDPoPTrustedProxy: behind a proxy Caddy trusts, htu is still the resource's origin and
// the path: what X-Forwarded-Host and X-Forwarded-Proto say does not change it, so a proxy (or
// whoever can reach the site through it) cannot make a proof for another host pass.
func TestDPoPTrustedProxy(t *testing.T) {
	for _, format := range []string{"caddyfile", "json"} {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t)
			cfg, ct := s.dpopConfig(format, "dpop", "{}", true)
			tc := startCaddy(t, cfg, ct)
			client := jwttest.New(t, "", "ES256")
			c := claims(resource, "mcp:read")
			c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
			token := s.rsaKey.Token(t, c, nil)
			fwd := map[string]string{"X-Forwarded-Host": "MCP.example.com", "X-Forwarded-Proto": "https"}
			// The resource's origin, in any spelling RFC 3986 normalizes to it.
			if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, header: fwd,
				proofs: []string{client.Proof(t, http.MethodPost, "https://MCP.example.com:443/mcp", token, time.Now().Unix())}}); code != 200 {
				t.Errorf("htu of the resource through a trusted proxy: %d", code)
			}
			if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token,
				proofs: []string{client.Proof(t, http.MethodPost, dpopHTU, token, time.Now().Unix())}}); code != 200 {
				t.Errorf("htu of the resource, no forwarded headers: %d", code)
			}
			other := map[string]string{"X-Forwarded-Host": "other.example", "X-Forwarded-Proto": "https"}
			if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, header: other, host: "other.example",
				proofs: []string{client.Proof(t, http.MethodPost, "https://other.example/mcp", token, time.Now().Unix())}}); code != 401 {
				t.Errorf("a proof for another host, forwarded as that host: %d, want 401", code)
			}
			if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, header: fwd,
				proofs: []string{client.Proof(t, http.MethodPost, baseURL+"/mcp", token, time.Now().Unix())}}); code != 401 {
				t.Errorf("htu of the hop, not of the resource: %d, want 401", code)
			}
		})
	}
}

// TestDPoPHTUOrigin: on a site that answers any host name, a proof made for another server is
// refused even when whoever relays it sets Host to that server's name (a malicious MCP server
// that was sent this resource's token with a proof for itself); the proof for the resource
// passes, whatever Host says.
func TestDPoPHTUOrigin(t *testing.T) {
	s := newSetup(t)
	cfg, ct := s.dpopConfig("caddyfile", "dpop", "", false)
	tc := startCaddy(t, cfg, ct)
	client := jwttest.New(t, "", "ES256")
	c := claims(resource, "mcp:read")
	c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
	token := s.rsaKey.Token(t, c, nil)
	now := time.Now().Unix
	for _, host := range []string{"evil.example", "evil.example:9080", "localhost:9080"} {
		code, hdr, body := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, host: host,
			proofs: []string{client.Proof(t, http.MethodPost, "http://"+host+"/mcp", token, now())}})
		if code != 401 {
			t.Errorf("proof for http://%s/mcp with Host %s: %d, want 401", host, host, code)
			continue
		}
		checkDPoPChallenge(t, hdr, dpopChallenge("invalid_dpop_proof", descProof, false))
		checkErrorBody(t, body, "invalid_dpop_proof", descProof)
	}
	for _, host := range []string{"evil.example", "mcp.example.com"} {
		if code, _, body := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, host: host,
			proofs: []string{client.Proof(t, http.MethodPost, dpopHTU, token, now())}}); code != 200 || body != upstreamBody {
			t.Errorf("proof for the resource with Host %s: %d %q", host, code, body)
		}
	}
	if n := s.up.hits.Load(); n != 2 {
		t.Errorf("upstream reached %d times, want 2", n)
	}
}

// TestDPoPOff: with dpop off, a bound token is refused as a bearer token, and the DPoP
// scheme is not a credential here.
func TestDPoPOff(t *testing.T) {
	s := newSetup(t)
	cfg, _ := s.config("caddyfile", []string{"mcp:read"}, false)
	tc := startCaddy(t, cfg, "caddyfile")
	client := jwttest.New(t, "", "ES256")
	c := claims(resource, "mcp:read")
	c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
	token := s.rsaKey.Token(t, c, nil)
	code, hdr, _ := sendDPoP(t, tc, dpopReq{auth: bearer(token)})
	if code != 401 || hdr.Get("WWW-Authenticate") != challenge("invalid_token", descBound, "mcp:read") {
		t.Errorf("bound token as Bearer, dpop off: %d %s", code, hdr.Get("WWW-Authenticate"))
	}
	code, hdr, _ = sendDPoP(t, tc, dpopReq{auth: "DPoP " + token, proofs: []string{client.Proof(t, http.MethodPost, dpopHTU, token, time.Now().Unix())}})
	if code != 401 || hdr.Get("WWW-Authenticate") != challenge("", "", "mcp:read") {
		t.Errorf("DPoP scheme, dpop off: %d %s", code, hdr.Get("WWW-Authenticate"))
	}
}

func checkDPoPChallenge(t *testing.T, hdr http.Header, want string) {
	t.Helper()
	if got := hdr.Values("WWW-Authenticate"); len(got) != 1 || got[0] != want {
		t.Errorf("WWW-Authenticate %q\n want %q", got, want)
	}
}

// algNoneProof is an unsigned-alg proof with a signature part, so that it is the alg that
// is refused.
func algNoneProof(t *testing.T, k *jwttest.Key, c jwt.MapClaims) string {
	t.Helper()
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": k.PublicJWK()})
	p, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(p) + ".AAAA"
}

// hs256Proof is a proof MACed with a symmetric key it carries.
func hs256Proof(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = map[string]any{"kty": "oct", "k": base64.RawURLEncoding.EncodeToString(secret)}
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDPoPHTUBeforeRewrite: htu is the path the client addressed, also when a rewrite before
// mcp_auth changed it.
func TestDPoPHTUBeforeRewrite(t *testing.T) {
	s := newSetup(t)
	tc := startCaddy(t, s.caddyfile("scopes mcp:read\ndpop", "rewrite /mcp /internal/mcp", "reverse_proxy "+s.up.dial()), "caddyfile")
	client := jwttest.New(t, "", "ES256")
	c := claims(resource, "mcp:read")
	c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
	token := s.rsaKey.Token(t, c, nil)
	if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token,
		proofs: []string{client.Proof(t, http.MethodPost, dpopHTU, token, time.Now().Unix())}}); code != 200 {
		t.Errorf("htu as addressed, path rewritten after: %d", code)
	}
	if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + token,
		proofs: []string{client.Proof(t, http.MethodPost, "https://mcp.example.com/internal/mcp", token, time.Now().Unix())}}); code != 401 {
		t.Errorf("htu of the rewritten path: %d, want 401", code)
	}
}
