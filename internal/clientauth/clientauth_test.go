package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestNewRequest(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		method string
		check  func(t *testing.T, auth string, form url.Values)
	}{
		{"", func(t *testing.T, auth string, form url.Values) {
			// RFC 6749 §2.3.1: form-urlencoded, then base64.
			want := "Basic " + base64.StdEncoding.EncodeToString([]byte("gw%3Aid:s%26e+c%3Ar")) // "gw:id" and "s&e c:r"
			if auth != want || form.Has("client_secret") || form.Has("client_id") {
				t.Fatalf("basic: Authorization %q, form %v", auth, form)
			}
		}},
		{ClientSecretPost, func(t *testing.T, auth string, form url.Values) {
			if auth != "" || form.Get("client_id") != "gw:id" || form.Get("client_secret") != "s&e c:r" {
				t.Fatalf("post: Authorization %q, form %v", auth, form)
			}
		}},
		{PrivateKeyJWT, func(t *testing.T, auth string, form url.Values) {
			if auth != "" || form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || form.Has("client_secret") {
				t.Fatalf("private_key_jwt: Authorization %q, form %v", auth, form)
			}
			tok, err := jwt.Parse(form.Get("client_assertion"), func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
				jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithAudience("https://as.example"),
				jwt.WithIssuer("gw:id"), jwt.WithSubject("gw:id"), jwt.WithValidMethods([]string{"ES256"}))
			if err != nil {
				t.Fatalf("assertion: %v", err)
			}
			exp, _ := tok.Claims.GetExpirationTime()
			if jti, _ := tok.Claims.(jwt.MapClaims)["jti"].(string); jti == "" || !exp.Equal(now.Add(time.Minute)) {
				t.Fatalf("assertion claims %v", tok.Claims)
			}
		}},
	}
	for _, tc := range cases {
		c := Credentials{ClientID: "gw:id", ClientSecret: "s&e c:r", Method: tc.method, AssertionAudience: "https://as.example", Now: func() time.Time { return now }}
		if tc.method == PrivateKeyJWT {
			c.ClientSecret, c.PrivateKey = "", key
		}
		req, err := c.NewRequest(context.Background(), "https://as.example/token", url.Values{"grant_type": {"x"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(b))
		if req.Method != "POST" || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || form.Get("grant_type") != "x" {
			t.Fatalf("%s: %s %q %v", tc.method, req.Method, req.Header.Get("Content-Type"), form)
		}
		tc.check(t, req.Header.Get("Authorization"), form)
	}
}
