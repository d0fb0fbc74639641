package mcpauth

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// publicHandler: base mcp:read; delete_* needs mcp:admin; admin_prompt needs mcp:admin;
// file:///srv/secret/* needs mcp:admin; public: search, prompt welcome, file:///pub/*.
func publicHandler(t *testing.T) *Handler {
	t.Helper()
	return newTestHandler(t, newJWKSServer(t, jwttest.New(t, "k", "ES256")), func(h *Handler) {
		h.Rules = []*Rule{
			{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}},
			{Prompts: []string{"admin_*"}, Scopes: []string{"mcp:admin"}},
			{ResourceURIs: []string{"file:///srv/secret/*"}, Scopes: []string{"mcp:admin"}},
			{Tools: []string{"team_*"}, Clients: []string{"team-app"}},
		}
		h.Public = &PublicOps{Tools: []string{"search"}, Prompts: []string{"welcome"},
			ResourceURIs: []string{"file:///pub/*"}, Methods: []string{"logging/setLevel"}}
		h.FilterLists = true
	})
}

func TestAnonymousAllows(t *testing.T) {
	h := publicHandler(t)
	p := h.Public
	msg := func(method, name string, ref mcpjson.RefKind) *mcpjson.Message {
		return &mcpjson.Message{Method: method, HasMethod: true, Name: name, Ref: ref}
	}
	for _, c := range []struct {
		m    *mcpjson.Message
		want bool
	}{
		{msg("initialize", "", 0), true},
		{msg("notifications/initialized", "", 0), true},
		{msg("notifications/cancelled", "", 0), true},
		{msg("ping", "", 0), true},
		{msg("server/discover", "", 0), true},
		{msg("tools/list", "", 0), true},
		{msg("resources/templates/list", "", 0), true},
		{msg("logging/setLevel", "", 0), true},
		{msg("tools/call", "search", 0), true},
		{msg("tools/call", "Search", 0), false},
		{msg("tools/call", "search ", 0), false},
		{msg("tools/call", "search\x00", 0), false},
		{msg("tools/call", "delete_file", 0), false},
		{msg("prompts/get", "welcome", 0), true},
		{msg("prompts/get", "search", 0), false},
		{msg("completion/complete", "welcome", mcpjson.RefPrompt), true},
		{msg("resources/read", "file:///pub/a.txt", 0), true},
		{msg("resources/subscribe", "file:///pub/a.txt", 0), true},
		{msg("resources/read", "file:///pub/../srv/secret/a", 0), false},
		{msg("resources/read", "file:///srv/secret/a", 0), false},
		{msg("completion/complete", "file:///pub/{name}", mcpjson.RefResource), true},
		{msg("completion/complete", "file:///{dir}/a", mcpjson.RefResource), false},
		{msg("sampling/createMessage", "", 0), false},
		{msg("notificationsX/x", "", 0), false},
		{&mcpjson.Message{}, false}, // a response
	} {
		if got := p.anonymousAllows(c.m); got != c.want {
			t.Errorf("%s %q: allowed %v, want %v", c.m.Method, c.m.Name, got, c.want)
		}
	}
}

func TestAnonymousScopes(t *testing.T) {
	h := publicHandler(t)
	for _, c := range []struct {
		msgs []mcpjson.Message
		want string
	}{
		{[]mcpjson.Message{{Method: "tools/call", HasMethod: true, Name: "read_file"}}, "mcp:read"},
		{[]mcpjson.Message{{Method: "tools/call", HasMethod: true, Name: "search"}, {Method: "tools/call", HasMethod: true, Name: "delete_file"}}, "mcp:read mcp:admin"},
		{[]mcpjson.Message{{Method: "resources/read", HasMethod: true, Name: "file:///srv/secret/x"}}, "mcp:read mcp:admin"},
		{[]mcpjson.Message{{Method: "tools/call", HasMethod: true, Name: "team_x"}}, "mcp:read"},
	} {
		if got := strings.Join(anonymousScopes(h.ops.rules, c.msgs), " "); got != c.want {
			t.Errorf("%v: scopes %q, want %q", c.msgs, got, c.want)
		}
	}
}

// TestEntryVisible: with filter_lists an anonymous caller sees public entries and those a
// plain sign-in unlocks, never those behind more scopes or a client condition.
func TestEntryVisible(t *testing.T) {
	h := publicHandler(t)
	p, rules := h.Public, h.ops.rules
	for _, c := range []struct {
		kind mcpjson.ListKind
		key  string
		want bool
	}{
		{mcpjson.ListTools, "search", true},
		{mcpjson.ListTools, "read_file", true},
		{mcpjson.ListTools, "delete_file", false},
		{mcpjson.ListTools, "team_tool", false},
		{mcpjson.ListPrompts, "welcome", true},
		{mcpjson.ListPrompts, "other", true},
		{mcpjson.ListPrompts, "admin_reset", false},
		{mcpjson.ListResources, "file:///pub/a", true},
		{mcpjson.ListResources, "file:///srv/secret/a", false},
		{mcpjson.ListResources, "file:///srv/other", true},
		{mcpjson.ListResourceTemplates, "file:///srv/secret/{name}", false},
		{mcpjson.ListResourceTemplates, "file:///pub/{name}", true},
	} {
		if got := p.entryVisible(rules, c.kind, c.key); got != c.want {
			t.Errorf("%v %q: visible %v, want %v", c.kind, c.key, got, c.want)
		}
	}
}

func TestToolSchemes(t *testing.T) {
	h := publicHandler(t)
	for name, want := range map[string]string{
		"search":      `[{"type":"noauth"}]`,
		"read_file":   `[{"type":"oauth2","scopes":["mcp:read"]}]`,
		"delete_file": `[{"type":"oauth2","scopes":["mcp:read","mcp:admin"]}]`,
		"team_x":      `[{"type":"oauth2","scopes":["mcp:read"]}]`,
	} {
		for range 2 { // the second time from the cache
			if got := string(h.schemes.rewrite(name)); got != want {
				t.Errorf("%s: %s, want %s", name, got, want)
			}
		}
	}
}

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
