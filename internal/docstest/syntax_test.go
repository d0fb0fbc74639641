package docstest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The functions that read the mcp_auth block and its nested blocks; every string a case of
// theirs (or a `name == "…"` test) accepts is a subdirective.
var parserFuncs = map[string][]string{
	"caddyfile.go":      {"UnmarshalCaddyfile", "parseRule"},
	"introspection.go":  {"unmarshalCaddyfile"},
	"dpop.go":           {"unmarshalDPoP"},
	"token_exchange.go": {"unmarshalCaddyfile", "parseRuleExchange", "parseExchangeTargetLine"},
	"store.go":          {"unmarshalStore"},
}

// TestSyntaxBlockListsEverySubdirective: the syntax block at the top of
// docs/configuration.md names every subdirective the Caddyfile parser accepts, nested ones
// included, and is written as `caddy fmt` writes it.
func TestSyntaxBlockListsEverySubdirective(t *testing.T) {
	accepted := acceptedSubdirectives(t)
	if len(accepted) < 40 {
		t.Fatalf("found only %d subdirectives in the parser; did a function in parserFuncs move?", len(accepted))
	}
	raw, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, "## Caddyfile syntax\n")
	if i < 0 {
		t.Fatal("docs/configuration.md has no \"## Caddyfile syntax\" section")
	}
	start := strings.Index(doc[i:], "\n```\n")
	if start < 0 {
		t.Fatal("no code block under \"## Caddyfile syntax\"")
	}
	body := doc[i+start+len("\n```\n"):]
	end := strings.Index(body, "```\n")
	if end < 0 {
		t.Fatal("the syntax block is not closed")
	}
	body = body[:end]
	if got := string(caddyfile.Format([]byte(body))); got != body {
		t.Errorf("the syntax block is not as caddy fmt writes it; first difference:\n%s", firstDiff(body, got))
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			listed[f[0]] = true
		}
	}
	for name, where := range accepted {
		if !listed[name] {
			t.Errorf("%s accepts %q, but the syntax block of docs/configuration.md does not list it", where, name)
		}
	}
}

func acceptedSubdirectives(t *testing.T) map[string]string {
	t.Helper()
	names := map[string]string{}
	fset := token.NewFileSet()
	for file, funcs := range parserFuncs {
		f, err := parser.ParseFile(fset, filepath.Join(root, file), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || !contains(funcs, fn.Name.Name) {
				continue
			}
			add := func(e ast.Expr) {
				lit, ok := e.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return
				}
				if s, err := strconv.Unquote(lit.Value); err == nil && s != "" {
					names[s] = file + " " + fn.Name.Name
				}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CaseClause:
					for _, e := range n.List {
						add(e)
					}
				case *ast.BinaryExpr:
					if id, ok := n.X.(*ast.Ident); ok && n.Op == token.EQL && id.Name == "name" {
						add(n.Y)
					}
				}
				return true
			})
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestStatusTableHasEveryDenial: every answer in wwwauth.go's denials table has a row in the
// status-code tables of docs/configuration.md with its status, error code, description and
// reason, exactly.
func TestStatusTableHasEveryDenial(t *testing.T) {
	statuses := map[string]string{
		"StatusBadRequest": "400", "StatusUnauthorized": "401", "StatusForbidden": "403",
		"StatusNotFound": "404", "StatusMethodNotAllowed": "405", "StatusRequestEntityTooLarge": "413",
		"StatusUnsupportedMediaType": "415", "StatusServiceUnavailable": "503",
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "wwwauth.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	var table *ast.CompositeLit
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, id := range n.Names {
				if id.Name == "denials" && i < len(n.Values) {
					table, _ = n.Values[i].(*ast.CompositeLit)
				}
				if i < len(n.Values) {
					if lit, ok := n.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						consts[id.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
		return true
	})
	if table == nil || len(table.Elts) < 30 {
		t.Fatal("wwwauth.go: the denials table was not found")
	}
	raw, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{} // reason -> cells
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| 4") && !strings.HasPrefix(line, "| 5") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) == 5 {
			rows[strings.Trim(cells[4], "`")] = cells
		}
	}
	str := func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.BasicLit:
			s, _ := strconv.Unquote(e.Value)
			return s
		case *ast.Ident:
			return consts[e.Name]
		case *ast.SelectorExpr:
			return statuses[e.Sel.Name]
		}
		return "?"
	}
	for _, el := range table.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		v, ok := kv.Value.(*ast.CompositeLit)
		if !ok || len(v.Elts) != 4 {
			t.Fatalf("wwwauth.go: denials entry %v is not {status, code, description, label}", kv.Key)
		}
		status, code, desc, label := str(v.Elts[0]), str(v.Elts[1]), str(v.Elts[2]), str(v.Elts[3])
		row, ok := rows[label]
		if !ok {
			t.Errorf("docs/configuration.md: no status-table row for %s (reason %q)", kv.Key, label)
			continue
		}
		wantCode, wantDesc := "(none)", "(none)"
		if code != "" {
			wantCode = "`" + code + "`"
		}
		if desc != "" {
			wantDesc = desc
		}
		if row[0] != status || row[1] != wantCode || row[2] != wantDesc {
			t.Errorf("docs/configuration.md: row %q says %s %s %q; wwwauth.go says %s %s %q",
				label, row[0], row[1], row[2], status, wantCode, wantDesc)
		}
	}
}
