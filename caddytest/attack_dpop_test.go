package integration

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestAttackDPoP: what someone holding a stolen DPoP-bound token, or a captured request, can
// try against a resource with dpop on. Every attempt gets 401 and never reaches the MCP
// server.
func TestAttackDPoP(t *testing.T) {
	s := newSetup(t)
	cfg, adapter := s.dpopConfig("caddyfile", "dpop", "", false)
	tc := startCaddy(t, cfg, adapter)

	victim := jwttest.New(t, "", "ES256")
	attacker := jwttest.New(t, "", "ES256")
	c := claims(resource, "mcp:read")
	c["cnf"] = map[string]any{"jkt": victim.Thumbprint()}
	stolen := s.rsaKey.Token(t, c, nil)
	now := func() int64 { return time.Now().Unix() }
	good := func() jwt.MapClaims { return jwttest.ProofClaims(http.MethodPost, dpopHTU, stolen, now()) }
	enc := base64.RawURLEncoding.EncodeToString

	// The attacker signs with its own key but puts the victim's public key in the header.
	victimJWKAttackerSig, err := attacker.SignProof(good(), map[string]any{"jwk": victim.PublicJWK()})
	if err != nil {
		t.Fatal(err)
	}
	// A real proof of the victim with its payload swapped for the attacker's (other htm).
	captured := victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())
	parts := strings.Split(captured, ".")
	p2 := good()
	p2["htm"] = "GET"
	pb, _ := json.Marshal(p2)
	swapped := parts[0] + "." + enc(pb) + "." + parts[2]
	// Duplicate members: one reader could take the first jti, another the last.
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": attacker.PublicJWK()})
	dupPayload := `{"jti":"a","jti":"b","htm":"POST","htu":"` + dpopHTU + `","iat":` + jsonInt(now()) + `,"ath":"` + jwttest.ATH(stolen) + `"}`
	dupSigned := signRaw(t, attacker, enc(h)+"."+enc([]byte(dupPayload)))
	// A proof whose jwk also names a key elsewhere (x5u) and a kid: only jwk counts.
	withX5U, _ := attacker.SignProof(good(), map[string]any{"x5u": "https://evil.example/cert", "kid": "victim"})
	// The token inside the proof instead of the Authorization header.
	noAuth := victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())

	tests := []struct {
		name   string
		r      dpopReq
		status int
	}{
		{"stolen token, attacker's own proof key", dpopReq{auth: "DPoP " + stolen, proofs: []string{attacker.Proof(t, http.MethodPost, dpopHTU, stolen, now())}}, 401},
		{"victim's jwk, attacker's signature", dpopReq{auth: "DPoP " + stolen, proofs: []string{victimJWKAttackerSig}}, 401},
		{"captured proof with a swapped payload", dpopReq{auth: "DPoP " + stolen, proofs: []string{swapped}}, 401},
		{"captured proof for POST used for GET", dpopReq{method: http.MethodGet, auth: "DPoP " + stolen, proofs: []string{victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())}}, 401},
		{"duplicate jti members", dpopReq{auth: "DPoP " + stolen, proofs: []string{dupSigned}}, 401},
		{"x5u and kid beside jwk", dpopReq{auth: "DPoP " + stolen, proofs: []string{withX5U}}, 401},
		{"stolen token as Bearer with the captured proof", dpopReq{auth: bearer(stolen), proofs: []string{noAuth}}, 401},
		{"proof without the token", dpopReq{proofs: []string{noAuth}}, 401},
		{"DPoP token over 16 KiB", dpopReq{auth: "DPoP " + strings.Repeat("a", 17<<10), proofs: []string{noAuth}}, 401},
		{"proof in a second Authorization-like header", dpopReq{auth: "DPoP " + stolen, header: map[string]string{"Dpop-Proof": noAuth}}, 401},
	}
	before := s.up.hits.Load()
	for _, tt := range tests {
		if code, _, _ := sendDPoP(t, tc, tt.r); code != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, code, tt.status)
		}
	}
	if n := s.up.hits.Load() - before; n != 0 {
		t.Errorf("%d attacks reached the MCP server", n)
	}

	// The scheme name is case-insensitive (RFC 9110 §11.1): the victim's own request passes.
	if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "dpop " + stolen, proofs: []string{victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())}}); code != 200 {
		t.Errorf("scheme in lower case: %d", code)
	}

	// A flood of distinct proofs does not push a fresh jti out of the default cache.
	first := victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())
	if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + stolen, proofs: []string{first}}); code != 200 {
		t.Fatalf("first use: %d", code)
	}
	for range 200 {
		if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + stolen, proofs: []string{victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())}}); code != 200 {
			t.Fatalf("flood request: %d", code)
		}
	}
	if code, _, _ := sendDPoP(t, tc, dpopReq{auth: "DPoP " + stolen, proofs: []string{first}}); code != 401 {
		t.Errorf("replay after a flood: %d, want 401", code)
	}

	// The token passed above, so it is in the cache now: presented as a bearer token, with or
	// without a fresh proof beside it, it is still refused (RFC 9449 §7.2).
	before = s.up.hits.Load()
	for name, r := range map[string]dpopReq{
		"cached bound token as Bearer":                 {auth: bearer(stolen)},
		"cached bound token as Bearer, fresh proof":    {auth: bearer(stolen), proofs: []string{victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())}},
		"cached bound token as bearer, lower case":     {auth: "bearer " + stolen},
		"cached bound token, scheme and token by tab":  {auth: "DPoP\t" + stolen, proofs: []string{victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())}},
		"cached bound token, comma-joined proofs":      {auth: "DPoP " + stolen, proofs: []string{victim.Proof(t, http.MethodPost, dpopHTU, stolen, now()) + ", " + victim.Proof(t, http.MethodPost, dpopHTU, stolen, now())}},
		"cached bound token, proof for another method": {auth: "DPoP " + stolen, proofs: []string{victim.Proof(t, http.MethodGet, dpopHTU, stolen, now())}},
	} {
		if code, _, _ := sendDPoP(t, tc, r); code != 401 {
			t.Errorf("%s: status %d, want 401", name, code)
		}
	}
	if n := s.up.hits.Load() - before; n != 0 {
		t.Errorf("%d attacks with the cached token reached the MCP server", n)
	}
}

func jsonInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

// signRaw signs a JWS signing input as is (for payloads encoding/json would not write).
func signRaw(t *testing.T, k *jwttest.Key, input string) string {
	t.Helper()
	sig, err := jwt.GetSigningMethod(k.Alg).Sign(input, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestAttackDPoPResourcePortLeadingZeros: a resource written with a port such as "0443"
// loads, and clients (the WHATWG URL parser of browser and Node SDKs) read it as 443, the
// default, and write htu without it; every proof was refused, so DPoP never worked for that
// resource. The port is compared as a number.
func TestAttackDPoPResourcePortLeadingZeros(t *testing.T) {
	f := newFixture(t, nil)
	const res = "https://mcp.example.com:0443/mcp"
	f.start(t, f.siteCaddyfile("resource "+res+"\nauthorization_servers "+issuer+"\njwks_url "+f.jwksURL()+"\nscopes mcp:read\ndpop"), "caddyfile")
	client := jwttest.New(t, "", "ES256")
	token := f.token(t, "mcp:read", map[string]any{"aud": res, "cnf": map[string]any{"jkt": client.Thumbprint()}})
	proved := func(htu string) attackReq {
		return attackReq{body: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, auth: []string{"DPoP " + token},
			header: []string{"DPoP: " + client.Proof(t, http.MethodPost, htu, token, time.Now().Unix())}}
	}
	for _, htu := range []string{"https://mcp.example.com/mcp", "https://mcp.example.com:443/mcp", res} {
		if code, _, body := f.do(t, proved(htu)); code != http.StatusOK {
			t.Errorf("proof with htu %s: %d %q, want 200", htu, code, body)
		}
	}
	for _, htu := range []string{"https://mcp.example.com:4430/mcp", "https://mcp.example.com:1443/mcp", "http://mcp.example.com:0443/mcp"} {
		if code, _, _ := f.do(t, proved(htu)); code != http.StatusUnauthorized {
			t.Errorf("proof with htu %s: %d, want 401", htu, code)
		}
	}
}
