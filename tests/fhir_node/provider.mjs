// A HelseID-like OpenID provider for tests/gateway/test_fhir_helseid.py and the FHIR outbound
// tests: npm oidc-provider with client credentials, private_key_jwt client authentication and
// DPoP-bound JWT access tokens for one resource (the JFT-like peer), DPoP nonces required.
//
//   node provider.mjs --client-id ID --client-jwk FILE --resource URL --scope SCOPE [--ttl S]
//
// Prints one JSON line {"event":"listening","issuer":...} and then one per access token issued
// ({"event":"token","jkt":...}); stops when its stdin ends.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    'client-id': { type: 'string' },
    'client-jwk': { type: 'string' },
    resource: { type: 'string' },
    scope: { type: 'string' },
    ttl: { type: 'string', default: '300' },
  },
});

const clientJwk = JSON.parse(fs.readFileSync(args['client-jwk'], 'utf8'));
const signingKey = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  .export({ format: 'jwk' });

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: args['client-id'],
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [clientJwk] },
    scope: args.scope,
    dpop_bound_access_tokens: true,
    // The provider signs with ES256 only (its one key); the default (RS256) would be refused.
    id_token_signed_response_alg: 'ES256',
  }, {
    // The same key, for plain Bearer tokens (VKP asks for those): DPoP not required.
    client_id: `${args['client-id']}-bearer`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [clientJwk] },
    scope: args.scope,
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [{ ...signingKey, kid: 'provider-1', use: 'sig', alg: 'ES256' }] },
  scopes: [args.scope],
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => args.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== args.resource) throw new errors.InvalidTarget();
        return {
          scope: args.scope,
          audience: args.resource,
          accessTokenTTL: Number(args.ttl),
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
// JWT access tokens are 'issued' (not stored); opaque ones would be 'saved'.
for (const name of ['client_credentials.issued', 'client_credentials.saved']) {
  provider.on(name, (token) => emit({ event: 'token', jkt: token.jkt ?? null }));
}
provider.on('grant.error', (ctx, error) => emit({ event: 'error', error: error.error, detail: error.error_description }));

server.on('request', provider.callback());
emit({ event: 'listening', issuer });
process.stdin.resume();
process.stdin.on('end', () => server.close(() => process.exit(0)));
