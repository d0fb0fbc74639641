// DPoP client for the end-to-end test (RFC 9449), written with jose as a DPoP client library
// would do it: an ES256 key pair, a proof for the token request (oidc-provider binds the
// access token to the key: cnf.jkt), then proofs for the MCP requests through Caddy.
//
// Usage: node client-dpop.mjs <token-endpoint> <client-id> <client-secret> <resource> <mcp-url>
// Prints one line per step; the Go test driver compares them.
import crypto from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, decodeJwt } from 'jose';

const [tokenEndpoint, clientId, clientSecret, resource, mcpURL] = process.argv.slice(2);
if (!mcpURL) {
  console.error('usage: node client-dpop.mjs <token-endpoint> <client-id> <client-secret> <resource> <mcp-url>');
  process.exit(2);
}

const { privateKey, publicKey } = await generateKeyPair('ES256');
const jwk = await exportJWK(publicKey);
const b64url = (buf) => Buffer.from(buf).toString('base64url');

async function proof(htm, htu, { token, nonce } = {}) {
  const claims = { jti: crypto.randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000) };
  if (token) claims.ath = b64url(crypto.createHash('sha256').update(token).digest());
  if (nonce) claims.nonce = nonce;
  return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk }).sign(privateKey);
}

// Token request (client_credentials) with a proof: the token comes back bound to the key.
const tokenResp = await fetch(tokenEndpoint, {
  method: 'POST',
  headers: {
    'content-type': 'application/x-www-form-urlencoded',
    authorization: 'Basic ' + Buffer.from(`${clientId}:${clientSecret}`).toString('base64'),
    dpop: await proof('POST', tokenEndpoint),
  },
  body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'mcp:read', resource }),
});
const tok = await tokenResp.json();
if (!tokenResp.ok) {
  console.error('token request failed', tokenResp.status, JSON.stringify(tok));
  process.exit(1);
}
const claims = decodeJwt(tok.access_token);
console.log(`token_type: ${tok.token_type}`);
console.log(`cnf.jkt is the proof key: ${claims.cnf?.jkt === (await calculateJwkThumbprint(jwk, 'sha256'))}`);

const initialize = JSON.stringify({
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'dpop-e2e', version: '1' } },
});
async function call(scheme, dpop) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    authorization: `${scheme} ${tok.access_token}`,
  };
  if (dpop) headers.dpop = dpop;
  const resp = await fetch(mcpURL, { method: 'POST', headers, body: initialize });
  await resp.arrayBuffer();
  const m = /error="([^"]+)"/.exec(resp.headers.get('www-authenticate') ?? '');
  return { status: resp.status, error: m ? m[1] : '', nonce: resp.headers.get('dpop-nonce') };
}

// The resource demands a nonce: the first proof is answered with use_dpop_nonce and a nonce.
const first = await call('DPoP', await proof('POST', mcpURL, { token: tok.access_token }));
console.log(`without nonce: ${first.status} ${first.error} nonce=${first.nonce ? 'given' : 'none'}`);
const withNonce = await proof('POST', mcpURL, { token: tok.access_token, nonce: first.nonce });
const second = await call('DPoP', withNonce);
console.log(`with nonce: ${second.status}`);
// The same proof again is a replay.
const replay = await call('DPoP', withNonce);
console.log(`replayed proof: ${replay.status} ${replay.error}`);
// A fresh proof for the (now cached) token passes again.
const third = await call('DPoP', await proof('POST', mcpURL, { token: tok.access_token, nonce: first.nonce }));
console.log(`fresh proof: ${third.status}`);
// The bound token without its proof, as a bearer token: refused.
const bearer = await call('Bearer');
console.log(`as bearer: ${bearer.status} ${bearer.error}`);
