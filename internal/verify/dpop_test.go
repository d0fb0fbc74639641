package verify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

const (
	testHTU   = "https://mcp.example.com/mcp"
	testToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
)

var testNow = time.Unix(1_800_000_000, 0)

func newChecker(replay int) *verify.DPoP {
	return &verify.DPoP{
		Algorithms: verify.DefaultDPoPAlgorithms,
		MaxAge:     5 * time.Minute,
		Replay:     verify.NewReplayCache(replay),
		Now:        func() time.Time { return testNow },
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestDPoPProofChecks: every check of RFC 9449 §4.3, one bad input each.
func TestDPoPProofChecks(t *testing.T) {
	es := jwttest.New(t, "", "ES256")
	now := testNow.Unix()
	good := func() jwt.MapClaims { return jwttest.ProofClaims("POST", testHTU, testToken, now) }
	without := func(name string) jwt.MapClaims { c := good(); delete(c, name); return c }
	with := func(name string, v any) jwt.MapClaims { c := good(); c[name] = v; return c }
	jwkWith := func(name string, v any) map[string]any {
		m := es.PublicJWK()
		m[name] = v
		return map[string]any{"jwk": m}
	}
	hmacProof := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, good())
		tok.Header["typ"] = "dpop+jwt"
		tok.Header["jwk"] = map[string]any{"kty": "oct", "k": b64("0123456789abcdef0123456789abcdef")}
		s, err := tok.SignedString([]byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noneProof := func() string {
		h := b64(`{"typ":"dpop+jwt","alg":"none","jwk":{"kty":"EC","crv":"P-256","x":"` + es.PublicJWK()["x"].(string) + `","y":"` + es.PublicJWK()["y"].(string) + `"}}`)
		p := b64(`{"jti":"a","htm":"POST","htu":"` + testHTU + `","iat":1800000000}`)
		return h + "." + p + ".AAAA"
	}
	sign := func(claims jwt.MapClaims, header map[string]any) string {
		s, err := es.SignProof(claims, header)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other := jwttest.New(t, "", "ES256")
	otherSigned := func() string {
		// Signed by another key than the one in its jwk header.
		s, err := other.SignProof(good(), map[string]any{"jwk": es.PublicJWK()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name   string
		proof  string
		method string
		uri    string
		token  string
		want   error
	}{
		{"too large", sign(with("pad", strings.Repeat("x", 8<<10)), nil), "", "", "", verify.ErrProofTooLarge},
		{"not a JWS", "abc.def", "", "", "", verify.ErrProofForm},
		{"JWS JSON serialization", `{"payload":"x"}`, "", "", "", verify.ErrProofForm},
		{"typ missing", sign(good(), map[string]any{"typ": nil}), "", "", "", verify.ErrProofType},
		{"typ jwt", sign(good(), map[string]any{"typ": "JWT"}), "", "", "", verify.ErrProofType},
		{"typ case", sign(good(), map[string]any{"typ": "DPoP+JWT"}), "", "", "", verify.ErrProofType},
		{"alg none", noneProof(), "", "", "", verify.ErrProofAlg},
		{"alg none, unsigned", strings.TrimSuffix(noneProof(), "AAAA"), "", "", "", verify.ErrProofForm},
		{"alg HS256", hmacProof(), "", "", "", verify.ErrProofAlg},
		{"jwk missing", sign(good(), map[string]any{"jwk": nil}), "", "", "", verify.ErrProofJWK},
		{"jwk not an object", sign(good(), map[string]any{"jwk": "x"}), "", "", "", verify.ErrProofJWK},
		{"jwk private d", sign(good(), jwkWith("d", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk private p", sign(good(), jwkWith("p", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk private q", sign(good(), jwkWith("q", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk private dp", sign(good(), jwkWith("dp", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk private dq", sign(good(), jwkWith("dq", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk private qi", sign(good(), jwkWith("qi", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk symmetric k", sign(good(), jwkWith("k", b64("secret"))), "", "", "", verify.ErrProofPrivateKey},
		{"jwk kty oct", sign(good(), map[string]any{"jwk": map[string]any{"kty": "oct"}}), "", "", "", verify.ErrProofJWK},
		{"jwk kty unknown", sign(good(), jwkWith("kty", "XYZ")), "", "", "", verify.ErrProofJWK},
		{"jwk curve other than alg", sign(good(), jwkWith("crv", "P-384")), "", "", "", verify.ErrProofJWK},
		{"jwk point not on curve", sign(good(), jwkWith("x", b64(strings.Repeat("\x01", 32)))), "", "", "", verify.ErrProofJWK},
		{"crit header", sign(good(), map[string]any{"crit": []string{"x"}, "x": 1}), "", "", "", verify.ErrProofCrit},
		{"signed by another key", otherSigned(), "", "", "", verify.ErrProofSignature},
		{"jti missing", sign(without("jti"), nil), "", "", "", verify.ErrProofClaims},
		{"jti empty", sign(with("jti", ""), nil), "", "", "", verify.ErrProofClaims},
		{"jti not a string", sign(with("jti", 7), nil), "", "", "", verify.ErrProofClaims},
		{"htm missing", sign(without("htm"), nil), "", "", "", verify.ErrProofClaims},
		{"htu missing", sign(without("htu"), nil), "", "", "", verify.ErrProofClaims},
		{"iat missing", sign(without("iat"), nil), "", "", "", verify.ErrProofClaims},
		{"iat a string", sign(with("iat", "1800000000"), nil), "", "", "", verify.ErrProofClaims},
		{"htm other method", sign(good(), nil), "GET", "", "", verify.ErrProofMethod},
		{"htm lowercase", sign(with("htm", "post"), nil), "", "", "", verify.ErrProofMethod},
		{"htu other path", sign(good(), nil), "", "https://mcp.example.com/other", "", verify.ErrProofURI},
		{"htu other host", sign(good(), nil), "", "https://evil.example.com/mcp", "", verify.ErrProofURI},
		{"htu other scheme", sign(good(), nil), "", "http://mcp.example.com/mcp", "", verify.ErrProofURI},
		{"htu relative", sign(with("htu", "/mcp"), nil), "", "", "", verify.ErrProofURI},
		{"htu other port, leading zeros", sign(with("htu", "https://mcp.example.com:04430/mcp"), nil), "", "", "", verify.ErrProofURI},
		{"iat too old", sign(with("iat", now-301), nil), "", "", "", verify.ErrProofIAT},
		{"iat too far ahead", sign(with("iat", now+301), nil), "", "", "", verify.ErrProofIAT},
		{"ath missing", sign(without("ath"), nil), "", "", "", verify.ErrProofATH},
		{"ath of another token", sign(with("ath", jwttest.ATH("another.token.x")), nil), "", "", "", verify.ErrProofATH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, uri, token := "POST", testHTU, testToken
			if tt.method != "" {
				method = tt.method
			}
			if tt.uri != "" {
				uri = tt.uri
			}
			if tt.token != "" {
				token = tt.token
			}
			_, err := newChecker(10).Check(tt.proof, method, uri, verify.Hashed(token))
			if err == nil {
				t.Fatal("accepted")
			}
			if verify.ReasonOf(err) != verify.BadProof {
				t.Errorf("reason %v, want BadProof", verify.ReasonOf(err))
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDPoPProofAccepted: good proofs of every default algorithm, iat at both edges of the
// window, htu written in another but equivalent form.
func TestDPoPProofAccepted(t *testing.T) {
	now := testNow.Unix()
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"} {
		k := jwttest.New(t, "", alg)
		p, err := newChecker(10).Check(k.Proof(t, "POST", testHTU, testToken, now), "POST", testHTU, verify.Hashed(testToken))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if p.JKT != k.Thumbprint() {
			t.Errorf("%s: jkt %s, want %s", alg, p.JKT, k.Thumbprint())
		}
	}
	k := jwttest.New(t, "", "ES256")
	for _, iat := range []int64{now - 300, now + 300} {
		if _, err := newChecker(10).Check(k.Proof(t, "POST", testHTU, testToken, iat), "POST", testHTU, verify.Hashed(testToken)); err != nil {
			t.Errorf("iat %+d: %v", iat-now, err)
		}
	}
	for _, htu := range []string{
		"HTTPS://MCP.Example.com:443/mcp", "https://mcp.example.com/mcp?x=1#f", "https://mcp.example.com/./a/../mcp",
		"https://mcp.example.com/%6Dcp", "https://mcp.example.com:0443/mcp", "https://mcp.example.com:000443/mcp",
	} {
		proof, err := k.SignProof(jwttest.ProofClaims("POST", htu, testToken, now), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newChecker(10).Check(proof, "POST", testHTU, verify.Hashed(testToken)); err != nil {
			t.Errorf("htu %s: %v", htu, err)
		}
	}
}

func TestDPoPReplay(t *testing.T) {
	k := jwttest.New(t, "", "ES256")
	d := newChecker(10)
	proof := k.Proof(t, "POST", testHTU, testToken, testNow.Unix())
	for i, want := range []error{nil, verify.ErrProofReplayed} {
		p, err := d.Check(proof, "POST", testHTU, verify.Hashed(testToken))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Remember(p); !errors.Is(err, want) {
			t.Errorf("use %d: %v, want %v", i+1, err, want)
		}
	}
	// Off: the same proof passes twice.
	d = newChecker(0)
	for range 2 {
		p, _ := d.Check(proof, "POST", testHTU, verify.Hashed(testToken))
		if err := d.Remember(p); err != nil {
			t.Errorf("replay cache off: %v", err)
		}
	}
}

// TestReplayCacheBounded: the cache never holds more than its size, forgets the oldest
// first, and forgets a jti once its proof is out of the window.
func TestReplayCacheBounded(t *testing.T) {
	c := verify.NewReplayCache(160)
	for i := range 10000 {
		if c.Seen("k", "jti-"+string(rune(i)), 200, 100) {
			t.Fatalf("jti %d seen", i)
		}
	}
	if n := c.Len(); n > 160 {
		t.Errorf("%d entries, want at most 160", n)
	}
	if !c.Seen("k", "jti-"+string(rune(9999)), 200, 100) {
		t.Error("latest jti forgotten")
	}
	if c.Seen("k", "jti-"+string(rune(9999)), 200, 201) {
		t.Error("jti remembered past its window")
	}
	if c.Seen("other-key", "jti-"+string(rune(9998)), 200, 100) {
		t.Error("a jti of another key counted as a replay")
	}
}

func TestDPoPNonce(t *testing.T) {
	k := jwttest.New(t, "", "ES256")
	d := newChecker(100)
	d.Nonces = verify.NewNonces([]byte("0123456789abcdef0123"), 5*time.Minute)
	now := testNow.Unix()
	check := func(nonce string, at time.Time) error {
		c := jwttest.ProofClaims("POST", testHTU, testToken, at.Unix())
		if nonce != "" {
			c["nonce"] = nonce
		}
		proof, err := k.SignProof(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Now = func() time.Time { return at }
		_, err = d.Check(proof, "POST", testHTU, verify.Hashed(testToken))
		return err
	}
	if err := check("", testNow); verify.ReasonOf(err) != verify.UseNonce {
		t.Errorf("no nonce: %v, want UseNonce", err)
	}
	if err := check("made-up-nonce-made-up-x", testNow); verify.ReasonOf(err) != verify.UseNonce {
		t.Errorf("made-up nonce: %v, want UseNonce", err)
	}
	n := d.Nonces.Current(testNow)
	if err := check(n, testNow); err != nil {
		t.Errorf("current nonce: %v", err)
	}
	if err := check(n, time.Unix(now, 0).Add(5*time.Minute)); err != nil {
		t.Errorf("previous step's nonce: %v", err)
	}
	if err := check(n, time.Unix(now, 0).Add(11*time.Minute)); verify.ReasonOf(err) != verify.UseNonce {
		t.Errorf("nonce two steps old: %v, want UseNonce", err)
	}
	// Another instance with the same key accepts it; one with another key does not.
	same := verify.NewNonces([]byte("0123456789abcdef0123"), 5*time.Minute)
	if !same.Valid(n, testNow) {
		t.Error("instance sharing the key refuses the nonce")
	}
	if verify.NewNonces(nil, 5*time.Minute).Valid(n, testNow) {
		t.Error("instance with its own key accepts the nonce")
	}
}

func TestCheckBinding(t *testing.T) {
	cert := testCert(t)
	thumb := verify.CertThumbprint(cert)
	jkt := "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	tests := []struct {
		name string
		cnf  verify.Confirmation
		p    verify.Presentation
		want verify.Reason // NumReasons: accepted
	}{
		{"unbound bearer", verify.Confirmation{}, verify.Presentation{}, verify.NumReasons},
		{"jkt-bound as bearer", verify.Confirmation{Present: true, JKT: jkt}, verify.Presentation{}, verify.Bound},
		{"jkt-bound with its key", verify.Confirmation{Present: true, JKT: jkt}, verify.Presentation{DPoP: true, ProofJKT: jkt}, verify.NumReasons},
		{"jkt-bound with another key", verify.Confirmation{Present: true, JKT: jkt}, verify.Presentation{DPoP: true, ProofJKT: "other"}, verify.WrongKey},
		{"unbound as DPoP", verify.Confirmation{}, verify.Presentation{DPoP: true, ProofJKT: jkt}, verify.NotBound},
		{"cert-bound, mtls_bound off", verify.Confirmation{Present: true, X5TS256: thumb}, verify.Presentation{Cert: cert}, verify.Bound},
		{"cert-bound with its cert", verify.Confirmation{Present: true, X5TS256: thumb}, verify.Presentation{CheckCert: true, Cert: cert}, verify.NumReasons},
		{"cert-bound without cert", verify.Confirmation{Present: true, X5TS256: thumb}, verify.Presentation{CheckCert: true}, verify.WrongCert},
		{"cert-bound with another cert", verify.Confirmation{Present: true, X5TS256: "other"}, verify.Presentation{CheckCert: true, Cert: cert}, verify.WrongCert},
		{"unknown cnf member", verify.Confirmation{Present: true}, verify.Presentation{CheckCert: true}, verify.Bound},
		{"unknown cnf member as DPoP", verify.Confirmation{Present: true}, verify.Presentation{DPoP: true, ProofJKT: jkt}, verify.NotBound},
	}
	for _, tt := range tests {
		err := verify.CheckBinding(tt.cnf, tt.p)
		switch {
		case tt.want == verify.NumReasons && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.want != verify.NumReasons && (err == nil || verify.ReasonOf(err) != tt.want):
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func testCert(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestDPoPNonceStale: a proof with the previous step's nonce passes and says so, so that the
// handler hands out the current one with the answer.
func TestDPoPNonceStale(t *testing.T) {
	k := jwttest.New(t, "", "ES256")
	d := newChecker(100)
	d.Nonces = verify.NewNonces([]byte("0123456789abcdef0123"), 5*time.Minute)
	n := d.Nonces.Current(testNow)
	for _, tc := range []struct {
		at    time.Time
		stale bool
	}{{testNow, false}, {testNow.Add(5 * time.Minute), true}} {
		c := jwttest.ProofClaims("POST", testHTU, testToken, tc.at.Unix())
		c["nonce"] = n
		proof, _ := k.SignProof(c, nil)
		d.Now = func() time.Time { return tc.at }
		p, err := d.Check(proof, "POST", testHTU, verify.Hashed(testToken))
		if err != nil || p.NonceStale != tc.stale {
			t.Errorf("at %s: %v, stale %v, want %v", tc.at, err, p.NonceStale, tc.stale)
		}
	}
}

// TestParseConfirmation: introspection answers bind through the same Confirmation.
func TestParseConfirmation(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want verify.Confirmation
	}{
		{`{"jkt":"abc"}`, verify.Confirmation{Present: true, JKT: "abc"}},
		{`{"x5t#S256":"xyz"}`, verify.Confirmation{Present: true, X5TS256: "xyz"}},
		{`{"jwk":{}}`, verify.Confirmation{Present: true}},
		{`"x"`, verify.Confirmation{Present: true}},
		{`{"jkt":7}`, verify.Confirmation{Present: true}},
	} {
		got, _ := verify.ParseConfirmation([]byte(tc.raw))
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.raw, got, tc.want)
		}
		if err := verify.CheckBinding(got, verify.Presentation{}); err == nil {
			t.Errorf("%s: accepted as a bearer token", tc.raw)
		}
	}
}

// FuzzDPoPCheck: no input makes the proof check panic, and nothing but a proof signed by the
// key in its own header passes.
func FuzzDPoPCheck(f *testing.F) {
	k := jwttest.New(f, "", "ES256")
	good, err := k.SignProof(jwttest.ProofClaims("POST", testHTU, testToken, testNow.Unix()), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("a.b.c")
	f.Add(b64(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"","y":""}}`) + ".e30.AAAA")
	f.Add(b64(`{"typ":"dpop+jwt","alg":"RS256","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}}`) + ".e30.AAAA")
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := newChecker(10).Check(proof, "POST", testHTU, verify.Hashed(testToken))
		if err == nil && p.JKT == "" {
			t.Fatal("accepted without a key thumbprint")
		}
	})
}

// TestDPoPReplayBounds pins down what the replay check does not stop, as docs/dpop.md says:
// a captured request (token and proof) replayed to another instance passes there even with
// shared nonces, since the proof carries a nonce that is still valid (a key per instance stops
// it); and a client holding a
// bound token of its own can push a victim's jti out of a full cache by sending as many
// accepted proofs as the cache holds, after which the victim's captured proof passes again.
func TestDPoPReplayBounds(t *testing.T) {
	victim := jwttest.New(t, "", "ES256")
	key := []byte("0123456789abcdef0123")
	instance := func(replay int) *verify.DPoP {
		d := newChecker(replay)
		d.Nonces = verify.NewNonces(key, 5*time.Minute)
		return d
	}
	a, b := instance(100), instance(100)
	c := jwttest.ProofClaims("POST", testHTU, testToken, testNow.Unix())
	c["nonce"] = a.Nonces.Current(testNow)
	proof, err := victim.SignProof(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	use := func(d *verify.DPoP) error {
		p, err := d.Check(proof, "POST", testHTU, verify.Hashed(testToken))
		if err != nil {
			return err
		}
		return d.Remember(p)
	}
	if err := use(a); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := use(a); !errors.Is(err, verify.ErrProofReplayed) {
		t.Errorf("replay to the same instance: %v, want ErrProofReplayed", err)
	}
	if err := use(b); err != nil {
		t.Errorf("replay to another instance sharing the nonce key: %v; docs/dpop.md says it passes", err)
	}
	// With a key of its own per instance, the other instance refuses the nonce.
	own := newChecker(100)
	own.Nonces = verify.NewNonces(nil, 5*time.Minute)
	if err := use(own); verify.ReasonOf(err) != verify.UseNonce {
		t.Errorf("replay to an instance with its own nonce key: %v, want UseNonce", err)
	}

	// The flood: accepted proofs of the attacker's own key, as many as the cache holds.
	for i := range 100 * 20 {
		a.Replay.Seen("attacker-jkt", strconv.Itoa(i), testNow.Unix()+300, testNow.Unix())
	}
	if err := use(a); err != nil {
		t.Errorf("replay after a flood of %d proofs: %v; docs/dpop.md says it passes", 100*20, err)
	}
}

// TestDPoPProofKeyCache: with a key cache, a client's key is parsed once and found by its
// thumbprint after; a cached key still passes only with the algorithm of its kind, and a
// proof signed by another key than the one it carries still fails.
func TestDPoPProofKeyCache(t *testing.T) {
	d := newChecker(0)
	d.Keys = verify.NewProofKeyCache(2)
	now := testNow.Unix()
	es := jwttest.New(t, "", "ES256")
	for range 3 {
		p, err := d.Check(es.Proof(t, "POST", testHTU, testToken, now), "POST", testHTU, verify.Hashed(testToken))
		if err != nil {
			t.Fatal(err)
		}
		if p.JKT != es.Thumbprint() {
			t.Fatalf("jkt %s, want %s", p.JKT, es.Thumbprint())
		}
	}
	if n := d.Keys.Len(); n != 1 {
		t.Fatalf("%d keys cached, want 1", n)
	}
	// The cached P-256 key under another alg: refused as before.
	proof, err := es.SignProof(jwttest.ProofClaims("POST", testHTU, testToken, now), map[string]any{"alg": "ES384"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Check(proof, "POST", testHTU, verify.Hashed(testToken)); !errors.Is(err, verify.ErrProofJWK) {
		t.Errorf("cached key under ES384: %v, want %v", err, verify.ErrProofJWK)
	}
	// Another key's signature under the cached key's jwk: the signature check fails.
	other := jwttest.New(t, "", "ES256")
	forged, err := other.SignProof(jwttest.ProofClaims("POST", testHTU, testToken, now), map[string]any{"jwk": es.PublicJWK()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Check(forged, "POST", testHTU, verify.Hashed(testToken)); !errors.Is(err, verify.ErrProofSignature) {
		t.Errorf("forged proof with a cached jwk: %v, want %v", err, verify.ErrProofSignature)
	}
	// Bounded: a third key starts the cache over.
	rs := jwttest.New(t, "", "RS256")
	ed := jwttest.New(t, "", "EdDSA")
	for _, k := range []*jwttest.Key{rs, ed, rs} {
		if _, err := d.Check(k.Proof(t, "POST", testHTU, testToken, now), "POST", testHTU, verify.Hashed(testToken)); err != nil {
			t.Fatalf("%s: %v", k.Alg, err)
		}
	}
	if n := d.Keys.Len(); n > 2 {
		t.Fatalf("%d keys cached, bound 2", n)
	}
}
