// An MCP server that serves files as resources, built the way the TypeScript SDK documents it:
// McpServer with a ResourceTemplate over file: URLs, each read with fileURLToPath and
// path.resolve and kept inside the root, served statelessly by StreamableHTTPServerTransport
// in the SDK's Express app (express.json() parses the body). It stands in for the servers the
// resource_uri red team read secret files through. The root's public/ and secret/ stand in
// for /srv/public and /srv/secret.
//
// Usage: node tsserver-files.mjs <root>   (prints "MCP_READY <url>" once listening)
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';

const root = path.resolve(process.argv[2]);


function newServer() {
	const server = new McpServer({ name: 'files', version: '1.0.0' });
	server.registerResource(
		'file',
		new ResourceTemplate('file:///{+path}', { list: undefined }),
		{ title: 'Files', description: `Files under ${root}` },
		async (uri) => {
			const file = path.resolve(fileURLToPath(uri));
			if (!file.startsWith(root + path.sep)) {
				throw new Error('not under the root');
			}
			return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: await fs.readFile(file, 'utf8') }] };
		},
	);
	return server;
}

const app = createMcpExpressApp();
app.post('/mcp', async (req, res) => {
	const server = newServer();
	const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
	res.on('close', () => {
		transport.close();
		server.close();
	});
	try {
		await server.connect(transport);
		await transport.handleRequest(req, res, req.body);
	} catch (err) {
		console.error('request failed:', err);
		if (!res.headersSent) {
			res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null });
		}
	}
});
const listener = app.listen(0, '127.0.0.1', () => {
	console.log(`MCP_READY http://127.0.0.1:${listener.address().port}/mcp`);
});
