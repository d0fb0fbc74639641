package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/examples/demo/internal/demo"
)

// TestTokenFindsTheDemoKey: the token tool signs with the key the demo's Caddy trusts, from the
// repository root and from any directory below it, and refuses, naming where it looked, when
// there is none, rather than creating a new key whose tokens would all get 401.
func TestTokenFindsTheDemoKey(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "examples", "demo", "mcpserver")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	tool := func(t *testing.T, cwd, env string, args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(args, env, cwd, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	keyPath := filepath.Join(root, "examples", "demo", ".demo", demo.KeyFile)

	// Before run.sh: no key anywhere. Minting refuses and creates nothing.
	code, out, errOut := tool(t, sub, "")
	if code == 0 || out != "" {
		t.Fatalf("minted without a key: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{filepath.Join(sub, "examples", "demo", ".demo"), filepath.Join(root, "examples", "demo", ".demo"), "run.sh", "-state"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("message %q does not name %q", errOut, want)
		}
	}
	if _, err := os.Stat(keyPath); !os.IsNotExist(err) {
		t.Fatalf("a key was created: %v", err)
	}

	// run.sh: -init from the repository root creates the key.
	if code, _, errOut := tool(t, root, "", "-init"); code != 0 {
		t.Fatalf("-init: exit %d: %s", code, errOut)
	}
	key, err := demo.LoadKey(filepath.Join(root, "examples", "demo", ".demo"))
	if err != nil {
		t.Fatal(err)
	}

	// From the root and from a directory below it, tokens carry that key's kid.
	for _, cwd := range []string{root, sub} {
		code, out, errOut := tool(t, cwd, "", "-scope", "mcp:read")
		if code != 0 {
			t.Fatalf("from %s: exit %d: %s", cwd, code, errOut)
		}
		if kid := headerKID(t, strings.TrimSpace(out)); kid != key.KID {
			t.Errorf("from %s: token signed by kid %q, want the demo key %q", cwd, kid, key.KID)
		}
	}

	// An explicit state directory without a key is refused, naming it.
	other := t.TempDir()
	code, out, errOut = tool(t, root, other)
	if code == 0 || out != "" || !strings.Contains(errOut, other) {
		t.Fatalf("MCP_DEMO_STATE without a key: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if entries, _ := os.ReadDir(other); len(entries) != 0 {
		t.Fatalf("files created in %s: %v", other, entries)
	}
}

func headerKID(t *testing.T, tok string) string {
	t.Helper()
	h, _, ok := strings.Cut(tok, ".")
	if !ok {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.KID
}
