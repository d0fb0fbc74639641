package policy

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
)

// publicPolicy: base mcp:read; delete_* needs mcp:admin; admin_* prompts need mcp:admin;
// file:///srv/secret/* needs mcp:admin; team_* needs the client team-app; public: search,
// prompt welcome, file:///pub/*, method logging/setLevel.
func publicPolicy() *Policy {
	return mustCompile(Config{AllOf: []string{"mcp:read"}, Rules: []Rule{
		{Tools: []string{"delete_*"}, Scopes: []string{"mcp:admin"}},
		{Prompts: []string{"admin_*"}, Scopes: []string{"mcp:admin"}},
		{ResourceURIs: []string{"file:///srv/secret/*"}, Scopes: []string{"mcp:admin"}},
		{Tools: []string{"team_*"}, Clients: []string{"team-app"}},
	}, Public: &Public{Tools: []string{"search"}, Prompts: []string{"welcome"},
		ResourceURIs: []string{"file:///pub/*"}, Methods: []string{"logging/setLevel"}}})
}

func msg(method, name string, ref mcpjson.RefKind) mcpjson.Message {
	return mcpjson.Message{Method: method, HasMethod: true, Name: name, Ref: ref}
}

// TestAnonymousAllows: lifecycle, discovery and the listed public operations pass without a
// token, byte for byte; everything else, and a response, does not.
func TestAnonymousAllows(t *testing.T) {
	p := publicPolicy()
	for _, c := range []struct {
		m    mcpjson.Message
		want bool
	}{
		{msg("initialize", "", 0), true},
		{msg("notifications/initialized", "", 0), true},
		{msg("notifications/cancelled", "", 0), true},
		{msg("ping", "", 0), true},
		{msg("server/discover", "", 0), true},
		{msg("tools/list", "", 0), true},
		{msg("resources/templates/list", "", 0), true},
		{msg("logging/setLevel", "", 0), true},
		{msg("tools/call", "search", 0), true},
		{msg("tools/call", "Search", 0), false},
		{msg("tools/call", "search ", 0), false},
		{msg("tools/call", "search\x00", 0), false},
		{msg("tools/call", "ѕearch", 0), false}, // Cyrillic ѕ
		{msg("tools/call", "delete_file", 0), false},
		{msg("prompts/get", "welcome", 0), true},
		{msg("prompts/get", "search", 0), false},
		{msg("completion/complete", "welcome", mcpjson.RefPrompt), true},
		{msg("resources/read", "file:///pub/a.txt", 0), true},
		{msg("resources/subscribe", "file:///pub/a.txt", 0), true},
		{msg("resources/read", "file:///srv/secret/a", 0), false},
		{msg("completion/complete", "file:///pub/{name}", mcpjson.RefResource), true},
		{msg("completion/complete", "file:///{dir}/a", mcpjson.RefResource), false},
		{msg("sampling/createMessage", "", 0), false},
		{msg("notificationsX/x", "", 0), false},
		{mcpjson.Message{}, false}, // a response
	} {
		v := p.DecideAnonymous([]mcpjson.Message{c.m})
		if got := v.Outcome == Allow; got != c.want {
			t.Errorf("%s %q: verdict %+v, want allowed %v", c.m.Method, c.m.Name, v, c.want)
		}
		if !c.want && v.Outcome != MissingToken {
			t.Errorf("%s %q: outcome %d, want MissingToken", c.m.Method, c.m.Name, v.Outcome)
		}
	}
	// A URI not in normal form is refused as such, never matched against a public pattern.
	v := p.DecideAnonymous([]mcpjson.Message{msg("resources/read", "file:///pub/../srv/secret/a", 0)})
	if v.Outcome != ResourceURINotNormal || !errors.Is(v.Err, ErrURINotNormal) {
		t.Errorf("dot segment: verdict %+v, want ResourceURINotNormal", v)
	}
	// A batch passes only when every message does.
	if v := p.DecideAnonymous([]mcpjson.Message{msg("tools/call", "search", 0), msg("tools/call", "delete_file", 0)}); v.Outcome != MissingToken {
		t.Errorf("batch with a protected call: %+v", v)
	}
	// Public resource patterns alone (no resource_uri rule) still refuse a URI not in normal form.
	q := mustCompile(Config{AllOf: []string{"r"}, Public: &Public{ResourceURIs: []string{"file:///pub/*"}}})
	if v := q.DecideAnonymous([]mcpjson.Message{msg("resources/read", "file:///pub/./a", 0)}); v.Outcome != ResourceURINotNormal {
		t.Errorf("public URI pattern alone, dot segment: %+v", v)
	}
	// Without public operations nothing passes.
	none := mustCompile(Config{AllOf: []string{"r"}})
	if v := none.DecideAnonymous([]mcpjson.Message{msg("ping", "", 0)}); v.Outcome != MissingToken || none.HasPublic() {
		t.Errorf("no public: %+v", v)
	}
}

// TestAnonymousScopes: the 401 of a refused anonymous request names the base scopes and
// those of every rule its messages match (a client condition adds none), in the advertised
// form, and the first matched rule decided.
func TestAnonymousScopes(t *testing.T) {
	p := publicPolicy()
	for _, c := range []struct {
		msgs []mcpjson.Message
		want string
		rule int
	}{
		{[]mcpjson.Message{msg("tools/call", "read_file", 0)}, "mcp:read", BaseRule},
		{[]mcpjson.Message{msg("tools/call", "search", 0), msg("tools/call", "delete_file", 0)}, "mcp:read mcp:admin", 0},
		{[]mcpjson.Message{msg("resources/read", "file:///srv/secret/x", 0)}, "mcp:read mcp:admin", 2},
		{[]mcpjson.Message{msg("tools/call", "team_x", 0)}, "mcp:read", 3},
	} {
		v := p.DecideAnonymous(c.msgs)
		if got := strings.Join(v.StepUp, " "); v.Outcome != MissingToken || got != c.want || v.Rule != c.rule {
			t.Errorf("%v: verdict %+v, want scopes %q, rule %d", c.msgs, v, c.want, c.rule)
		}
	}
	pre := mustCompile(Config{AnyOf: []string{"a", "b"}, Prefix: "api://x/", Rules: []Rule{{Tools: []string{"t"}, AnyOf: []string{"c", "d"}}},
		Public: &Public{Tools: []string{"p"}}})
	if v := pre.DecideAnonymous([]mcpjson.Message{msg("tools/call", "t", 0)}); !slices.Equal(v.StepUp, []string{"api://x/a", "api://x/c"}) {
		t.Errorf("any_of with scope_prefix: %v", v.StepUp)
	}
}

// TestEntryVisible: with filtered lists a caller without a token sees the public entries and
// those a plain sign-in unlocks, never those behind more scopes or a client condition.
func TestEntryVisible(t *testing.T) {
	p := publicPolicy()
	for _, c := range []struct {
		kind mcpjson.ListKind
		key  string
		want bool
	}{
		{mcpjson.ListTools, "search", true},
		{mcpjson.ListTools, "read_file", true},
		{mcpjson.ListTools, "delete_file", false},
		{mcpjson.ListTools, "team_tool", false},
		{mcpjson.ListPrompts, "welcome", true},
		{mcpjson.ListPrompts, "other", true},
		{mcpjson.ListPrompts, "admin_reset", false},
		{mcpjson.ListResources, "file:///pub/a", true},
		{mcpjson.ListResources, "file:///srv/secret/a", false},
		{mcpjson.ListResources, "file:///srv/other", true},
		{mcpjson.ListResources, "file:///srv/secret/../a", false},
		{mcpjson.ListResourceTemplates, "file:///srv/secret/{name}", false},
		{mcpjson.ListResourceTemplates, "file:///pub/{name}", true},
	} {
		if got := p.EntryVisibleAnonymous(c.kind, c.key); got != c.want {
			t.Errorf("%v %q: visible %v, want %v", c.kind, c.key, got, c.want)
		}
	}
	// A base client condition is held by the plain caller; a rule's is not.
	q := mustCompile(Config{AllOf: []string{"r"}, Clients: []string{"app"}, Rules: []Rule{{Tools: []string{"x"}, Clients: []string{"app"}}},
		Public: &Public{Tools: []string{"p"}}})
	if !q.EntryVisibleAnonymous(mcpjson.ListTools, "y") || q.EntryVisibleAnonymous(mcpjson.ListTools, "x") {
		t.Error("base condition held / rule condition not held by the plain caller")
	}
}

// TestToolSchemes: noauth for a public tool, oauth2 with the scopes a 403 would name to a
// token holding nothing for any other, the same from the cache and under concurrent use.
func TestToolSchemes(t *testing.T) {
	p := publicPolicy()
	want := map[string]string{
		"search":      `[{"type":"noauth"}]`,
		"read_file":   `[{"type":"oauth2","scopes":["mcp:read"]}]`,
		"delete_file": `[{"type":"oauth2","scopes":["mcp:read","mcp:admin"]}]`,
		"team_x":      `[{"type":"oauth2","scopes":["mcp:read"]}]`,
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for name, w := range want {
				for range 2 { // the second time from the cache
					if got := string(p.ToolSchemes(name)); got != w {
						t.Errorf("%s: %s, want %s", name, got, w)
					}
				}
			}
		})
	}
	wg.Wait()
	pre := mustCompile(Config{AllOf: []string{"read"}, Prefix: "api://x/", Public: &Public{Tools: []string{"p"}}})
	if got := string(pre.ToolSchemes("q")); got != `[{"type":"oauth2","scopes":["api://x/read"]}]` {
		t.Errorf("scope_prefix: %s", got)
	}
	skip := mustCompile(Config{Public: &Public{Tools: []string{"p"}}})
	if got := string(skip.ToolSchemes("q")); got != `[{"type":"oauth2","scopes":[]}]` {
		t.Errorf("skip_scopes: %s", got)
	}
}

// TestCheckPublicMethod: a method pattern that covers a method whose names are judged is
// refused; others pass.
func TestCheckPublicMethod(t *testing.T) {
	for _, m := range []string{"tools/call", "tools/*", "*", "resources/*", "completion/complete", "prompts/g*"} {
		if err := CheckPublicMethod(m); !errors.Is(err, ErrPublicNamedMethod) {
			t.Errorf("%q: %v, want ErrPublicNamedMethod", m, err)
		}
	}
	for _, m := range []string{"logging/setLevel", "tools/list", "resources/list", "custom/*"} {
		if err := CheckPublicMethod(m); err != nil {
			t.Errorf("%q: %v", m, err)
		}
	}
}

// TestDecideAnonymousNoAlloc: an allowed anonymous request costs no allocation.
func TestDecideAnonymousNoAlloc(t *testing.T) {
	p := publicPolicy()
	msgs := []mcpjson.Message{msg("tools/call", "search", 0), msg("resources/read", "file:///pub/a.txt", 0)}
	if n := testing.AllocsPerRun(100, func() { _ = p.DecideAnonymous(msgs) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
