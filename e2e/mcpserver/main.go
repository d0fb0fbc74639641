// Command mcpserver is the upstream MCP server of the end-to-end test: the official Go SDK's
// Streamable HTTP handler with three tools, listening on 127.0.0.1. It has no authentication
// of its own; Caddy's mcp_auth in front of it does that.
//
// It prints `MCP_READY <url>` on stdout once it listens.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoArgs struct {
	Text string `json:"text" jsonschema:"the text to echo"`
}

type addArgs struct {
	A float64 `json:"a"`
	B float64 `json:"b"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func newServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "e2e-upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "returns its text"},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
			return text(in.Text), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "add", Description: "adds two numbers"},
		func(_ context.Context, _ *mcp.CallToolRequest, in addArgs) (*mcp.CallToolResult, any, error) {
			return text(fmt.Sprint(in.A + in.B)), nil, nil
		})
	// whoami shows what Caddy told the upstream about the caller (header_up from the
	// mcp_auth placeholders), and whether the token itself reached the upstream.
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "the caller as forwarded by the proxy"},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			h := req.Extra.Header
			return text(fmt.Sprintf("user=%s client=%s scope=%s authorization_forwarded=%t",
				h.Get("X-Auth-User"), h.Get("X-Auth-Client"), h.Get("X-Auth-Scope"), h.Get("Authorization") != "")), nil, nil
		})
	return s
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	srv := newServer()
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("MCP_READY http://%s/mcp\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
