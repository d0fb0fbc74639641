package integration

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// goldenFile is a testdata/*.caddyfiletest: a Caddyfile, a line of dashes, then either the
// JSON it must adapt to or a text the adapt error must contain.
type goldenFile struct {
	name, caddyfile, expected string
}

func (g goldenFile) wantsError() bool { return !strings.HasPrefix(g.expected, "{") }

func readGoldenFiles(t *testing.T) []goldenFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no testdata/*.caddyfiletest files")
	}
	crlf := regexp.MustCompile(`\r?\n`)
	var out []goldenFile
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(crlf.ReplaceAllString(string(raw), "\n"), "----------")
		if len(parts) != 2 {
			t.Fatalf("%s: want one line of dashes between the Caddyfile and the expected result", p)
		}
		out = append(out, goldenFile{
			name:      filepath.Base(p),
			caddyfile: strings.TrimSpace(parts[0]) + "\n",
			expected:  strings.TrimSpace(parts[1]),
		})
	}
	return out
}

// TestCaddyfileAdapt pins the JSON that Caddyfiles adapt to (field names such as jwks_urls,
// durations as nanoseconds, the handler's place before basic_auth and reverse_proxy without
// any `order` option) and the parse errors of malformed directives.
func TestCaddyfileAdapt(t *testing.T) {
	for _, g := range readGoldenFiles(t) {
		t.Run(g.name, func(t *testing.T) {
			if !g.wantsError() {
				if !caddytest.CompareAdapt(t, g.name, g.caddyfile, "caddyfile", g.expected) {
					t.Errorf("adapting %s does not give the expected JSON (diff above)", g.name)
				}
				return
			}
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(g.caddyfile), nil)
			if err == nil {
				t.Fatalf("adapting %s succeeded, want an error containing %q", g.name, g.expected)
			}
			if !strings.Contains(err.Error(), g.expected) {
				t.Errorf("adapt error\n %q\ndoes not contain\n %q", err, g.expected)
			}
		})
	}
}

// subdirectives maps every mcp_auth subdirective to its JSON field (for the rule
// subdirectives, their list inside "rules"). TestSubdirectiveListIsComplete keeps it in step
// with the parser.
var subdirectives = map[string]string{
	"resource":               "resource",
	"authorization_servers":  "authorization_servers",
	"resource_name":          "resource_name",
	"resource_documentation": "resource_documentation",
	"scopes_supported":       "scopes_supported",
	"issuers":                "issuers",
	"jwks_url":               "jwks_urls",
	"jwks_file":              "jwks_file",
	"jwks_refresh":           "jwks_refresh",
	"audiences":              "audiences",
	"allow_any_audience":     "allow_any_audience",
	"algorithms":             "algorithms",
	"leeway":                 "leeway",
	"require_at_jwt":         "require_at_jwt",
	"scopes":                 "scopes",
	"any_of":                 "any_of",
	"skip_scopes":            "skip_scopes",
	"scope_claim":            "scope_claim",
	"strip_token":            "strip_token",
	"token_cache_size":       "token_cache_size",
	"tool":                   "tools",
	"prompt":                 "prompts",
	"resource_uri":           "resource_uris",
	"method":                 "methods",
	"filter_tools_list":      "filter_tools_list",
	"max_body_size":          "max_body_size",

	"clients":                    "clients",
	"require_claim":              "require_claims",
	"scope_implies":              "scope_implies",
	"allow_missing_audience_for": "allow_missing_audience_for",
	"scope_prefix":               "scope_prefix",
	"tenants":                    "tenants",
	"filter_lists":               "filter_lists",
	"introspection":              "introspection",
	"token_exchange":             "token_exchange",
	"dpop":                       "dpop",
	"mtls_bound":                 "mtls_bound",
	"store":                      "store",
}

// ruleDirectives are the subdirectives that each become one entry of "rules".
var ruleDirectives = map[string]bool{"tool": true, "prompt": true, "resource_uri": true, "method": true}

// TestGoldenFilesCoverEverySubdirective makes sure the adapt golden files that succeed use
// every subdirective at least once, and that its JSON field is in the expected output.
func TestGoldenFilesCoverEverySubdirective(t *testing.T) {
	files := readGoldenFiles(t)
	for sub, field := range subdirectives {
		line := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(sub) + `(\s|$)`)
		found := false
		for _, g := range files {
			if g.wantsError() || !line.MatchString(g.caddyfile) {
				continue
			}
			found = true
			if !strings.Contains(g.expected, `"`+field+`":`) {
				t.Errorf("%s uses %s but its expected JSON has no %q field", g.name, sub, field)
			}
			if ruleDirectives[sub] && !strings.Contains(g.expected, `"rules":`) {
				t.Errorf("%s uses %s but its expected JSON has no \"rules\" field", g.name, sub)
			}
		}
		if !found {
			t.Errorf("no adapt golden file uses the subdirective %s", sub)
		}
	}
}

// TestSubdirectiveListIsComplete reads the case labels of the parser's subdirective switch
// (UnmarshalCaddyfile in ../caddyfile.go), so that a subdirective added to the parser
// without a golden file fails TestGoldenFilesCoverEverySubdirective instead of going
// unnoticed.
func TestSubdirectiveListIsComplete(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join("..", "caddyfile.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var parsed []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "UnmarshalCaddyfile" {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			sw, ok := n.(*ast.SwitchStmt)
			if !ok {
				return true
			}
			if tag, ok := sw.Tag.(*ast.Ident); !ok || tag.Name != "name" {
				return true
			}
			for _, stmt := range sw.Body.List {
				for _, e := range stmt.(*ast.CaseClause).List {
					if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						parsed = append(parsed, s)
					}
				}
			}
			return false
		})
	}
	if len(parsed) == 0 {
		t.Fatal("found no subdirective cases in UnmarshalCaddyfile")
	}
	for _, sub := range parsed {
		if _, ok := subdirectives[sub]; !ok {
			t.Errorf("the parser knows the subdirective %s, but the adapt tests do not", sub)
		}
	}
	for sub := range subdirectives {
		if !slices.Contains(parsed, sub) {
			t.Errorf("the adapt tests list %s, which the parser does not know", sub)
		}
	}
}
