package mcpauth

import (
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"

	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"read_file", "read_file", true},
		{"read_file", "read_files", false},
		{"read_file", "Read_file", false},
		{"*", "", true},
		{"*", "anything/at all", true},
		{"read_*", "read_file", true},
		{"read_*", "read_", true},
		{"read_*", "write_file", false},
		{"*_file", "delete_file", true},
		{"*_file", "delete_files", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "abcabc", true},
		{"a*b*c", "acb", false},
		{"file:///private/*", "file:///private/a/b", true},
		{"file:///private/*", "file:///public/a", false},
		{"**", "x", true},
		{"a*", "", false},
	}
	for _, tc := range cases {
		if got := newPattern(tc.pat).match(tc.s); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pat, tc.s, got, tc.want)
		}
	}
}

// TestGlobMatchBounded: a pathological pattern against a long name finishes (the matcher
// backtracks only to the last star).
func TestGlobMatchBounded(t *testing.T) {
	s := strings.Repeat("a", 1<<16)
	if globMatch("*a*a*a*a*a*a*b", s) {
		t.Fatal("matched")
	}
}

func testRuleSet() *ruleSet {
	base := newPolicy([]string{"mcp:read"}, nil, "")
	return newRuleSet(base, []*Rule{
		{Tools: []string{"delete_*", "drop_table"}, Scopes: []string{"mcp:admin"}},
		{Tools: []string{"write_*"}, AnyOf: []string{"mcp:write", "mcp:admin"}},
		{Prompts: []string{"secret"}, Scopes: []string{"prompts:secret"}},
		{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"files:private"}},
		{Methods: []string{"tools/call"}, Scopes: []string{"mcp:tools"}},
		{Methods: []string{"resources/*"}, Scopes: []string{"mcp:resources"}},
	})
}

func TestRuleMatching(t *testing.T) {
	rs := testRuleSet()
	cases := []struct {
		name string
		msg  mcpjson.Message
		want []int
	}{
		{"allowed tool", mcpjson.Message{Method: "tools/call", HasMethod: true, Name: "read_file"}, []int{4}},
		{"admin tool", mcpjson.Message{Method: "tools/call", HasMethod: true, Name: "delete_user"}, []int{0, 4}},
		{"exact admin tool", mcpjson.Message{Method: "tools/call", HasMethod: true, Name: "drop_table"}, []int{0, 4}},
		{"write tool", mcpjson.Message{Method: "tools/call", HasMethod: true, Name: "write_file"}, []int{1, 4}},
		{"tool pattern not applied to prompts", mcpjson.Message{Method: "prompts/get", HasMethod: true, Name: "delete_x"}, nil},
		{"prompt", mcpjson.Message{Method: "prompts/get", HasMethod: true, Name: "secret"}, []int{2}},
		{"private resource", mcpjson.Message{Method: "resources/read", HasMethod: true, Name: "file:///private/key"}, []int{3, 5}},
		{"public resource", mcpjson.Message{Method: "resources/read", HasMethod: true, Name: "file:///pub/x"}, []int{5}},
		{"private resource subscribe", mcpjson.Message{Method: "resources/subscribe", HasMethod: true, Name: "file:///private/key"}, []int{3, 5}},
		{"private resource unsubscribe", mcpjson.Message{Method: "resources/unsubscribe", HasMethod: true, Name: "file:///private/key"}, []int{3, 5}},
		{"private resource, other case", mcpjson.Message{Method: "resources/read", HasMethod: true, Name: "file:///PRIVATE/key"}, []int{3, 5}},
		{"private resource, escaped", mcpjson.Message{Method: "resources/read", HasMethod: true, Name: "file:///%70rivate/key"}, []int{3, 5}},
		{"uri pattern not applied to tools", mcpjson.Message{Method: "tools/call", HasMethod: true, Name: "file:///private/key"}, []int{4}},
		{"resources/list", mcpjson.Message{Method: "resources/list", HasMethod: true}, []int{5}},
		{"tools/list", mcpjson.Message{Method: "tools/list", HasMethod: true}, nil},
		{"response", mcpjson.Message{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s matchSet
			rs.match(&tc.msg, &s)
			var got []int
			for i := range rs.rules {
				if s.has(i) {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("matched rules %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMatchSetManyRules(t *testing.T) {
	var s matchSet
	for _, i := range []int{0, 63, 64, 130} {
		s.add(i)
	}
	for i := 0; i < 200; i++ {
		want := i == 0 || i == 63 || i == 64 || i == 130
		if s.has(i) != want {
			t.Fatalf("has(%d) = %v", i, !want)
		}
	}
}

// TestRequirementUnion: the base policy and every matched rule must hold, over all messages
// of a batch; the 403 scope lists base scopes then the matched rules' scopes.
func TestRequirementUnion(t *testing.T) {
	rs := testRuleSet()
	call := func(name string) mcpjson.Message {
		return mcpjson.Message{Method: "tools/call", HasMethod: true, Name: name}
	}
	cases := []struct {
		name      string
		msgs      []mcpjson.Message
		granted   string
		ok        bool
		challenge []string
	}{
		{"base only, granted", []mcpjson.Message{{Method: "ping", HasMethod: true}}, "mcp:read", true, nil},
		{"base missing", []mcpjson.Message{{Method: "ping", HasMethod: true}}, "mcp:tools", false, []string{"mcp:read"}},
		{"allowed tool", []mcpjson.Message{call("read_file")}, "mcp:read mcp:tools", true, nil},
		{"method rule unmet", []mcpjson.Message{call("read_file")}, "mcp:read", false, []string{"mcp:read", "mcp:tools"}},
		{"admin tool unmet", []mcpjson.Message{call("delete_user")}, "mcp:read mcp:tools", false, []string{"mcp:read", "mcp:admin", "mcp:tools"}},
		{"admin tool met", []mcpjson.Message{call("delete_user")}, "mcp:read mcp:tools mcp:admin", true, nil},
		{"any_of unmet names first alternative", []mcpjson.Message{call("write_file")}, "mcp:read mcp:tools", false, []string{"mcp:read", "mcp:write", "mcp:tools"}},
		{"any_of met by second alternative", []mcpjson.Message{call("write_file")}, "mcp:read mcp:tools mcp:admin", true, nil},
		{"base missing, any_of held names held alternative", []mcpjson.Message{call("write_file")}, "mcp:tools mcp:admin", false, []string{"mcp:read", "mcp:admin", "mcp:tools"}},
		{"batch allowed and forbidden", []mcpjson.Message{call("read_file"), call("delete_user")}, "mcp:read mcp:tools", false, []string{"mcp:read", "mcp:admin", "mcp:tools"}},
		{"batch both allowed", []mcpjson.Message{call("read_file"), call("delete_user")}, "mcp:read mcp:tools mcp:admin", true, nil},
		{"batch union of three", []mcpjson.Message{call("write_x"), {Method: "prompts/get", HasMethod: true, Name: "secret"}, call("drop_table")}, "mcp:read", false,
			[]string{"mcp:read", "mcp:admin", "mcp:write", "prompts:secret", "mcp:tools"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			granted := strings.Fields(tc.granted)
			var s matchSet
			for i := range tc.msgs {
				rs.match(&tc.msgs[i], &s)
			}
			if got := rs.satisfiedBy(granted, &s); got != tc.ok {
				t.Fatalf("satisfied = %v, want %v", got, tc.ok)
			}
			if !tc.ok {
				if got := rs.stepUpScopes(granted, &s); !slices.Equal(got, tc.challenge) {
					t.Fatalf("step-up scopes %v, want %v", got, tc.challenge)
				}
			}
		})
	}
}

// TestStepUpChallenge: the whole header of a step-up 403, built with buildChallenge.
func TestStepUpChallenge(t *testing.T) {
	rs := testRuleSet()
	var s matchSet
	rs.match(&mcpjson.Message{Method: "tools/call", HasMethod: true, Name: "delete_user"}, &s)
	got := buildChallenge(codeInsufficientScope, denials[denyInsufficientScope].desc,
		rs.stepUpScopes([]string{"mcp:read"}, &s), "https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
	want := `Bearer error="insufficient_scope", error_description="The access token does not have the scope this request requires.", scope="mcp:read mcp:admin mcp:tools", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	if got != want {
		t.Fatalf("challenge\n got %s\nwant %s", got, want)
	}
}

func TestToolAllowed(t *testing.T) {
	rs := testRuleSet()
	granted := []string{"mcp:read", "mcp:tools"}
	for name, want := range map[string]bool{"read_file": true, "delete_user": false, "write_file": false, "drop_table": false} {
		if got := rs.toolAllowed(name, scopesCaller(granted...)); got != want {
			t.Errorf("toolAllowed(%q) = %v, want %v", name, got, want)
		}
	}
	// The method rule for tools/call hides every tool from a token without mcp:tools.
	if rs.toolAllowed("read_file", scopesCaller("mcp:read")) {
		t.Error("read_file allowed without mcp:tools")
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
		{"resource_uri never matches", &Rule{ResourceURIs: []string{"file://localhost/srv/secret/*"}, Scopes: []string{"s"}}, errURINotNormal},
		{"resource_uri exact not normal", &Rule{ResourceURIs: []string{"FILE:///srv/key.pem"}, Scopes: []string{"s"}}, errURINotNormal},
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

// policyHandler is a handler with the rules of testRuleSet, ready for judgeOperation,
// without key sets.
func policyHandler(tb testing.TB, filter bool) *Handler {
	tb.Helper()
	rs := testRuleSet()
	h := &Handler{logger: zap.NewNop()}
	h.policy = rs.base
	h.ops = &operations{rules: rs, maxBody: defaultMaxBodySize}
	if filter {
		h.ops.lists = mcpjson.Of(mcpjson.ListTools)
	}
	h.meta.url = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	h.chall = newChallenges(h.policy.challengeScope(), h.meta.url)
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
	c := scopesCaller("mcp:read", "mcp:tools")
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
		if h.judgeOperation(w, r, c).deny != denyNone {
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

// TestResourceURIPatternKeys: a file: pattern covers the same path with a trailing slash (and
// a directory pattern with a slash the path without it), in another ASCII case, and with
// escapes decoded, since servers read all of those as one file; other schemes only decode.
func TestResourceURIPatternKeys(t *testing.T) {
	rs := newRuleSet(newPolicy([]string{"mcp:read"}, nil, ""), []*Rule{
		{ResourceURIs: []string{"file:///srv/secret/a"}, Scopes: []string{"exact"}},
		{ResourceURIs: []string{"file:///srv/dir/"}, Scopes: []string{"dir"}},
		{ResourceURIs: []string{"file:///srv/[id].tsx"}, Scopes: []string{"brackets"}},
		{ResourceURIs: []string{"docs://h/a!b"}, Scopes: []string{"docs"}},
	})
	cases := []struct {
		uri  string
		want []int
	}{
		{"file:///srv/secret/a", []int{0}},
		{"file:///srv/secret/a/", []int{0}},
		{"file:///srv/Secret/A", []int{0}},
		{"file:///srv/secret/%41", []int{0}},
		{"file:///srv/secret/ab", nil},
		{"file:///srv/secret", nil},
		{"file:///srv/dir", []int{1}},
		{"file:///srv/dir/", []int{1}},
		{"file:///srv/%5Bid%5D.tsx", []int{2}},
		{"docs://h/a%21b", []int{3}},
		{"docs://h/a!b/", nil},
		{"docs://H/a!b", nil},
	}
	for _, tc := range cases {
		var s matchSet
		rs.match(&mcpjson.Message{Method: mcpjson.MethodResourcesRead, HasMethod: true, Name: tc.uri}, &s)
		var got []int
		for i := range rs.rules {
			if s.has(i) {
				got = append(got, i)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: matched rules %v, want %v", tc.uri, got, tc.want)
		}
	}
}

// TestResourceURIMatchNoAlloc: the matching key is built on the stack.
func TestResourceURIMatchNoAlloc(t *testing.T) {
	rs := testRuleSet()
	m := mcpjson.Message{Method: mcpjson.MethodResourcesRead, HasMethod: true, Name: "file:///Private/Some%20Key.pem/"}
	allocs := testing.AllocsPerRun(100, func() {
		var s matchSet
		rs.match(&m, &s)
		if !s.has(3) {
			t.Fatal("private rule not matched")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per match", allocs)
	}
}

// listRuleSet has prompt and resource rules for the list filters.
func listRuleSet() *ruleSet {
	base := newPolicy([]string{"mcp:read"}, nil, "")
	return newRuleSet(base, []*Rule{
		{Prompts: []string{"secret_*"}, Scopes: []string{"prompts:secret"}},
		{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"files:private"}},
		{ResourceURIs: []string{"file:///mixed/a*", "file:///one"}, Scopes: []string{"files:private"}},
		{Methods: []string{"prompts/get"}, AnyOf: []string{"prompts:read", "mcp:admin"}},
	})
}

// TestEntryAllowed: what filter_lists keeps, per kind, for a read-only token and for one
// with the scopes the rules name.
func TestEntryAllowed(t *testing.T) {
	rs := listRuleSet()
	reader := scopesCaller("mcp:read", "prompts:read")
	all := scopesCaller("mcp:read", "prompts:read", "prompts:secret", "files:private")
	cases := []struct {
		kind      mcpjson.ListKind
		key       string
		forReader bool
	}{
		{mcpjson.ListPrompts, "review", true},
		{mcpjson.ListPrompts, "secret_plan", false},
		{mcpjson.ListResources, "file:///pub/a", true},
		{mcpjson.ListResources, "file:///private/a", false},
		{mcpjson.ListResources, "file:///PRIVATE/a", false},   // the same file to the server
		{mcpjson.ListResources, "file:///%70rivate/a", false}, // not in normal form: reading it is refused
		{mcpjson.ListResources, "file:///one", false},
		{mcpjson.ListResources, "file:///one/", false},
		{mcpjson.ListResources, "file:///mixed/b", true},
		// Templates: hidden only when a failing rule covers every expansion.
		{mcpjson.ListResourceTemplates, "file:///private/{name}", false},
		{mcpjson.ListResourceTemplates, "file:///private/sub/{+path}", false},
		{mcpjson.ListResourceTemplates, "file:///Private/{name}", false}, // file: paths match in any case
		{mcpjson.ListResourceTemplates, "file:///private{/name}", true},  // expands to file:///private too
		{mcpjson.ListResourceTemplates, "file:///{path}", true},          // only partly covered
		{mcpjson.ListResourceTemplates, "file:///mixed/{name}", true},    // file:///mixed/a* covers a part
		{mcpjson.ListResourceTemplates, "file:///mixed/a{name}", false},  // ... but all of this one
		{mcpjson.ListResourceTemplates, "file:///pub/{name}", true},
		{mcpjson.ListResourceTemplates, "file:///one", false}, // no expression: the one URI
		{mcpjson.ListResourceTemplates, "{+base}/private/x", true},
	}
	for _, tc := range cases {
		if got := rs.entryAllowed(tc.kind, tc.key, reader); got != tc.forReader {
			t.Errorf("kind %d %q for a reader: %v, want %v", tc.kind, tc.key, got, tc.forReader)
		}
		wantAll := tc.key != "file:///%70rivate/a"
		if got := rs.entryAllowed(tc.kind, tc.key, all); got != wantAll {
			t.Errorf("kind %d %q with every scope: %v, want %v", tc.kind, tc.key, got, wantAll)
		}
	}
	// A method rule on prompts/get hides every prompt from a token short of it; one on
	// resources/read every resource and template.
	if rs.entryAllowed(mcpjson.ListPrompts, "review", scopesCaller("mcp:read")) {
		t.Error("prompt listed to a token short of the prompts/get method rule")
	}
	rs2 := newRuleSet(newPolicy(nil, nil, ""), []*Rule{{Methods: []string{"resources/*"}, Scopes: []string{"mcp:resources"}}})
	for _, k := range []mcpjson.ListKind{mcpjson.ListResources, mcpjson.ListResourceTemplates} {
		if rs2.entryAllowed(k, "file:///pub/{x}", scopesCaller()) || !rs2.entryAllowed(k, "file:///pub/{x}", scopesCaller("mcp:resources")) {
			t.Errorf("kind %d: the method rule on resources/read is not applied", k)
		}
	}
}

// TestCompletionMatching: completion/complete is judged by the prompt rule of the prompt its
// ref names, and by the resource_uri rules that could name a resource of the URI or
// template it names.
func TestCompletionMatching(t *testing.T) {
	rs := listRuleSet()
	cases := []struct {
		name string
		msg  mcpjson.Message
		want []int
	}{
		{"secret prompt", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefPrompt, Name: "secret_plan"}, []int{0}},
		{"open prompt", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefPrompt, Name: "review"}, nil},
		{"prompt named like a resource", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefPrompt, Name: "file:///private/x"}, nil},
		{"private template", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///private/{name}"}, []int{1}},
		{"template over private", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///{path}"}, []int{1, 2}},
		{"template partly private", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///mixed/{name}"}, []int{2}},
		{"template in other case", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///PRIVATE/{name}"}, []int{1}},
		{"public template", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///pub/{name}"}, nil},
		{"private URI", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///private/key"}, []int{1}},
		{"public URI", mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: "file:///pub/key"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := rs.checkURIs([]mcpjson.Message{tc.msg}); err != nil {
				t.Fatalf("refused: %v", err)
			}
			var s matchSet
			rs.match(&tc.msg, &s)
			var got []int
			for i := range rs.rules {
				if s.has(i) {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("rules %v, want %v", got, tc.want)
			}
		})
	}
	// The URI or the template's literal prefix must be in normal form.
	for _, uri := range []string{"FILE:///private/{x}", "file:///pub/../private/{x}", "file:///%70rivate/{x}", "file:///private/x/../y", "file:///a%{x}"} {
		m := mcpjson.Message{Method: "completion/complete", HasMethod: true, Ref: mcpjson.RefResource, Name: uri}
		if err := rs.checkURIs([]mcpjson.Message{m}); err == nil {
			t.Errorf("%q not refused", uri)
		}
	}
}

// TestEntryAllowedConditions: list filtering judges an entry by its whole rule, client and
// claim conditions included, not by its scopes alone.
func TestEntryAllowedConditions(t *testing.T) {
	rules := []*Rule{
		{Prompts: []string{"secret"}, RequireClaims: []ClaimCondition{{Claim: "tier", Values: []string{"gold"}}}},
		{ResourceURIs: []string{"file:///vip/*"}, Clients: []string{"app-vip"}},
		{Tools: []string{"deploy"}, Scopes: []string{"mcp:read"}, Clients: []string{"app-*"}},
	}
	h := &Handler{Scopes: []string{"mcp:read"}, Rules: rules}
	a, err := newAccessPolicy(h)
	if err != nil {
		t.Fatal(err)
	}
	p := newPolicy(h.Scopes, nil, "")
	rs := newRuleSet(p, rules)
	if err := rs.setAccess(a, rules); err != nil {
		t.Fatal(err)
	}
	caller := func(client, payload string) *caller {
		id := identity(client, payload)
		id.Scopes = []string{"mcp:read"}
		return newCaller(id, p, a, 0)
	}
	gold, plain := caller("app-vip", `{"tier":"gold"}`), caller("other", `{"tier":"silver"}`)
	for _, tc := range []struct {
		kind        mcpjson.ListKind
		key         string
		gold, plain bool
	}{
		{mcpjson.ListPrompts, "secret", true, false},
		{mcpjson.ListPrompts, "open", true, true},
		{mcpjson.ListResources, "file:///vip/a", true, false},
		{mcpjson.ListResourceTemplates, "file:///vip/{name}", true, false},
		{mcpjson.ListResources, "file:///pub/a", true, true},
		{mcpjson.ListTools, "deploy", true, false},
	} {
		if got := rs.entryAllowed(tc.kind, tc.key, gold); got != tc.gold {
			t.Errorf("%q for the gold app-vip caller: %v, want %v", tc.key, got, tc.gold)
		}
		if got := rs.entryAllowed(tc.kind, tc.key, plain); got != tc.plain {
			t.Errorf("%q for the plain caller: %v, want %v", tc.key, got, tc.plain)
		}
	}
}
