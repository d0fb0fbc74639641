package demo

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Headers the demo Caddyfile sets from mcp_auth's placeholders (header_up replaces any value
// the client sent, so they cannot be forged through Caddy).
const (
	HeaderUser  = "X-Auth-User"
	HeaderScope = "X-Auth-Scope"
)

// NewMCPServer returns the demo MCP server with its tools: echo, add and whoami.
func NewMCPServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcp-auth-demo", Version: "1.0.0"}, nil)

	type echoIn struct {
		Text string `json:"text" jsonschema:"the text to send back"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Send the text back."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})

	type addIn struct {
		A float64 `json:"a" jsonschema:"the first number"`
		B float64 `json:"b" jsonschema:"the second number"`
	}
	type addOut struct {
		Sum float64 `json:"sum" jsonschema:"a + b"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "Add two numbers."},
		func(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, addOut, error) {
			return nil, addOut{Sum: in.A + in.B}, nil
		})

	type whoamiIn struct{}
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Tell who Caddy says the caller is."},
		func(_ context.Context, req *mcp.CallToolRequest, _ whoamiIn) (*mcp.CallToolResult, any, error) {
			var h http.Header
			if req.Extra != nil {
				h = req.Extra.Header
			}
			text := fmt.Sprintf("user=%q scope=%q authorization_header_seen=%t",
				h.Get(HeaderUser), h.Get(HeaderScope), h.Get("Authorization") != "")
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	return s
}

// NewMCPHandler serves the demo MCP server over Streamable HTTP. Responses are plain JSON
// rather than SSE streams so that they read well in a terminal.
func NewMCPHandler() http.Handler {
	s := NewMCPServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{JSONResponse: true, SessionTimeout: 30 * time.Minute})
}
