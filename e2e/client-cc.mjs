// TypeScript SDK side of the end-to-end test, client_credentials grant. The client starts with
// no token; on the 401 the SDK follows the challenge's resource_metadata to the protected
// resource metadata, then the authorization server metadata, and asks the token endpoint for
// a token for the resource (RFC 8707). Then: tools/list, tools/call echo and whoami.
//
// The scope is configured on the provider: in SDK 1.32.2 the client_credentials token request
// sends the provider's configured scope only, not the scope of the challenge or the metadata.
//
// Usage: node client-cc.mjs <mcp-url> <client-id> <client-secret> <issuer> <scope>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url, clientId, clientSecret, issuer, scope] = process.argv.slice(2);
if (!scope) {
  console.error('usage: node client-cc.mjs <mcp-url> <client-id> <client-secret> <issuer> <scope>');
  process.exit(2);
}
setTimeout(() => { console.error('client-cc: timed out'); process.exit(3); }, 60_000).unref();

const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, scope, expectedIssuer: issuer });
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider });
const client = new Client({ name: 'e2e-ts-cc-client', version: '1.0.0' });

try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).sort().join(','));
  for (const [name, args] of [['echo', { text: 'hello through caddy' }], ['whoami', {}]]) {
    const res = await client.callTool({ name, arguments: args });
    if (res.isError || res.content?.length !== 1) throw new Error(`${name}: ${JSON.stringify(res)}`);
    console.log(`${name}: ${res.content[0].text}`);
  }
  console.log('granted scope:', authProvider.tokens()?.scope ?? '(not reported)');
  await client.close();
} catch (err) {
  console.error('client-cc failed:', err);
  process.exit(1);
}
