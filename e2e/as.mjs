// Authorization server for the end-to-end test: oidc-provider (a certified OpenID Connect /
// OAuth 2.0 server) on 127.0.0.1, issuing RFC 9068 JWT access tokens whose `aud` is the
// RFC 8707 resource indicator the client asked for.
//
// Usage: node as.mjs <mcp-resource-url> [<exchange-audience,...>]
// With exchange audiences, the AS also has an RFC 8693 token exchange grant (see below).
// Prints one line `AS_READY <issuer>` on stdout once it listens, then serves until killed.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';
import { SignJWT, jwtVerify } from 'jose';

const resource = process.argv[2];
if (!resource || !URL.canParse(resource)) {
  console.error('usage: node as.mjs <mcp-resource-url>');
  process.exit(2);
}

// Fixed test credentials; the Go test driver uses the same values.
const clients = [
  // TypeScript SDK ClientCredentialsProvider; it sends `resource` itself.
  { client_id: 'ts-cc', client_secret: 'ts-cc-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
  // Go SDK extauth.ClientCredentialsHandler (v1.8.0) sends no `resource` parameter, so this
  // client gets the MCP resource as its default (see defaultResource below).
  { client_id: 'go-cc', client_secret: 'go-cc-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
  // Raw token requests from the Go test driver (step-up and wrong-audience cases).
  { client_id: 'raw-cc', client_secret: 'raw-cc-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
  // The resource server itself, for RFC 7662 introspection (client_secret_basic).
  { client_id: 'mcp-rs', client_secret: 'mcp-rs-secret', grant_types: [], redirect_uris: [], response_types: [] },
];

const signingKey = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: `e2e-${crypto.randomBytes(4).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

// ---- Token exchange (RFC 8693) ------------------------------------------------------------
// oidc-provider has no token exchange grant; it registers extra grants through its documented
// registerGrantType API. This one takes an access token this AS issued for the MCP resource
// (the subject token) and issues a JWT access token for one of the audiences given on the
// command line, for the same user and client, to the client mcp-gw (mcp_auth's).
const exchangeAudiences = (process.argv[3] ?? '').split(',').filter(Boolean);
const tokenExchange = 'urn:ietf:params:oauth:grant-type:token-exchange';
const accessTokenType = 'urn:ietf:params:oauth:token-type:access_token';
if (exchangeAudiences.length > 0) {
  clients.push({
    client_id: 'mcp-gw', client_secret: 'mcp-gw-secret', grant_types: [tokenExchange],
    redirect_uris: [], response_types: [],
  });
}
// ---- end token exchange ---------------------------------------------------------------------

// ---- DPoP (RFC 9449) -------------------------------------------------------------------
// Token requests that carry a DPoP proof get access tokens bound to its key (cnf.jkt in the
// JWT access token); the others stay bearer tokens. Used by client-dpop.mjs.
const dpopFeatures = {
  dPoP: { enabled: true },
  // Certificate-bound tokens (RFC 8705) for the client mtls-cc. The token endpoint is plain
  // HTTP here, so the test driver hands the client certificate over in a header (base64 DER),
  // as a TLS-terminating proxy in front of an AS would; never do this without such a proxy.
  mTLS: {
    enabled: true,
    certificateBoundAccessTokens: true,
    getCertificate: (ctx) => ctx.get('x-e2e-client-cert') || undefined,
  },
};
clients.push({
  client_id: 'mtls-cc', client_secret: 'mtls-cc-secret', grant_types: ['client_credentials'],
  redirect_uris: [], response_types: [], tls_client_certificate_bound_access_tokens: true,
});
// ---- end DPoP ---------------------------------------------------------------------------

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    // The MCP scopes are listed here too, so that clients may register with them (RFC 7591
    // `scope`, which the SDK sends) and the discovery document advertises them.
    scopes: ['openid', 'offline_access', 'mcp:read', 'mcp:write'],
    features: {
      ...dpopFeatures,
      clientCredentials: { enabled: true },
      registration: { enabled: true }, // dynamic client registration for the authorization_code flow
      introspection: { enabled: true }, // RFC 7662, for the resources that get opaque tokens
      revocation: { enabled: true }, // RFC 7009, to show revocation reaching the resource server
      devInteractions: { enabled: true }, // built-in login/consent pages, scripted by client-code.mjs
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => {
          if (oneOf) return oneOf;
          return client?.clientId === 'go-cc' ? resource : undefined;
        },
        useGrantedResource: async () => true,
        // Every absolute http(s) URL is a resource server of ours: the MCP resource, and any
        // other one asked for (the wrong-audience case asks for one).
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          const u = URL.parse(resourceIndicator);
          if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
            throw new Error('invalid resource');
          }
          // Resources under /opaque get opaque access tokens, which only introspection
          // can check (as Hydra, ZITADEL or Okta's org server issue them).
          if (u.pathname.startsWith('/opaque/')) {
            return { scope: 'mcp:read mcp:write', audience: resourceIndicator, accessTokenTTL: 300, accessTokenFormat: 'opaque' };
          }
          return {
            scope: 'mcp:read mcp:write',
            audience: resourceIndicator,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    pkce: { required: () => true },
    // Refresh tokens for every client allowed the grant (not only with offline_access), so
    // that the test can present one as an access token.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // The resource-server tokens need no user claims; keep the account model minimal.
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  });
  if (exchangeAudiences.length > 0) registerTokenExchange(provider, issuer);
  provider.on('server_error', (ctx, err) => console.error('AS server_error:', err));
  server.on('request', provider.callback());
  console.log(`AS_READY ${issuer}`);
});

function registerTokenExchange(provider, issuer) {
  const publicKey = crypto.createPublicKey({ key: signingKey, format: 'jwk' });
  const privateKey = crypto.createPrivateKey({ key: signingKey, format: 'jwk' });
  const one = (v) => (Array.isArray(v) ? v : v ? [v] : []);
  provider.registerGrantType(tokenExchange, async (ctx) => {
    const p = ctx.oidc.params;
    if (p.subject_token_type !== accessTokenType || !p.subject_token) {
      throw new errors.InvalidRequest('subject_token_type must be the access token type');
    }
    if (p.requested_token_type && p.requested_token_type !== accessTokenType) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    let subject;
    try {
      // The subject token must be one of ours, valid, and issued for the MCP resource.
      ({ payload: subject } = await jwtVerify(p.subject_token, publicKey, {
        issuer, audience: resource, typ: 'at+jwt', algorithms: ['RS256'],
      }));
    } catch (err) {
      throw new errors.InvalidGrant(`subject token refused: ${err.code ?? err.message}`);
    }
    const audience = one(p.audience);
    if (audience.length !== 1 || !exchangeAudiences.includes(audience[0]) || one(p.resource).length > 0) {
      throw new errors.InvalidTarget('exactly one known audience, and no resource');
    }
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      client_id: subject.client_id,
      scope: p.scope ?? subject.scope,
      act: { sub: ctx.oidc.client.clientId }, // RFC 8693 §4.1: who acts for the subject
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: signingKey.kid })
      .setIssuer(issuer).setSubject(subject.sub).setAudience(audience[0])
      .setIssuedAt(now).setExpirationTime(now + 300).setJti(crypto.randomUUID())
      .sign(privateKey);
    ctx.body = { access_token: token, issued_token_type: accessTokenType, token_type: 'Bearer', expires_in: 300 };
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope'], ['audience', 'resource']);
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
