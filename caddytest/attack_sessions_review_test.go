package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Review attacks on bind_sessions: callers whose token names no user and no client,.

// TestAttackSessionsOfTokensWithoutCaller: two tokens of the same issuer with neither sub
// nor client_id (nor azp) are two callers the module cannot tell apart by identity. One must
// not be able to use the other's session: the binding then falls back to the token itself.
func TestAttackSessionsOfTokensWithoutCaller(t *testing.T) {
	t.Setenv("MCPAUTH_TEST_SESSION_KEY", testSessionKey)
	s := newSetup(t)
	up := newSessionUpstream(t)
	startCaddy(t, render(sessionsCaddyfile, map[string]string{
		"DIR": t.TempDir(), "JWKS": s.jwks.URL + "/jwks", "UPSTREAM": strings.TrimPrefix(up.URL, "http://"),
	}), "caddyfile")
	anon := func(jti string) string {
		c := userClaims("x", "y", "mcp:read", time.Hour)
		delete(c, "sub")
		delete(c, "client_id")
		delete(c, "azp")
		c["jti"] = jti
		return s.rsaKey.sign(t, c)
	}
	first, second := anon("anon-1"), anon("anon-2")
	code, hdr, body := rawCall(t, http.MethodPost, first, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":`+
		`{"protocolVersion":"`+protocolHeader+`","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	sid := hdr.Get("Mcp-Session-Id")
	if code != http.StatusOK || !taggedID.MatchString(sid) {
		t.Fatalf("initialize: %d %q %q", code, sid, body)
	}
	if code, _, body := rawCall(t, http.MethodPost, first, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); code != http.StatusAccepted {
		t.Fatalf("initialized by its owner: %d %q", code, body)
	}
	before := up.count()
	if code, _, _ := rawCall(t, http.MethodPost, second, sid, callReadFile, nil); code != http.StatusNotFound {
		t.Errorf("another token without sub or client_id in the session: %d, want 404", code)
	}
	if n := up.count(); n != before {
		t.Errorf("the MCP server received %+v", up.since(before))
	}
	if code, _, body := rawCall(t, http.MethodPost, first, sid, callReadFile, nil); code != http.StatusOK {
		t.Errorf("the session's own token: %d %q", code, body)
	}
}

