package integration

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAttackIntrospection: what a caller can do against an introspecting resource. Made-up
// tokens in bulk reach the authorization server at most max_in_flight at a time and are
// never let through; answers the authorization server gets wrong are refused; tokens that
// differ from a valid one in any byte are other tokens.
func TestAttackIntrospection(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	f := newFixture(t, nil)
	as := newIntrospectionAS(t, f.ecKey)
	// Few slots and a short timeout, so that a flood shows the bound.
	f.start(t, f.siteCaddyfile(introspected(resource, as.issuer, "", "max_in_flight 2\ntimeout 500ms"),
		`respond "{http.auth.user.id}"`), "caddyfile")
	const good = "Zk3vQ9mB7nR4tL1pW8sZ3yH6cF0jD5gA"
	as.issue(good, resource, "mcp:read", nil)
	if code, _, body := f.do(t, bearerReq(good)); code != http.StatusOK || string(body) != "opaque-user" {
		t.Fatalf("valid opaque token: %d %q", code, body)
	}

	t.Run("near_misses", func(t *testing.T) {
		for _, tok := range []string{
			strings.ToLower(good), good + "=", good[:len(good)-1], "x" + good, good + ".", good + "A",
		} {
			code, _, _ := f.do(t, bearerReq(tok))
			if code != http.StatusUnauthorized {
				t.Errorf("token differing from a valid one: status %d, want 401", code)
			}
		}
		// A cache key spelled as a token is not a b64token (':' is not allowed).
		if code, _, _ := f.do(t, bearerReq("sha256:"+good)); code != http.StatusBadRequest {
			t.Errorf("cache-key-shaped token: status %d, want 400", code)
		}
	})

	// A token the authorization server calls active but shaped as a JWS (three base64url
	// parts, a JSON object first) is verified locally, as every JWS is, and fails there: its
	// shape never lets a string skip a check.
	t.Run("jws_shaped_opaque_token", func(t *testing.T) {
		enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
		for _, tok := range []string{
			enc(`{"alg":"none"}`) + "." + enc(`{"sub":"x"}`) + ".c2ln",
			enc(` {"alg":"ES256","kid":"ec-1"}`) + "." + enc(`{"sub":"x"}`) + ".c2ln", // no leading 'e'
		} {
			as.issue(tok, resource, "mcp:read", nil)
			before := as.calls.Load()
			if code, _, _ := f.do(t, bearerReq(tok)); code != http.StatusUnauthorized {
				t.Errorf("JWS-shaped token the authorization server knows: status %d, want 401", code)
			}
			if n := as.calls.Load() - before; n != 0 {
				t.Errorf("JWS-shaped token introspected %d times", n)
			}
		}
	})

	t.Run("bad_answers", func(t *testing.T) {
		exp := time.Now().Add(time.Hour).Unix()
		for name, ans := range map[string]string{
			"active as a string": `{"active":"true","aud":"` + resource + `","scope":"mcp:read"}`,
			"exp as a string":    fmt.Sprintf(`{"active":true,"aud":%q,"scope":"mcp:read","exp":"%d"}`, resource, exp),
			"active twice":       `{"active":false,"active":true,"aud":"` + resource + `","scope":"mcp:read"}`,
			"not JSON":           `active=true`,
			"over 64 KiB":        `{"active":true,"aud":"` + resource + `","scope":"mcp:read","pad":"` + strings.Repeat("x", 64<<10) + `"}`,
			"refresh token":      fmt.Sprintf(`{"active":true,"aud":%q,"scope":"mcp:read","token_type":"refresh_token","exp":%d}`, resource, exp),
			"no audience":        fmt.Sprintf(`{"active":true,"scope":"mcp:read","exp":%d}`, exp),
			"other issuer":       fmt.Sprintf(`{"active":true,"iss":"https://evil.example","aud":%q,"scope":"mcp:read","exp":%d}`, resource, exp),
			"expired":            fmt.Sprintf(`{"active":true,"aud":%q,"scope":"mcp:read","exp":%d}`, resource, time.Now().Add(-time.Hour).Unix()),
			// RFC 9449 §6.2: a DPoP-bound token is described with token_type DPoP and cnf.jkt;
			// without cnf the key is unknown, so the token cannot pass as a bearer token.
			"DPoP token without cnf": fmt.Sprintf(`{"active":true,"aud":%q,"scope":"mcp:read","token_type":"DPoP","exp":%d}`, resource, exp),
		} {
			tok := "bad-answer-" + strings.ReplaceAll(name, " ", "-")
			as.mu.Lock()
			as.raw[tok] = ans
			as.mu.Unlock()
			if code, _, body := f.do(t, bearerReq(tok)); code != http.StatusUnauthorized {
				t.Errorf("%s: status %d body %q, want 401", name, code, body)
			}
		}
	})

	t.Run("flood_of_made_up_tokens", func(t *testing.T) {
		as.delay.Store(int64(20 * time.Millisecond))
		defer as.delay.Store(0)
		before := as.calls.Load()
		as.peak.Store(0)
		const n = 2000
		var wg sync.WaitGroup
		var ok, unauthorized, unavailable, other atomic.Int64
		sem := make(chan struct{}, 200) // client-side concurrency: the test's own sockets
		start := time.Now()
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				code, hdr, _, err := f.try(bearerReq(fmt.Sprintf("made-up-%06d", i)))
				if err != nil {
					other.Add(1)
					return
				}
				switch code {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusUnauthorized:
					unauthorized.Add(1)
				case http.StatusServiceUnavailable:
					if hdr.Get("Retry-After") == "" {
						other.Add(1)
					}
					unavailable.Add(1)
				default:
					other.Add(1)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		calls := as.calls.Load() - before
		t.Logf("%d made-up tokens in %s: %d calls at the authorization server (peak %d at once), %d × 401, %d × 503",
			n, elapsed.Round(time.Millisecond), calls, as.peak.Load(), unauthorized.Load(), unavailable.Load())
		if ok.Load() != 0 || other.Load() != 0 {
			t.Errorf("%d made-up tokens let through, %d other answers", ok.Load(), other.Load())
		}
		if p := as.peak.Load(); p > 2 {
			t.Errorf("%d calls at once at the authorization server, max_in_flight is 2", p)
		}
		if limit := 2 * (int64(elapsed/(20*time.Millisecond)) + 1); calls > limit {
			t.Errorf("%d calls in %s, more than max_in_flight allows (%d)", calls, elapsed, limit)
		}
		// Real tokens are still served after the flood.
		if code, _, _ := f.do(t, bearerReq(good)); code != http.StatusOK {
			t.Errorf("valid token after the flood: status %d", code)
		}
	})
}
