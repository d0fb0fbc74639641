// TypeScript SDK side of the public-tools end-to-end test: lazy sign-in. The official client
// connects and lists without a token, calls a public tool, and signs in only when the user
// asks for a protected one, in the same session.
//
// Mode `lazy` (Claude, any client of the MCP specification): the protected call gets 401, the
// SDK runs the OAuth flow from the challenge (authorization code, PKCE, dynamic registration
// against oidc-provider), and the same call is retried with the token.
// Mode `chatgpt`: the client sends ChatGPT's User-Agent; the protected call comes back as a
// tool result with isError and _meta["mcp/www_authenticate"], from which the client runs the
// same flow, then retries the call.
//
// Usage: node client-lazy.mjs <mcp-url> <user> lazy|chatgpt
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';

const [url, user, mode] = process.argv.slice(2);
if (!user || !['lazy', 'chatgpt'].includes(mode)) {
  console.error('usage: node client-lazy.mjs <mcp-url> <user> lazy|chatgpt');
  process.exit(2);
}
setTimeout(() => { console.error('client-lazy: timed out'); process.exit(3); }, 60_000).unref();

const redirectUrl = 'http://127.0.0.1:9/callback';

// As in client-code.mjs: an OAuth client provider that keeps everything in memory.
class MemoryProvider {
  authorizationUrl;
  #client;
  #tokens;
  #verifier;
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: `e2e-ts-lazy-${mode}`,
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

// As in client-code.mjs: the "browser" signs in and consents on oidc-provider's development
// pages and returns the code from the redirect.
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
    next = { url: new URL(action, next.url).href, method: 'POST', body: form.toString() };
  }
  throw new Error('browser: too many steps');
}

// param reads a quoted auth-param of a challenge.
const param = (challenge, name) => challenge.match(new RegExp(`${name}="([^"]*)"`))?.[1];

const provider = new MemoryProvider();
const requestInit = mode === 'chatgpt' ? { headers: { 'User-Agent': 'openai-mcp/1.0.0' } } : undefined;
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, requestInit });
const client = new Client({ name: `e2e-ts-lazy-${mode}`, version: '1.0.0' });
await client.connect(transport);
console.log(`connected without a token: session=${transport.sessionId ? 'yes' : 'no'}`);
const session = transport.sessionId;

const { tools } = await client.listTools();
console.log('tools:', tools.map((t) => `${t.name}=${JSON.stringify(t._meta?.securitySchemes)}`).sort().join(' '));

const echo = await client.callTool({ name: 'echo', arguments: { text: 'anonymous hello' } });
if (echo.isError) throw new Error(`echo: ${JSON.stringify(echo)}`);
console.log('echo:', echo.content[0].text);

let az;
if (mode === 'lazy') {
  try {
    const res = await client.callTool({ name: 'whoami', arguments: {} });
    throw new Error(`whoami without a token: ${JSON.stringify(res)}`);
  } catch (err) {
    if (!(err instanceof UnauthorizedError) || !provider.authorizationUrl) throw err;
  }
  az = provider.authorizationUrl;
  console.log(`401: authorization request scope=${az.searchParams.get('scope')} resource=${az.searchParams.get('resource')}`);
  await transport.finishAuth(await browse(az.href));
} else {
  const res = await client.callTool({ name: 'whoami', arguments: {} });
  const challenge = res._meta?.['mcp/www_authenticate']?.[0];
  if (!res.isError || !challenge) throw new Error(`whoami without a token: ${JSON.stringify(res)}`);
  console.log(`in-result challenge: isError=${res.isError} scope=${param(challenge, 'scope')}`);
  const resourceMetadataUrl = new URL(param(challenge, 'resource_metadata'));
  const scope = param(challenge, 'scope');
  if (await auth(provider, { serverUrl: url, resourceMetadataUrl, scope }) !== 'REDIRECT') throw new Error('no authorization redirect');
  az = provider.authorizationUrl;
  console.log(`authorization request scope=${az.searchParams.get('scope')} resource=${az.searchParams.get('resource')}`);
  const code = await browse(az.href);
  if (await auth(provider, { serverUrl: url, resourceMetadataUrl, scope, authorizationCode: code }) !== 'AUTHORIZED') throw new Error('code exchange failed');
}

const who = await client.callTool({ name: 'whoami', arguments: {} });
if (who.isError) throw new Error(`whoami with a token: ${JSON.stringify(who)}`);
console.log('whoami:', who.content[0].text);
console.log(`same session: ${transport.sessionId === session}`);
await client.close();
