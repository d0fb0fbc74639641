package mcpauth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestMisplacementWarning validates whole configs as `caddy validate` does (Provision of every
// module, no listener) and reads Caddy's log: a handler whose enclosing matcher lets the
// resource in but keeps the metadata document out (the natural-looking
// `handle /mcp* { mcp_auth … }`) is named at start with a warning; correct placements are not.
func TestMisplacementWarning(t *testing.T) {
	const warning = "metadata document unreachable"
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, jwttest.JWKS(jwttest.New(t, "k1", "ES256")), 0o644); err != nil {
		t.Fatal(err)
	}
	block := func(matcher string) string {
		return "mcp_auth " + matcher + "{\n" +
			"resource http://mcp.example.com:18080/mcp\n" +
			"authorization_servers https://auth.example.com\n" +
			"jwks_file " + jwks + "\n" +
			"scopes mcp:read\n}\n"
	}
	cases := []struct {
		name    string
		site    string // Caddyfile site block body
		address string // site address
		matcher string // expected matcher in the warning; "" for no warning
	}{
		{"in the site block", block("") + "reverse_proxy 127.0.0.1:1\n", ":18080", ""},
		{"inside handle /mcp*", "handle /mcp* {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n", ":18080", "path /mcp*"},
		{"own matcher /mcp*", block("/mcp* ") + "reverse_proxy 127.0.0.1:1\n", ":18080", "path /mcp*"},
		{"inside handle /mcp* of a named site", "handle /mcp* {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n",
			"http://mcp.example.com:18080", "path /mcp*"},
		{"inside route", "route {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n", ":18080", ""},
		{"inside a bare handle", "handle {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n", ":18080", ""},
		{"matcher that includes the metadata path",
			"@mcp path /mcp* /.well-known/oauth-protected-resource/*\nhandle @mcp {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n",
			":18080", ""},
		{"only POST reaches it", "@post method POST\nhandle @post {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n",
			":18080", "method"},
		{"site for another host name", "handle /mcp* {\n" + block("") + "reverse_proxy 127.0.0.1:1\n}\n",
			"http://internal.example:18080", "path /mcp*"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "caddy.log")
			cfg := "{\n\tadmin off\n\tlog {\n\t\toutput file " + logFile + "\n\t\tformat json\n\t}\n}\n" +
				c.address + " {\n" + c.site + "}\n"
			logs := validate(t, string(caddyfile.Format([]byte(cfg))), "caddyfile", logFile)
			checkWarning(t, logs, warning, c.matcher)
		})
	}

	t.Run("JSON route matching the resource path only", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "caddy.log")
		cfg := `{
			"admin": {"disabled": true},
			"logging": {"logs": {"default": {"writer": {"output": "file", "filename": ` + quote(logFile) + `}, "encoder": {"format": "json"}}}},
			"apps": {"http": {"servers": {"s": {"listen": [":18080"], "routes": [
				{"match": [{"path": ["/mcp"]}], "handle": [
					{"handler": "mcp_auth", "resource": "http://localhost:18080/mcp",
					 "authorization_servers": ["https://auth.example.com"], "jwks_file": ` + quote(jwks) + `,
					 "scopes": ["mcp:read"]},
					{"handler": "static_response", "body": "ok"}]}
			]}}}}
		}`
		checkWarning(t, validate(t, cfg, "", logFile), warning, "path /mcp")
	})
}

// validate adapts cfg (unless adapter is ""), runs caddy.Validate and returns the log lines.
func validate(t *testing.T, cfg, adapter, logFile string) []map[string]any {
	t.Helper()
	raw := []byte(cfg)
	if adapter != "" {
		var warn []caddyconfig.Warning
		var err error
		raw, warn, err = caddyconfig.GetAdapter(adapter).Adapt(raw, nil)
		if err != nil {
			t.Fatalf("adapt: %v\n%s", err, cfg)
		}
		if len(warn) > 0 {
			t.Fatalf("adapt warnings: %v", warn)
		}
	}
	var c caddy.Config
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&c); err != nil {
		t.Fatalf("validate: %v\n%s", err, raw)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func checkWarning(t *testing.T, logs []map[string]any, msg, matcher string) {
	t.Helper()
	var got []map[string]any
	for _, l := range logs {
		if s, _ := l["msg"].(string); strings.HasPrefix(s, msg) {
			got = append(got, l)
		}
	}
	switch {
	case matcher == "" && len(got) > 0:
		t.Fatalf("warned about a correct placement: %v", got)
	case matcher != "" && len(got) != 1:
		t.Fatalf("got %d warnings %q, want one naming %q (logs: %v)", len(got), msg, matcher, logs)
	case matcher != "":
		w := got[0]
		if w["level"] != "warn" || w["logger"] != "http.handlers.mcp_auth" || w["matcher"] != matcher ||
			w["metadata_path"] != "/.well-known/oauth-protected-resource/mcp" {
			t.Fatalf("warning %v: want level warn, logger http.handlers.mcp_auth, matcher %q and the metadata path", w, matcher)
		}
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestRulesStartupNote: with per-operation rules, the start-up log says that they are judged
// on POST bodies and do not apply behind forward_auth (which sends a GET without the body);
// without rules it says nothing of the kind.
func TestRulesStartupNote(t *testing.T) {
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, jwttest.JWKS(jwttest.New(t, "k1", "ES256")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, extra string
		want        bool
	}{
		{"no rules", "", false},
		{"a tool rule", "tool delete_* {\nscopes mcp:admin\n}\n", true},
		{"filter_tools_list", "filter_tools_list\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "caddy.log")
			cfg := "{\nadmin off\nlog {\noutput file " + logFile + "\nformat json\n}\n}\n:18080 {\nmcp_auth {\n" +
				"resource http://localhost:18080/mcp\nauthorization_servers https://auth.example.com\n" +
				"jwks_file " + jwks + "\nscopes mcp:read\n" + c.extra + "}\nrespond ok\n}\n"
			var note map[string]any
			for _, l := range validate(t, string(caddyfile.Format([]byte(cfg))), "caddyfile", logFile) {
				if s, _ := l["msg"].(string); strings.Contains(s, "forward_auth") {
					note = l
				}
			}
			if (note != nil) != c.want {
				t.Fatalf("forward_auth note in the start-up log: %v, want %v", note, c.want)
			}
			if note != nil && (note["level"] != "info" || note["resource"] != "http://localhost:18080/mcp") {
				t.Fatalf("note %v: want level info and the resource", note)
			}
		})
	}
}
