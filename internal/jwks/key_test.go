package jwks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestParse: every usable signing key of a set is kept, and every member that cannot verify a
// signature, or cannot be read, is skipped without taking the others down.
func TestParse(t *testing.T) {
	rsaKey, ecKey, edKey := jwttest.New(t, "rsa", "RS256"), jwttest.New(t, "ec", "ES256"), jwttest.New(t, "ed", "EdDSA")
	pt := must(must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)).PublicKey.Bytes())
	b64 := base64.RawURLEncoding.EncodeToString
	// with returns k's public JWK with these members changed (a nil value removes one).
	with := func(k *jwttest.Key, kv ...any) string {
		m := maps.Clone(k.JWK())
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name    string
		members []string
		kept    []string // kid/alg of the keys kept, in order
		skipped int
	}{
		{"one of each type", []string{with(rsaKey), with(ecKey), with(edKey)}, []string{"rsa/RS256", "ec/ES256", "ed/EdDSA"}, 0},
		{"no alg, no use, no kid", []string{with(rsaKey, "alg", nil, "use", nil, "kid", nil)}, []string{"/"}, 0},
		{"P-384 key", []string{`{"kty":"EC","crv":"P-384","kid":"p384","x":"` + b64(pt[1:49]) + `","y":"` + b64(pt[49:]) + `"}`}, []string{"p384/"}, 0},
		{"key_ops verify", []string{with(edKey, "key_ops", []string{"verify"})}, []string{"ed/EdDSA"}, 0},
		{"two keys under one kid", []string{with(rsaKey, "kid", "k"), with(ecKey, "kid", "k")}, []string{"k/RS256", "k/ES256"}, 0},
		{"encryption key skipped", []string{with(rsaKey, "use", "enc"), with(ecKey)}, []string{"ec/ES256"}, 1},
		{"unknown use skipped", []string{with(rsaKey, "use", "other"), with(ecKey)}, []string{"ec/ES256"}, 1},
		{"unknown key_ops skipped", []string{with(rsaKey, "key_ops", []string{"bogus"}), with(ecKey)}, []string{"ec/ES256"}, 1},
		{"symmetric key skipped", []string{`{"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0"}`, with(ecKey)}, []string{"ec/ES256"}, 1},
		{"unknown kty skipped", []string{`{"kty":"XYZ","kid":"x"}`, with(ecKey)}, []string{"ec/ES256"}, 1},
		{"unknown curve skipped", []string{with(ecKey, "crv", "P-999"), with(edKey, "crv", "X25519"), with(rsaKey)}, []string{"rsa/RS256"}, 2},
		{"point off the curve skipped", []string{with(ecKey, "y", ecKey.JWK()["x"]), with(rsaKey)}, []string{"rsa/RS256"}, 1},
		{"missing member skipped", []string{with(rsaKey, "e", nil), with(ecKey, "y", nil), with(edKey)}, []string{"ed/EdDSA"}, 2},
		{"bad base64 skipped", []string{with(rsaKey, "n", "!!!"), with(edKey)}, []string{"ed/EdDSA"}, 1},
		{"mistyped member skipped", []string{with(rsaKey, "kid", 7), with(edKey, "key_ops", "verify"), with(ecKey)}, []string{"ec/ES256"}, 2},
		{"non-object members skipped", []string{`1`, `"x"`, `null`, `[]`, `{}`, with(ecKey)}, []string{"ec/ES256"}, 5},
		{"unknown alg kept, matches nothing", []string{with(rsaKey, "alg", "XYZ")}, []string{"rsa/XYZ"}, 0},
		{"empty set", nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, skipped, err := Parse([]byte(`{"keys":[` + strings.Join(tt.members, ",") + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, k := range s.all {
				kept = append(kept, k.kid+"/"+k.alg)
				if !slices.Contains(s.byKID[k.kid], k) {
					t.Errorf("key %s not indexed by its kid", k.kid)
				}
			}
			if !slices.Equal(kept, tt.kept) || skipped != tt.skipped {
				t.Errorf("kept %q, skipped %d; want %q, %d", kept, skipped, tt.kept, tt.skipped)
			}
		})
	}
	// A private JWK is reduced to its public half.
	priv := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	ppt := must(priv.PublicKey.Bytes())
	s, _, err := Parse([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"` + b64(ppt[1:33]) + `","y":"` + b64(ppt[33:]) + `","d":"` + b64(must(priv.Bytes())) + `"}]}`))
	if err != nil || s.Len() != 1 || !priv.PublicKey.Equal(s.all[0].Public()) {
		t.Errorf("private JWK: %v, %d keys", err, s.Len())
	}

	for _, bad := range []string{``, `x`, `[]`, `null`, `{}`, `{"keys":null}`, `{"keys":1}`, `{"keys":{}}`} {
		if _, _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

// TestUsableFor: a key is offered only to the algorithms of its type and curve, and only to
// its own alg when the JWK names one, so that no key reaches a verification method of another
// family (RSA for HMAC, an EC key for the wrong curve).
func TestUsableFor(t *testing.T) {
	rsaKey, ecKey, edKey := jwttest.New(t, "rsa", "RS256"), jwttest.New(t, "ec", "ES256"), jwttest.New(t, "ed", "EdDSA")
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	p521 := must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))
	algs := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "none", ""}
	tests := []struct {
		name string
		key  *Key
		want []string
	}{
		{"RSA without alg", &Key{pub: rsaKey.Signer.Public()}, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
		{"RSA with alg PS256", &Key{pub: rsaKey.Signer.Public(), alg: "PS256"}, []string{"PS256"}},
		{"RSA with alg HS256", &Key{pub: rsaKey.Signer.Public(), alg: "HS256"}, nil},
		{"P-256", &Key{pub: ecKey.Signer.Public()}, []string{"ES256"}},
		{"P-256 with alg ES384", &Key{pub: ecKey.Signer.Public(), alg: "ES384"}, nil},
		{"P-384", &Key{pub: &p384.PublicKey}, []string{"ES384"}},
		{"P-521", &Key{pub: &p521.PublicKey}, []string{"ES512"}},
		{"Ed25519", &Key{pub: edKey.Signer.Public()}, []string{"EdDSA"}},
		{"Ed25519 with alg ES256", &Key{pub: edKey.Signer.Public(), alg: "ES256"}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, alg := range algs {
			if tt.key.usableFor(alg) {
				got = append(got, alg)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: usable for %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestCarryOver: a refresh keeps the *Key of a key still listed (same kid, alg and key), so
// tokens it verified stay valid in a cache; a key that left, or changed under its kid,
// reports Retired.
func TestCarryOver(t *testing.T) {
	a, b, c := jwttest.New(t, "a", "ES256"), jwttest.New(t, "b", "ES256"), jwttest.New(t, "c", "ES256")
	bAgain := jwttest.New(t, "b", "ES256") // another key under b's kid
	parse := func(keys ...*jwttest.Key) *Set {
		s, _, err := Parse(jwttest.JWKS(keys...))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := parse(a, b)
	next := carryOver(old, parse(a, bAgain, c))
	if next.byKID["a"][0] != old.byKID["a"][0] || old.byKID["a"][0].Retired() {
		t.Error("key a, still listed, was not carried over")
	}
	if !old.byKID["b"][0].Retired() || next.byKID["b"][0] == old.byKID["b"][0] {
		t.Error("key b, replaced under its kid, is not retired")
	}
	if next.Len() != 3 || next.byKID["c"][0].Retired() {
		t.Error("new key c missing or retired")
	}
}

// must is for test setup that cannot fail (key generation, encoding a generated key).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
