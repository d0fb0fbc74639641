// Package mcptest drives an MCP server with the official Go SDK client, for the tests of
// this repository only.
package mcptest

import (
	"net/http"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Connect opens a client session on the Streamable HTTP endpoint, sending every request
// through rt (which adds the token). The session is closed when the test ends.
func Connect(t testing.TB, endpoint string, rt http.RoundTripper) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "mcptest", Version: "1.0.0"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:   endpoint,
		HTTPClient: &http.Client{Transport: rt},
		MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatalf("SDK client connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// ToolNames lists the tools the session sees, sorted.
func ToolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// CallText calls a tool with {"path": "/x"} and returns the text of its one content item;
// the error is the call's (a refusal by the gateway, say).
func CallText(t testing.TB, cs *mcp.ClientSession, name string) (string, error) {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{"path": "/x"}})
	if err != nil {
		return "", err
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("%s: result %+v", name, res)
	}
	text, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("%s: content %T", name, res.Content[0])
	}
	return text.Text, nil
}
