// TypeScript SDK side of the bound-sessions end-to-end test. Caddy runs mcp_auth with
// bind_sessions in front of the Go SDK server; the client is the SDK's own, unchanged.
//
//   1. Alice connects (initialize, the GET stream the SDK opens), lists tools, calls echo.
//   2. Bob sends a tools/call with Alice's session ID: the answer must be 404.
//   3. Alice, with a refreshed token, reconnects to the same session (sessionId option, no
//      new initialize) and calls echo again; then resumes the GET stream with Last-Event-ID.
//   4. Alice ends the session (DELETE).
//
// Each step prints one line; the exit status is non-zero on any failure.
//
// Usage: node client-bound.mjs <mcp-url> <alice-token> <alice-refreshed-token> <bob-token>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, alice, aliceRefreshed, bob] = process.argv.slice(2);
if (!bob) {
  console.error('usage: node client-bound.mjs <mcp-url> <alice-token> <alice-refreshed-token> <bob-token>');
  process.exit(2);
}
setTimeout(() => { console.error('client-bound: timed out'); process.exit(3); }, 60_000).unref();

const errors = [];
function transportFor(token, sessionId) {
  const t = new StreamableHTTPClientTransport(new URL(url), {
    sessionId,
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  t.onerror = (err) => errors.push(String(err));
  return t;
}

try {
  const t1 = transportFor(alice);
  const c1 = new Client({ name: 'e2e-ts-bound', version: '1.0.0' });
  await c1.connect(t1);
  const sid = t1.sessionId;
  const m = /^([\x21-\x7e]+)\.([A-Za-z0-9_-]{43})$/.exec(sid ?? '');
  console.log('session id:', m ? 'tagged' : `not tagged: ${sid}`);
  const { tools } = await c1.listTools();
  console.log('tools:', tools.map((t) => t.name).sort().join(','));
  let res = await c1.callTool({ name: 'echo', arguments: { text: 'bound' } });
  console.log('echo:', res.content?.[0]?.text);

  const replay = await fetch(url, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${bob}`, 'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream', 'Mcp-Session-Id': sid, 'Mcp-Protocol-Version': '2025-06-18',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hijack' } } }),
  });
  console.log('bob replays alice session:', replay.status);

  const t2 = transportFor(aliceRefreshed, sid);
  const c2 = new Client({ name: 'e2e-ts-bound', version: '1.0.0' });
  await c2.connect(t2); // a session ID is set: no new initialize
  let lastEventId;
  res = await c2.callTool({ name: 'echo', arguments: { text: 'refreshed' } }, undefined,
    { onresumptiontoken: (tok) => { lastEventId = tok; } });
  console.log('echo after refresh:', res.content?.[0]?.text, t2.sessionId === sid ? '(same session)' : '(new session)');

  // The first client goes away with its GET stream; the refreshed one takes the stream up again
  // in the same session (from the last event it saw, when the server numbers its events), as
  // a client does after a drop. The server notices the old stream's end asynchronously: a 409
  // (stream still open) is retried a few times.
  await c1.close().catch(() => {});
  let resumed = 'no';
  for (let i = 0; i < 20 && resumed !== 'yes'; i++) {
    await t2.resumeStream(lastEventId ?? '', { onresumptiontoken: () => {} }).then(() => { resumed = 'yes'; }, (err) => { resumed = String(err); });
    if (resumed !== 'yes') await new Promise((r) => setTimeout(r, 200));
  }
  console.log('resume stream:', resumed);

  await t2.terminateSession();
  console.log('terminated:', t2.sessionId === undefined ? 'yes' : 'no');
  await c2.close().catch(() => {});
  const notFound = errors.filter((e) => /404|not found/i.test(e));
  console.log('transport 404 errors:', notFound.length);
  if (notFound.length) console.error(notFound.join('\n'));
} catch (err) {
  console.error('client-bound failed:', err, errors);
  process.exit(1);
}
