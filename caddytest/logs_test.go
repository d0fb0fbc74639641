package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// logsCaddyfile sends Caddy's own logs (at debug level) to debug and the site's access log
// to access, and copies {http.auth.mcp.error} into a response header set when the response
// is written.
func (s *setup) logsCaddyfile(debug, access *logSink) string {
	return withGlobal(s.caddyfile("scopes mcp:read",
		"log {\n"+access.output()+"\nformat json\n}",
		`header >X-MCP-Error "{http.auth.mcp.error}"`,
		"reverse_proxy "+s.up.dial()),
		"log {\n"+debug.output()+"\nformat json\nlevel DEBUG\n}")
}

// TestLogsAndErrorPlaceholder checks, through a real Caddy, that the access log names the
// user ({http.auth.user.id}), that denials are logged at debug level with their reason, that
// no token reaches any log, and that {http.auth.mcp.error} holds the error code of a denial.
func TestLogsAndErrorPlaceholder(t *testing.T) {
	s := newSetup(t)
	debugLog, accessLog := newLogSink(t), newLogSink(t)
	s.start(t, s.logsCaddyfile(debugLog, accessLog), "caddyfile")

	good := s.token(t, "mcp:read", nil)
	cases := []struct {
		name      string
		token     string
		status    int
		errorCode string // expected {http.auth.mcp.error}
		reason    string // expected reason in the debug log
	}{
		{"valid", good, http.StatusOK, "", ""},
		{"no token", "", http.StatusUnauthorized, "missing_token", "missing_token"},
		{"wrong audience", s.ecKey.Token(t, s.claims("mcp:read", map[string]any{"aud": "https://other.example.com"}), nil),
			http.StatusUnauthorized, "invalid_token", "audience_not_accepted"},
		{"insufficient scope", s.token(t, "mcp:write", nil),
			http.StatusForbidden, "insufficient_scope", "insufficient_scope"},
		{"bad signature", good[:strings.LastIndexByte(good, '.')+1] + "AAAA",
			http.StatusUnauthorized, "invalid_token", "bad_signature"},
	}
	var tokens []string
	for _, c := range cases {
		var auth []string
		if c.token != "" {
			auth = []string{bearer(c.token)}
			tokens = append(tokens, c.token)
		}
		code, hdr, _ := s.do(t, attackReq{auth: auth})
		if code != c.status {
			t.Errorf("%s: status %d, want %d", c.name, code, c.status)
		}
		if c.errorCode != "" {
			if v := hdr.Get("X-MCP-Error"); v != c.errorCode {
				t.Errorf("%s: {http.auth.mcp.error} = %q, want %q", c.name, v, c.errorCode)
			}
		}
	}

	// The access log is written after the response; wait (bounded) for all entries.
	access := accessLog.wait(atLeast(len(cases)))
	users := map[int]string{}
	for _, e := range access {
		status, _ := e["status"].(float64)
		uid, _ := e["user_id"].(string)
		if uid != "" {
			users[int(status)] = uid
		}
	}
	if users[http.StatusOK] != "user-1" {
		t.Errorf("access log user_id of the authorized request = %q, want user-1", users[http.StatusOK])
	}
	// A valid token refused for its scope names who was refused; no other denial (no token,
	// invalid token) names anyone.
	if users[http.StatusForbidden] != "user-1" {
		t.Errorf("access log user_id of the 403 = %q, want user-1", users[http.StatusForbidden])
	}
	if len(users) != 2 {
		t.Errorf("access log names a user for requests without a valid token: %v", users)
	}

	// Denials are logged before the answer, but reach the sink on their own: wait (bounded)
	// for every reason.
	debug := debugLog.wait(func(entries []map[string]any) bool {
		seen := map[string]bool{}
		for _, e := range entries {
			if r, _ := e["reason"].(string); e["msg"] == "request denied" {
				seen[r] = true
			}
		}
		for _, c := range cases {
			if c.reason != "" && !seen[c.reason] {
				return false
			}
		}
		return true
	})
	reasons := map[string]bool{}
	for _, e := range debug {
		logger, _ := e["logger"].(string)
		if e["msg"] == "request denied" {
			r, _ := e["reason"].(string)
			reasons[r] = true
			// A Caddy with several sites: the line says which resource refused.
			if e["resource"] != resource {
				t.Errorf("request denied (%s) names resource %v, want %s", r, e["resource"], resource)
			}
		}
		// A healthy start (the key set loads at its first fetch) warns about nothing.
		if strings.HasPrefix(logger, "http.handlers.mcp_auth") && e["level"] != "info" && e["level"] != "debug" {
			t.Errorf("a healthy start logged %v %q", e["level"], e["msg"])
		}
	}

	for _, c := range cases {
		if c.reason != "" && !reasons[c.reason] {
			t.Errorf("no debug log entry %q with reason %q (have %v)", "request denied", c.reason, reasons)
		}
	}

	for name, raw := range map[string]string{"access log": accessLog.text(), "caddy log": debugLog.text()} {
		for _, tok := range tokens {
			sig := tok[strings.LastIndexByte(tok, '.')+1:]
			if len(sig) > 16 && strings.Contains(raw, sig) {
				t.Errorf("%s contains a token signature", name)
			}
			if strings.Contains(raw, tok[:strings.IndexByte(tok, '.')+1]) {
				t.Errorf("%s contains a token", name)
			}
		}
	}
}

// TestKeyWarningsFollowLogConfig checks that a key set, which outlives the config that created
// it, logs through the logging of the config running now: after a reload that sends Caddy's
// logs to a file, a failed refresh of a key set created before the reload is warned about in
// that file.
func TestKeyWarningsFollowLogConfig(t *testing.T) {
	s := newSetup(t)
	cfg, _ := s.config("caddyfile", []string{"mcp:read"}, true)
	s.start(t, cfg, "caddyfile")
	if code, _, _ := s.do(t, attackReq{auth: []string{bearer(s.token(t, "mcp:read", nil))}}); code != http.StatusOK {
		t.Fatalf("first config: status %d, want 200", code)
	}

	debugLog := newLogSink(t)
	mustLoad(t, s.logsCaddyfile(debugLog, newLogSink(t)), "text/caddyfile", false)

	// A token with an unknown kid makes the set fetch again; the server is down.
	s.jwks.down.Store(true)
	stranger := jwttest.New(t, "unknown-kid", "ES256")
	code, _, _ := s.do(t, attackReq{auth: []string{bearer(stranger.Token(t, s.claims("mcp:read", nil), nil))}})
	if code != http.StatusUnauthorized {
		t.Errorf("token of an unknown key: status %d, want 401", code)
	}

	var found bool
	debugLog.wait(func(entries []map[string]any) bool {
		for _, e := range entries {
			if msg, _ := e["msg"].(string); e["level"] == "warn" && strings.Contains(msg, "refreshing signing keys failed") {
				found = true
			}
		}
		return found
	})
	if !found {
		t.Errorf("the failed refresh was not logged through the running config's logs")
	}
}
