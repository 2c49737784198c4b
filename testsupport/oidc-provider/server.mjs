// A real OpenID Provider (panva's `oidc-provider`) for Vigil's tests. TEST USE ONLY.
//
// Two modes:
//
//   node server.mjs keygen DIR
//       Writes fresh signing keys into DIR: `jwks.json` (the private JWKS the provider signs with)
//       and `keys.json` (the same keys as PKCS#8 / SPKI / PKCS#1 PEM, with their kids, so that
//       tests can forge tokens with the provider's real private keys). RS256, ES256 and EdDSA
//       (Ed25519) keys.
//
//   node server.mjs [--port N]
//       Serves the provider on 127.0.0.1 (never another interface). Configuration, by environment:
//         OIDC_PORT              port, 0 (default) = a free one; `--port N` wins over it
//         OIDC_JWKS_FILE         path of the private signing JWKS (required)
//         OIDC_AUDIENCE          `aud` of access tokens for the default resource (default `vigil`)
//         OIDC_CLIENTS           JSON array of confidential machine clients,
//                                [{"client_id": "...", "client_secret": "..."}] (required)
//         OIDC_ACCESS_TOKEN_TTL  access-token lifetime in seconds (default 600)
//       When ready it prints ONE line of JSON to stdout and nothing else ever:
//         {"issuer": "http://127.0.0.1:PORT", "token_endpoint": "...", "port": PORT}
//       It exits when its standard input closes (so that it never outlives the test process
//       that started it), and on SIGTERM / SIGINT.
//
// Access tokens are JWTs (RFC 9068, `typ: at+jwt`), issued with the `client_credentials` grant.
// The `resource` parameter of the token request picks what is issued (RFC 8707):
//   (none) or urn:vigil:gateway     aud = OIDC_AUDIENCE, signed RS256
//   urn:vigil:gateway:ALG           aud = OIDC_AUDIENCE, signed with ALG (RS256, ES256 or EdDSA)
//   any other absolute URI          aud = that URI, signed RS256 (a token for another service)

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

const DEFAULT_RESOURCE = 'urn:vigil:gateway';
const SIGNING_ALGS = ['RS256', 'ES256', 'EdDSA'];

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

function keygen(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const suffix = crypto.randomBytes(4).toString('hex');
  const pairs = {
    rs256: { alg: 'RS256', pair: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }) },
    es256: { alg: 'ES256', pair: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) },
    eddsa: { alg: 'EdDSA', pair: crypto.generateKeyPairSync('ed25519') },
  };
  const jwks = { keys: [] };
  const manifest = {};
  for (const [name, { alg, pair }] of Object.entries(pairs)) {
    const kid = `test-${name}-${suffix}`;
    jwks.keys.push({ ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
    manifest[name] = {
      kid,
      alg,
      private_pkcs8_pem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      public_spki_pem: pair.publicKey.export({ type: 'spki', format: 'pem' }),
      ...(name === 'rs256'
        ? { public_pkcs1_pem: pair.publicKey.export({ type: 'pkcs1', format: 'pem' }) }
        : {}),
    };
  }
  // Private keys: readable by the owner only.
  fs.writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify(jwks, null, 2), { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'keys.json'), JSON.stringify(manifest, null, 2), { mode: 0o600 });
}

function portFromArgs() {
  const i = process.argv.indexOf('--port');
  const raw = i >= 0 ? process.argv[i + 1] : process.env.OIDC_PORT ?? '0';
  const port = Number.parseInt(raw, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${JSON.stringify(raw)}`);
  return port;
}

async function serve() {
  const jwksFile = process.env.OIDC_JWKS_FILE;
  if (!jwksFile) fail('OIDC_JWKS_FILE is not set (run `node server.mjs keygen DIR` to make one)');
  const jwks = JSON.parse(fs.readFileSync(jwksFile, 'utf8'));
  const audience = process.env.OIDC_AUDIENCE || 'vigil';
  const ttl = Number.parseInt(process.env.OIDC_ACCESS_TOKEN_TTL || '600', 10);
  let clients;
  try {
    clients = JSON.parse(process.env.OIDC_CLIENTS || '');
  } catch {
    fail('OIDC_CLIENTS must be a JSON array of {"client_id", "client_secret"}');
  }

  // Imported late so that `keygen` works before `npm ci`.
  const { default: Provider } = await import('oidc-provider');

  // Listen first: the issuer URL holds the port, which is only known once bound.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(portFromArgs(), '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    jwks,
    clients: clients.map(({ client_id, client_secret }) => ({
      client_id,
      client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    // Throwaway cookie keys: this provider has no browser flows, but it wants keys.
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    enabledJWA: { idTokenSigningAlgValues: SIGNING_ALGS },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => DEFAULT_RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          let alg = 'RS256';
          let aud = resource;
          if (resource === DEFAULT_RESOURCE) {
            aud = audience;
          } else if (resource.startsWith(`${DEFAULT_RESOURCE}:`)) {
            alg = resource.slice(DEFAULT_RESOURCE.length + 1);
            aud = audience;
            if (!SIGNING_ALGS.includes(alg)) {
              const { errors } = await import('oidc-provider');
              throw new errors.InvalidTarget(`unsupported signing algorithm ${alg}`);
            }
          }
          return {
            scope: '',
            audience: aud,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
  });
  provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));

  server.on('request', provider.callback());

  const shutdown = () => server.close(() => process.exit(0));
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // The parent holds our stdin; when it goes away (even killed), so do we.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();

  process.stdout.write(`${JSON.stringify({ issuer, token_endpoint: provider.urlFor('token'), port })}\n`);
}

if (process.argv[2] === 'keygen') {
  if (!process.argv[3]) fail('usage: node server.mjs keygen DIR');
  keygen(process.argv[3]);
} else {
  serve().catch((err) => fail(err.stack || String(err)));
}
