package integration

import (
	"fmt"
	"net/http"
	"testing"
)

// The red team's review of issue 18 as merged: attacks on the introspection flood limits,
// the answers shared across reloads, and the DPoP origin, each through a real Caddy.

// rateCaddyfile is floodCaddyfile with a small max_rate, so that a test drains the total
// bucket with a few requests; X-Forwarded-For from the loopback speaks for the client.
const rateCaddyfile = `
{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	servers {
		trusted_proxies static 127.0.0.0/8
	}
}

:9080 {
	mcp_auth {
		resource https://mcp.example.com/mcp
		authorization_servers @ISSUER@
		scopes mcp:read
		introspection {
			endpoint @ISSUER@/introspect
			client_id mcp-rs
			client_secret {env.MCP_ITEST_RS_SECRET}
			max_rate 4
		}
	}
	respond "ok {http.auth.user.id}"
}
`

// TestAttackFloodFromFreshIPv6Prefixes: fresh IPv6 /64s are free (a tunnel broker routes a
// /48, 65,536 of them, to anyone), so an attacker can spend each /64 on one made-up token
// before it is marked suspect. Every token then comes from a "clean" address and takes from
// the lower half of the total rate, which is kept for real tokens: the half is drained, and
// a real token's first request from elsewhere gets 503. Once two /64s of a /48 are suspect,
// the /48 is: its other /64s may use only the upper half, and the real token is served.
func TestAttackFloodFromFreshIPv6Prefixes(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	as.delay.Store(1) // made-up tokens are answered inactive at once, not held
	startCaddy(t, render(rateCaddyfile, map[string]string{"ISSUER": as.URL}), "caddyfile")

	// The flood goes on until the resource sheds it (the rate it may use is drained).
	shed := false
	for i := range 200 {
		from := fmt.Sprintf("2001:db8:77:%x::1", i+1) // a fresh /64 of one /48 each time
		code, retry, _ := floodSend(http.DefaultClient, randomToken(), from)
		if code == http.StatusServiceUnavailable {
			if retry == "" {
				t.Fatal("503 without Retry-After")
			}
			shed = true
			break
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("made-up token %d: status %d, want 401 or 503", i, code)
		}
	}
	if !shed {
		t.Fatal("200 made-up tokens from one /48 were never shed")
	}
	// The real token's first request, from an address that never sent a made-up token.
	code, _, body := floodSend(http.DefaultClient, real, "192.0.2.80")
	if code != http.StatusOK || body != "ok real-user" {
		t.Fatalf("real token during the flood: %d %q, want 200: the flood from one /48 drained the rate kept for real tokens", code, body)
	}
}
