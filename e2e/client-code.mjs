// TypeScript SDK side of the end-to-end test, authorization_code + PKCE grant with dynamic
// client registration, as an interactive MCP client (an IDE, a desktop app) does it. The SDK
// follows the 401 to the metadata, registers a public client, and hands over the authorization
// URL; the "browser" here is fetch with a cookie jar, which signs in and consents on
// oidc-provider's built-in development pages and catches the redirect with the code. Then the
// SDK exchanges the code (with the PKCE verifier and the resource) and the client calls tools.
//
// With a third argument `refresh-as-access`, the refresh token the AS issued is then sent to
// the MCP URL as if it were an access token, and the status printed (never the token).
//
// Usage: node client-code.mjs <mcp-url> <user> [refresh-as-access]
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [url, user, extra] = process.argv.slice(2);
if (!user) {
  console.error('usage: node client-code.mjs <mcp-url> <user>');
  process.exit(2);
}
setTimeout(() => { console.error('client-code: timed out'); process.exit(3); }, 60_000).unref();

// Nothing listens here: the browser stops at the redirect and reads the code from it.
const redirectUrl = 'http://127.0.0.1:9/callback';

class MemoryProvider {
  authorizationUrl;
  #client;
  #tokens;
  #verifier;
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: 'e2e-ts-code-client',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() { return this.#client; }
  saveClientInformation(info) { this.#client = info; }
  tokens() { return this.#tokens; }
  saveTokens(tokens) { this.#tokens = tokens; }
  redirectToAuthorization(u) { this.authorizationUrl = new URL(u); }
  saveCodeVerifier(v) { this.#verifier = v; }
  codeVerifier() { return this.#verifier; }
}

// browse follows redirects by hand, keeping cookies, and submits the login and consent forms
// of oidc-provider's devInteractions. It returns the authorization code from the final redirect.
async function browse(start) {
  const jar = new Map();
  let next = { url: start, method: 'GET' };
  for (let step = 0; step < 20; step++) {
    const headers = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
    if (next.body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(next.url, { method: next.method, body: next.body, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      const loc = new URL(res.headers.get('location'), next.url);
      if (loc.href.startsWith(redirectUrl)) {
        const error = loc.searchParams.get('error');
        if (error) throw new Error(`authorization failed: ${error} ${loc.searchParams.get('error_description')}`);
        return loc.searchParams.get('code');
      }
      next = { url: loc.href, method: 'GET' };
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`browser: ${res.status} at ${next.url}: ${html.slice(0, 300)}`);
    const action = html.match(/<form[^>]*action="([^"]+)"/)?.[1];
    const prompt = html.match(/name="prompt" value="([^"]+)"/)?.[1];
    if (!action || !prompt) throw new Error(`browser: no form at ${next.url}`);
    const form = new URLSearchParams({ prompt });
    if (prompt === 'login') {
      form.set('login', user);
      form.set('password', 'any');
    }
    console.log(`browser: ${prompt} page answered`);
    next = { url: new URL(action, next.url).href, method: 'POST', body: form.toString() };
  }
  throw new Error('browser: too many steps');
}

const provider = new MemoryProvider();
const client = new Client({ name: 'e2e-ts-code-client', version: '1.0.0' });
try {
  try {
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
    throw new Error('connected without authorization');
  } catch (err) {
    if (!(err instanceof UnauthorizedError) || !provider.authorizationUrl) throw err;
  }
  const az = provider.authorizationUrl;
  console.log(`registered client; authorization request: scope=${az.searchParams.get('scope')} resource=${az.searchParams.get('resource')} code_challenge_method=${az.searchParams.get('code_challenge_method')}`);
  const code = await browse(az.href);
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await transport.finishAuth(code);
  console.log('token:', provider.tokens()?.token_type, 'scope', provider.tokens()?.scope);
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log('tools:', tools.map((t) => t.name).sort().join(','));
  for (const [name, args] of [['echo', { text: 'hello via authorization code' }], ['whoami', {}]]) {
    const res = await client.callTool({ name, arguments: args });
    if (res.isError || res.content?.length !== 1) throw new Error(`${name}: ${JSON.stringify(res)}`);
    console.log(`${name}: ${res.content[0].text}`);
  }
  await client.close();
  if (extra === 'refresh-as-access') {
    const refresh = provider.tokens()?.refresh_token;
    if (!refresh) throw new Error('no refresh token issued');
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${refresh}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'refresh', version: '1' } } }),
    });
    await res.body?.cancel();
    console.log(`refresh token as access token: ${res.status} ${res.headers.get('www-authenticate')?.match(/error="([^"]+)"/)?.[1]}`);
  }
} catch (err) {
  console.error('client-code failed:', err);
  process.exit(1);
}
