package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// filter_lists through a real Caddy in front of a go-sdk MCP server with prompts, resources
// and resource templates, configured by Caddyfile and by JSON.

// listsConfig: the base policy needs mcp:read; secret_* prompts need prompts:secret,
// resources under file:///private/ need files:private, delete_* tools need mcp:admin; in
// the Caddyfile or the same in JSON.
func listsConfig(f *fixture, format, name string) string {
	if format == "caddyfile" {
		return f.caddyfile(`resource_name "` + name + `"
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
prompt secret_* {
	scopes prompts:secret
}
resource_uri file:///private/* {
	scopes files:private
}
filter_lists`)
	}
	return f.json(map[string]any{
		"resource_name": name,
		"scopes":        []string{"mcp:read"},
		"rules": []any{
			map[string]any{"tools": []string{"delete_*"}, "scopes": []string{"mcp:admin"}},
			map[string]any{"prompts": []string{"secret_*"}, "scopes": []string{"prompts:secret"}},
			map[string]any{"resource_uris": []string{"file:///private/*"}, "scopes": []string{"files:private"}},
		},
		"filter_lists": true,
	})
}

// listsUpstream is a go-sdk MCP server with two tools, prompts, resources and templates,
// answering lists one entry per page. It counts the completions it answered.
type listsUpstream struct {
	*httptest.Server
	completions atomic.Int64
}

func newListsUpstream(t *testing.T, jsonResponse bool) *listsUpstream {
	t.Helper()
	u := &listsUpstream{}
	server := mcp.NewServer(&mcp.Implementation{Name: "lists-test", Version: "1.0.0"}, &mcp.ServerOptions{
		PageSize: 1,
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			u.completions.Add(1)
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{"plan-2027"}}}, nil
		},
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	type args struct {
		Path string `json:"path"`
	}
	for _, name := range []string{"read_file", "delete_file"} {
		mcp.AddTool(server, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name}}}, nil, nil
		})
	}
	for _, name := range []string{"review", "secret_plan"} {
		server.AddPrompt(&mcp.Prompt{Name: name, Arguments: []*mcp.PromptArgument{{Name: "topic"}}},
			func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
				return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name}}}}, nil
			})
	}
	read := func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
	}
	for _, uri := range []string{"file:///pub/readme", "file:///private/key"} {
		server.AddResource(&mcp.Resource{URI: uri, Name: uri}, read)
	}
	for _, tmpl := range []string{"file:///pub/{name}", "file:///private/{name}", "file:///{path}"} {
		server.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: tmpl, Name: tmpl}, read)
	}
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
	u.Server = httptest.NewServer(sdk)
	t.Cleanup(u.Close)
	return u
}

func (u *listsUpstream) dial() string { return strings.TrimPrefix(u.URL, "http://") }

// listed is what the SDK client sees through every page of each list.
func listed(t *testing.T, cs *mcp.ClientSession) (tools, prompts, resources, templates []string) {
	t.Helper()
	ctx := t.Context()
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		tools = append(tools, tool.Name)
	}
	for p, err := range cs.Prompts(ctx, nil) {
		if err != nil {
			t.Fatalf("prompts/list: %v", err)
		}
		prompts = append(prompts, p.Name)
	}
	for r, err := range cs.Resources(ctx, nil) {
		if err != nil {
			t.Fatalf("resources/list: %v", err)
		}
		resources = append(resources, r.URI)
	}
	for rt, err := range cs.ResourceTemplates(ctx, nil) {
		if err != nil {
			t.Fatalf("resources/templates/list: %v", err)
		}
		templates = append(templates, rt.URITemplate)
	}
	for _, l := range [][]string{tools, prompts, resources, templates} {
		slices.Sort(l)
	}
	return tools, prompts, resources, templates
}

// TestListsThroughCaddy: with filter_lists, a read-only token lists only the tools, prompts,
// resources and templates it may use, page after page, each page marked cacheScope
// "private"; a completion on a prompt or template it may not use is refused with 403.
func TestListsThroughCaddy(t *testing.T) {
	key := jwttest.New(t, "lists-1", "RS256")
	jwks := newJWKSServer(t, key)
	token := func(scope string) string { return key.Token(t, claims(resource, scope), nil) }
	reader := "mcp:read"
	everything := "mcp:read mcp:admin prompts:secret files:private"

	for _, format := range []string{"caddyfile", "json"} {
		for _, mode := range []string{"json", "sse"} {
			t.Run(format+"/"+mode, func(t *testing.T) {
				up := newListsUpstream(t, mode == "json")
				name := "Lists MCP " + format + " " + mode
				f := &fixture{key: key, jwks: jwks, up: up}
				f.start(t, listsConfig(f, format, name), format, name)

				t.Run("read-only token lists only what it may use", func(t *testing.T) {
					cs := newMCPClient(t).connect(t, token(reader))
					tools, prompts, resources, templates := listed(t, cs)
					check := func(what string, got, want []string) {
						if !slices.Equal(got, want) {
							t.Errorf("%s = %q, want %q", what, got, want)
						}
					}
					check("tools", tools, []string{"read_file"})
					check("prompts", prompts, []string{"review"})
					check("resources", resources, []string{"file:///pub/readme"})
					// file:///{path} is only partly covered by file:///private/*: it stays.
					check("templates", templates, []string{"file:///pub/{name}", "file:///{path}"})
				})

				t.Run("token with every scope lists everything", func(t *testing.T) {
					cs := newMCPClient(t).connect(t, token(everything))
					tools, prompts, resources, templates := listed(t, cs)
					if len(tools) != 2 || len(prompts) != 2 || len(resources) != 2 || len(templates) != 3 {
						t.Errorf("lists %q %q %q %q, want every entry", tools, prompts, resources, templates)
					}
				})

				t.Run("every page says cacheScope private and keeps its cursor", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token(reader))
					for _, l := range []struct{ method, key string }{
						{"tools/list", "tools"}, {"prompts/list", "prompts"},
						{"resources/list", "resources"}, {"resources/templates/list", "resourceTemplates"},
					} {
						cursor, pages := "", 0
						for {
							params := `{}`
							if cursor != "" {
								params = `{"cursor":` + strings.TrimSpace(jsonString(cursor)) + `}`
							}
							code, hdr, body := c.post(t, token(reader), []byte(`{"jsonrpc":"2.0","id":5,"method":"`+l.method+`","params":`+params+`}`), false, nil)
							if code != http.StatusOK {
								t.Fatalf("%s: status %d, body %q", l.method, code, body)
							}
							res, _ := rpcAnswer(t, hdr, body)["result"].(map[string]any)
							if res["cacheScope"] != "private" {
								t.Errorf("%s page %d: cacheScope %v in %q", l.method, pages, res["cacheScope"], body)
							}
							if _, ok := res[l.key].([]any); !ok {
								t.Errorf("%s page %d: no %s array in %q", l.method, pages, l.key, body)
							}
							pages++
							next, _ := res["nextCursor"].(string)
							if next == "" || pages > 10 {
								break
							}
							cursor = next
						}
						if pages < 2 {
							t.Errorf("%s: %d page(s); the server pages one entry at a time", l.method, pages)
						}
					}
				})

				t.Run("completion on a protected prompt or template is refused", func(t *testing.T) {
					c := newMCPClient(t)
					c.open(t, token(reader))
					for _, ref := range []struct{ ref, scope string }{
						{`{"type":"ref/prompt","name":"secret_plan"}`, "mcp:read prompts:secret"},
						{`{"type":"ref/resource","uri":"file:///private/{name}"}`, "mcp:read files:private"},
						{`{"type":"ref/resource","uri":"file:///{path}"}`, "mcp:read files:private"},
					} {
						before := up.completions.Load()
						body := []byte(`{"jsonrpc":"2.0","id":7,"method":"completion/complete","params":{"ref":` + ref.ref + `,"argument":{"name":"topic","value":"p"}}}`)
						code, hdr, answer := c.post(t, token(reader), body, false, nil)
						if code != http.StatusForbidden {
							t.Fatalf("completion on %s: status %d, body %q; want 403", ref.ref, code, answer)
						}
						checkChallenge(t, hdr, challenge("insufficient_scope", descScope, ref.scope))
						if up.completions.Load() != before {
							t.Errorf("completion on %s reached the server", ref.ref)
						}
					}
					for _, ref := range []string{`{"type":"ref/prompt","name":"review"}`, `{"type":"ref/resource","uri":"file:///pub/{name}"}`} {
						body := []byte(`{"jsonrpc":"2.0","id":8,"method":"completion/complete","params":{"ref":` + ref + `,"argument":{"name":"topic","value":"p"}}}`)
						code, hdr, answer := c.post(t, token(reader), body, false, nil)
						if code != http.StatusOK || !strings.Contains(string(answer), "plan-2027") {
							t.Errorf("completion on %s: status %d, body %q, %v", ref, code, answer, hdr)
						}
					}
				})

				t.Run("SDK client: completion and subscription follow the rules", func(t *testing.T) {
					// The Go SDK client ends its session on an HTTP error: one session per denial.
					cs := newMCPClient(t).connect(t, token(reader))
					_, err := cs.Complete(t.Context(), &mcp.CompleteParams{
						Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "secret_plan"},
						Argument: mcp.CompleteParamsArgument{Name: "topic", Value: "p"},
					})
					if err == nil || !strings.Contains(err.Error(), "Forbidden") {
						t.Errorf("completion on secret_plan for a read-only token: %v, want Forbidden", err)
					}
					cs = newMCPClient(t).connect(t, token(reader))
					if err := cs.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "file:///private/key"}); err == nil || !strings.Contains(err.Error(), "Forbidden") {
						t.Errorf("subscription to file:///private/key for a read-only token: %v, want Forbidden", err)
					}
					cs = newMCPClient(t).connect(t, token(reader))
					if err := cs.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "file:///pub/readme"}); err != nil {
						t.Errorf("subscription to file:///pub/readme: %v", err)
					}
					all := newMCPClient(t).connect(t, token(everything))
					res, err := all.Complete(t.Context(), &mcp.CompleteParams{
						Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "secret_plan"},
						Argument: mcp.CompleteParamsArgument{Name: "topic", Value: "p"},
					})
					if err != nil || !slices.Equal(res.Completion.Values, []string{"plan-2027"}) {
						t.Errorf("completion with prompts:secret: %+v, %v", res, err)
					}
				})
			})
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
