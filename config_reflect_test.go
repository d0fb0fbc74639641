package mcpauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestEveryJSONFieldHasCaddyfileSupport finds the JSON fields of the Handler by reflection
// and requires each to be set by one of these Caddyfiles, and each parsed config to survive a
// JSON round trip unchanged: a new field without a Caddyfile subdirective fails here.
func TestEveryJSONFieldHasCaddyfileSupport(t *testing.T) {
	caddyfiles := []string{`mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		resource_name          "Example MCP server"
		resource_documentation https://docs.example.com/mcp
		scopes_supported       mcp:read mcp:write
		issuers                https://auth.example.com
		jwks_url               https://auth.example.com/jwks
		jwks_file              /etc/caddy/jwks.json
		jwks_refresh           15m
		audiences              https://mcp.example.com/mcp
		algorithms             RS256 ES256
		leeway                 1m
		require_at_jwt
		scopes                 mcp:read
		any_of                 mcp:write mcp:admin
		scope_claim            scp
		strip_token
		tool delete_* {
			scopes mcp:admin
		}
		filter_tools_list
		max_body_size 2MiB
		token_cache_size 5
		bind_sessions {env.MCP_SESSION_KEY}
		audit
		close_streams_at_expiry
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		allow_any_audience
		skip_scopes
		bind_sessions
	}`}
	set := map[string]bool{}
	for _, cf := range caddyfiles {
		h, err := parseTestCaddyfile(cf)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			set[k] = true
		}
		back := new(Handler)
		if err := json.Unmarshal(raw, back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, back) {
			t.Errorf("JSON round trip changed the config:\n %+v\n %+v", h, back)
		}
	}
	ht := reflect.TypeFor[Handler]()
	for i := range ht.NumField() {
		f := ht.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		if !set[name] {
			t.Errorf("JSON field %q (%s) is set by no Caddyfile subdirective in this test", name, f.Name)
		}
	}
}
