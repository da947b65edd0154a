// Starts the test authorization server (provider.mjs) as its own process, for
// Go tests and shell runners:
//
//   node serve.mjs --port P --resource URL[,URL] [--jwt-resource URL[,URL]]
//                  [--scopes a,b,c] [--ttl SECONDS] [--dir DIR] [--dpop-nonce]
//
// --resource      resources whose access tokens are opaque (repeatable, or comma-separated)
// --jwt-resource  resources whose access tokens are RFC 9068 JWTs (ES256)
// --scopes        the scopes every resource accepts (default read,write,admin)
// --ttl           access token lifetime (default 300)
// --dir           where the private_key_jwt key files go (default a temporary
//                 directory, removed on exit)
// --dpop-nonce    require server-provided DPoP nonces at the token endpoint
//
// Once listening it prints exactly one line, a JSON object (see README.md), and
// keeps running; SIGTERM or SIGINT stops it (exit 0).
import { parseArgs } from 'node:util';
import { startProvider } from './provider.mjs';

const { values } = parseArgs({
    options: {
        port: { type: 'string', default: '0' },
        resource: { type: 'string', multiple: true, default: [] },
        'jwt-resource': { type: 'string', multiple: true, default: [] },
        scopes: { type: 'string' },
        ttl: { type: 'string', default: '300' },
        dir: { type: 'string' },
        'dpop-nonce': { type: 'boolean', default: false }
    }
});
const list = vs => vs.flatMap(v => v.split(',')).map(v => v.trim()).filter(Boolean);
const scopes = values.scopes ? list([values.scopes]) : undefined;
const resources = [
    ...list(values.resource).map(uri => ({ uri, format: 'opaque', scopes })),
    ...list(values['jwt-resource']).map(uri => ({ uri, format: 'jwt', scopes }))
];
if (resources.length === 0) {
    console.error('usage: serve.mjs --port P --resource URL[,URL] [--jwt-resource URL[,URL]] [--scopes a,b] [--ttl S] [--dir DIR] [--dpop-nonce]');
    process.exit(2);
}

// stdout carries only the JSON line: oidc-provider's notices (console.info) go to stderr.
console.info = console.log = (...args) => console.error(...args);

const as = await startProvider({
    port: Number(values.port),
    resources,
    accessTokenTTL: Number(values.ttl),
    dir: values.dir,
    requireDpopNonce: values['dpop-nonce']
});
const { provider, token, revoke, counts, close, ...info } = as;
process.stdout.write(`${JSON.stringify(info)}\n`);

let stopping = false;
const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.race([close(), new Promise(r => setTimeout(r, 2000))]);
    process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
