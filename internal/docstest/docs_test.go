// Package docstest checks the documentation against the code: every Caddyfile in README.md and
// docs/ is formatted as `caddy fmt` writes it and adapts with this module, every JSON example is
// valid and uses only known fields, and the quick start shows the demo's Caddyfile as it is.
package docstest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	mcpauth "github.com/mcpauth/caddy-mcp-auth"
)

const root = "../.."

// Info strings of the fenced blocks that are checked. A fragment is a part of a site block
// (the inside of a site, such as an mcp_auth block alone); it is checked inside `:8080 { }`.
const (
	infoCaddyfile = "caddyfile"
	infoFragment  = "caddyfile-fragment"
	infoJSON      = "json"
)

type block struct {
	file string // relative to the repository root
	line int    // of the opening fence
	info string
	body string
}

func (b block) where() string { return b.file + ":" + strconv.Itoa(b.line) }

// TestDocCaddyfiles runs `caddy fmt` and `caddy adapt` on every Caddyfile of the docs.
func TestDocCaddyfiles(t *testing.T) {
	n := 0
	for _, b := range docBlocks(t) {
		if b.info != infoCaddyfile && b.info != infoFragment {
			continue
		}
		n++
		if got := string(caddyfile.Format([]byte(b.body))); got != b.body {
			t.Errorf("%s: not as caddy fmt writes it; first difference:\n%s", b.where(), firstDiff(b.body, got))
		}
		src := b.body
		if b.info == infoFragment {
			src = ":8080 {\n" + indent(b.body) + "}\n"
		}
		_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": b.where()})
		if err != nil {
			t.Errorf("%s: caddy adapt: %v", b.where(), err)
			continue
		}
		for _, w := range warnings {
			if !strings.Contains(w.Message, "not formatted") { // reported above, with the difference
				t.Errorf("%s: caddy adapt warning: %s", b.where(), w.String())
			}
		}
	}
	if n < 10 {
		t.Fatalf("found only %d Caddyfile blocks; is the fence info string still %q?", n, infoCaddyfile)
	}
}

// TestDocJSON checks that every JSON example parses, that a Caddy config has only Caddy's
// top-level keys, and that every mcp_auth handler in it has only fields the module knows.
func TestDocJSON(t *testing.T) {
	for _, b := range docBlocks(t) {
		if b.info != infoJSON {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(b.body), &v); err != nil {
			t.Errorf("%s: not valid JSON: %v", b.where(), err)
			continue
		}
		if m, ok := v.(map[string]any); ok && m["apps"] != nil {
			var cfg caddy.Config
			if err := strictDecode(b.body, &cfg); err != nil {
				t.Errorf("%s: not a Caddy config: %v", b.where(), err)
			}
		}
		for _, h := range handlers(v) {
			delete(h, "handler")
			raw, _ := json.Marshal(h)
			var mh mcpauth.Handler
			if err := strictDecode(string(raw), &mh); err != nil {
				t.Errorf("%s: mcp_auth handler: %v", b.where(), err)
			}
		}
	}
}

// TestQuickStartIsTheDemo: the quick start shows examples/demo/Caddyfile exactly as run.sh
// runs it.
func TestQuickStartIsTheDemo(t *testing.T) {
	demo, err := os.ReadFile(filepath.Join(root, "examples", "demo", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range docBlocks(t) {
		if b.file == "README.md" && b.info == infoCaddyfile && b.body == string(demo) {
			return
		}
	}
	t.Fatal("README.md has no ```caddyfile block equal to examples/demo/Caddyfile; copy the file into the quick start")
}

// docBlocks returns the fenced code blocks of README.md and docs/*.md.
func docBlocks(t *testing.T) []block {
	t.Helper()
	files := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		rel, _ := filepath.Rel(root, f)
		files = append(files, filepath.ToSlash(rel))
	}
	var blocks []block
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(raw), "\n")
		for i := 0; i < len(lines); i++ {
			trimmed := strings.TrimLeft(lines[i], " ")
			if !strings.HasPrefix(trimmed, "```") {
				continue
			}
			ind := len(lines[i]) - len(trimmed)
			b := block{file: f, line: i + 1, info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))}
			var body strings.Builder
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				l := lines[i]
				if len(l) >= ind && strings.TrimSpace(l[:ind]) == "" {
					l = l[ind:]
				}
				body.WriteString(l + "\n")
			}
			if i == len(lines) {
				t.Fatalf("%s: fence not closed", b.where())
			}
			b.body = body.String()
			blocks = append(blocks, b)
		}
	}
	return blocks
}

// handlers finds the objects with "handler": "mcp_auth", at any depth.
func handlers(v any) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case map[string]any:
		if x["handler"] == "mcp_auth" {
			out = append(out, x)
		}
		for _, c := range x {
			out = append(out, handlers(c)...)
		}
	case []any:
		for _, c := range x {
			out = append(out, handlers(c)...)
		}
	}
	return out
}

func strictDecode(s string, dst any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}

func indent(s string) string {
	var b bytes.Buffer
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.TrimSpace(l) != "" {
			b.WriteString("\t")
		}
		b.WriteString(l)
	}
	return b.String()
}

func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "  line " + strconv.Itoa(i+1) + " is:        " + strconv.Quote(wl) + "\n  caddy fmt writes: " + strconv.Quote(gl)
		}
	}
	return ""
}
