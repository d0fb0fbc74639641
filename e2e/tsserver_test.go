package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// TestTypeScriptServerBodies puts Caddy with a per-tool rule in front of an MCP server built
// the way the TypeScript SDK documents it (createMcpExpressApp(): Express and express.json()),
// and sends it bodies that express.json() decodes otherwise than as UTF-8: a tools/call of
// the protected tool in UTF-7 and gzipped. Sent to the server directly, they run the tool
// (the attack is real); through Caddy they get 415 and the tool never runs.
func TestTypeScriptServerBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	node := findNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tmp := t.TempDir()
	caddyBin := buildCaddy(ctx, t, tmp)

	key := jwttest.New(t, "ts-1", "RS256")
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwttest.JWKS(key))
	}))
	t.Cleanup(jwks.Close)

	server := startProcess(ctx, t, "tsserver-express.mjs", "MCP_READY ", exec.CommandContext(ctx, node, "tsserver-express.mjs"))
	serverURL, err := url.Parse(server)
	if err != nil {
		t.Fatalf("server address %q: %v", server, err)
	}
	ranURL := "http://" + serverURL.Host + "/ran"

	base := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	resource := base + "/mcp"
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}
%s {
	mcp_auth {
		resource %s
		authorization_servers https://auth.example.com
		jwks_url %s
		scopes mcp:read
		tool delete_* {
			scopes mcp:admin
		}
	}
	reverse_proxy %s
}
`, base, resource, jwks.URL, serverURL.Host)
	cfgPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	caddyCmd := exec.CommandContext(ctx, caddyBin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddyCmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(tmp, "data"), "XDG_CONFIG_HOME="+filepath.Join(tmp, "config"))
	startProcess(ctx, t, "caddy", "", caddyCmd)

	now := time.Now()
	token := key.Token(t, jwt.MapClaims{"iss": "https://auth.example.com", "aud": resource, "sub": "alice",
		"scope": "mcp:read", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, nil)
	hc := &http.Client{Timeout: 15 * time.Second}
	post := func(target string, body []byte, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ran := func() map[string]int {
		t.Helper()
		var m map[string]int
		getJSON(t, hc, ranURL, &m)
		return m
	}

	readCall := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`)
	deleteCall := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`
	// "+AGQ-" is 'd' and "+AF8-" is '_' in UTF-7: read as UTF-8 the name is another tool.
	utf7 := []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"+AGQ-elete+AF8-file","arguments":{"path":"/x"}}}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, deleteCall)
	_ = zw.Close()
	attacks := []struct {
		name string
		body []byte
		hdr  []string
	}{
		{"UTF-7", utf7, []string{"Content-Type", "application/json; charset=utf-7"}},
		{"gzip", gz.Bytes(), []string{"Content-Encoding", "gzip"}},
	}

	// Keys load in the background: wait until a good token is not answered 503.
	waitFor(ctx, t, "caddy to serve and load the signing keys", func() bool {
		code, _ := post(resource, readCall)
		return code == http.StatusOK
	})

	t.Run("the server decodes what a UTF-8 reader does not see", func(t *testing.T) {
		for _, a := range attacks {
			before := ran()["delete_file"]
			code, body := post(server, a.body, a.hdr...)
			if code != http.StatusOK || !strings.Contains(body, "delete_file /x") || ran()["delete_file"] != before+1 {
				t.Errorf("%s sent to the server directly: %d %q; want delete_file run (else this test proves nothing)", a.name, code, body)
			}
		}
	})

	t.Run("through Caddy they get 415 and the tool never runs", func(t *testing.T) {
		before := ran()["delete_file"]
		if code, _ := post(resource, []byte(deleteCall)); code != http.StatusForbidden {
			t.Errorf("plain delete_file: status %d, want 403", code)
		}
		for _, a := range attacks {
			code, body := post(resource, a.body, a.hdr...)
			if code != http.StatusUnsupportedMediaType {
				t.Errorf("%s: status %d %q, want 415", a.name, code, body)
			}
		}
		if n := ran()["delete_file"]; n != before {
			t.Errorf("delete_file ran %d times through Caddy with mcp:read only", n-before)
		}
		code, body := post(resource, readCall)
		if code != http.StatusOK || !strings.Contains(body, "read_file /x") {
			t.Errorf("read_file: %d %q", code, body)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Errorf("read_file answer is not JSON: %v", err)
		}
	})
}

// buildCaddy builds Caddy with this module into dir.
func buildCaddy(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "caddy")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/mcpauth/caddy-mcp-auth/cmd/caddy")
	if b, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}
