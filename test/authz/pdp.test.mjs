// End-to-end tests of the PDP's token introspection (RFC 7662, RFC 9701) and
// DPoP (RFC 9449) against the real oidc-provider (provider.mjs, in this
// process): `pdp serve` runs as a child process (PDP_BIN), configured with
// resources whose tokens the provider issues, and is asked POST /v1/decide
// as an MCP server (PEP) would. Run: PDP_BIN=path node --test pdp.test.mjs
// (or ./run.sh, which builds the binary when PDP_BIN is unset).
//
// Resources (all on the PDP's own port, so the RFC 9728 metadata URLs in the
// challenges are the PDP's):
//   /mcp          opaque; introspection discovered, pdp-basic (client_secret_basic), max_ttl 2s, negative_ttl 1s
//   /mcp-pkjwt    opaque; introspection endpoint given, pdp-jwt (private_key_jwt), RFC 9701 JWT responses
//   /mcp-post     opaque; introspection discovered, pdp-post (client_secret_post)
//   /mcp-jwt      JWT access tokens; verified locally (jwks_uri discovered), introspection configured as well
//   /mcp-nonce    opaque; pdp-basic; dpop_nonce: true
//   /mcp-badauth  opaque; pdp-basic with a wrong client secret
//
// The order of the tests matters in one place: the outage (the provider
// stopped) is the last describe.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { fingerprint, startProvider } from './provider.mjs';
import { generateKey, proof } from './dpop.mjs';

const PDP_BIN = process.env.PDP_BIN;
const SCOPES = ['read', 'qr:generate'];
const DPOP_ALGS = 'ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA';
const QR_CALL = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'generate_qr_url', arguments: { text: 'x' } } };
const PUBLIC_CALL = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'lookup_product', arguments: { gtin: '4006381333931' } } };
const now = () => Math.floor(Date.now() / 1000);
const sleep = ms => new Promise(r => setTimeout(r, ms));

/**
 * A free loopback port from the OS, held (listening) until release(): the
 * provider, started meanwhile on port 0, cannot be given the same one.
 */
async function reservePort() {
    const s = createServer();
    await new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
    });
    return { port: s.address().port, release: () => new Promise(r => s.close(r)) };
}

let dir; // the temporary directory: config, secrets, key files, data_dir, pdp.log
let as; // the provider
let pdp; // the pdp serve child process
let pdpURL;
let logTail = () => '';
const R = {}; // resource URIs by name
const issued = []; // every access token as.token() gave (none may reach the PDP's log)

/** The RFC 9728 metadata URL of a resource, as the PDP puts it in challenges. */
const metadataURL = uri => {
    const u = new URL(uri);
    return `${u.origin}/.well-known/oauth-protected-resource${u.pathname}`;
};

/** Bearer challenge text as the PDP builds it (internal/stepup/header.go). */
const bearer = (uri, { error, scope = 'qr:generate', desc } = {}) =>
    'Bearer ' +
    [error && `error="${error}"`, `resource_metadata="${metadataURL(uri)}"`, scope && `scope="${scope}"`, desc && `error_description="${desc}"`]
        .filter(Boolean)
        .join(', ');

/** A DPoP challenge (RFC 9449 §7.1): algs first. */
const dpopChallenge = (uri, { error, scope = 'qr:generate', desc } = {}) =>
    `DPoP algs="${DPOP_ALGS}", ` + bearer(uri, { error, scope, desc }).slice('Bearer '.length);

/** POST /v1/decide; returns {status, body}. */
async function decide(body) {
    const res = await fetch(`${pdpURL}/v1/decide`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000)
    });
    const text = await res.text();
    let json;
    try {
        json = JSON.parse(text);
    } catch {
        throw new Error(`/v1/decide answered ${res.status} with no JSON: ${text.slice(0, 300)}`);
    }
    return { status: res.status, body: json };
}

/** Decides generate_qr_url (step_up, qr:generate) on resource for an Authorization value. */
async function callQR(resource, authorization, extra = {}) {
    const { status, body } = await decide({ resource, authorization, message: QR_CALL, ...extra });
    assert.equal(status, 200, `decided (HTTP 200): ${JSON.stringify(body)}`);
    return body;
}

const introspections = () => as.counts().introspection ?? 0;

/** Asserts an allowed decision with the caller's client_id (and sub). */
function assertAllowed(d, { client = 'svc-a', sub } = {}) {
    assert.equal(d.allow, true, `allowed: ${d.reason} ${d.www_authenticate ?? ''}`);
    assert.equal(d.outcome, 'allow');
    assert.equal(d.http_status, 200);
    assert.equal(d.caller?.client_id, client);
    assert.equal(d.caller?.issuer, as.issuer);
    assert.equal(d.caller?.sub, sub);
    assert.ok(d.caller.scopes.includes('qr:generate'), `scopes ${d.caller.scopes}`);
    assert.equal(d.www_authenticate, undefined);
}

/**
 * Asserts a 401 challenge of generate_qr_url with exactly this WWW-Authenticate (also
 * in the tool result's _meta) and reason.
 */
function assertChallenge(d, www, reason) {
    assert.equal(d.allow, false, 'refused');
    assert.equal(d.outcome, 'challenge', `outcome (${d.reason})`);
    assert.equal(d.http_status, 401);
    assert.equal(d.www_authenticate, www);
    assert.equal(d.reason, reason);
    assert.deepEqual(d.tool_result?._meta?.['mcp/www_authenticate'], [www]);
    assert.equal(d.caller, undefined);
}

/** Starts `pdp serve` (pdp) and waits for /readyz; its output goes to logFile. */
async function startPdp(configFile, logFile) {
    const log = createWriteStream(logFile);
    const child = spawn(PDP_BIN, ['serve', '--config', configFile], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    pdp = child;
    child.once('exit', () => log.end());
    let lines = [];
    const keep = chunk => {
        log.write(chunk);
        lines.push(...String(chunk).split('\n'));
        if (lines.length > 400) lines = lines.slice(-200);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    logTail = (n = 30) => lines.slice(-n).join('\n');
    let exited = null;
    child.once('exit', (code, signal) => (exited = { code, signal }));
    const deadline = Date.now() + 30_000;
    for (;;) {
        if (exited) throw new Error(`pdp serve exited (${JSON.stringify(exited)}):\n${logTail()}`);
        try {
            const res = await fetch(`${pdpURL}/readyz`, { signal: AbortSignal.timeout(1000) });
            if (res.ok) break;
        } catch {
            // not listening yet
        }
        if (Date.now() > deadline) throw new Error(`pdp serve not ready in 30 s:\n${logTail()}`);
        await sleep(100);
    }
}

async function stopPdp() {
    if (!pdp || pdp.exitCode !== null || pdp.signalCode !== null) return;
    const exit = once(pdp, 'exit');
    pdp.kill('SIGTERM');
    const t = setTimeout(() => pdp.kill('SIGKILL'), 5000);
    await exit;
    clearTimeout(t);
}

before(async () => {
    assert.ok(PDP_BIN, 'PDP_BIN must name the pdp binary (run.sh builds one)');
    dir = await mkdtemp(join(tmpdir(), 'mcp-pdp-authz-e2e-'));
    const reserved = await reservePort();
    const { port } = reserved;
    pdpURL = `http://127.0.0.1:${port}`;
    for (const [name, path] of Object.entries({
        basic: '/mcp',
        pkjwt: '/mcp-pkjwt',
        post: '/mcp-post',
        jwt: '/mcp-jwt',
        nonce: '/mcp-nonce',
        badauth: '/mcp-badauth'
    })) {
        R[name] = `${pdpURL}${path}`;
    }
    as = await startProvider({
        dir,
        resources: [
            { uri: R.basic, scopes: SCOPES },
            { uri: R.pkjwt, scopes: SCOPES },
            { uri: R.post, scopes: SCOPES },
            { uri: R.jwt, format: 'jwt', scopes: SCOPES },
            { uri: R.nonce, scopes: SCOPES },
            { uri: R.badauth, scopes: SCOPES }
        ]
    });
    const token = as.token;
    as.token = async o => {
        const t = await token(o);
        issued.push(t.access_token);
        return t;
    };
    const c = as.clients;
    const basicSecret = join(dir, 'pdp-basic.secret');
    const postSecret = join(dir, 'pdp-post.secret');
    const wrongSecret = join(dir, 'wrong.secret');
    await writeFile(basicSecret, `${c['pdp-basic'].client_secret}\n`, { mode: 0o600 });
    await writeFile(postSecret, c['pdp-post'].client_secret, { mode: 0o600 });
    await writeFile(wrongSecret, randomBytes(32).toString('base64url'), { mode: 0o600 });
    const basic = `{discover: true, client_id: pdp-basic, client_secret_file: ${JSON.stringify(basicSecret)}, max_ttl: 2s, negative_ttl: 1s}`;
    const config = `# written by test/authz/pdp.test.mjs
listen: 127.0.0.1:${port}
data_dir: ${JSON.stringify(join(dir, 'data'))}
log: {level: debug}
audit: {enabled: true}
limits: {decision_timeout: 3s}
resources:
  - uri: ${R.basic}
    issuer: ${as.issuer}
    scopes_supported: [qr:generate]
    introspection: ${basic}
  - uri: ${R.pkjwt}
    issuer: ${as.issuer}
    introspection:
      endpoint: ${as.introspectionEndpoint}
      client_id: pdp-jwt
      auth_method: private_key_jwt
      private_key_file: ${JSON.stringify(c['pdp-jwt'].private_key_file)}
      key_id: ${c['pdp-jwt'].kid}
      jwt_response: true
  - uri: ${R.post}
    issuer: ${as.issuer}
    introspection: {discover: true, client_id: pdp-post, auth_method: client_secret_post, client_secret_file: ${JSON.stringify(postSecret)}}
  - uri: ${R.jwt}
    issuer: ${as.issuer}
    introspection: ${basic}
  - uri: ${R.nonce}
    issuer: ${as.issuer}
    dpop_nonce: true
    introspection: ${basic}
  - uri: ${R.badauth}
    issuer: ${as.issuer}
    introspection: {discover: true, client_id: pdp-basic, client_secret_file: ${JSON.stringify(wrongSecret)}}
`;
    const configFile = join(dir, 'pdp.yaml');
    await writeFile(configFile, config);
    await reserved.release();
    await startPdp(configFile, join(dir, 'pdp.log'));
});

after(async () => {
    await stopPdp();
    await as?.close();
    if (dir && process.env.KEEP_TMP !== '1') await rm(dir, { recursive: true, force: true });
    else if (dir) console.error(`kept ${dir}`);
});

/** Fails a test with the end of the PDP's log (the reason of an unexpected answer is often there). */
async function withLog(fn) {
    try {
        await fn();
    } catch (err) {
        err.message += `\n--- pdp log (last lines)\n${logTail()}`;
        throw err;
    }
}

describe('introspected opaque tokens', () => {
    for (const [name, client] of [
        ['basic', 'pdp-basic (client_secret_basic, endpoint discovered)'],
        ['pkjwt', 'pdp-jwt (private_key_jwt, RFC 9701 JWT response, endpoint configured)'],
        ['post', 'pdp-post (client_secret_post, endpoint discovered)']
    ]) {
        test(`${client}: a client_credentials token with qr:generate is allowed, caller.client_id svc-a, no sub; one introspection`, () =>
            withLog(async () => {
                const t = await as.token({ resource: R[name], scope: 'read qr:generate' });
                const n = introspections();
                const d = await callQR(R[name], `Bearer ${t.access_token}`);
                assertAllowed(d, { client: 'svc-a' });
                assert.deepEqual(d.caller.scopes, ['read', 'qr:generate']);
                // oidc-provider's introspection of a client_credentials token has neither sub
                // nor grant_type: a client with no resource owner (RFC 7662 sub) is the
                // client's own token, client_credentials, never user.
                assert.equal(d.caller.grant, 'client_credentials');
                assert.ok(d.caller.expires_at >= now() + 200, `expires_at ${d.caller.expires_at}`);
                assert.equal(introspections(), n + 1);
                // A second call of the same token: from the cache.
                assertAllowed(await callQR(R[name], `Bearer ${t.access_token}`));
                assert.equal(introspections(), n + 1);
            }));

        test(`${client}: without qr:generate: 403 insufficient_scope`, () =>
            withLog(async () => {
                const t = await as.token({ resource: R[name], scope: 'read' });
                const d = await callQR(R[name], `Bearer ${t.access_token}`);
                assert.equal(d.allow, false);
                assert.equal(d.outcome, 'challenge');
                assert.equal(d.http_status, 403);
                assert.equal(
                    d.www_authenticate,
                    `Bearer error="insufficient_scope", scope="qr:generate", resource_metadata="${metadataURL(R[name])}", error_description="missing scopes: qr:generate"`
                );
                assert.equal(d.reason, 'missing scopes: qr:generate');
                assert.equal(d.caller, undefined);
                assert.deepEqual(d.required_scopes, ['qr:generate']);
                assert.deepEqual(d.missing_scopes, ['qr:generate']);
                // The public tool is allowed with the same token.
                const p = await decide({ resource: R[name], authorization: `Bearer ${t.access_token}`, message: PUBLIC_CALL });
                assert.equal(p.body.allow, true, p.body.reason);
                assert.equal(p.body.caller.client_id, 'svc-a');
            }));
    }

    test('a user token from the code flow (app, alice): caller.sub is the user, client_id app, grant user', () =>
        withLog(async () => {
            const t = await as.token({ user: 'alice', resource: R.basic, scope: 'qr:generate' });
            const d = await callQR(R.basic, `Bearer ${t.access_token}`);
            assertAllowed(d, { client: 'app', sub: 'alice' });
            assert.equal(d.caller.grant, 'user');
        }));

    test('svc-b (client_secret_post at the token endpoint): caller.client_id svc-b', () =>
        withLog(async () => {
            const t = await as.token({ client: 'svc-b', resource: R.post, scope: 'qr:generate' });
            assertAllowed(await callQR(R.post, `Bearer ${t.access_token}`), { client: 'svc-b' });
        }));

    test('a token for another resource (aud) is refused: 401 invalid_token', () =>
        withLog(async () => {
            const t = await as.token({ resource: R.post, scope: 'qr:generate' });
            const desc = `audience mismatch: token is not for ${R.basic}`;
            assertChallenge(await callQR(R.basic, `Bearer ${t.access_token}`), bearer(R.basic, { error: 'invalid_token', desc }), desc);
        }));

    test('a revoked token is allowed while cached, refused (token is not active) once max_ttl (2 s) has passed', () =>
        withLog(async () => {
            const t = await as.token({ resource: R.basic, scope: 'qr:generate' });
            const n = introspections();
            const t0 = Date.now();
            assertAllowed(await callQR(R.basic, `Bearer ${t.access_token}`));
            assert.equal(introspections(), n + 1);
            await as.revoke(t.access_token);
            assertAllowed(await callQR(R.basic, `Bearer ${t.access_token}`));
            assert.equal(introspections(), n + 1, 'answered from the cache');
            let d;
            for (;;) {
                d = await callQR(R.basic, `Bearer ${t.access_token}`);
                if (!d.allow || Date.now() - t0 > 5000) break;
                await sleep(50);
            }
            const elapsed = Date.now() - t0;
            assertChallenge(d, bearer(R.basic, { error: 'invalid_token', desc: 'token is not active' }), 'token is not active');
            assert.ok(elapsed >= 2000, `refused after ${elapsed} ms: not before max_ttl`);
            assert.ok(elapsed < 3500, `refused after ${elapsed} ms: soon after max_ttl`);
            assert.equal(introspections(), n + 2, 'introspected once more when the cached result expired');
        }));

    test('a garbage opaque token: 401 token is not active; remembered for negative_ttl (1 s), then asked again', () =>
        withLog(async () => {
            const garbage = randomBytes(32).toString('base64url');
            issued.push(garbage);
            const n = introspections();
            const www = bearer(R.basic, { error: 'invalid_token', desc: 'token is not active' });
            assertChallenge(await callQR(R.basic, `Bearer ${garbage}`), www, 'token is not active');
            assertChallenge(await callQR(R.basic, `Bearer ${garbage}`), www, 'token is not active');
            assert.equal(introspections(), n + 1, 'the rejection is remembered');
            await sleep(1200);
            assertChallenge(await callQR(R.basic, `Bearer ${garbage}`), www, 'token is not active');
            assert.equal(introspections(), n + 2, 'asked again after negative_ttl');
        }));

    test('a garbage token on the private_key_jwt resource (JWT response): 401 token is not active', () =>
        withLog(async () => {
            const garbage = randomBytes(24).toString('hex');
            issued.push(garbage);
            const d = await callQR(R.pkjwt, `Bearer ${garbage}`);
            assertChallenge(d, bearer(R.pkjwt, { error: 'invalid_token', desc: 'token is not active' }), 'token is not active');
        }));

    test('32 concurrent decisions with one fresh opaque token: exactly one introspection request', () =>
        withLog(async () => {
            const t = await as.token({ resource: R.basic, scope: 'qr:generate' });
            const n = introspections();
            const ds = await Promise.all(Array.from({ length: 32 }, () => callQR(R.basic, `Bearer ${t.access_token}`)));
            for (const d of ds) assertAllowed(d);
            assert.equal(new Set(ds.map(d => d.decision_id)).size, 32);
            assert.equal(introspections(), n + 1);
        }));

    test('the PDP authenticating with a wrong client secret: 503 introspection unavailable, not 401', () =>
        withLog(async () => {
            const t = await as.token({ resource: R.badauth, scope: 'qr:generate' });
            const d = await callQR(R.badauth, `Bearer ${t.access_token}`);
            assertUnavailable(d);
        }));
});

/** A refusal because introspection could not be had: 503, deny, -32603. */
function assertUnavailable(d) {
    assert.equal(d.allow, false);
    assert.equal(d.outcome, 'deny');
    assert.equal(d.http_status, 503);
    assert.equal(d.www_authenticate, undefined);
    assert.deepEqual(d.jsonrpc_error, { code: -32603, message: 'Authorization unavailable' });
    assert.equal(d.reason, 'decision failed: token verification: invalid_token: token introspection unavailable');
    assert.equal(d.caller, undefined);
}

describe('JWT access tokens', () => {
    test('a JWT on the jwt resource is verified locally (allow; the provider sees no introspection)', () =>
        withLog(async () => {
            const t = await as.token({ resource: R.jwt, scope: 'qr:generate' });
            assert.equal(t.access_token.split('.').length, 3);
            const n = introspections();
            const d = await callQR(R.jwt, `Bearer ${t.access_token}`);
            assertAllowed(d, { client: 'svc-a', sub: 'svc-a' });
            assert.equal(d.caller.grant, 'client_credentials'); // sub = client_id
            assert.equal(introspections(), n);
        }));

    test('a user JWT: caller.sub is the user', () =>
        withLog(async () => {
            const t = await as.token({ user: 'bob', resource: R.jwt, scope: 'qr:generate' });
            const n = introspections();
            assertAllowed(await callQR(R.jwt, `Bearer ${t.access_token}`), { client: 'app', sub: 'bob' });
            assert.equal(introspections(), n);
        }));
});

describe('DPoP-bound tokens', () => {
    let key; // the token's key
    let other; // another key
    let tok; // an opaque token on R.basic bound to key

    before(async () => {
        key = await generateKey();
        other = await generateKey();
        tok = (await as.token({ resource: R.basic, scope: 'qr:generate', dpopKey: key })).access_token;
    });

    const dpopCall = (p, { url = R.basic, method = 'POST', id, resource = R.basic, token = tok, scheme = 'DPoP' } = {}) =>
        callQR(resource, `${scheme} ${token}`, { ...(p !== undefined ? { dpop: p } : {}), http: { method, url, ...(id ? { id } : {}) } });

    // A refused DPoP request carries both challenges: the Bearer one bare, the DPoP one with the error.
    const refusedDPoP = (desc, code = 'invalid_dpop_proof', uri = R.basic) =>
        `${bearer(uri)}, ${dpopChallenge(uri, { error: code, desc })}`;

    test('the token is DPoP-bound (token_type dpop)', async () => {
        const t = await as.token({ resource: R.basic, scope: 'qr:generate', dpopKey: key });
        assert.equal(t.token_type, 'dpop');
    });

    test('DPoP scheme with a proof for POST <resource> with ath: allow; the same proof again: 401 replayed', () =>
        withLog(async () => {
            const p = await proof({ key, htm: 'POST', htu: R.basic, accessToken: tok });
            assertAllowed(await dpopCall(p));
            const d = await dpopCall(p);
            assertChallenge(d, refusedDPoP('the proof was used before (jti replayed)'), 'the proof was used before (jti replayed)');
            assert.ok(d.www_authenticate.includes('DPoP algs="'));
        }));

    test('one HTTP request (http.id): its proof serves all its decisions, and no other request', () =>
        withLog(async () => {
            const p = await proof({ key, htm: 'POST', htu: R.basic, accessToken: tok });
            const id = randomBytes(16).toString('base64url');
            assertAllowed(await dpopCall(p, { id }));
            assertAllowed(await dpopCall(p, { id }));
            const replayed = refusedDPoP('the proof was used before (jti replayed)');
            assertChallenge(await dpopCall(p, { id: randomBytes(16).toString('base64url') }), replayed, 'the proof was used before (jti replayed)');
            assertChallenge(await dpopCall(p), replayed, 'the proof was used before (jti replayed)');
        }));

    test('the bound token as Bearer: 401 invalid_token naming the DPoP scheme', () =>
        withLog(async () => {
            const desc = 'the token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof';
            // No proof either: the token is bound, so the client has a DPoP key: both
            // challenges (it learns the algorithms), the error in the DPoP one.
            const d = await callQR(R.basic, `Bearer ${tok}`);
            assertChallenge(d, refusedDPoP(desc, 'invalid_token'), desc);
            // With a (valid) proof: both challenges, the error in the DPoP one.
            const p = await proof({ key, htm: 'POST', htu: R.basic, accessToken: tok });
            assertChallenge(await dpopCall(p, { scheme: 'Bearer' }), refusedDPoP(desc, 'invalid_token'), desc);
        }));

    test('an unbound token with the DPoP scheme: 401 invalid_token (present it as Bearer)', () =>
        withLog(async () => {
            const plain = (await as.token({ resource: R.basic, scope: 'qr:generate' })).access_token;
            const p = await proof({ key, htm: 'POST', htu: R.basic, accessToken: plain });
            const desc = 'the token is not bound to a key: present it with the Bearer scheme';
            assertChallenge(await dpopCall(p, { token: plain }), refusedDPoP(desc, 'invalid_token'), desc);
        }));

    test('the DPoP scheme without a proof: 401 invalid_dpop_proof missing DPoP proof', () =>
        withLog(async () => {
            const desc = 'missing DPoP proof';
            assertChallenge(await dpopCall(undefined), refusedDPoP(desc), desc);
        }));

    test('a proof without http (method, url) from the PEP: 401 invalid_dpop_proof', () =>
        withLog(async () => {
            const p = await proof({ key, htm: 'POST', htu: R.basic, accessToken: tok });
            const desc = 'the enforcement point sent no http method and url to check the DPoP proof against';
            assertChallenge(await callQR(R.basic, `DPoP ${tok}`, { dpop: p }), refusedDPoP(desc), desc);
        }));

    const broken = [
        ['a proof for another htu', () => ({ htu: R.post }), 'htu does not match the request URL'],
        ['a wrong htm (GET)', () => ({ htm: 'GET' }), 'htm does not match the request method'],
        ['a stale iat (an hour ago)', () => ({ iat: now() - 3600 }), 'the DPoP proof is too old (iat)'],
        ['an iat an hour ahead', () => ({ iat: now() + 3600 }), 'the DPoP proof is issued in the future (iat)'],
        ['no ath', () => ({ omit: ['ath'] }), 'missing ath claim'],
        ['the ath of another token', () => ({ accessToken: 'another-token' }), 'ath does not match the access token'],
        ['no jti', () => ({ omit: ['jti'] }), 'missing jti claim'],
        ['signed by another key than its jwk', () => ({ signWith: other.privateKey }), 'DPoP proof signature verification failed'],
        ['another key altogether (not cnf.jkt)', () => ({ key: other }), "the proof key does not match the token's cnf.jkt"],
        ['alg none', () => ({ alg: 'none' }), 'DPoP proof algorithm not allowed: none'],
        ['a private key in the jwk header', () => ({ privateJwkInHeader: true }), 'the jwk header holds a private key'],
        ['typ JWT', () => ({ typ: 'JWT' }), 'the DPoP proof typ is not dpop+jwt'],
        ['no jwk header', () => ({ omit: ['jwk'] }), 'the DPoP proof header has no jwk']
    ];
    for (const [name, change, desc] of broken) {
        test(`${name}: 401 invalid_dpop_proof (${desc})`, () =>
            withLog(async () => {
                const p = await proof({ key, htm: 'POST', htu: R.basic, accessToken: tok, ...change() });
                const d = await dpopCall(p);
                assertChallenge(d, refusedDPoP(desc), desc);
                assert.ok(d.www_authenticate.includes('DPoP algs="'));
            }));
    }

    test('a DPoP-bound JWT on the jwt resource: allowed with a proof (verified locally), refused as Bearer', () =>
        withLog(async () => {
            const t = (await as.token({ resource: R.jwt, scope: 'qr:generate', dpopKey: key })).access_token;
            const n = introspections();
            const p = await proof({ key, htm: 'POST', htu: R.jwt, accessToken: t });
            assertAllowed(await dpopCall(p, { resource: R.jwt, url: R.jwt, token: t }), { client: 'svc-a', sub: 'svc-a' });
            assert.equal(introspections(), n);
            const desc = 'the token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof';
            assertChallenge(await callQR(R.jwt, `Bearer ${t}`), refusedDPoP(desc, 'invalid_token', R.jwt), desc);
        }));

    test('a DPoP-bound user token (code flow) on the private_key_jwt resource: allowed, caller.sub the user', () =>
        withLog(async () => {
            const t = (await as.token({ user: 'carol', resource: R.pkjwt, scope: 'qr:generate', dpopKey: key })).access_token;
            const p = await proof({ key, htm: 'POST', htu: R.pkjwt, accessToken: t });
            assertAllowed(await dpopCall(p, { resource: R.pkjwt, url: R.pkjwt, token: t }), { client: 'app', sub: 'carol' });
        }));
});

describe('DPoP nonces (dpop_nonce: true)', () => {
    test('a proof without a nonce: 401 use_dpop_nonce with dpop_nonce; the retry with it: allow', () =>
        withLog(async () => {
            const key = await generateKey();
            const t = (await as.token({ resource: R.nonce, scope: 'qr:generate', dpopKey: key })).access_token;
            const http = { method: 'POST', url: R.nonce };
            const p1 = await proof({ key, htm: 'POST', htu: R.nonce, accessToken: t });
            const d1 = await callQR(R.nonce, `DPoP ${t}`, { dpop: p1, http });
            const desc = 'the server requires a DPoP nonce';
            assertChallenge(d1, `${bearer(R.nonce)}, ${dpopChallenge(R.nonce, { error: 'use_dpop_nonce', desc })}`, desc);
            assert.equal(typeof d1.dpop_nonce, 'string');
            assert.ok(d1.dpop_nonce.length >= 16, `nonce ${d1.dpop_nonce}`);

            const bad = await proof({ key, htm: 'POST', htu: R.nonce, accessToken: t, nonce: `${d1.dpop_nonce}x` });
            const db = await callQR(R.nonce, `DPoP ${t}`, { dpop: bad, http });
            assert.equal(db.http_status, 401);
            assert.match(db.www_authenticate, /error="use_dpop_nonce"/);
            assert.ok(db.dpop_nonce, 'a fresh nonce with the refusal');

            const p2 = await proof({ key, htm: 'POST', htu: R.nonce, accessToken: t, nonce: d1.dpop_nonce });
            const d2 = await callQR(R.nonce, `DPoP ${t}`, { dpop: p2, http });
            assertAllowed(d2);
            // The allowed answer carries the nonce to use next (RFC 9449 §8.2).
            assert.match(d2.dpop_nonce ?? '', /^[A-Za-z0-9_-]{16,}$/);
        }));
});

describe('audit events', () => {
    test('token_validation is introspection for an opaque token, jwt for a JWT', () =>
        withLog(async () => {
            const opaque = (await as.token({ resource: R.basic, scope: 'qr:generate' })).access_token;
            const jwt = (await as.token({ resource: R.jwt, scope: 'qr:generate' })).access_token;
            const a = await callQR(R.basic, `Bearer ${opaque}`);
            const b = await callQR(R.jwt, `Bearer ${jwt}`);
            assertAllowed(a);
            assertAllowed(b, { sub: 'svc-a' });
            const want = new Map([
                [a.decision_id, 'introspection'],
                [b.decision_id, 'jwt']
            ]);
            const run = promisify(execFile);
            let events = [];
            for (let i = 0; i < 50; i++) {
                const { stdout } = await run(PDP_BIN, ['audit', 'export', '--data-dir', join(dir, 'data'), '--since', '10m'], { timeout: 10_000 });
                events = stdout.split('\n').filter(Boolean).map(l => JSON.parse(l)).filter(e => want.has(e.id));
                if (events.length === want.size) break;
                await sleep(100);
            }
            assert.equal(events.length, want.size, 'both events exported');
            for (const e of events) {
                assert.equal(e.token_validation, want.get(e.id), `event ${e.id}`);
                assert.equal(e.outcome, 'allow');
                assert.equal(e.http_status, 200);
                assert.equal(e.method, 'tools/call');
                assert.equal(e.target, 'generate_qr_url');
                assert.equal(e.client_id, 'svc-a');
                assert.equal(e.issuer, as.issuer);
                assert.equal(typeof e.token_fingerprint, 'string');
                assert.ok(e.token_fingerprint.length > 0);
            }
            assert.equal(events.find(e => e.id === a.decision_id).resource, R.basic);
            assert.equal(events.find(e => e.id === b.decision_id).resource, R.jwt);
        }));
});

// Last: the provider goes away.
describe('the authorization server stopped', () => {
    test('a fresh opaque token: deny 503 (introspection unavailable), on every introspecting resource; a cached one still allowed', () =>
        withLog(async () => {
            const cached = (await as.token({ resource: R.basic, scope: 'qr:generate' })).access_token;
            assertAllowed(await callQR(R.basic, `Bearer ${cached}`));
            const fresh = {};
            for (const name of ['basic', 'pkjwt', 'post']) fresh[name] = (await as.token({ resource: R[name], scope: 'qr:generate' })).access_token;
            await as.close();
            for (const name of ['basic', 'pkjwt', 'post']) assertUnavailable(await callQR(R[name], `Bearer ${fresh[name]}`));
            // Outages are not remembered: asked again, still unavailable (not a cached 401).
            assertUnavailable(await callQR(R.basic, `Bearer ${fresh.basic}`));
            // The token introspected before the outage is still within max_ttl.
            assertAllowed(await callQR(R.basic, `Bearer ${cached}`));
        }));

    test("no access token issued during these tests is in the PDP's log or its audit events", () =>
        withLog(async () => {
            assert.ok(issued.length > 20, `${issued.length} tokens`);
            const log = await readFile(join(dir, 'pdp.log'), 'utf8');
            const { stdout: audit } = await promisify(execFile)(PDP_BIN, ['audit', 'export', '--data-dir', join(dir, 'data'), '--since', '1h'], {
                timeout: 10_000,
                maxBuffer: 64 << 20
            });
            assert.ok(audit.split('\n').length > 100, 'the audit events are there');
            for (const t of issued) {
                assert.equal(log.includes(t), false, `token ${fingerprint(t)} in pdp.log`);
                assert.equal(audit.includes(t), false, `token ${fingerprint(t)} in an audit event`);
            }
        }));
});
