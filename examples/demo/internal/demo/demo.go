// Package demo holds the pieces of the local mcp_auth demo: a small MCP server and a stand-in
// authorization server that is nothing more than a signing key, its public JWKS file and a
// token minter. Nothing here is meant for production: a real deployment gets its tokens from
// a real authorization server.
package demo

// The demo's fixed identities. They match examples/demo/Caddyfile.
const (
	// Issuer is the `iss` of demo tokens and the authorization server named in the
	// protected resource metadata. Nothing answers there: Caddy reads the keys from JWKSFile.
	Issuer = "http://localhost:8080"
	// Resource is the canonical URI of the protected MCP endpoint and the `aud` of demo tokens.
	Resource = "http://localhost:8080/mcp"
	// Scope is the scope the demo Caddyfile requires.
	Scope = "mcp:read"
)

// Files in the state directory.
const (
	KeyFile  = "signing-key.pem" // the private key, created once, mode 0600
	JWKSFile = "jwks.json"       // its public half, read by Caddy's jwks_file
)
