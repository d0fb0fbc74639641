package mcpjson

// CheckMCPHeaders checks that the Mcp-Method and Mcp-Name request headers, where present,
// name what the body holds. They describe a single request, so a batch may not carry them.
func CheckMCPHeaders(method, name []string, msgs []Message, batch bool) error {
	if len(method) == 0 && len(name) == 0 {
		return nil
	}
	if batch || len(msgs) != 1 || len(method) > 1 || len(name) > 1 {
		return errRPCHeaderMatch
	}
	m := msgs[0]
	if len(method) == 1 && (!m.HasMethod || method[0] != m.Method) {
		return errRPCHeaderMatch
	}
	if len(name) == 1 {
		switch m.Method {
		case MethodToolsCall, MethodPromptsGet, MethodResourcesRead:
			if name[0] != m.Name {
				return errRPCHeaderMatch
			}
		default:
			return errRPCHeaderMatch
		}
	}
	return nil
}
