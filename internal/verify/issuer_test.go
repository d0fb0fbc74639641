package verify

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

const (
	tenantTmpl = "https://login.example.com/{tenantid}/v2.0"
	tenantA    = "https://login.example.com/t-1/v2.0"
	tenantB    = "https://login.example.com/t-2/v2.0"
)

// tenantAnswer is an active answer with the members given as written (iss, tid).
func tenantAnswer(members string) string {
	s := fmt.Sprintf(`{"active":true,"aud":%q,"sub":"alice","client_id":"app","scope":"mcp:read","exp":%d`,
		testRes, testNow.Add(time.Hour).Unix())
	if members != "" {
		s += "," + members
	}
	return s + "}"
}

// TestIntrospectionTenantIssuer: an answer's iss and tid are judged as a JWT's are; the
// identity carries the tenant's own issuer.
func TestIntrospectionTenantIssuer(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	v.Issuers = []string{tenantTmpl}
	v.Tenants = []string{"t-1", "t-2"}
	mustStart(t, v)
	for i, tc := range []struct {
		name, members string
		want          Reason // NumReasons: accepted, with Issuer == iss
		iss           string
	}{
		{"tenant iss and tid", `"iss":"` + tenantA + `","tid":"t-1"`, NumReasons, tenantA},
		{"other listed tenant", `"iss":"` + tenantB + `","tid":"t-2"`, NumReasons, tenantB},
		{"no iss", `"tid":"t-1"`, Issuer, ""},
		{"no iss, no tid", ``, Issuer, ""},
		{"empty iss", `"iss":"","tid":"t-1"`, Issuer, ""},
		{"template as written", `"iss":"` + tenantTmpl + `","tid":"t-1"`, Issuer, ""},
		{"no tid", `"iss":"` + tenantA + `"`, Issuer, ""},
		{"tid of another tenant", `"iss":"` + tenantB + `","tid":"t-1"`, Issuer, ""},
		{"tenant not listed", `"iss":"https://login.example.com/t-3/v2.0","tid":"t-3"`, Issuer, ""},
		{"tid reshaping the URL", `"iss":"https://login.example.com/t-1/x/v2.0","tid":"t-1/x"`, Issuer, ""},
		{"tid an array", `"iss":"` + tenantA + `","tid":["t-1"]`, BadAnswer, ""},
		{"tid twice", `"iss":"` + tenantA + `","tid":"t-3","tid":"t-1"`, BadAnswer, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := fmt.Sprintf("tenant-%d", i)
			as.answer(tok, tenantAnswer(tc.members))
			id, err := v.Verify(context.Background(), tok, nil)
			if tc.want == NumReasons {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.Issuer != tc.iss {
					t.Errorf("Issuer %q, want %q", id.Issuer, tc.iss)
				}
				return
			}
			if ReasonOf(err) != tc.want {
				t.Errorf("error %v, want %s", err, tc.want)
			}
		})
	}
}

// TestIntrospectionIssuerWithoutTemplate: with plain issuers an answer without iss is still
// the one issuer's; a literal "{tenantid}" in an answer's iss matches nothing.
func TestIntrospectionIssuerWithoutTemplate(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	mustStart(t, v)
	as.answer("no-iss", tenantAnswer(``))
	if id, err := v.Verify(context.Background(), "no-iss", nil); err != nil || id.Issuer != testIss {
		t.Errorf("answer without iss: %v %v, want the one issuer", id, err)
	}
	as.answer("braces", tenantAnswer(`"iss":"`+testIss+`/{tenantid}","tid":"t-1"`))
	if _, err := v.Verify(context.Background(), "braces", nil); ReasonOf(err) != Issuer {
		t.Errorf("iss with {tenantid}: %v", err)
	}
}

// TestRecheckIssuer (jwt_too): the answer about a JWT that verified locally names the token's
// own issuer, or, with plain issuers only, none.
func TestRecheckIssuer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		issuers  []string
		tokenIss string
		members  string
		ok       bool
	}{
		{"same tenant", []string{tenantTmpl}, tenantA, `"iss":"` + tenantA + `","tid":"t-1"`, true},
		{"no iss, template", []string{tenantTmpl}, tenantA, `"tid":"t-1"`, false},
		{"other tenant", []string{tenantTmpl}, tenantA, `"iss":"` + tenantB + `","tid":"t-2"`, false},
		{"template as written", []string{tenantTmpl}, tenantA, `"iss":"` + tenantTmpl + `","tid":"t-1"`, false},
		{"no tid", []string{tenantTmpl}, tenantA, `"iss":"` + tenantA + `"`, false},
		{"plain issuer, same", []string{testIss}, testIss, `"iss":"` + testIss + `"`, true},
		{"plain issuer, none", []string{testIss}, testIss, ``, true},
		{"plain issuers, the other accepted one", []string{testIss, "https://other.example.com"}, testIss, `"iss":"https://other.example.com"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := newFakeAS(t, AuthClientSecretBasic)
			v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
			v.Issuers = tc.issuers
			mustStart(t, v)
			as.answer("jwt", tenantAnswer(tc.members))
			local := &Identity{Issuer: tc.tokenIss, Subject: "alice", Expiry: testNow.Add(time.Hour)}
			id, err := v.Recheck(context.Background(), "jwt", local)
			if tc.ok != (err == nil) {
				t.Fatalf("error %v, want ok=%v", err, tc.ok)
			}
			if err != nil && ReasonOf(err) != Issuer {
				t.Errorf("error %v, want an issuer refusal", err)
			}
			if err == nil && id.Issuer != tc.tokenIss {
				t.Errorf("Issuer %q, want the token's %q", id.Issuer, tc.tokenIss)
			}
		})
	}
}

// TestDuplicateDecidingMembers: cnf.jkt, cnf.x5t#S256 and every configured scope claim may
// appear once, in a JWT and in an introspection answer, whatever the order or spelling.
func TestDuplicateDecidingMembers(t *testing.T) {
	v, k := newTestJWT(t)
	v.ScopeClaims = []string{"perms", "roles"}
	as := newFakeAS(t, AuthClientSecretBasic)
	iv := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	iv.ScopeClaims = v.ScopeClaims
	mustStart(t, iv)
	hdr := `{"alg":"ES256","kid":"k1","typ":"at+jwt"}`
	base := fmt.Sprintf(`"iss":%q,"aud":%q,"sub":"alice","exp":%d`, testIss, testRes, testNow.Add(time.Hour).Unix())
	for i, tc := range []struct {
		name, members string
		ok            bool
		scopes        string
		jkt, x5t      string
	}{
		{"one of each", `"perms":"a","roles":["b"],"cnf":{"jkt":"K","x5t#S256":"X"}`, true, "a b", "K", "X"},
		{"union without repeats", `"perms":"a b","roles":["b","a","c"]`, true, "a b c", "", ""},
		{"jkt twice", `"cnf":{"jkt":"K","jkt":"L"}`, false, "", "", ""},
		{"jkt twice, escaped", `"cnf":{"jkt":"K","\u006akt":"L"}`, false, "", "", ""},
		{"jkt twice, one a number", `"cnf":{"jkt":1,"jkt":"L"}`, false, "", "", ""},
		{"x5t#S256 twice", `"cnf":{"x5t#S256":"X","x5t#S256":"Y"}`, false, "", "", ""},
		{"other cnf members twice are not judged", `"cnf":{"jwk":1,"jwk":2,"jkt":"K"}`, true, "", "K", ""},
		{"perms twice", `"perms":"none","perms":"a"`, false, "", "", ""},
		{"roles twice", `"roles":["a"],"roles":[]`, false, "", "", ""},
		{"roles twice, escaped", `"roles":["a"],"rol\u0065s":["b"]`, false, "", "", ""},
		{"unconfigured claim twice is not judged", `"perms":"a","groups":1,"groups":2`, true, "a", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(kind string, id *Identity, err error, refused Reason) {
				t.Helper()
				if !tc.ok {
					if ReasonOf(err) != refused {
						t.Errorf("%s: %v, want %s", kind, err, refused)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s: %v", kind, err)
				}
				if got := strings.Join(id.Scopes, " "); got != tc.scopes {
					t.Errorf("%s: scopes %q, want %q", kind, got, tc.scopes)
				}
				if id.Confirmation.JKT != tc.jkt || id.Confirmation.X5TS256 != tc.x5t {
					t.Errorf("%s: cnf %+v", kind, id.Confirmation)
				}
			}
			id, err := v.Verify(context.Background(), rawToken(t, k, hdr, "{"+base+","+tc.members+"}"), nil)
			check("jwt", id, err, Malformed)
			tok := fmt.Sprintf("dup-%d", i)
			as.answer(tok, `{"active":true,`+base+`,`+tc.members+`}`)
			id, err = iv.Verify(context.Background(), tok, nil)
			check("introspection", id, err, BadAnswer)
		})
	}
}
