// TypeScript SDK client of the token exchange end-to-end test: client_credentials (discovery
// from the 401 as in client-cc.mjs), then one tool on each upstream through the front Caddy.
//
// Usage: node client-exchange.mjs <mcp-url> <issuer> <tool...>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url, issuer, ...tools] = process.argv.slice(2);
if (tools.length === 0) {
	console.error('usage: node client-exchange.mjs <mcp-url> <issuer> <tool...>');
	process.exit(2);
}
setTimeout(() => { console.error('client-exchange: timed out'); process.exit(3); }, 60_000).unref();

const authProvider = new ClientCredentialsProvider({ clientId: 'ts-cc', clientSecret: 'ts-cc-secret', scope: 'mcp:read', expectedIssuer: issuer });
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider });
const client = new Client({ name: 'e2e-exchange-client', version: '1.0.0' });
try {
	await client.connect(transport);
	for (const name of tools) {
		const res = await client.callTool({ name, arguments: {} });
		if (res.isError || res.content?.length !== 1) throw new Error(`${name}: ${JSON.stringify(res)}`);
		console.log(res.content[0].text);
	}
	await client.close();
} catch (err) {
	console.error('client-exchange failed:', err);
	process.exit(1);
}
