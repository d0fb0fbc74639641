package mcpjson

import "errors"

// Errors of the JSON-RPC reader. The handler answers each with 400 invalid_request.
var (
	errJSONSyntax     = errors.New("invalid JSON")
	errJSONDepth      = errors.New("JSON nested too deeply")
	errJSONUTF8       = errors.New("invalid UTF-8 in JSON string")
	errJSONSurrogate  = errors.New("unpaired UTF-16 surrogate escape in JSON string")
	errJSONDuplicate  = errors.New("duplicate key in JSON object")
	errRPCNotMessage  = errors.New("not a JSON-RPC message: an object or a non-empty array of objects is expected")
	errRPCVersion     = errors.New(`JSON-RPC version must be "2.0"`)
	errRPCMethod      = errors.New("JSON-RPC method is not a string")
	errRPCNoID        = errors.New("JSON-RPC message has neither a method nor an id")
	errRPCParams      = errors.New("params of tools/call, prompts/get or resources/read, subscribe, unsubscribe must be an object with a string name or uri")
	errRPCHeaderMatch = errors.New("Mcp-Method or Mcp-Name header does not match the body")
	errRPCKeyCase     = errors.New("a key differs only in case from a JSON-RPC or MCP key")
	errRPCRef         = errors.New(`params.ref of completion/complete must be an object with type "ref/prompt" and a string name, or "ref/resource" and a string uri`)
)
