package mcpauth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// redTeamURIs are the spellings of internal/policy's URI tests that reached a secret file
// through a Node MCP server: through the handler, every one must be refused too.
var redTeamURIs = readRedTeamURIs("internal/policy/testdata/red_team_uris.txt")

// readRedTeamURIs reads a file of Go-quoted strings, one a line; # starts a comment line.
func readRedTeamURIs(name string) []string {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		u, err := strconv.Unquote(l)
		if err != nil {
			panic(fmt.Sprintf("%s: %q: %v", name, l, err))
		}
		out = append(out, u)
	}
	return out
}

// uriHandler is a provisioned handler with `scopes mcp:read` and, when uriRule is set,
// `resource_uri file:///srv/secret/* { scopes mcp:admin }`, plus a tool rule either way.
// serve posts a JSON-RPC body with a token holding scope.
func uriHandler(t *testing.T, uriRule bool) (serve func(body, scope string) served) {
	t.Helper()
	key := jwttest.New(t, "k1", "RS256")
	h := newTestHandler(t, newJWKSServer(t, key), func(h *Handler) {
		h.Rules = []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}}
		if uriRule {
			h.Rules = append(h.Rules, &Rule{ResourceURIs: []string{"file:///srv/secret/*"}, Scopes: []string{"mcp:admin"}})
		}
	})
	return func(body, scope string) served {
		r := bearerReq(http.MethodPost, "/mcp", "Bearer "+key.Token(t, testClaims(testIssuer, testResource, scope), nil))
		r.Body = io.NopCloser(strings.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Type", "application/json")
		return serveRequest(t, h, r)
	}
}

func resourceBody(method, uri string) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": map[string]string{"uri": uri}})
	return string(b)
}

// TestServeResourceURINotNormal: with a resource_uri rule on file:///srv/secret/*, a
// read-only token gets 400 for every spelling a server reads as a secret file (before, each
// reached the server), 403 for the secret URI as written, and passes with a public one; the
// same for subscribe and unsubscribe.
func TestServeResourceURINotNormal(t *testing.T) {
	serve := uriHandler(t, true)
	const desc = `error="invalid_request", error_description="The resource URI is not in normal form."`
	for _, method := range []string{mcpjson.MethodResourcesRead, mcpjson.MethodResourcesSubscribe, mcpjson.MethodResourcesUnsubscribe} {
		for _, u := range redTeamURIs {
			res := serve(resourceBody(method, u), "mcp:read")
			if res.status != http.StatusBadRequest || res.nextRan || !strings.Contains(res.header.Get("WWW-Authenticate"), desc) {
				t.Errorf("%s %q: status %d, next ran %v, challenge %q; want 400 invalid_request", method, u, res.status, res.nextRan, res.header.Get("WWW-Authenticate"))
			}
		}
		for _, u := range []string{"file:///srv/secret/a", "file:///srv/SECRET/a/", "file:///srv/secret/%C3%A9"} {
			if res := serve(resourceBody(method, u), "mcp:read"); res.status != http.StatusForbidden || res.nextRan {
				t.Errorf("%s %q: status %d, want 403", method, u, res.status)
			}
			if res := serve(resourceBody(method, u), "mcp:read mcp:admin"); !res.nextRan {
				t.Errorf("%s %q with mcp:admin: status %d, want it to pass", method, u, res.status)
			}
		}
		if res := serve(resourceBody(method, "file:///srv/public/a"), "mcp:read"); !res.nextRan {
			t.Errorf("%s of a public URI: status %d, want it to pass", method, res.status)
		}
	}
	// One bad URI in a batch refuses the batch.
	batch := "[" + resourceBody(mcpjson.MethodResourcesRead, "file:///srv/public/a") + "," + resourceBody(mcpjson.MethodResourcesRead, "file:///srv/public/../secret/a") + "]"
	if res := serve(batch, "mcp:read"); res.status != http.StatusBadRequest {
		t.Errorf("batch with a bad URI: status %d, want 400", res.status)
	}
}

// TestServeResourceURIWithoutURIRules: without resource_uri patterns no URI decides
// anything, so a URI is not judged for its spelling.
func TestServeResourceURIWithoutURIRules(t *testing.T) {
	serve := uriHandler(t, false)
	if res := serve(resourceBody(mcpjson.MethodResourcesRead, "FILE://localhost/srv/public/../secret/a"), "mcp:read"); !res.nextRan {
		t.Fatalf("status %d, want the request to pass", res.status)
	}
}
