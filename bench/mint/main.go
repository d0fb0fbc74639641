// Command mint makes a signing key, its JWKS, and access tokens for the load script.
//
//	go run ./bench/mint -dir /tmp/load -alg RS256 -n 1000
//
// writes dir/jwks.json and dir/tokens.txt (one token per line, each with its own jti).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

func main() {
	dir := flag.String("dir", ".", "output directory")
	alg := flag.String("alg", "RS256", "RS256, ES256 or EdDSA")
	n := flag.Int("n", 1, "number of distinct tokens")
	iss := flag.String("iss", "https://as.load.test", "issuer")
	aud := flag.String("aud", "https://mcp.load.test/mcp", "audience (the resource)")
	scope := flag.String("scope", "mcp:read", "granted scopes")
	flag.Parse()

	key, err := jwttest.Generate("load-1", *alg)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "jwks.json"), jwttest.JWKS(key), 0o644); err != nil {
		log.Fatal(err)
	}
	f, err := os.Create(filepath.Join(*dir, "tokens.txt"))
	if err != nil {
		log.Fatal(err)
	}
	out := bufio.NewWriter(f)
	now := time.Now()
	for i := range *n {
		s, err := key.Sign(jwt.MapClaims{
			"iss": *iss, "aud": *aud, "sub": "load-user", "client_id": "load",
			"scope": *scope, "jti": strconv.Itoa(i),
			"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(),
		}, nil)
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
