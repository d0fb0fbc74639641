// Command token is the demo's stand-in authorization server. With -init (run.sh does this) it
// creates an ES256 signing key in the state directory and writes the public JWKS that Caddy
// reads (jwks_file). Without -init it prints a signed access token, and nothing else, on
// stdout:
//
//	TOKEN=$(go run ./examples/demo/token -scope mcp:read)
//
// It signs only with the key the demo's Caddy trusts: without -state it looks for
// examples/demo/.demo in the current directory and each directory above it, and when there is
// no key it says where it looked instead of making a new one (whose tokens would all get 401).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/examples/demo/internal/demo"
)

// defaultState is the state directory relative to the repository root, as run.sh uses it.
const defaultState = "examples/demo/.demo"

func main() {
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
	os.Exit(run(os.Args[1:], os.Getenv("MCP_DEMO_STATE"), cwd, os.Stdout, os.Stderr))
}

func run(args []string, envState, cwd string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("token", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		state    = fl.String("state", "", "state directory holding the signing key and JWKS (env MCP_DEMO_STATE; default: "+defaultState+" in this directory or the nearest one above)")
		initOnly = fl.Bool("init", false, "create the signing key (once) and write the JWKS; print no token")
		scope    = fl.String("scope", demo.Scope, "space-separated scopes to grant (empty: no scope claim)")
		aud      = fl.String("aud", demo.Resource, "audience (aud): the resource the token is for")
		iss      = fl.String("iss", demo.Issuer, "issuer (iss)")
		sub      = fl.String("sub", "demo-user", "subject (sub)")
		clientID = fl.String("client-id", "demo-client", "client_id")
		ttl      = fl.Duration("ttl", time.Hour, "lifetime; a negative value mints an expired token")
	)
	if err := fl.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "token:", err)
		return 1
	}
	if fl.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fl.Arg(0)))
	}
	if *state == "" {
		*state = envState
	}

	if *initOnly {
		dir := *state
		if dir == "" {
			dir = filepath.Join(cwd, defaultState)
		}
		if _, err := demo.LoadOrCreateKey(dir); err != nil {
			return fail(err)
		}
		return 0
	}

	key, err := findKey(*state, cwd)
	if err != nil {
		return fail(err)
	}
	tok, err := key.Mint(demo.TokenOptions{
		Issuer: *iss, Audience: *aud, Subject: *sub, ClientID: *clientID,
		Scope: *scope, Lifetime: *ttl,
	})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// findKey loads the demo's signing key from state, or, when state is empty, from
// examples/demo/.demo under cwd or the nearest directory above it that has one.
func findKey(state, cwd string) (*demo.Key, error) {
	var looked []string
	if state != "" {
		if !filepath.IsAbs(state) {
			state = filepath.Join(cwd, state)
		}
		looked = []string{state}
	} else {
		for dir := cwd; ; dir = filepath.Dir(dir) {
			looked = append(looked, filepath.Join(dir, defaultState))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	for _, dir := range looked {
		key, err := demo.LoadKey(dir)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no demo signing key (%s) in %s; start the demo with ./examples/demo/run.sh (it creates the key), "+
		"run this from the repository root, or pass -state DIR (env MCP_DEMO_STATE)",
		demo.KeyFile, strings.Join(looked, ", "))
}
