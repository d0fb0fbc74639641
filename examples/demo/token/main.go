// Command token is the demo's stand-in authorization server. On first use it creates an ES256
// signing key in the state directory and writes the public JWKS that Caddy reads
// (jwks_file); then it prints a signed access token, and nothing else, on stdout:
//
//	TOKEN=$(go run ./examples/demo/token -scope mcp:read)
//
// With -init it only creates the key and the JWKS.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/examples/demo/internal/demo"
)

func main() {
	var (
		state    = flag.String("state", envOr("MCP_DEMO_STATE", "examples/demo/.demo"), "state directory holding the signing key and JWKS (env MCP_DEMO_STATE)")
		initOnly = flag.Bool("init", false, "only create the signing key and JWKS, print no token")
		scope    = flag.String("scope", demo.Scope, "space-separated scopes to grant (empty: no scope claim)")
		aud      = flag.String("aud", demo.Resource, "audience (aud): the resource the token is for")
		iss      = flag.String("iss", demo.Issuer, "issuer (iss)")
		sub      = flag.String("sub", "demo-user", "subject (sub)")
		clientID = flag.String("client-id", "demo-client", "client_id")
		ttl      = flag.Duration("ttl", time.Hour, "lifetime; a negative value mints an expired token")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}

	key, err := demo.LoadOrCreateKey(*state)
	if err != nil {
		fail(err)
	}
	if *initOnly {
		return
	}
	tok, err := key.Mint(demo.TokenOptions{
		Issuer: *iss, Audience: *aud, Subject: *sub, ClientID: *clientID,
		Scope: *scope, Lifetime: *ttl,
	})
	if err != nil {
		fail(err)
	}
	fmt.Println(tok)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "token:", err)
	os.Exit(1)
}
