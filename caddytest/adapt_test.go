package integration

import (
	"os"
	"path/filepath"
	"regexp"
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

// subdirectives maps every mcp_auth subdirective to its JSON field.
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
}

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
		}
		if !found {
			t.Errorf("no adapt golden file uses the subdirective %s", sub)
		}
	}
}
