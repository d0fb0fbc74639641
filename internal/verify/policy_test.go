package verify

import (
	"context"
	"errors"
	"testing"
)

// issuerKeys serves one key to any issuer and records which issuer keys were asked for.
type issuerKeys struct {
	k     *staticKey
	asked string
}

func (ks *issuerKeys) Lookup(_ context.Context, iss, _, _ string, buf []VerificationKey) ([]VerificationKey, error) {
	ks.asked = iss
	return append(buf, ks.k), nil
}

func TestTenantIssuer(t *testing.T) {
	v, k := newTestJWT(t)
	const tmpl = "https://login.example.com/{tenantid}/v2.0"
	keys := &issuerKeys{k: &staticKey{pub: k.Signer.Public()}}
	v.Keys = keys
	v.Issuers = []string{testIss, tmpl}
	v.Tenants = []string{"t-1", "t-2"}
	for _, tc := range []struct {
		name     string
		iss, tid any
		ok       bool
	}{
		{"plain issuer", testIss, nil, true},
		{"tenant put in", "https://login.example.com/t-1/v2.0", "t-1", true},
		{"other listed tenant", "https://login.example.com/t-2/v2.0", "t-2", true},
		{"tenant not listed", "https://login.example.com/t-3/v2.0", "t-3", false},
		{"tid differs from iss", "https://login.example.com/t-2/v2.0", "t-1", false},
		{"no tid", "https://login.example.com/t-1/v2.0", nil, false},
		{"tid not a string", "https://login.example.com/1/v2.0", 1, false},
		{"template as written", tmpl, "t-1", false},
		{"tid with a slash", "https://login.example.com/t-1/x/v2.0", "t-1/x", false},
		{"empty tid", "https://login.example.com//v2.0", "", false},
		{"suffix missing", "https://login.example.com/t-1", "t-1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claims(map[string]any{"iss": tc.iss, "tid": tc.tid})
			_, err := v.Verify(context.Background(), k.Token(t, c, nil), nil)
			if tc.ok != (err == nil) {
				t.Fatalf("error %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && tc.tid != nil && keys.asked != tmpl {
				t.Errorf("keys looked up for %q, want the template", keys.asked)
			}
		})
	}
}

func TestAllowMissingAudience(t *testing.T) {
	v, k := newTestJWT(t)
	v.AllowMissingAudience = func(client string) bool { return client == "cognito" }
	for _, tc := range []struct {
		name string
		over map[string]any
		ok   bool
	}{
		{"no aud, listed client", map[string]any{"aud": nil, "client_id": "cognito"}, true},
		{"no aud, listed client as azp", map[string]any{"aud": nil, "client_id": nil, "azp": "cognito"}, true},
		{"no aud, other client", map[string]any{"aud": nil}, false},
		{"wrong aud, listed client", map[string]any{"aud": "https://other.example.com", "client_id": "cognito"}, false},
		{"empty aud array, listed client", map[string]any{"aud": []any{}, "client_id": "cognito"}, false},
		{"right aud, any client", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), k.Token(t, claims(tc.over), nil), nil)
			if tc.ok != (err == nil) {
				t.Fatalf("error %v, want ok=%v", err, tc.ok)
			}
			var ve *Error
			if err != nil && (!errors.As(err, &ve) || ve.Reason != Audience) {
				t.Errorf("error %v, want an audience failure", err)
			}
		})
	}
}

func TestClaimAtDuplicates(t *testing.T) {
	p, _ := NewClaimPath("a.b")
	for _, tc := range []struct {
		payload       string
		ok, ambiguous bool
	}{
		{`{"a":{"b":"x"}}`, true, false},
		{`{"a":{"b":"x","b":"y"}}`, false, true},
		{`{"a":{"b":"x"},"a":{"b":"x"}}`, false, true},
		{`{"a":{"b":"x"},"c":1,"c":2}`, true, false},
		{`{"a":{"b":"x"},"a.b":"y"}`, true, false},
		{`{"a":{"c":"x"}}`, false, false},
	} {
		id := Identity{}.WithClaims([]byte(tc.payload))
		_, ok, amb := id.ClaimAt(p)
		if ok != tc.ok || amb != tc.ambiguous {
			t.Errorf("%s: ok=%v ambiguous=%v, want %v %v", tc.payload, ok, amb, tc.ok, tc.ambiguous)
		}
	}
}
