// Command caddy is Caddy with the mcp_auth module built in.
//
//	go run ./cmd/caddy run --config Caddyfile
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mcpauth/caddy-mcp-auth"
)

func main() {
	caddycmd.Main()
}
