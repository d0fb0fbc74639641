package mcpauth

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// Benchmarks of public operations:
//
//	go test -run '^$' -bench 'Public|SecuritySchemes' -benchmem
//
// BenchmarkPublicToolsCall compares an anonymous tools/call of a public tool with a signed-in
// cached one under the same rules; BenchmarkSecuritySchemesRewrite compares the
// securitySchemes rewrite of a tools/list answer with today's filter on the same answer.

func BenchmarkPublicToolsCall(b *testing.B) {
	k := jwttest.New(b, "ed", "EdDSA")
	token := k.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	js := newJWKSServer(b, k)
	size := defaultTokenCacheSize
	h := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		TokenCacheSize:       &size,
		Rules:                []*Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}},
		Public:               &PublicOps{Tools: []string{"search"}},
	}
	provisionHandler(b, h)
	waitKeysLoaded(b, h)
	h.logger = zap.NewNop()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}`)
	for _, c := range []struct{ name, token string }{{"anonymous_public", ""}, {"signed_in_cached", token}} {
		b.Run(c.name, func(b *testing.B) {
			w := &nopWriter{h: make(http.Header)}
			base := newBenchRequest(c.token)
			base.Header.Set("Content-Type", "application/json")
			rd := strings.NewReader("")
			serve := func(r *http.Request) {
				rd.Reset(string(body))
				r.Body = io.NopCloser(rd)
				r.ContentLength = int64(len(body))
				rec := denyRecorder{nopWriter: w}
				_ = h.ServeHTTP(&rec, r, nextOK)
				if rec.status != 0 {
					b.Fatalf("denied with %d", rec.status)
				}
			}
			r := withReplacer(base)
			serve(r)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if i%256 == 255 {
					b.StopTimer()
					r = withReplacer(base)
					b.StartTimer()
				}
				serve(r)
			}
		})
	}
}

func BenchmarkSecuritySchemesRewrite(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"jsonrpc":"2.0","id":2,"result":{"tools":[`)
	for i := range 50 {
		if i > 0 {
			sb.WriteByte(',')
		}
		name := fmt.Sprintf("tool_%d", i)
		if i%5 == 0 {
			name = fmt.Sprintf("delete_%d", i)
		}
		fmt.Fprintf(&sb, `{"name":%q,"description":"does %d","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"_meta":{"vendor":"x"}}`, name, i)
	}
	sb.WriteString(`]}}`)
	answer := []byte(sb.String())

	p, err := policy.Compile(policy.Config{AllOf: []string{"mcp:read"},
		Rules:  []policy.Rule{{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}}},
		Public: &policy.Public{Tools: []string{"tool_1*"}}})
	if err != nil {
		b.Fatal(err)
	}
	s := p.NewSubject(&verify.Identity{Scopes: []string{"mcp:read"}})
	filter := &mcpjson.ListFilter{Kinds: mcpjson.KindsOf(mcpjson.ListTools), Allowed: func(k mcpjson.ListKind, key string) bool {
		return p.EntryAllowed(&s, k, key)
	}}
	rewrite := &mcpjson.ListFilter{Kinds: mcpjson.KindsOf(mcpjson.ListTools), Allowed: func(mcpjson.ListKind, string) bool { return true },
		Schemes: p.ToolSchemes}
	for _, lf := range []struct {
		name string
		lf   *mcpjson.ListFilter
	}{{"filter_tools_list", filter}, {"security_schemes", rewrite}} {
		b.Run(lf.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(answer)))
			for b.Loop() {
				if _, err := mcpjson.FilterJSONAnswer(answer, lf.lf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
