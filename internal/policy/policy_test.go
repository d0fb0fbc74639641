package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// mustCompile compiles a policy the test knows to be valid.
func mustCompile(c Config) *Policy {
	p, err := Compile(c)
	if err != nil {
		panic(err)
	}
	return p
}

// subjectWith is a subject that holds scopes and nothing else (no client, no claims), as
// a policy without scope_prefix or scope_implies reads them.
func subjectWith(scopes ...string) *Subject {
	s := (&Policy{}).NewSubject(&verify.Identity{Scopes: scopes})
	return &s
}

// identity builds a verified identity from a raw JSON payload, as the JWT verifier does.
func identity(clientID, payload string) *verify.Identity {
	return verify.Identity{ClientID: clientID}.WithClaims([]byte(payload))
}

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

func testRuleSet() *Policy {
	return mustCompile(Config{AllOf: []string{"mcp:read"}, Rules: []Rule{
		{Tools: []string{"delete_*", "drop_table"}, Scopes: []string{"mcp:admin"}},
		{Tools: []string{"write_*"}, AnyOf: []string{"mcp:write", "mcp:admin"}},
		{Prompts: []string{"secret"}, Scopes: []string{"prompts:secret"}},
		{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"files:private"}},
		{Methods: []string{"tools/call"}, Scopes: []string{"mcp:tools"}},
		{Methods: []string{"resources/*"}, Scopes: []string{"mcp:resources"}},
	}})
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
			s := rs.NewSubject(&verify.Identity{Scopes: strings.Fields(tc.granted)})
			v := rs.Decide(&s, tc.msgs)
			if got := v.Allowed(); got != tc.ok {
				t.Fatalf("satisfied = %v, want %v", got, tc.ok)
			}
			if !tc.ok {
				if v.Outcome != InsufficientScope {
					t.Fatalf("outcome %d, want InsufficientScope", v.Outcome)
				}
				if got := v.StepUp; !slices.Equal(got, tc.challenge) {
					t.Fatalf("step-up scopes %v, want %v", got, tc.challenge)
				}
			}
		})
	}
}

func TestToolAllowed(t *testing.T) {
	rs := testRuleSet()
	granted := []string{"mcp:read", "mcp:tools"}
	for name, want := range map[string]bool{"read_file": true, "delete_user": false, "write_file": false, "drop_table": false} {
		if got := rs.EntryAllowed(subjectWith(granted...), mcpjson.ListTools, name); got != want {
			t.Errorf("toolAllowed(%q) = %v, want %v", name, got, want)
		}
	}
	// The method rule for tools/call hides every tool from a token without mcp:tools.
	if rs.EntryAllowed(subjectWith("mcp:read"), mcpjson.ListTools, "read_file") {
		t.Error("read_file allowed without mcp:tools")
	}
}

// TestResourceURIPatternKeys: a file: pattern covers the same path with a trailing slash (and
// a directory pattern with a slash the path without it), in another ASCII case, and with
// escapes decoded, since servers read all of those as one file; other schemes only decode.
func TestResourceURIPatternKeys(t *testing.T) {
	rs := mustCompile(Config{AllOf: []string{"mcp:read"}, Rules: []Rule{
		{ResourceURIs: []string{"file:///srv/secret/a"}, Scopes: []string{"exact"}},
		{ResourceURIs: []string{"file:///srv/dir/"}, Scopes: []string{"dir"}},
		{ResourceURIs: []string{"file:///srv/[id].tsx"}, Scopes: []string{"brackets"}},
		{ResourceURIs: []string{"docs://h/a!b"}, Scopes: []string{"docs"}},
	}})
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
func listRuleSet() *Policy {
	return mustCompile(Config{AllOf: []string{"mcp:read"}, Rules: []Rule{
		{Prompts: []string{"secret_*"}, Scopes: []string{"prompts:secret"}},
		{ResourceURIs: []string{"file:///private/*"}, Scopes: []string{"files:private"}},
		{ResourceURIs: []string{"file:///mixed/a*", "file:///one"}, Scopes: []string{"files:private"}},
		{Methods: []string{"prompts/get"}, AnyOf: []string{"prompts:read", "mcp:admin"}},
	}})
}

// TestEntryAllowed: what filter_lists keeps, per kind, for a read-only token and for one
// with the scopes the rules name.
func TestEntryAllowed(t *testing.T) {
	rs := listRuleSet()
	reader := subjectWith("mcp:read", "prompts:read")
	all := subjectWith("mcp:read", "prompts:read", "prompts:secret", "files:private")
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
		if got := rs.EntryAllowed(reader, tc.kind, tc.key); got != tc.forReader {
			t.Errorf("kind %d %q for a reader: %v, want %v", tc.kind, tc.key, got, tc.forReader)
		}
		wantAll := tc.key != "file:///%70rivate/a"
		if got := rs.EntryAllowed(all, tc.kind, tc.key); got != wantAll {
			t.Errorf("kind %d %q with every scope: %v, want %v", tc.kind, tc.key, got, wantAll)
		}
	}
	// A method rule on prompts/get hides every prompt from a token short of it; one on
	// resources/read every resource and template.
	if rs.EntryAllowed(subjectWith("mcp:read"), mcpjson.ListPrompts, "review") {
		t.Error("prompt listed to a token short of the prompts/get method rule")
	}
	rs2 := mustCompile(Config{Rules: []Rule{{Methods: []string{"resources/*"}, Scopes: []string{"mcp:resources"}}}})
	for _, k := range []mcpjson.ListKind{mcpjson.ListResources, mcpjson.ListResourceTemplates} {
		if rs2.EntryAllowed(subjectWith(), k, "file:///pub/{x}") || !rs2.EntryAllowed(subjectWith("mcp:resources"), k, "file:///pub/{x}") {
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
	rules := []Rule{
		{Prompts: []string{"secret"}, Claims: []Claim{{Claim: "tier", Values: []string{"gold"}}}},
		{ResourceURIs: []string{"file:///vip/*"}, Clients: []string{"app-vip"}},
		{Tools: []string{"deploy"}, Scopes: []string{"mcp:read"}, Clients: []string{"app-*"}},
	}
	rs, err := Compile(Config{AllOf: []string{"mcp:read"}, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	caller := func(client, payload string) *Subject {
		id := identity(client, payload)
		id.Scopes = []string{"mcp:read"}
		s := rs.NewSubject(id)
		return &s
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
		if got := rs.EntryAllowed(gold, tc.kind, tc.key); got != tc.gold {
			t.Errorf("%q for the gold app-vip caller: %v, want %v", tc.key, got, tc.gold)
		}
		if got := rs.EntryAllowed(plain, tc.kind, tc.key); got != tc.plain {
			t.Errorf("%q for the plain caller: %v, want %v", tc.key, got, tc.plain)
		}
	}
}
