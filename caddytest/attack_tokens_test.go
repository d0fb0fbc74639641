package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestAttackTokens: what a token can carry. Every forged, foreign, confused or absurd token
// gets 401 invalid_token (or 403 when it is valid but grants nothing), and never reaches the
// MCP server.
func TestAttackTokens(t *testing.T) {
	e := newAttackEnv(t, "tokens")
	// The attacker's keys: one with the kid of the authorization server's RSA key, one of
	// its own.
	evil := jwttest.New(t, "rsa-1", "RS256")
	evilOwn := jwttest.New(t, "evil-1", "RS256")
	evilEC := jwttest.New(t, "ec-1", "ES256")

	// The flood runs first, while no token has yet made the key set fetch on demand.
	t.Run("flood of made-up kids", func(t *testing.T) {
		before := e.jwks.fetches.Load()
		const n = 1000
		var (
			wg     sync.WaitGroup
			next   atomic.Int64
			wrong  atomic.Int64
			failed atomic.Value
		)
		ups := e.up.snapshot()
		tr := http.DefaultTransport.(*http.Transport).Clone()
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > n {
						return
					}
					k := jwttest.Key{KID: fmt.Sprintf("made-up-%d", i), Alg: evilEC.Alg, Signer: evilEC.Signer}
					tok, err := k.Sign(claims(resource, baseScope), nil)
					if err != nil {
						failed.Store(err)
						return
					}
					req, _ := http.NewRequest(http.MethodPost, baseURL+"/mcp", strings.NewReader(callRead))
					req.Header.Set("Authorization", bearer(tok))
					resp, err := client.Do(req)
					if err != nil {
						failed.Store(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized ||
						!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
						wrong.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatal(err)
		}
		if w := wrong.Load(); w != 0 {
			t.Errorf("%d of %d tokens with made-up kids were not answered 401 invalid_token", w, n)
		}
		if extra := e.jwks.fetches.Load() - before; extra > 2 {
			t.Errorf("%d tokens with made-up kids caused %d JWKS fetches, want at most 2", n, extra)
		} else {
			t.Logf("%d tokens with made-up kids caused %d JWKS fetches", n, extra)
		}
		e.up.checkUntouched(t, ups, "a token with a made-up kid")
	})

	t.Run("header-embedded keys are never used", func(t *testing.T) {
		var hits atomic.Int64
		evilJWKS := jwttest.JWKS(evil, evilOwn)
		keyHost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(evilJWKS)
		}))
		defer keyHost.Close()
		cert := selfSigned(t, evil)
		x5c := []any{base64.StdEncoding.EncodeToString(cert)}
		secret := []byte("attacker-chosen-secret-of-32-bytes!!")
		octJWK := map[string]any{"kty": "oct", "k": b64url(secret)}
		c := claims(resource, baseScope)
		var cases []attackCase
		for _, kid := range []string{"rsa-1", "evil-1", ""} {
			signer := evil
			if kid == "evil-1" {
				signer = evilOwn
			}
			for _, emb := range []struct {
				name string
				hdr  map[string]any
			}{
				{"jwk", map[string]any{"jwk": signer.JWK()}},
				{"jku", map[string]any{"jku": keyHost.URL + "/jwks"}},
				{"x5u", map[string]any{"x5u": keyHost.URL + "/cert.pem"}},
				{"x5c", map[string]any{"x5c": x5c}},
				{"jku+jwk", map[string]any{"jku": keyHost.URL + "/jwks", "jwk": signer.JWK()}},
			} {
				h := joseHeader("RS256", kid, emb.hdr)
				if kid == "" {
					delete(h, "kid")
				}
				cases = append(cases, attackCase{
					fmt.Sprintf("%s, kid %q (empty: none)", emb.name, kid),
					post(callRead, bearer(forge(t, "RS256", signer.Signer, mustJSON(t, h), mustJSON(t, c)))),
					badToken,
				})
			}
		}
		cases = append(cases,
			attackCase{"jwk of the attacker's EC key, kid of the server's EC key",
				post(callRead, bearer(signWith(t, evilEC, c, map[string]any{"jwk": evilEC.JWK()}))), badToken},
			attackCase{"symmetric jwk, HS256",
				post(callRead, bearer(forge(t, "HS256", secret, mustJSON(t, joseHeader("HS256", "", map[string]any{"jwk": octJWK})), mustJSON(t, c)))), badToken},
			attackCase{"x5c with x5t#S256 of the attacker's certificate",
				post(callRead, bearer(forge(t, "RS256", evil.Signer, mustJSON(t, joseHeader("RS256", "rsa-1", map[string]any{
					"x5c": x5c, "x5t#S256": b64url(sha256Sum(cert)),
				})), mustJSON(t, c)))), badToken},
		)
		e.run(t, cases)
		if n := hits.Load(); n != 0 {
			t.Errorf("the module fetched the attacker's jku/x5u URL %d times", n)
		}
	})

	t.Run("odd kids", func(t *testing.T) {
		before := e.jwks.fetches.Load()
		c := claims(resource, baseScope)
		// Signed by the authorization server's own key: only the kid is wrong, and a kid
		// that names no published key is refused, whatever key would verify.
		byServer := func(kid any) string {
			return forge(t, "RS256", e.key.Signer, mustJSON(t, map[string]any{"alg": "RS256", "kid": kid, "typ": "at+jwt"}), mustJSON(t, c))
		}
		cases := []attackCase{
			{"path traversal", post(callRead, bearer(byServer("../../etc/passwd"))), badToken},
			{"absolute path", post(callRead, bearer(byServer("/etc/passwd"))), badToken},
			{"traversal back to the kid", post(callRead, bearer(byServer("x/../rsa-1"))), badToken},
			{"file URL", post(callRead, bearer(byServer("file:///etc/passwd"))), badToken},
			{"SQL", post(callRead, bearer(byServer("rsa-1' OR '1'='1"))), badToken},
			{"10 KB", post(callRead, bearer(byServer(strings.Repeat("k", 10<<10)))), badToken},
			{"case variant", post(callRead, bearer(byServer("RSA-1"))), badToken},
			{"unicode hyphen", post(callRead, bearer(byServer("rsa\u20101"))), badToken},
			{"fullwidth", post(callRead, bearer(byServer("\uff52\uff53\uff41-1"))), badToken},
			{"trailing NUL", post(callRead, bearer(byServer("rsa-1\x00"))), badToken},
			{"trailing space", post(callRead, bearer(byServer("rsa-1 "))), badToken},
			{"number", post(callRead, bearer(byServer(1))), badToken},
			{"null", post(callRead, bearer(byServer(nil))), badToken},
			{"bool", post(callRead, bearer(byServer(true))), badToken},
			{"array holding the kid", post(callRead, bearer(byServer([]any{"rsa-1"}))), badToken},
			{"object holding the kid", post(callRead, bearer(byServer(map[string]any{"kid": "rsa-1"}))), badToken},
			{"empty, attacker's key", post(callRead, bearer(forge(t, "RS256", evil.Signer,
				mustJSON(t, joseHeader("RS256", "", nil)), mustJSON(t, c)))), badToken},
			{"absent, attacker's key", post(callRead, bearer(forge(t, "RS256", evil.Signer,
				`{"alg":"RS256","typ":"at+jwt"}`, mustJSON(t, c)))), badToken},
			{"control: the published kid", post(callRead, bearer(byServer("rsa-1"))), ranRead},
		}
		e.run(t, cases)
		if extra := e.jwks.fetches.Load() - before; extra > 2 {
			t.Errorf("odd kids caused %d JWKS fetches, want at most 2", extra)
		}
	})

	t.Run("crit", func(t *testing.T) {
		c := mustJSON(t, claims(resource, baseScope))
		crit := func(extra map[string]any) string {
			return forge(t, "RS256", e.key.Signer, mustJSON(t, joseHeader("RS256", "rsa-1", extra)), c)
		}
		e.run(t, []attackCase{
			{"unknown extension", post(callRead, bearer(crit(map[string]any{"crit": []any{"x-ext"}, "x-ext": 1}))), badToken},
			{"unknown and absent", post(callRead, bearer(crit(map[string]any{"crit": []any{"x-absent"}}))), badToken},
			{"b64 (RFC 7797)", post(callRead, bearer(crit(map[string]any{"crit": []any{"b64"}, "b64": true}))), badToken},
			{"registered name exp", post(callRead, bearer(crit(map[string]any{"crit": []any{"exp"}, "exp": 1}))), badToken},
			{"registered name alg", post(callRead, bearer(crit(map[string]any{"crit": []any{"alg"}}))), badToken},
			{"empty array", post(callRead, bearer(crit(map[string]any{"crit": []any{}}))), badToken},
			{"string", post(callRead, bearer(crit(map[string]any{"crit": "x-ext", "x-ext": 1}))), badToken},
			{"null", post(callRead, bearer(crit(map[string]any{"crit": nil}))), badToken},
			{"control: no crit", post(callRead, bearer(crit(nil))), ranRead},
		})
	})

	t.Run("algorithm confusion", func(t *testing.T) {
		c := mustJSON(t, claims(resource, baseScope))
		pub := e.key.Signer.Public().(*rsa.PublicKey)
		pkix, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		pemPKIX := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
		pemPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})
		n := e.key.JWK()["n"].(string)
		jwkJSON := mustJSON(t, e.key.JWK())
		hs := func(alg, kid string, secret []byte) string {
			return forge(t, alg, secret, mustJSON(t, joseHeader(alg, kid, nil)), c)
		}
		hdr := func(alg, kid string) string { return mustJSON(t, joseHeader(alg, kid, nil)) }
		valid := forge(t, "RS256", e.key.Signer, hdr("RS256", "rsa-1"), c)
		validSig := valid[strings.LastIndexByte(valid, '.')+1:]
		evilEd := jwttest.New(t, "rsa-1", "EdDSA")
		e.run(t, []attackCase{
			{"none", post(callRead, bearer(forge(t, "", nil, hdr("none", "rsa-1"), c))), badToken},
			{"None", post(callRead, bearer(forge(t, "", nil, hdr("None", "rsa-1"), c))), badToken},
			{"NONE without kid", post(callRead, bearer(forge(t, "", nil, `{"alg":"NONE","typ":"at+jwt"}`, c))), badToken},
			{"none with a real RS256 signature", post(callRead, bearer(strings.TrimSuffix(forge(t, "", nil, hdr("none", "rsa-1"), c), ".")+"."+validSig)), badToken},
			{"no alg", post(callRead, bearer(forge(t, "RS256", e.key.Signer, `{"kid":"rsa-1","typ":"at+jwt"}`, c))), badToken},
			{"alg in lower case", post(callRead, bearer(forge(t, "RS256", e.key.Signer, hdr("rs256", "rsa-1"), c))), badToken},
			{"alg with a trailing space", post(callRead, bearer(forge(t, "RS256", e.key.Signer, hdr("RS256 ", "rsa-1"), c))), badToken},
			{"HS256 keyed with the RSA public key PEM (PKIX)", post(callRead, bearer(hs("HS256", "rsa-1", pemPKIX))), badToken},
			{"HS256 keyed with the RSA public key PEM (PKCS#1)", post(callRead, bearer(hs("HS256", "rsa-1", pemPKCS1))), badToken},
			{"HS384 keyed with the PEM, no kid", post(callRead, bearer(forge(t, "HS384", pemPKIX, `{"alg":"HS384","typ":"at+jwt"}`, c))), badToken},
			{"HS512 keyed with the PEM", post(callRead, bearer(hs("HS512", "rsa-1", pemPKIX))), badToken},
			{"HS256 keyed with the JWK n", post(callRead, bearer(hs("HS256", "rsa-1", []byte(n)))), badToken},
			{"HS256 keyed with the JWK JSON", post(callRead, bearer(hs("HS256", "rsa-1", []byte(jwkJSON)))), badToken},
			{"HS256 keyed with the DER modulus", post(callRead, bearer(hs("HS256", "rsa-1", pub.N.Bytes()))), badToken},
			{"RS256 header on the EC key's kid, ES256 signature", post(callRead, bearer(forge(t, "ES256", e.ecKey.Signer, hdr("RS256", "ec-1"), c))), badToken},
			{"RS256 header on the EC key's kid, attacker RSA signature", post(callRead, bearer(forge(t, "RS256", evil.Signer, hdr("RS256", "ec-1"), c))), badToken},
			{"ES256 header on the RSA key's kid, attacker EC signature", post(callRead, bearer(forge(t, "ES256", evilEC.Signer, hdr("ES256", "rsa-1"), c))), badToken},
			{"EdDSA header on the RSA key's kid", post(callRead, bearer(forge(t, "EdDSA", evilEd.Signer, hdr("EdDSA", "rsa-1"), c))), badToken},
			{"PS256 by the RSA key whose JWK says RS256", post(callRead, bearer(forge(t, "PS256", e.key.Signer, hdr("PS256", "rsa-1"), c))), badToken},
			{"RS256 header, PS256 signature", post(callRead, bearer(forge(t, "PS256", e.key.Signer, hdr("RS256", "rsa-1"), c))), badToken},
			{"PS256 header, RS256 signature", post(callRead, bearer(forge(t, "RS256", e.key.Signer, hdr("PS256", "rsa-1"), c))), badToken},
			{"RS384 header, RS256 signature", post(callRead, bearer(forge(t, "RS256", e.key.Signer, hdr("RS384", "rsa-1"), c))), badToken},
			{"control: RS256", post(callRead, bearer(valid)), ranRead},
			{"control: ES256", post(callRead, bearer(forge(t, "ES256", e.ecKey.Signer, hdr("ES256", "ec-1"), c))), ranRead},
		})
	})

	t.Run("claim type confusion", func(t *testing.T) {
		tok := func(scope string, set map[string]any) string { return signWith(t, e.key, with(scope, set), nil) }
		in := time.Now().Add(time.Hour).Unix()
		e.run(t, []attackCase{
			{"aud number", post(callRead, bearer(tok(baseScope, map[string]any{"aud": 1}))), badToken},
			{"aud object", post(callRead, bearer(tok(baseScope, map[string]any{"aud": map[string]any{"aud": resource}}))), badToken},
			{"aud array of numbers", post(callRead, bearer(tok(baseScope, map[string]any{"aud": []any{1, 2}}))), badToken},
			{"aud nested array", post(callRead, bearer(tok(baseScope, map[string]any{"aud": []any{[]any{resource}}}))), badToken},
			{"aud array with a number beside the resource", post(callRead, bearer(tok(baseScope, map[string]any{"aud": []any{resource, 1}}))), badToken},
			{"aud null", post(callRead, bearer(tok(baseScope, map[string]any{"aud": nil}))), badToken},
			{"aud true", post(callRead, bearer(tok(baseScope, map[string]any{"aud": true}))), badToken},
			{"aud empty string", post(callRead, bearer(tok(baseScope, map[string]any{"aud": ""}))), badToken},
			{"aud empty array", post(callRead, bearer(tok(baseScope, map[string]any{"aud": []any{}}))), badToken},
			{"aud with a trailing slash", post(callRead, bearer(tok(baseScope, map[string]any{"aud": resource + "/"}))), badToken},
			{"aud in upper case", post(callRead, bearer(tok(baseScope, map[string]any{"aud": strings.ToUpper(resource)}))), badToken},
			{"aud absent", post(callRead, bearer(signWith(t, e.key, without(claims(resource, baseScope), "aud"), nil))), badToken},
			{"scope array of numbers", post(callRead, bearer(tok("", map[string]any{"scope": []any{1, 2}}))), noBase},
			{"scope number", post(callRead, bearer(tok("", map[string]any{"scope": 1}))), noBase},
			{"scope object", post(callRead, bearer(tok("", map[string]any{"scope": map[string]any{"mcp:read": true}}))), noBase},
			{"scope true", post(callRead, bearer(tok("", map[string]any{"scope": true}))), noBase},
			{"exp string", post(callRead, bearer(tok(baseScope, map[string]any{"exp": fmt.Sprint(in)}))), badToken},
			{"exp bool", post(callRead, bearer(tok(baseScope, map[string]any{"exp": true}))), badToken},
			{"exp 1e20", post(callRead, bearer(tok(baseScope, map[string]any{"exp": 1e20}))), badToken},
			{"exp -1", post(callRead, bearer(tok(baseScope, map[string]any{"exp": -1}))), badToken},
			{"exp NaN string", post(callRead, bearer(tok(baseScope, map[string]any{"exp": "NaN"}))), badToken},
			{"exp Infinity string", post(callRead, bearer(tok(baseScope, map[string]any{"exp": "Infinity"}))), badToken},
			{"exp null", post(callRead, bearer(tok(baseScope, map[string]any{"exp": nil}))), badToken},
			{"exp object", post(callRead, bearer(tok(baseScope, map[string]any{"exp": map[string]any{"$date": in}}))), badToken},
			{"exp array", post(callRead, bearer(tok(baseScope, map[string]any{"exp": []any{in}}))), badToken},
			{"exp beyond float64", post(callRead, bearer(forge(t, "RS256", e.key.Signer, mustJSON(t, joseHeader("RS256", "rsa-1", nil)),
				strings.Replace(mustJSON(t, with(baseScope, map[string]any{"exp": "EXP"})), `"exp":"EXP"`, `"exp":1e400`, 1)))), badToken},
			{"iss array", post(callRead, bearer(tok(baseScope, map[string]any{"iss": []any{issuer}}))), badToken},
			{"iss object", post(callRead, bearer(tok(baseScope, map[string]any{"iss": map[string]any{"iss": issuer}}))), badToken},
			{"iss with a trailing slash", post(callRead, bearer(tok(baseScope, map[string]any{"iss": issuer + "/"}))), badToken},
			{"iss null", post(callRead, bearer(tok(baseScope, map[string]any{"iss": nil}))), badToken},
			{"sub object", post(callRead, bearer(tok(baseScope, map[string]any{"sub": map[string]any{"id": "admin"}}))), badToken},
			{"sub number", post(callRead, bearer(tok(baseScope, map[string]any{"sub": 1}))), badToken},
			{"sub array", post(callRead, bearer(tok(baseScope, map[string]any{"sub": []any{"admin"}}))), badToken},
			{"control: aud array holding the resource", post(callRead, bearer(tok(baseScope, map[string]any{"aud": []any{"https://other.example.com", resource}}))), ranRead},
		})
	})

	t.Run("duplicate members", func(t *testing.T) {
		// RFC 7515 §4 and RFC 7519 §4 let a parser keep the last duplicate, but an
		// authorization server or another verifier may keep the first: a token whose
		// meaning depends on the parser is refused.
		hdrRS := mustJSON(t, joseHeader("RS256", "rsa-1", nil))
		body := mustJSON(t, claims(resource, baseScope))
		signed := func(header, payload string) string { return forge(t, "RS256", e.key.Signer, header, payload) }
		first := func(doc, member string) string { return "{" + member + "," + doc[1:] }
		last := func(doc, member string) string { return doc[:len(doc)-1] + "," + member + "}" }
		past := time.Now().Add(-time.Hour).Unix()
		e.run(t, []attackCase{
			{"header: two alg", post(callRead, bearer(signed(first(hdrRS, `"alg":"HS256"`), body))), badToken},
			{"header: two alg, none first", post(callRead, bearer(signed(first(hdrRS, `"alg":"none"`), body))), badToken},
			{"header: two kid", post(callRead, bearer(signed(first(hdrRS, `"kid":"evil-1"`), body))), badToken},
			{"header: two typ", post(callRead, bearer(signed(first(hdrRS, `"typ":"dpop+jwt"`), body))), badToken},
			{"header: escaped duplicate kid", post(callRead, bearer(signed(first(hdrRS, `"k\u0069d":"evil-1"`), body))), badToken},
			{"payload: two aud, foreign first", post(callRead, bearer(signed(hdrRS, first(body, `"aud":"https://other.example.com/mcp"`)))), badToken},
			{"payload: two aud, foreign last", post(callRead, bearer(signed(hdrRS, last(body, `"aud":"https://other.example.com/mcp"`)))), badToken},
			{"payload: two scope, admin first", post(callDelete, bearer(signed(hdrRS, first(body, `"scope":"mcp:read mcp:admin"`)))), badToken},
			{"payload: two scope, admin last", post(callDelete, bearer(signed(hdrRS, last(body, `"scope":"mcp:read mcp:admin"`)))), badToken},
			{"payload: two exp, expired first", post(callRead, bearer(signed(hdrRS, first(body, fmt.Sprintf(`"exp":%d`, past))))), badToken},
			{"payload: two iss", post(callRead, bearer(signed(hdrRS, first(body, `"iss":"https://evil.example.com"`)))), badToken},
			{"payload: escaped duplicate scope", post(callDelete, bearer(signed(hdrRS, last(body, `"sc\u006fpe":"mcp:read mcp:admin"`)))), badToken},
			{"control: no duplicate", post(callRead, bearer(signed(hdrRS, body))), ranRead},
		})
	})

	t.Run("scope separators other than space", func(t *testing.T) {
		// RFC 6749 §3.3: scopes are separated by U+0020 only. "mcp:read<TAB>mcp:admin" is one
		// malformed scope, which grants nothing, not two.
		var cases []attackCase
		for _, sep := range []struct{ name, s string }{
			{"NBSP", "\u00a0"}, {"tab", "\t"}, {"newline", "\n"}, {"CR", "\r"}, {"vertical tab", "\v"},
			{"form feed", "\f"}, {"NEL", "\u0085"}, {"ideographic space", "\u3000"}, {"em space", "\u2003"},
			{"line separator", "\u2028"}, {"NUL", "\x00"},
		} {
			s := "mcp:read" + sep.s + "mcp:admin"
			cases = append(cases,
				attackCase{sep.name + ": protected tool", post(callDelete, bearer(e.token(t, s))), forbidden},
				attackCase{sep.name + ": base scope", post(callRead, bearer(e.token(t, s))), noBase},
				attackCase{sep.name + ": in a scp array", post(callDelete, bearer(signWith(t, e.key, scpClaims(s), nil))), forbidden},
			)
		}
		cases = append(cases,
			attackCase{"control: space", post(callDelete, bearer(e.token(t, "mcp:read mcp:admin"))), outcome{status: http.StatusOK, reach: true, ran: "delete_file"}},
			attackCase{"control: scp array", post(callRead, bearer(signWith(t, e.key, scpClaims("mcp:read"), nil))), ranRead},
		)
		e.run(t, cases)
	})

	t.Run("absurd dates", func(t *testing.T) {
		// exp, nbf and iat must be numbers within the years 1970 to 9999: no conversion may
		// turn an absurd date into a valid one.
		tok := func(set map[string]any) string { return signWith(t, e.key, with(baseScope, set), nil) }
		const year10000 = 253402300800 // 10000-01-01T00:00:00Z
		e.run(t, []attackCase{
			{"exp 1e20", post(callRead, bearer(tok(map[string]any{"exp": 1e20}))), badToken},
			{"exp 2^63", post(callRead, bearer(tok(map[string]any{"exp": 9.223372036854775807e18}))), badToken},
			{"exp 2^64", post(callRead, bearer(tok(map[string]any{"exp": 1.8446744073709552e19}))), badToken},
			{"exp -1e20", post(callRead, bearer(tok(map[string]any{"exp": -1e20}))), badToken},
			{"exp in the year 10000", post(callRead, bearer(tok(map[string]any{"exp": year10000}))), badToken},
			{"exp string", post(callRead, bearer(tok(map[string]any{"exp": "4102444800"}))), badToken},
			{"nbf 1e20", post(callRead, bearer(tok(map[string]any{"nbf": 1e20}))), badToken},
			{"nbf 2^64", post(callRead, bearer(tok(map[string]any{"nbf": 1.8446744073709552e19}))), badToken},
			{"nbf before 1970", post(callRead, bearer(tok(map[string]any{"nbf": -1}))), badToken},
			{"nbf in the year 1", post(callRead, bearer(tok(map[string]any{"nbf": -62135596800}))), badToken},
			{"nbf string", post(callRead, bearer(tok(map[string]any{"nbf": "0"}))), badToken},
			{"iat 1e20", post(callRead, bearer(tok(map[string]any{"iat": 1e20}))), badToken},
			{"iat -1e20", post(callRead, bearer(tok(map[string]any{"iat": -1e20}))), badToken},
			{"iat before 1970", post(callRead, bearer(tok(map[string]any{"iat": -1}))), badToken},
			{"iat string", post(callRead, bearer(tok(map[string]any{"iat": "now"}))), badToken},
			{"iat bool", post(callRead, bearer(tok(map[string]any{"iat": false}))), badToken},
			{"control: exp at the end of 9999", post(callRead, bearer(tok(map[string]any{"exp": year10000 - 1}))), ranRead},
			{"control: iat and nbf at the epoch", post(callRead, bearer(tok(map[string]any{"iat": 0, "nbf": 0}))), ranRead},
		})
	})

	t.Run("typ of another kind, and bound tokens as Bearer", func(t *testing.T) {
		typ := func(v any) string { return signWith(t, e.key, claims(resource, baseScope), map[string]any{"typ": v}) }
		cnf := func(v any) string { return signWith(t, e.key, with(baseScope, map[string]any{"cnf": v}), nil) }
		noTyp := forge(t, "RS256", e.key.Signer, `{"alg":"RS256","kid":"rsa-1"}`, mustJSON(t, claims(resource, baseScope)))
		e.run(t, []attackCase{
			{"dpop+jwt", post(callRead, bearer(typ("dpop+jwt"))), badToken},
			{"application/dpop+jwt", post(callRead, bearer(typ("application/dpop+jwt"))), badToken},
			{"DPoP+JWT", post(callRead, bearer(typ("DPoP+JWT"))), badToken},
			{"oauth-id-jag+jwt", post(callRead, bearer(typ("oauth-id-jag+jwt"))), badToken},
			{"logout+jwt", post(callRead, bearer(typ("logout+jwt"))), badToken},
			{"secevent+jwt", post(callRead, bearer(typ("secevent+jwt"))), badToken},
			{"token-introspection+jwt", post(callRead, bearer(typ("token-introspection+jwt"))), badToken},
			{"any other +jwt", post(callRead, bearer(typ("x+jwt"))), badToken},
			{"cnf jkt (DPoP-bound)", post(callRead, bearer(cnf(map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}))), badToken},
			{"cnf x5t#S256 (certificate-bound)", post(callRead, bearer(cnf(map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}))), badToken},
			{"cnf jwk (RFC 7800)", post(callRead, bearer(cnf(map[string]any{"jwk": evil.JWK()}))), badToken},
			{"control: at+jwt", post(callRead, bearer(typ("at+jwt"))), ranRead},
			{"control: application/at+jwt", post(callRead, bearer(typ("application/at+jwt"))), ranRead},
			{"control: AT+JWT", post(callRead, bearer(typ("AT+JWT"))), ranRead},
			{"control: JWT", post(callRead, bearer(typ("JWT"))), ranRead},
			{"control: no typ", post(callRead, bearer(noTyp)), ranRead},
		})
	})

	t.Run("long tokens", func(t *testing.T) {
		limit := 16 << 10
		e.run(t, []attackCase{
			{"valid token of exactly 16 KiB", post(callRead, bearer(tokenOfSize(t, e.key, limit))), ranRead},
			{"valid token of 16 KiB + 1", post(callRead, bearer(tokenOfSize(t, e.key, limit+1))), badToken},
			{"b64token of 16 KiB - 1", post(callRead, bearer(strings.Repeat("a", limit-1))), badToken},
			{"b64token of 16 KiB", post(callRead, bearer(strings.Repeat("a", limit))), badToken},
			{"b64token of 16 KiB + 1", post(callRead, bearer(strings.Repeat("a", limit+1))), badToken},
			// Caddy refuses a header section over its max_header_size (16 KiB by default)
			// before any handler runs.
			{"1 MiB token", post(callRead, bearer(strings.Repeat("a", 1<<20))), outcome{status: http.StatusRequestHeaderFieldsTooLarge}},
		})
	})
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// scpClaims are valid claims granting scopes by a scp array (Entra ID, Okta) instead of scope.
func scpClaims(scopes ...string) jwt.MapClaims {
	c := without(claims(resource, ""), "scope")
	list := make([]any, len(scopes))
	for i, s := range scopes {
		list[i] = s
	}
	c["scp"] = list
	return c
}

// without returns c without the named claims.
func without(c jwt.MapClaims, names ...string) jwt.MapClaims {
	for _, n := range names {
		delete(c, n)
	}
	return c
}

// tokenOfSize is a valid token of the RSA key that is exactly size bytes long, grown with a
// padding claim (and, where base64 cannot hit the length, a header member).
func tokenOfSize(t *testing.T, k *jwttest.Key, size int) string {
	t.Helper()
	for hpad := range 4 {
		for n := size*3/4 - 600; n < size*3/4; n++ {
			c := claims(resource, baseScope)
			c["pad"] = strings.Repeat("p", n)
			tok := signWith(t, k, c, map[string]any{"x": strings.Repeat("h", hpad)})
			if len(tok) == size {
				return tok
			}
			if len(tok) > size {
				break
			}
		}
	}
	t.Fatalf("no token of %d bytes", size)
	return ""
}

// selfSigned is a certificate for the attacker's key, as an x5c header would carry it.
func selfSigned(t *testing.T, k *jwttest.Key) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "auth.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Signer.Public(), k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
