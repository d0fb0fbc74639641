// An upstream MCP server for the token exchange end-to-end test (TypeScript SDK, stateless
// Streamable HTTP). Its one tool, <name>_whoami, answers what the access token that reached
// it says: aud, sub and the acting party (act.sub). The token's signature is checked by the
// mcp_auth in front of this server, not here.
//
// Usage: node tsserver-exchange.mjs <name>   → prints "MCP_READY http://127.0.0.1:<port>/mcp"
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';

const name = process.argv[2];
if (!name) {
	console.error('usage: node tsserver-exchange.mjs <name>');
	process.exit(2);
}

function claimsOf(headers) {
	const auth = headers?.authorization ?? '';
	const m = /^Bearer ([^.]+)\.([^.]+)\.[^.]+$/.exec(auth);
	if (!m) return { error: 'no bearer JWT' };
	return JSON.parse(Buffer.from(m[2], 'base64url').toString());
}

function newServer() {
	const server = new McpServer({ name: `upstream-${name}`, version: '1.0.0' });
	server.registerTool(`${name}_whoami`, { description: 'the token that reached this server' }, async (extra) => {
		const c = claimsOf(extra?.requestInfo?.headers);
		return { content: [{ type: 'text', text: `${name}: aud=${c.aud} sub=${c.sub} act=${c.act?.sub}` }] };
	});
	return server;
}

const app = createMcpExpressApp({ host: '127.0.0.1' });
app.all('/mcp', async (req, res) => {
	const server = newServer();
	const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
	res.on('close', () => {
		transport.close();
		server.close();
	});
	await server.connect(transport);
	await transport.handleRequest(req, res, req.body);
});
const listener = app.listen(0, '127.0.0.1', () => {
	console.log(`MCP_READY http://127.0.0.1:${listener.address().port}/mcp`);
});
