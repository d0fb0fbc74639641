package mcpauth

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func parseTestCaddyfile(input string) (*Handler, error) {
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return h, err
}

func TestUnmarshalCaddyfileEverySubdirective(t *testing.T) {
	h, err := parseTestCaddyfile(`mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com https://login.example.org/t
		resource_name          "Example MCP server"
		resource_documentation https://docs.example.com/mcp
		scopes_supported       mcp:read mcp:write
		issuers                https://auth.example.com https://login.example.org/t/v2
		jwks_url               https://auth.example.com/jwks
		jwks_file              /etc/caddy/jwks.json
		jwks_refresh           15m
		audiences              https://mcp.example.com/mcp api://mcp
		algorithms             RS256 ES256
		leeway                 1m30s
		require_at_jwt
		scopes                 mcp:read
		any_of                 mcp:write mcp:admin
		scope_claim            scp
		strip_token
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Handler{
		Resource:              "https://mcp.example.com/mcp",
		AuthorizationServers:  []string{"https://auth.example.com", "https://login.example.org/t"},
		ResourceName:          "Example MCP server",
		ResourceDocumentation: "https://docs.example.com/mcp",
		ScopesSupported:       []string{"mcp:read", "mcp:write"},
		Issuers:               []string{"https://auth.example.com", "https://login.example.org/t/v2"},
		JWKSURLs:              []string{"https://auth.example.com/jwks"},
		JWKSFile:              "/etc/caddy/jwks.json",
		JWKSRefresh:           caddy.Duration(15 * time.Minute),
		Audiences:             []string{"https://mcp.example.com/mcp", "api://mcp"},
		Algorithms:            []string{"RS256", "ES256"},
		Leeway:                durationPtr(90 * time.Second),
		RequireATJWT:          true,
		Scopes:                []string{"mcp:read"},
		AnyOf:                 []string{"mcp:write", "mcp:admin"},
		ScopeClaim:            ClaimNames{"scp"},
		StripToken:            true,
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("parsed\n %+v\nwant\n %+v", h, want)
	}
	if err := h.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestUnmarshalCaddyfileFlags(t *testing.T) {
	h, err := parseTestCaddyfile(`mcp_auth {
		resource              https://mcp.example.com
		authorization_servers https://auth.example.com
		allow_any_audience
		skip_scopes
		leeway 0s
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if !h.AllowAnyAudience || !h.SkipScopes || h.StripToken || h.RequireATJWT {
		t.Errorf("flags: %+v", h)
	}
	if err := h.Validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestUnmarshalCaddyfileListsAccumulate(t *testing.T) {
	h, err := parseTestCaddyfile(`mcp_auth {
		resource https://mcp.example.com/mcp
		authorization_servers https://a.example.com
		authorization_servers https://b.example.com https://c.example.com
		scopes a
		scopes b
		any_of x
		any_of y
		jwks_url https://a.example.com/jwks
		jwks_url https://b.example.com/jwks
		audiences one
		audiences two
		algorithms RS256
		algorithms EdDSA
		issuers https://a.example.com
		issuers https://b.example.com
		scopes_supported s1
		scopes_supported s2
	}`)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string][2][]string{
		"authorization_servers": {h.AuthorizationServers, {"https://a.example.com", "https://b.example.com", "https://c.example.com"}},
		"scopes":                {h.Scopes, {"a", "b"}},
		"any_of":                {h.AnyOf, {"x", "y"}},
		"jwks_url":              {h.JWKSURLs, {"https://a.example.com/jwks", "https://b.example.com/jwks"}},
		"audiences":             {h.Audiences, {"one", "two"}},
		"algorithms":            {h.Algorithms, {"RS256", "EdDSA"}},
		"issuers":               {h.Issuers, {"https://a.example.com", "https://b.example.com"}},
		"scopes_supported":      {h.ScopesSupported, {"s1", "s2"}},
	}
	for name, c := range checks {
		if !reflect.DeepEqual(c[0], c[1]) {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // substring of the error
	}{
		{"unknown subdirective", `mcp_auth { resourse https://h/mcp }`, `unrecognized mcp_auth subdirective "resourse"`},
		{"argument on the directive", `mcp_auth https://h/mcp { }`, "wrong argument count"},
		{"resource without value", "mcp_auth {\n resource\n}", "wrong argument count"},
		{"resource with two values", `mcp_auth { resource https://a https://b }`, "resource: takes one value"},
		{"resource twice", "mcp_auth {\n resource https://a\n resource https://b\n}", "resource: given more than once"},
		{"resource_name twice", "mcp_auth {\n resource_name a\n resource_name b\n}", "resource_name: given more than once"},
		{"resource_documentation twice", "mcp_auth {\n resource_documentation https://a\n resource_documentation https://b\n}", "resource_documentation: given more than once"},
		{"jwks_file twice", "mcp_auth {\n jwks_file a\n jwks_file b\n}", "jwks_file: given more than once"},
		{"scope_claim twice", "mcp_auth {\n scope_claim a\n scope_claim b\n}", "scope_claim: given more than once"},
		{"scope_claim naming a claim twice", "mcp_auth {\n scope_claim scp roles scp\n}", `scope_claim: "scp" is named twice`},
		{"scope_claim naming a registered claim", "mcp_auth {\n scope_claim scp aud\n}", `scope_claim: "aud" is a registered claim`},
		{"scope_claim naming too many claims", "mcp_auth {\n scope_claim a b c d e f g h i\n}", "scope_claim: 9 claims, at most 8"},
		{"leeway twice", "mcp_auth {\n leeway 1s\n leeway 2s\n}", "leeway: given more than once"},
		{"jwks_refresh twice", "mcp_auth {\n jwks_refresh 1h\n jwks_refresh 2h\n}", "jwks_refresh: given more than once"},
		{"require_at_jwt twice", "mcp_auth {\n require_at_jwt\n require_at_jwt\n}", "require_at_jwt: given more than once"},
		{"allow_any_audience twice", "mcp_auth {\n allow_any_audience\n allow_any_audience\n}", "allow_any_audience: given more than once"},
		{"skip_scopes twice", "mcp_auth {\n skip_scopes\n skip_scopes\n}", "skip_scopes: given more than once"},
		{"strip_token twice", "mcp_auth {\n strip_token\n strip_token\n}", "strip_token: given more than once"},
		{"flag with a value", "mcp_auth {\n strip_token yes\n}", "strip_token: takes no value"},
		{"bad leeway", "mcp_auth {\n leeway soon\n}", "leeway:"},
		{"bad jwks_refresh", "mcp_auth {\n jwks_refresh 1 hour\n}", "jwks_refresh: takes one value"},
		{"bad jwks_refresh unit", "mcp_auth {\n jwks_refresh 1y\n}", "jwks_refresh:"},
		{"leeway without value", "mcp_auth {\n leeway\n}", "wrong argument count"},
		{"subdirective with a block", "mcp_auth {\n scopes a {\n b\n }\n}", "scopes: takes no block"},
		{"flag with a block", "mcp_auth {\n skip_scopes {\n x\n }\n}", "skip_scopes: takes no block"},
		{"comma in a tool rule", "mcp_auth {\n tool delete_* {\n scopes mcp:admin,mcp:write\n }\n}", `tool: "mcp:admin,mcp:write": contains a comma: scopes are separated by spaces, not commas, at Testfile:3`},
		{"comma in scope_implies", "mcp_auth {\n scope_implies mcp:admin mcp:read,mcp:write\n}", `scope_implies: "mcp:read,mcp:write": contains a comma: scopes are separated by spaces, not commas, at Testfile:2`},
	}
	for _, name := range []string{
		"authorization_servers", "scopes_supported", "issuers", "jwks_url", "audiences",
		"algorithms", "scopes", "any_of", "resource_name", "resource_documentation", "jwks_file",
		"scope_claim", "jwks_refresh",
	} {
		tests = append(tests, struct {
			name  string
			input string
			want  string
		}{name + " without value", "mcp_auth {\n " + name + "\n}", "wrong argument count"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTestCaddyfile(tt.input)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// validBase is a valid configuration the refused cases below change one thing of.
const validBase = `
	resource              https://mcp.example.com/mcp
	authorization_servers https://auth.example.com
`

// TestRefusedConfigurations goes through every refused configuration, written once as
// Caddyfile lines. A Caddyfile user learns it while the file is parsed, with the file and line
// of what they wrote (the subdirective at fault, or mcp_auth itself for a missing one); a JSON
// user learns it from Validate and Provision, which name the field too.
func TestRefusedConfigurations(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // the error must start with it (the Caddyfile name, which JSON errors name too)
		want  string // and contain this
	}{
		{"resource missing", "authorization_servers https://a\n scopes a", "resource", "required"},
		{"resource relative", "resource /mcp\n authorization_servers https://a\n scopes a", "resource", "absolute"},
		{"resource without scheme", "resource mcp.example.com/mcp\n authorization_servers https://a\n scopes a", "resource", "absolute"},
		{"resource not http", "resource ftp://h/mcp\n authorization_servers https://a\n scopes a", "resource", "absolute"},
		{"resource without host", "resource https:///mcp\n authorization_servers https://a\n scopes a", "resource", "absolute"},
		{"resource with fragment", "resource https://h/mcp#x\n authorization_servers https://a\n scopes a", "resource", "fragment"},
		{"resource with user information", "resource https://user@h/mcp\n authorization_servers https://a\n scopes a", "resource", "no origin a DPoP proof can name"},
		{"resource with a port out of range", "resource https://h:65536/mcp\n authorization_servers https://a\n scopes a", "resource", "no origin a DPoP proof can name"},
		{"resource with empty fragment", "resource https://h/mcp#\n authorization_servers https://a\n scopes a", "resource", "fragment"},
		{"no authorization_servers", "resource https://h/mcp\n scopes a", "authorization_servers", "required"},
		{"authorization_servers not a URL", "resource https://h/mcp\n authorization_servers auth.example.com\n scopes a", "authorization_servers", "absolute"},
		{"jwks_url not a URL", validBase + "jwks_url /jwks\n scopes a", "jwks_url", "absolute"},
		{"resource_documentation not a URL", validBase + "resource_documentation docs\n scopes a", "resource_documentation", "absolute"},
		{"no policy", validBase, "scopes", "no scope policy"},
		{"skip_scopes with scopes", validBase + "skip_scopes\n scopes a", "skip_scopes", "cannot be combined"},
		{"skip_scopes with any_of", validBase + "skip_scopes\n any_of a", "skip_scopes", "cannot be combined"},
		{"scope with a quote", validBase + `scopes "a\"b"`, "scopes", "scope token"},
		{"scope with a backslash", validBase + `scopes a\b`, "scopes", "scope token"},
		{"scope with a non-ASCII byte", validBase + "scopes café", "scopes", "scope token"},
		{"any_of with a space", validBase + `any_of "a b"`, "any_of", "scope token"},
		{"scopes_supported with a quote", validBase + "scopes a\n scopes_supported `x\"y`", "scopes_supported", "scope token"},
		{"scopes joined by a comma", validBase + "scopes mcp:read,mcp:write", "scopes", "scopes are separated by spaces"},
		{"any_of joined by a comma", validBase + "any_of a, b", "any_of", "scopes are separated by spaces"},
		{"scopes_supported joined by a comma", validBase + "scopes a\n scopes_supported a,b", "scopes_supported", "scopes are separated by spaces"},
		{"HS256", validBase + "scopes a\n algorithms RS256 HS256", "algorithms", "symmetric"},
		{"HS384", validBase + "scopes a\n algorithms HS384", "algorithms", "symmetric"},
		{"HS512", validBase + "scopes a\n algorithms HS512", "algorithms", "symmetric"},
		{"none", validBase + "scopes a\n algorithms none", "algorithms", "none"},
		{"None", validBase + "scopes a\n algorithms None", "algorithms", "none"},
		{"unknown alg", validBase + "scopes a\n algorithms RS257", "algorithms", "unknown algorithm"},
		{"lower-case alg", validBase + "scopes a\n algorithms rs256", "algorithms", "unknown algorithm"},
		{"leeway negative", validBase + "scopes a\n leeway -1s", "leeway", "outside"},
		{"leeway over 5m", validBase + "scopes a\n leeway 5m1s", "leeway", "outside"},
		{"allow_any_audience with audiences", validBase + "scopes a\n allow_any_audience\n audiences x", "allow_any_audience", "audiences"},
		{"jwks_refresh below a minute", validBase + "scopes a\n jwks_refresh 10s", "jwks_refresh", "minimum"},
		{"scope_claim with a space", validBase + `scopes a` + "\n" + `scope_claim "a b"`, "scope_claim", "claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := "mcp_auth {\n" + tt.body + "\n}"
			check := func(stage string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s accepted the configuration", stage)
				}
				if !strings.HasPrefix(err.Error(), tt.field) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: error %q, want it to start with %q and contain %q", stage, err, tt.field, tt.want)
				}
			}
			_, err := parseTestCaddyfile(input)
			check("Caddyfile", err)
			if want := fmt.Sprintf(", at Testfile:%d", lineOf(input, tt.field)); err != nil && !strings.HasSuffix(err.Error(), want) {
				t.Errorf("Caddyfile: error %q does not end with the position %q", err, want)
			}

			check("Validate", handlerFromLines(t, tt.body).Validate())

			h := handlerFromLines(t, tt.body)
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			check("Provision", h.Provision(ctx))
			if err := h.Cleanup(); err != nil {
				t.Errorf("cleanup after failed provision: %v", err)
			}
		})
	}
}

// lineOf is the line of input where subdirective is written, or 1 (mcp_auth) when it is not.
func lineOf(input, subdirective string) int {
	for i, l := range strings.Split(input, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == subdirective {
			return i + 1
		}
	}
	return 1
}

// handlerFromLines builds, as a JSON user would write it, the handler that Caddyfile lines
// describe (one subdirective per line, no blocks).
func handlerFromLines(t *testing.T, body string) *Handler {
	t.Helper()
	cfg := map[string]any{}
	for _, line := range strings.Split(body, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		toks, err := caddyfile.Tokenize([]byte(line), "line")
		if err != nil {
			t.Fatal(err)
		}
		if len(toks) == 0 {
			continue
		}
		name, args := toks[0].Text, toks[1:]
		switch name {
		case "allow_any_audience", "skip_scopes", "require_at_jwt", "strip_token":
			cfg[name] = true
		case "resource", "resource_name", "resource_documentation", "jwks_file", "scope_claim", "leeway", "jwks_refresh":
			cfg[name] = args[0].Text
		default:
			if name == "jwks_url" {
				name = "jwks_urls"
			}
			list, _ := cfg[name].([]string)
			for _, a := range args {
				list = append(list, a.Text)
			}
			cfg[name] = list
		}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := new(Handler)
	if err := json.Unmarshal(raw, h); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return h
}

// The limits themselves are accepted.
func TestAcceptedEdgeConfigurations(t *testing.T) {
	for _, body := range []string{
		validBase + "scopes a\n leeway 5m",
		validBase + "scopes a\n leeway 0s",
		validBase + "any_of a",
		validBase + "skip_scopes",
		validBase + "scopes a\n algorithms RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA",
		validBase + "scopes a\n jwks_refresh 1m",
		validBase + "scopes a\n allow_any_audience",
		validBase + "scopes https://graph.microsoft.com/.default api://x/mcp.read",
		"resource http://localhost:8080\n authorization_servers http://localhost:9000\n scopes a",
		"resource https://h/mcp?tenant=1\n authorization_servers https://a\n scopes a",
	} {
		h, err := parseTestCaddyfile("mcp_auth {\n" + body + "\n}")
		if err != nil {
			t.Errorf("%q: parse: %v", body, err)
			continue
		}
		if err := h.Validate(); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}
