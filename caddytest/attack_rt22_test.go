package integration

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

const boundedTracingCaddyfile = globalOptions + `
http://jwt.localhost:9080 {
	tracing
	mcp_auth {
		resource              https://mcp.example.com/mcp
		authorization_servers https://auth.example.com
		jwks_url              @JWKS@
		scopes                mcp:read
		tool delete_* {
			scopes mcp:admin
		}
	}
	reverse_proxy @UPSTREAM@
}
`

// The names a request carries (the method, the tool, prompt or resource it names) are the
// client's: a tool name of half a megabyte must not become a span attribute of half a
// megabyte, exported with every span of its batch (a collector refuses batches above its
// message limit, 4 MiB by default for OTLP/gRPC, so a few such calls would drop every other
// request's spans with them). Each such attribute is cut to at most 256 bytes, on a
// character boundary, whatever the decision.
func TestTracingBoundsClientNames(t *testing.T) {
	rcv := sharedOTLPReceiver(t)

	k1 := jwttest.New(t, "rt22-k1", "ES256")
	js := newSwappableJWKS(t, k1)
	up := newTracedUpstream(t)
	tc := startCaddy(t, render(boundedTracingCaddyfile, map[string]string{
		"JWKS": js.URL, "UPSTREAM": strings.TrimPrefix(up.URL, "http://"),
	}), "caddyfile")
	read := k1.Token(t, claims(resource, "mcp:read"), nil)

	// 'é' is two bytes: a cut at an odd byte would split one.
	long := "get_" + strings.Repeat("é", 300<<10)
	cases := []struct {
		name, body, attr string
		code             int
	}{
		{"allowed tool", rpc("tools/call", `{"name":"`+long+`"}`), "gen_ai.tool.name", http.StatusOK},
		{"refused tool", rpc("tools/call", `{"name":"delete_`+long+`"}`), "gen_ai.tool.name", http.StatusForbidden},
		{"prompt", rpc("prompts/get", `{"name":"`+long+`"}`), "gen_ai.prompt.name", http.StatusOK},
		{"resource", rpc("resources/read", `{"uri":"file:///`+long+`"}`), "mcp.resource.uri", http.StatusOK},
		{"method", rpc("x/"+long, `{}`), "mcp.method.name", 0},
	}
	for _, c := range cases {
		id, code, _ := tracedPost(t, tc, "jwt.localhost", read, "", c.body)
		if c.code != 0 && code != c.code {
			t.Fatalf("%s: status %d, want %d", c.name, code, c.code)
		}
		spans := rcv.waitTrace(t, id, c.name+" decision span", func(s []*tracepb.Span) bool { return decisionSpan(s) != nil })
		got, ok := attrs(decisionSpan(spans))[c.attr]
		if !ok {
			t.Errorf("%s: no attribute %s", c.name, c.attr)
			continue
		}
		if len(got) > 256 || !utf8.ValidString(got) || len(got) < 200 {
			t.Errorf("%s: attribute %s has %d bytes (valid UTF-8: %v); want a valid prefix of at most 256", c.name, c.attr, len(got), utf8.ValidString(got))
		}
		for _, s := range spans {
			for k, v := range attrs(s) {
				if len(v) > 4096 {
					t.Errorf("%s: span %s attribute %s has %d bytes", c.name, s.GetName(), k, len(v))
				}
			}
		}
	}
}
