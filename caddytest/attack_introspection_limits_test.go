package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Attacks on introspection's limits and its shared answers, each through a real Caddy: the
// flood bounds per client address (fresh IPv6 prefixes, spoofed X-Forwarded-For), token
// shapes, and answers shared across reloads and sites. (Found by the review of issue 18; the
// preflight attack is in upgrade_test.go, the DPoP port one in attack_dpop_test.go.)

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
	// floodConfig with a small max_rate, so that a few requests drain the total bucket.
	f := &fixture{}
	f.start(t, caddyfileOf(trustLoopback, siteAt(":9080",
		mcpAuthDirective(introspected(resource, as.URL, "", "max_rate 4")), `respond "ok {http.auth.user.id}"`)), "caddyfile")

	// The flood goes on until the resource sheds it (the rate it may use is drained).
	shed := false
	for i := range 200 {
		from := fmt.Sprintf("2001:db8:77:%x::1", i+1) // a fresh /64 of one /48 each time
		code, hdr, _ := f.do(t, fromAddr(randomToken(), from))
		if code == http.StatusServiceUnavailable {
			if hdr.Get("Retry-After") == "" {
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
	code, _, body := f.do(t, fromAddr(real, "192.0.2.80"))
	if code != http.StatusOK || string(body) != "ok real-user" {
		t.Fatalf("real token during the flood: %d %q, want 200: the flood from one /48 drained the rate kept for real tokens", code, body)
	}
}

// rejudgeConfig is one site whose resource, accepted issuers and token cache (cache, a line
// of the block) a reload changes; the introspection group (endpoint, client_id, scope claim)
// stays, so the answers are shared across the reloads. The site answers body and the
// caller's id; its resource_name is name, for the reload to be waited for.
func rejudgeConfig(f *fixture, as, name, body, res, iss, cache string) string {
	return f.siteCaddyfile(introspected(res, as, `resource_name "`+name+`"`+"\nissuers "+iss+"\n"+cache, ""),
		`respond "`+body+` {http.auth.user.id}"`)
}

// TestAttackReloadRejudgesSharedAnswers: the introspection answers outlive a reload, so a
// reload that narrows what is accepted must apply to them at once: the answer accepted under
// config A is judged again under config B (another audience; then another issuer) and
// refused, without a new call; config A again accepts it, still from the shared answer. A
// made-up token's inactive answer stays a refusal across a reload.
func TestAttackReloadRejudgesSharedAnswers(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	as.delay.Store(1) // made-up tokens are answered inactive at once
	f := &fixture{}
	f.start(t, rejudgeConfig(f, as.URL, "Rejudge A", "a", resource, as.URL, ""), "caddyfile", "Rejudge A")
	if code, _, body := f.do(t, bearerReq(real)); code != http.StatusOK || string(body) != "a real-user" {
		t.Fatalf("config A: %d %q", code, body)
	}
	madeUp := randomToken()
	if code, _, _ := f.do(t, bearerReq(madeUp)); code != http.StatusUnauthorized {
		t.Fatalf("made-up token under config A: %d, want 401", code)
	}
	calls := as.calls.Load()

	for _, c := range []struct{ name, res, iss string }{
		{"another audience", "https://other.example.com/mcp", as.URL},
		{"another issuer", resource, "https://issuer.example.net"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.start(t, rejudgeConfig(f, as.URL, "Rejudge B "+c.name, "b", c.res, c.iss, ""), "caddyfile", "Rejudge B "+c.name)
			code, _, body := f.do(t, bearerReq(real))
			if code != http.StatusUnauthorized {
				t.Fatalf("the answer accepted under config A, under config B (%s): %d %q, want 401", c.name, code, body)
			}
			if n := as.calls.Load(); n != calls {
				t.Errorf("%d calls at the authorization server, want %d: the shared answer was not the one judged", n, calls)
			}
		})
	}

	f.start(t, rejudgeConfig(f, as.URL, "Rejudge A again", "a2", resource, as.URL, ""), "caddyfile", "Rejudge A again")
	if code, _, body := f.do(t, bearerReq(real)); code != http.StatusOK || string(body) != "a2 real-user" {
		t.Fatalf("config A again: %d %q, want 200", code, body)
	}
	if code, _, _ := f.do(t, bearerReq(madeUp)); code != http.StatusUnauthorized {
		t.Fatalf("made-up token after the reloads: %d, want 401", code)
	}
	if n := as.calls.Load(); n != calls {
		t.Errorf("%d calls at the authorization server, want %d (both answers shared)", n, calls)
	}
}

// TestAttackTokenCacheSizeZeroAsksEveryTime: token_cache_size 0 turns the verified-token
// cache off, and the shared answers with it: every request asks the authorization server
// (revocation takes effect at once), across a reload too.
func TestAttackTokenCacheSizeZeroAsksEveryTime(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	f := &fixture{}
	cfg := func(body string) string {
		return rejudgeConfig(f, as.URL, "Cache off "+body, body, resource, as.URL, "token_cache_size 0")
	}
	f.start(t, cfg("a"), "caddyfile", "Cache off a")
	for i := range 3 {
		if code, _, body := f.do(t, bearerReq(real)); code != http.StatusOK || string(body) != "a real-user" {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
		if n := as.realSeen.Load(); n != int64(i+1) {
			t.Fatalf("after %d requests, %d calls: an answer was cached with token_cache_size 0", i+1, n)
		}
	}
	f.start(t, cfg("b"), "caddyfile", "Cache off b")
	if code, _, body := f.do(t, bearerReq(real)); code != http.StatusOK {
		t.Fatalf("after the reload: %d %q", code, body)
	}
	seen := as.realSeen.Load()
	if code, _, _ := f.do(t, bearerReq(real)); code != http.StatusOK || as.realSeen.Load() != seen+1 {
		t.Fatalf("after the reload: %d, calls %d then %d: want one call per request", code, seen, as.realSeen.Load())
	}
}

// TestAttackSharedAnswersAcrossSites: an answer that site one accepted (its aud is site one's
// resource) is held in the cache both sites share; at site two it is judged with site two's
// audience and refused, in either order of first use.
func TestAttackSharedAnswersAcrossSites(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	// Two sites of different resources ask one authorization server as one client, so they
	// share the answers.
	f := &fixture{}
	f.start(t, caddyfileOf("",
		siteAt("http://one.localhost:9080", mcpAuthDirective(introspected(resource, as.URL, "", "")), `respond "one {http.auth.user.id}"`),
		siteAt("http://two.localhost:9080", mcpAuthDirective(introspected("https://two.example.com/mcp", as.URL, "", "")), `respond "two {http.auth.user.id}"`),
	), "caddyfile")
	if code, _, body := f.doAt(t, "one.localhost:9080", bearerReq(real)); code != http.StatusOK || string(body) != "one real-user" {
		t.Fatalf("site one: %d %q", code, body)
	}
	if code, _, body := f.doAt(t, "two.localhost:9080", bearerReq(real)); code != http.StatusUnauthorized {
		t.Fatalf("site two, with the answer site one cached: %d %q, want 401 (aud is site one's)", code, body)
	}
	if n := as.realSeen.Load(); n != 1 {
		t.Errorf("%d calls, want 1: the sites do not share the answer, so this test proves nothing", n)
	}

	other := randomToken()
	as.mu.Lock()
	as.real[other] = true
	as.mu.Unlock()
	if code, _, body := f.doAt(t, "two.localhost:9080", bearerReq(other)); code != http.StatusUnauthorized {
		t.Fatalf("site two first: %d %q, want 401", code, body)
	}
	if code, _, body := f.doAt(t, "one.localhost:9080", bearerReq(other)); code != http.StatusOK || string(body) != "one real-user" {
		t.Fatalf("site one after site two refused the answer: %d %q, want 200", code, body)
	}
}

// xffConfig: max_in_flight 4, so each client address holds one slot; global is added to the
// global options.
func xffConfig(as, global string) string {
	return caddyfileOf(global, siteAt(":9080",
		mcpAuthDirective(introspected(resource, as, "", "max_in_flight 4\ntimeout 30s")), `respond "ok {http.auth.user.id}"`))
}

// TestAttackForwardedForSpoofing: the per-address shares are only as good as the client
// address. Without trusted_proxies, X-Forwarded-For is the client's own say and is not read:
// made-up tokens "from" fresh addresses all count against the connection's address, whose
// share (one slot) the first one holds. Behind a proxy that appends the address it saw,
// Caddy's default reading of X-Forwarded-For takes the left-most entry, which the client
// wrote (then the attacker's second made-up token below takes a fresh share, and the first
// one spends the victim's); trusted_proxies_strict takes the right-most untrusted one, which
// the proxy wrote, so an attacker can neither spread its flood over made-up addresses nor
// spend a victim's share by naming its address. (docs/configuration.md says to set it.)
func TestAttackForwardedForSpoofing(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	f := &fixture{}
	hold := func(t *testing.T, as *floodAS, xff string) {
		t.Helper()
		done := make(chan int, 1)
		go func() {
			code, _, _, _ := f.try(fromAddr(randomToken(), xff))
			done <- code
		}()
		select {
		case <-as.arrived:
		case code := <-done:
			t.Fatalf("made-up token from %q: %d, want its call held at the server", xff, code)
		case <-time.After(time.Minute):
			t.Fatal("the made-up token's call never reached the server")
		}
	}

	t.Run("no_trusted_proxies", func(t *testing.T) {
		real := randomToken()
		as := newFloodAS(t, real)
		f.start(t, xffConfig(as.URL, ""), "caddyfile")
		hold(t, as, "198.51.100.1")
		before := as.calls.Load()
		for i := range 5 {
			code, hdr, _ := f.do(t, fromAddr(randomToken(), fmt.Sprintf("198.51.100.%d", 10+i)))
			if retry := hdr.Get("Retry-After"); code != http.StatusServiceUnavailable || retry == "" {
				t.Fatalf("made-up token %d from a forwarded address: %d (Retry-After %q), want 503 at once: X-Forwarded-For gave a fresh share", i, code, retry)
			}
		}
		if n := as.calls.Load() - before; n != 0 {
			t.Errorf("%d more calls reached the server", n)
		}
		as.release()
	})

	t.Run("trusted_proxies_strict", func(t *testing.T) {
		real := randomToken()
		as := newFloodAS(t, real)
		f.start(t, xffConfig(as.URL, "servers {\ntrusted_proxies static 127.0.0.0/8\ntrusted_proxies_strict\n}"), "caddyfile")
		// The attacker (203.0.113.7, appended by the proxy) names the victim's address first.
		hold(t, as, "192.0.2.66, 203.0.113.7")
		before := as.calls.Load()
		code, _, _ := f.do(t, fromAddr(randomToken(), "192.0.2.67, 203.0.113.7"))
		if code != http.StatusServiceUnavailable || as.calls.Load() != before {
			t.Fatalf("second made-up token from the attacker, naming another address: %d, want 503 at once (its share is held)", code)
		}
		// The victim's real token, through the same proxy.
		if code, _, body := f.do(t, fromAddr(real, "192.0.2.66")); code != http.StatusOK || string(body) != "ok real-user" {
			t.Fatalf("victim's real token: %d %q, want 200: the attacker spent the victim's share", code, body)
		}
		as.release()
	})
}

// TestAttackRealTokenShapesPassTheShapeCheck: the shape check refuses what cannot be a token
// before any call; the opaque tokens real authorization servers issue must all reach the
// server and pass, through Caddy.
func TestAttackRealTokenShapesPassTheShapeCheck(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	shapes := map[string]string{
		"hydra":          "ory_at_" + randomToken() + "." + randomToken()[:43],
		"oidc-provider":  randomToken(), // 32 random bytes, base64url: 43 characters
		"github":         "gho_" + strings.Repeat("A1b2C3d4", 4) + "e5F6",
		"uuid (WSO2)":    "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
		"google":         "ya29.a0AfB_byC" + randomToken() + "-" + randomToken(),
		"zitadel base64": "dGhpcyBpcyBhIHRva2Vu+/" + randomToken() + "==",
		"doorkeeper":     randomToken(),
		"django (30)":    "aB3dE5gH7jK9mN1pQ3rS5tU7wX9yZ1",
		"auth0 JWE":      "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0.." + randomToken() + "." + strings.Repeat(randomToken(), 8) + "." + randomToken()[:22],
		"tilde":          "tok~" + randomToken(),
	}
	as := newFloodAS(t, "unused-real-token")
	as.mu.Lock()
	for _, tok := range shapes {
		as.real[tok] = true
	}
	as.mu.Unlock()
	f := &fixture{}
	f.start(t, floodConfig(f, as.URL, "5s", "ok"), "caddyfile")
	for name, tok := range shapes {
		t.Run(name, func(t *testing.T) {
			if code, _, body := f.do(t, bearerReq(tok)); code != http.StatusOK || string(body) != "ok real-user" {
				t.Fatalf("%d %q, want 200", code, body)
			}
		})
	}
	if n := as.realSeen.Load(); n != int64(len(shapes)) {
		t.Errorf("%d calls for %d tokens", n, len(shapes))
	}
}
