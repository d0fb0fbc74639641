// Command mint makes a signing key, its JWKS, and access tokens for the load script.
//
//	go run ./bench/mint -dir /tmp/load -alg RS256 -n 1000
//
// writes dir/jwks.json and dir/tokens.txt (one token per line, each with its own jti).
package main

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	dir := flag.String("dir", ".", "output directory")
	alg := flag.String("alg", "RS256", "RS256, ES256 or EdDSA")
	n := flag.Int("n", 1, "number of distinct tokens")
	iss := flag.String("iss", "https://as.load.test", "issuer")
	aud := flag.String("aud", "https://mcp.load.test/mcp", "audience (the resource)")
	scope := flag.String("scope", "mcp:read", "granted scopes")
	flag.Parse()

	signer, jwk := newKey(*alg)
	jwk["kid"], jwk["alg"], jwk["use"] = "load-1", *alg, "sig"
	set, _ := json.Marshal(map[string]any{"keys": []any{jwk}})
	if err := os.WriteFile(filepath.Join(*dir, "jwks.json"), set, 0o644); err != nil {
		log.Fatal(err)
	}
	f, err := os.Create(filepath.Join(*dir, "tokens.txt"))
	if err != nil {
		log.Fatal(err)
	}
	out := bufio.NewWriter(f)
	now := time.Now()
	for i := range *n {
		tok := jwt.NewWithClaims(jwt.GetSigningMethod(*alg), jwt.MapClaims{
			"iss": *iss, "aud": *aud, "sub": "load-user", "client_id": "load",
			"scope": *scope, "jti": strconv.Itoa(i),
			"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
		})
		tok.Header["kid"], tok.Header["typ"] = "load-1", "at+jwt"
		s, err := tok.SignedString(signer)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintln(out, s)
	}
	if err := out.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newKey(alg string) (crypto.Signer, map[string]any) {
	switch alg {
	case "RS256":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			log.Fatal(err)
		}
		return k, map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			log.Fatal(err)
		}
		return k, map[string]any{"kty": "EC", "crv": "P-256",
			"x": b64(k.X.FillBytes(make([]byte, 32))), "y": b64(k.Y.FillBytes(make([]byte, 32)))}
	case "EdDSA":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			log.Fatal(err)
		}
		return k, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}
	}
	log.Fatalf("unknown alg %q", alg)
	return nil, nil
}
