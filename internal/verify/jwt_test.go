package verify

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

const (
	testIss = "https://as.example.com"
	testRes = "https://mcp.example.com/mcp"
)

type staticKey struct {
	pub     crypto.PublicKey
	retired bool
}

func (k *staticKey) Public() crypto.PublicKey { return k.pub }
func (k *staticKey) Retired() bool            { return k.retired }

// keysOf serves the keys of the test issuer by kid, as a key set would.
type keysOf map[string]*staticKey

func (ks keysOf) Lookup(_ context.Context, iss, kid, _ string, buf []VerificationKey) ([]VerificationKey, error) {
	if len(ks) == 0 {
		return nil, ErrKeysUnavailable
	}
	if k := ks[kid]; k != nil && iss == testIss {
		return append(buf, k), nil
	}
	return nil, ErrUnknownKey
}

var testNow = time.Unix(1_800_000_000, 0)

func newTestJWT(t *testing.T) (*JWT, *jwttest.Key) {
	t.Helper()
	k := jwttest.New(t, "k1", "ES256")
	return &JWT{
		Keys:       keysOf{"k1": {pub: k.Signer.Public()}},
		Algorithms: []string{"RS256", "ES256", "EdDSA"},
		Issuers:    []string{testIss},
		Audiences:  []string{testRes},
		Leeway:     30 * time.Second,
		Now:        func() time.Time { return testNow },
	}, k
}

func claims(over map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIss, "sub": "alice", "aud": testRes, "client_id": "app",
		"exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Unix(), "scope": "mcp:read mcp:write",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// rawToken signs a hand-written payload (duplicate members, odd types) with k.
func rawToken(t *testing.T, k *jwttest.Key, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.GetSigningMethod(k.Alg).Sign(signing, k.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func TestJWTVerify(t *testing.T) {
	v, k := newTestJWT(t)
	hdr := `{"alg":"ES256","kid":"k1","typ":"at+jwt"}`
	exp := testNow.Add(time.Hour).Unix()
	cases := []struct {
		name  string
		token string
		want  Reason // NumReasons: valid
	}{
		{"valid", k.Token(t, claims(nil), nil), NumReasons},
		{"valid, typ JWT", k.Token(t, claims(nil), map[string]any{"typ": "JWT"}), NumReasons},
		{"not three parts", "a.b", Malformed},
		{"four parts", k.Token(t, claims(nil), nil) + ".x", Malformed},
		{"payload not JSON", rawToken(t, k, hdr, `nope`), Malformed},
		{"payload an array", rawToken(t, k, hdr, `[1]`), Malformed},
		{"duplicate aud", rawToken(t, k, hdr, `{"iss":"`+testIss+`","aud":"x","aud":"`+testRes+`","exp":`+itoa(exp)+`}`), Malformed},
		{"duplicate exp", rawToken(t, k, hdr, `{"iss":"`+testIss+`","aud":"`+testRes+`","exp":1,"exp":`+itoa(exp)+`}`), Malformed},
		{"duplicate alg", rawToken(t, k, `{"alg":"none","alg":"ES256","kid":"k1"}`, `{}`), Malformed},
		{"case variant is another claim", rawToken(t, k, hdr, `{"iss":"`+testIss+`","AUD":"`+testRes+`","exp":`+itoa(exp)+`}`), Audience},
		{"escaped name is the claim", rawToken(t, k, hdr, `{"iss":"`+testIss+`","\u0061ud":"`+testRes+`","exp":`+itoa(exp)+`}`), NumReasons},
		{"exp as string", k.Token(t, claims(map[string]any{"exp": "9999999999"}), nil), Malformed},
		{"exp 1e20", rawToken(t, k, hdr, `{"iss":"`+testIss+`","aud":"`+testRes+`","exp":1e20}`), Malformed},
		{"nbf 1e20", k.Token(t, claims(map[string]any{"nbf": 1e20}), nil), Malformed},
		{"iat 1e20", k.Token(t, claims(map[string]any{"iat": 1e20}), nil), Malformed},
		{"iat negative", k.Token(t, claims(map[string]any{"iat": -1}), nil), Malformed},
		{"exp true", k.Token(t, claims(map[string]any{"exp": true}), nil), Malformed},
		{"no exp", k.Token(t, claims(map[string]any{"exp": nil}), nil), NoExpiry},
		{"expired", k.Token(t, claims(map[string]any{"exp": testNow.Add(-time.Minute).Unix()}), nil), Expired},
		{"expired within leeway", k.Token(t, claims(map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()}), nil), NumReasons},
		{"nbf ahead", k.Token(t, claims(map[string]any{"nbf": testNow.Add(time.Minute).Unix()}), nil), NotYetValid},
		{"iat ahead", k.Token(t, claims(map[string]any{"iat": testNow.Add(time.Minute).Unix()}), nil), IssuedInFuture},
		{"aud number", k.Token(t, claims(map[string]any{"aud": 7}), nil), Malformed},
		{"aud object", k.Token(t, claims(map[string]any{"aud": map[string]any{"x": testRes}}), nil), Malformed},
		{"aud array", k.Token(t, claims(map[string]any{"aud": []any{"x", testRes}}), nil), NumReasons},
		{"aud array of numbers", k.Token(t, claims(map[string]any{"aud": []any{1, 2}}), nil), Malformed},
		{"iss array", k.Token(t, claims(map[string]any{"iss": []any{testIss}}), nil), Malformed},
		{"sub object", k.Token(t, claims(map[string]any{"sub": map[string]any{}}), nil), Malformed},
		{"wrong iss", k.Token(t, claims(map[string]any{"iss": "https://evil"}), nil), Issuer},
		{"wrong aud", k.Token(t, claims(map[string]any{"aud": "https://other"}), nil), Audience},
		{"unknown kid", k.Token(t, claims(nil), map[string]any{"kid": "nope"}), UnknownKey},
		{"kid number", k.Token(t, claims(nil), map[string]any{"kid": 7}), Malformed},
		{"crit", k.Token(t, claims(nil), map[string]any{"crit": []any{"exp"}}), Malformed},
		{"alg outside the list", rawToken(t, k, `{"alg":"ES512","kid":"k1"}`, `{}`), Algorithm},
		{"alg none", "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{}`)) + ".", Algorithm},
		{"typ dpop+jwt", k.Token(t, claims(nil), map[string]any{"typ": "dpop+jwt"}), OtherKind},
		{"typ application/logout+jwt", k.Token(t, claims(nil), map[string]any{"typ": "application/logout+jwt"}), OtherKind},
		{"typ SECEVENT+JWT", k.Token(t, claims(nil), map[string]any{"typ": "SECEVENT+JWT"}), OtherKind},
		{"typ oauth-id-jag+jwt", k.Token(t, claims(nil), map[string]any{"typ": "oauth-id-jag+jwt"}), OtherKind},
		{"typ with parameters", k.Token(t, claims(nil), map[string]any{"typ": "dpop+jwt; x=1"}), OtherKind},
		{"tampered", tamper(k.Token(t, claims(nil), nil)), Signature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), c.token, nil)
			if c.want == NumReasons {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.Issuer != testIss {
					t.Fatalf("issuer %q", id.Issuer)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason %v, want %v (%v)", got, c.want, err)
			}
		})
	}
}

// TestJWTConfirmation: a bound token verifies, and its cnf reaches the identity so that the
// caller can check the binding (or refuse a bound token presented as a bearer token).
func TestJWTConfirmation(t *testing.T) {
	v, k := newTestJWT(t)
	for name, tc := range map[string]struct {
		cnf  any
		want Confirmation
	}{
		"jkt":           {map[string]any{"jkt": "abc"}, Confirmation{Present: true, JKT: "abc"}},
		"x5t#S256":      {map[string]any{"x5t#S256": "xyz"}, Confirmation{Present: true, X5TS256: "xyz"}},
		"unknown shape": {"x", Confirmation{Present: true}},
		"null":          {json.RawMessage("null"), Confirmation{Present: true}},
		"absent":        {nil, Confirmation{}},
	} {
		id, err := v.Verify(context.Background(), k.Token(t, claims(map[string]any{"cnf": tc.cnf}), nil), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if id.Confirmation != tc.want {
			t.Errorf("%s: confirmation %+v, want %+v", name, id.Confirmation, tc.want)
		}
	}
}

func TestJWTUnavailable(t *testing.T) {
	v, k := newTestJWT(t)
	v.Keys = keysOf{}
	_, err := v.Verify(context.Background(), k.Token(t, claims(nil), nil), nil)
	if ReasonOf(err) != Unavailable || !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("got %v", err)
	}
}

func TestJWTRequireATJWT(t *testing.T) {
	v, k := newTestJWT(t)
	v.RequireATJWT = true
	for typ, want := range map[string]Reason{"at+jwt": NumReasons, "application/AT+JWT": NumReasons, "JWT": Type, "": Type} {
		hdr := map[string]any{"typ": typ}
		if typ == "" {
			hdr["typ"] = nil
		}
		_, err := v.Verify(context.Background(), k.Token(t, claims(nil), hdr), nil)
		if (want == NumReasons) != (err == nil) || (err != nil && ReasonOf(err) != want) {
			t.Errorf("typ %q: %v, want %v", typ, err, want)
		}
	}
}

func TestJWTIdentity(t *testing.T) {
	v, k := newTestJWT(t)
	tok := k.Token(t, claims(map[string]any{"client_id": nil, "azp": "web", "jti": "j1",
		"groups": []any{"a", "b"}, "scope": "mcp:read\u00a0mcp:admin mcp:write\tx  openid"}), nil)
	id, err := v.Verify(context.Background(), tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "alice" || id.ClientID != "web" || id.TokenID != "j1" {
		t.Fatalf("identity %+v", id)
	}
	if got := strings.Join(id.Scopes, ","); got != "openid" {
		t.Fatalf("scopes %q: only U+0020 separates and odd characters grant nothing", got)
	}
	if g, _ := id.Claim("groups"); len(g.([]any)) != 2 {
		t.Fatalf("claims %v", id.Claims())
	}
	if !id.StillValid(testNow, 0) || id.StillValid(testNow.Add(2*time.Hour), 0) {
		t.Fatal("validity does not follow exp")
	}
	v.Keys.(keysOf)["k1"].retired = true
	if id.StillValid(testNow, 0) {
		t.Fatal("valid after its key was withdrawn")
	}
}

func TestJWTScopeClaim(t *testing.T) {
	v, k := newTestJWT(t)
	tok := k.Token(t, claims(map[string]any{"scope": "a", "scp": []any{"b", "c d", 7}, "perms": "e f", "roles": []any{"f", "g"}}), nil)
	for claim, want := range map[string]string{"": "a", "scope": "a", "scp": "b", "perms": "e f", "scp roles": "b f g", "perms roles scope": "e f g a"} {
		v.ScopeClaims = strings.Fields(claim)
		id, err := v.Verify(context.Background(), tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(id.Scopes, " "); got != want {
			t.Errorf("scope_claim %q: %q, want %q", claim, got, want)
		}
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	_ = json.Unmarshal(p, &m)
	m["sub"] = "mallory"
	b, _ := json.Marshal(m)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// FuzzMembers: the member reader sees the same names and values as encoding/json.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":"x","b":[1,{"c":"]"}],"d":{"e":"}"}}`,
		`{ "a" : "b\"c" , "\u0061" : null }`, `{"aud":["x","y"],"exp":1.5e3}`, `[1]`, `"s"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var want map[string]json.RawMessage
		isObj := json.Unmarshal(data, &want) == nil
		got := map[string][]byte{}
		err := members(data, func(name string, v []byte) error {
			got[name] = v
			return nil
		})
		if !isObj {
			if err == nil && !(strings.TrimSpace(string(data)) == "null") {
				t.Fatalf("read a non-object as one: %q", data)
			}
			return
		}
		if strings.TrimSpace(string(data)) == "null" {
			return
		}
		if err != nil {
			// Names with invalid UTF-8 or lone surrogates are refused on purpose.
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d members, encoding/json %d", data, len(got), len(want))
		}
		for k, v := range want {
			if strings.TrimSpace(string(got[k])) != strings.TrimSpace(string(v)) {
				t.Fatalf("%q: member %q = %q, encoding/json %q", data, k, got[k], v)
			}
		}
	})
}
