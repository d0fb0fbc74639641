package mcpauth

import "github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"

// securitySchemes: with `public`, every tool of a tools/list answer says how it may be called
// (MCP Apps per-tool authorization; the Apps SDK reads `_meta.securitySchemes`). The policy
// computes the value (policy.Policy.ToolSchemes), internal/mcpjson writes it into the answer;
// this is the glue between them for the list writers.

// decorateListWriter adapts the list writer of a signed-in caller to `public`: every tool
// carries its securitySchemes, and tools are hidden only under filter_tools_list or
// filter_lists (public turns the tools list writer on by itself).
func (h *Handler) decorateListWriter(lf *listFilter) {
	if h.Public == nil || lf == nil {
		return
	}
	if !h.Public.filterTools {
		lf.lists.Allowed = keepTools(lf.lists.Allowed)
	}
	lf.lists.Schemes = h.policy.ToolSchemes
}

// keepTools keeps every tool, and asks allowed about the other kinds of entry.
func keepTools(allowed func(mcpjson.ListKind, string) bool) func(mcpjson.ListKind, string) bool {
	return func(k mcpjson.ListKind, key string) bool {
		return k == mcpjson.ListTools || allowed(k, key)
	}
}
