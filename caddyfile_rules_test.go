package mcpauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestCaddyfileRules(t *testing.T) {
	input := `mcp_auth {
		resource https://mcp.example.com/mcp
		authorization_servers https://auth.example.com
		scopes mcp:read
		tool delete_* drop_table {
			scopes mcp:admin
		}
		tool write_* {
			any_of mcp:write mcp:admin
		}
		prompt secret {
			scopes prompts:secret
			any_of a b
		}
		resource_uri file:///private/* {
			scopes files:private
		}
		method tools/call resources/* {
			scopes mcp:tools
		}
		filter_tools_list
		max_body_size 512KiB
	}`
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := []*Rule{
		{Tools: []string{"delete_*", "drop_table"}, Scopes: []string{"mcp:admin"}},
		{Tools: []string{"write_*"}, AnyOf: []string{"mcp:write", "mcp:admin"}},
		{Prompts: []string{"secret"}, Scopes: []string{"prompts:secret"}, AnyOf: []string{"a", "b"}},
		{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"files:private"}},
		{Methods: []string{"tools/call", "resources/*"}, Scopes: []string{"mcp:tools"}},
	}
	if !reflect.DeepEqual(h.Rules, want) {
		got, _ := json.Marshal(h.Rules)
		t.Fatalf("rules = %s", got)
	}
	if !h.FilterToolsList || h.MaxBodySize != 512<<10 {
		t.Fatalf("filter_tools_list=%v max_body_size=%d", h.FilterToolsList, h.MaxBodySize)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	// The JSON form uses the documented field names.
	b, _ := json.Marshal(h)
	for _, s := range []string{`"rules":[{"tools":["delete_*","drop_table"],"scopes":["mcp:admin"]}`,
		`{"resource_uris":["file:///private/*"]`, `{"methods":["tools/call","resources/*"]`,
		`"filter_tools_list":true`, `"max_body_size":524288`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON %s lacks %s", b, s)
		}
	}
}

func TestCaddyfileRulesRefused(t *testing.T) {
	cases := map[string]string{
		"no pattern":          "tool {\n scopes a\n}",
		"no block":            "tool x",
		"empty block":         "tool x {\n}",
		"unknown in block":    "tool x {\n scope a\n}",
		"scopes without args": "tool x {\n scopes\n}",
		"bad scope":           "tool x {\n scopes a\\b\n}",
		"empty pattern":       "method \"\" {\n scopes a\n}",
		"filter twice":        "filter_tools_list\nfilter_tools_list",
		"filter with arg":     "filter_tools_list yes",
		"bad size":            "max_body_size lots",
		"zero size":           "max_body_size 0",
		"size twice":          "max_body_size 1MB\nmax_body_size 2MB",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			input := "mcp_auth {\nresource https://mcp.example.com/mcp\nauthorization_servers https://a.example\nscopes s\n" + body + "\n}"
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
				t.Fatalf("accepted %q", body)
			}
		})
	}
}
