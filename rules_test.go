package mcpauth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"go.uber.org/zap"
)

// testRules are the rules of internal/policy's own tests: with `scopes mcp:read`, what the
// handler tests below judge through judgeOperation.
func testRules() []*Rule {
	return []*Rule{
		{Tools: []string{"delete_*", "drop_table"}, Scopes: []string{"mcp:admin"}},
		{Tools: []string{"write_*"}, AnyOf: []string{"mcp:write", "mcp:admin"}},
		{Prompts: []string{"secret"}, Scopes: []string{"prompts:secret"}},
		{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"files:private"}},
		{Methods: []string{"tools/call"}, Scopes: []string{"mcp:tools"}},
		{Methods: []string{"resources/*"}, Scopes: []string{"mcp:resources"}},
	}
}

// TestStepUpChallenge: the whole header of a step-up 403, built with buildChallenge.
func TestStepUpChallenge(t *testing.T) {
	h := policyHandler(t, false)
	c := scopesCaller(h, "mcp:read")
	v := h.policy.Decide(&c.subject, []mcpjson.Message{{Method: "tools/call", HasMethod: true, Name: "delete_user"}})
	got := buildChallenge(codeInsufficientScope, denials[denyInsufficientScope].desc,
		v.StepUp, "https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
	want := `Bearer error="insufficient_scope", error_description="The access token does not have the scope this request requires.", scope="mcp:read mcp:admin mcp:tools", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	if got != want {
		t.Fatalf("challenge\n got %s\nwant %s", got, want)
	}
}

func TestValidateRules(t *testing.T) {
	cases := []struct {
		name string
		rule *Rule
		want error
	}{
		{"ok", &Rule{Tools: []string{"a"}, Scopes: []string{"s"}}, nil},
		{"no target", &Rule{Scopes: []string{"s"}}, errRuleNoTarget},
		{"no scope", &Rule{Tools: []string{"a"}}, errRuleNoScope},
		{"empty pattern", &Rule{Methods: []string{""}, Scopes: []string{"s"}}, errRuleEmptyMatch},
		{"bad scope", &Rule{Tools: []string{"a"}, AnyOf: []string{`a"b`}}, errBadScope},
		{"resource_uri ok", &Rule{ResourceURIs: []string{"file:///srv/secret/*", "file:///srv/key.pem"}, Scopes: []string{"s"}}, nil},
		{"resource_uri never matches", &Rule{ResourceURIs: []string{"file://localhost/srv/secret/*"}, Scopes: []string{"s"}}, policy.ErrURINotNormal},
		{"resource_uri exact not normal", &Rule{ResourceURIs: []string{"FILE:///srv/key.pem"}, Scopes: []string{"s"}}, policy.ErrURINotNormal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validateRules([]*Rule{tc.rule})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// policyHandler is a handler with testRules, ready for judgeOperation,
// without key sets.
func policyHandler(tb testing.TB, filter bool) *Handler {
	tb.Helper()
	h := &Handler{logger: zap.NewNop(), Scopes: []string{"mcp:read"}, Rules: testRules()}
	var err error
	if h.policy, err = policy.Compile(h.policyConfig()); err != nil {
		tb.Fatal(err)
	}
	h.ops = &opPolicy{maxBody: defaultMaxBodySize}
	if filter {
		h.ops.lists = mcpjson.KindsOf(mcpjson.ListTools)
	}
	h.meta.url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	h.chall = newChallenges(h.policy.ChallengeScope(), h.meta.url)
	return h
}

// toolsCallBody is a tools/call request of exactly size bytes, padded in its arguments.
func toolsCallBody(tb testing.TB, name string, size int) []byte {
	tb.Helper()
	head := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"` + name + `","arguments":{"path":"/tmp/x","content":"`
	tail := `"}}}`
	pad := size - len(head) - len(tail)
	if pad < 0 {
		tb.Fatal("size too small")
	}
	var b bytes.Buffer
	b.WriteString(head)
	chunk := "lorem ipsum dolor sit amet \\u00e9\\n "
	for b.Len()+len(chunk) <= len(head)+pad {
		b.WriteString(chunk)
	}
	b.WriteString(strings.Repeat("x", len(head)+pad-b.Len()))
	b.WriteString(tail)
	return b.Bytes()
}

func benchmarkPolicy(b *testing.B, size int) {
	h := policyHandler(b, false)
	body := toolsCallBody(b, "read_file", size)
	c := scopesCaller(h, "mcp:read", "mcp:tools")
	r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	rd := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		r.ContentLength = int64(len(body))
		if h.judgeOperation(w, r, c, nil).deny != denyNone {
			b.Fatal("denied")
		}
	}
}

// BenchmarkPolicyToolsCall1KiB: the whole per-operation check of a 1 KiB tools/call: body
// read, strict JSON-RPC reading, rule matching and the scope check.
func BenchmarkPolicyToolsCall1KiB(b *testing.B) { benchmarkPolicy(b, 1<<10) }

// BenchmarkPolicyToolsCall1MiB: the same for a 1 MiB body (the default max_body_size).
func BenchmarkPolicyToolsCall1MiB(b *testing.B) { benchmarkPolicy(b, 1<<20) }

func benchmarkPolicyRead(b *testing.B, size int) {
	body := toolsCallBody(b, "read_file", size)
	msgs := make([]mcpjson.Message, 0, 4)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var err error
		if msgs, _, err = mcpjson.ReadRPC(body, msgs[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPolicyReadRPC1KiB and 1MiB: the strict JSON-RPC reading alone.
func BenchmarkPolicyReadRPC1KiB(b *testing.B) { benchmarkPolicyRead(b, 1<<10) }
func BenchmarkPolicyReadRPC1MiB(b *testing.B) { benchmarkPolicyRead(b, 1<<20) }
