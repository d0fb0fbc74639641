// An MCP server on the TypeScript SDK as its documentation builds one: createMcpExpressApp()
// (Express with express.json(), which decodes any utf-* charset through iconv-lite and
// inflates gzip, deflate and br bodies) and a stateless StreamableHTTPServerTransport. Tools
// read_file and delete_file; GET /ran (outside /mcp, not behind Caddy in the test) answers
// how many times each tool ran.
//
// Usage: node tsserver-express.mjs   → prints "MCP_READY http://127.0.0.1:<port>/mcp"
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { z } from 'zod';

const ran = { read_file: 0, delete_file: 0 };

function newServer() {
	const server = new McpServer({ name: 'ts-express', version: '1.0.0' });
	for (const name of Object.keys(ran)) {
		server.registerTool(name, { description: name, inputSchema: { path: z.string() } }, async ({ path }) => {
			ran[name]++;
			return { content: [{ type: 'text', text: `${name} ${path}` }] };
		});
	}
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

app.get('/ran', (req, res) => res.json(ran));

const listener = app.listen(0, '127.0.0.1', () => {
	console.log(`MCP_READY http://127.0.0.1:${listener.address().port}/mcp`);
});
