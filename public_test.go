package mcpauth

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

func TestPublicCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"public x {\n}", "takes no value"},
		{"public {\n tools a\n}", `unrecognized subdirective "tools"`},
		{"public {\n tool\n}", "needs at least one pattern"},
		{"public {\n tool \"\"\n}", "empty pattern"},
		{"public {\n tool a {\n x\n }\n}", "takes no block"},
		{"public {\n resource_uri file:///a/../b\n}", "normal form"},
	} {
		d := caddyfile.NewTestDispenser(c.in)
		d.Next()
		_, err := unmarshalPublic(d)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.want)
		}
	}
	d := caddyfile.NewTestDispenser("public {\n tool a b\n tool c\n method m\n}")
	d.Next()
	p, err := unmarshalPublic(d)
	if err != nil || !slices.Equal(p.Tools, []string{"a", "b", "c"}) || !slices.Equal(p.Methods, []string{"m"}) {
		t.Errorf("parsed %+v, %v", p, err)
	}
	h := new(Handler)
	d = caddyfile.NewTestDispenser("challenge_in_result")
	d.Next()
	if err := unmarshalChallengeInResult(d, h); err != nil || !slices.Equal(h.ChallengeInResult, []string{"openai-mcp/*"}) {
		t.Errorf("challenge_in_result alone: %q, %v", h.ChallengeInResult, err)
	}
}

func TestAcceptable(t *testing.T) {
	for _, c := range []struct {
		accept    []string
		json, sse bool
	}{
		{nil, true, true},
		{[]string{"application/json, text/event-stream"}, true, true},
		{[]string{"text/event-stream"}, false, true},
		{[]string{"application/json;q=0, text/event-stream"}, false, true},
		{[]string{"*/*"}, true, true},
		{[]string{"text/html"}, false, false},
	} {
		j, s := acceptable(c.accept)
		if j != c.json || s != c.sse {
			t.Errorf("%q: json %v sse %v, want %v %v", c.accept, j, s, c.json, c.sse)
		}
	}
}

func TestInResultClientsMatch(t *testing.T) {
	c := newInResultClients([]string{"openai-mcp/*", "https://chatgpt.example/*", "https://*.apps.example/*"})
	for _, tc := range []struct {
		ua, clientID string
		want         bool
	}{
		{"openai-mcp/1.0.0", "", true},
		{"openai-mcp/1.0.0 (+https://openai.com/bot)", "", true},
		{"Openai-mcp/1.0.0", "", false},
		{"x openai-mcp/1.0.0", "", false},
		{"claude-code/2.1.0", "https://chatgpt.example/client.json", true},
		{"claude-code/2.1.0", "https://chatgpt.example.evil/client.json", false},
		{"", "", false},
		{"", "https://a.apps.example/c.json", true},
		{"", "https://evil.net/.apps.example/c.json", false},
		{"", "https://a.apps.example.evil.net/c.json", false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		if tc.ua != "" {
			r.Header.Set("User-Agent", tc.ua)
		}
		var id *verify.Identity
		if tc.clientID != "" {
			id = &verify.Identity{ClientID: tc.clientID}
		}
		if got := c.matches(r, id); got != tc.want {
			t.Errorf("User-Agent %q, client_id %q: matched %v, want %v", tc.ua, tc.clientID, got, tc.want)
		}
	}
	if err := checkInResultClients([]string{"https://app*.example/*"}); err == nil {
		t.Error("a * inside a host label was accepted")
	}
	if newInResultClients(nil) != nil {
		t.Error("no challenge_in_result must mean no matcher")
	}
}
