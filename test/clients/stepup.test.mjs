// Step-up authorization with a real MCP client: the official TypeScript SDK's
// Client + StreamableHTTPClientTransport + OAuthClientProvider, against a PEP
// that enforces mcp-pdp's decisions, and a test authorization server.
// Started by run.sh, which passes PEP_URL and AS_URL.
//
// What is the SDK's and what is ours: the SDK transport sees the 401/403,
// parses WWW-Authenticate, fetches the RFC 9728 metadata, discovers the
// authorization server (RFC 8414), registers (RFC 7591), builds the
// authorization URL (PKCE, scope, resource) and calls
// provider.redirectToAuthorization(); then the request fails with
// UnauthorizedError. The application (here: withStepUp) finishes the flow with
// transport.finishAuth(code) (the SDK exchanges the code for tokens) and retries.
// That is the SDK's intended use (see its examples/client/simpleOAuthClient).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { TestOAuthProvider, jwtClaims } from './lib/provider.mjs';
import { parseBearerChallenge } from './lib/challenge.mjs';

const PEP = process.env.PEP_URL;
const AS = process.env.AS_URL;
if (!PEP || !AS) throw new Error('PEP_URL and AS_URL must be set: run test/clients/run.sh');

const ISSUER = `${AS}/oauth`;
const prmURL = path => `${PEP}/.well-known/oauth-protected-resource${path}`;
const GTIN = '4006381333931';

// ---------------------------------------------------------------------------
// helpers

async function getLog(base) {
    const r = await fetch(`${base}/_test/log`);
    assert.equal(r.status, 200);
    return r.json();
}
/** Marks the current end of the PEP's and AS's logs; .since() returns what came after. */
async function mark() {
    const [pep, as] = await Promise.all([getLog(PEP), getLog(AS)]);
    return {
        async since() {
            const [p, a] = await Promise.all([getLog(PEP), getLog(AS)]);
            return { pep: p.slice(pep.length), as: a.slice(as.length) };
        }
    };
}
/** The PEP's decisions for JSON-RPC requests (not metadata GETs), as "method[tool] status". */
const decisions = pepLog => pepLog.filter(e => e.method).map(e => `${e.method}${e.tool ? `[${e.tool}]` : ''} ${e.status}`);
const challenges = pepLog => pepLog.filter(e => e.www_authenticate);

async function connect(path, provider) {
    const transport = new StreamableHTTPClientTransport(new URL(PEP + path), { authProvider: provider });
    const client = new Client({ name: 'pdp-client-test', version: '0.0.0' });
    await client.connect(transport);
    return { client, transport };
}

/**
 * The application's half of a step-up: run op; if the SDK answered a challenge
 * by sending the user to the authorization server (UnauthorizedError), finish
 * the flow with the code and run op once more.
 */
async function withStepUp(transport, provider, op) {
    try {
        return { result: await op(), steppedUp: false };
    } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
        await transport.finishAuth(provider.takeCode());
        return { result: await op(), steppedUp: true };
    }
}

/** Authorizes up front with the SDK's own auth() for the given scope (a user who signed in for something else first). */
async function signInFirst(path, provider, scope) {
    const serverUrl = new URL(PEP + path);
    assert.equal(await auth(provider, { serverUrl, scope }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl, authorizationCode: provider.takeCode() }), 'AUTHORIZED');
}

const callQR = client => client.callTool({ name: 'generate_qr_url', arguments: { gtin: GTIN } });
const callLookup = client => client.callTool({ name: 'lookup_product', arguments: { gtin: GTIN } });
const text = result => result.content.map(c => c.text).join('');

/** One line per request the PEP and the AS saw, in time order: what the SDK did. */
function timeline({ pep, as }) {
    const lines = [
        ...pep.map(e => ({
            at: e.at,
            seq: e.seq,
            line: e.method
                ? `PEP  POST ${e.path} ${e.method}${e.tool ? ` ${e.tool}` : ''}${e.bearer ? ' (Bearer)' : ''} -> ${e.status}`
                : `PEP  ${e.http} ${e.path} -> ${e.status}`
        })),
        ...as.map(e => ({
            at: e.at,
            seq: e.seq + 0.5,
            line:
                e.type === 'authorize'
                    ? `AS   GET /authorize scope="${e.scope}" resource=${e.resource} ${e.code_challenge_method}${e.error ? ` ERROR ${e.error}` : ''}`
                    : e.type === 'token'
                      ? `AS   POST /token ${e.grant_type} resource=${e.resource} -> scope="${e.issued_scope}"${e.error ? ` ERROR ${e.error}` : ''}`
                      : e.type === 'register'
                        ? `AS   POST /register grant_types=${e.grant_types}`
                        : `AS   ${e.type}${e.path ? ` ${e.path}` : ''}`
        }))
    ];
    return lines.sort((a, b) => a.at - b.at).map(x => x.line);
}

function assertStrictChallenges(pepLog, t) {
    for (const e of challenges(pepLog)) {
        const c = parseBearerChallenge(e.www_authenticate); // throws on any grammar violation
        assert.equal(c.scheme, 'Bearer');
        t.diagnostic(`challenge ${e.status}: ${e.www_authenticate}`);
    }
}

// ---------------------------------------------------------------------------
// 1. Anonymous use and a 401 step-up.

test('anonymous session, then 401 on generate_qr_url: the SDK authorizes for scope qr:generate and the retry is allowed', async t => {
    const m = await mark();
    const provider = new TestOAuthProvider({ name: 'step-up-401' });
    const { client, transport } = await connect('/mcp', provider);
    try {
        // tools/list: filtered by the PDP, annotated with securitySchemes.
        const { tools } = await client.listTools();
        const byName = Object.fromEntries(tools.map(x => [x.name, x]));
        assert.deepEqual(Object.keys(byName).sort(), ['generate_qr_url', 'lookup_product'], 'internal_debug is hidden');
        assert.deepEqual(byName.lookup_product._meta?.securitySchemes, [{ type: 'noauth' }]);
        assert.deepEqual(byName.generate_qr_url._meta?.securitySchemes, [{ type: 'oauth2', scopes: ['qr:generate'] }]);
        // The PDP also puts securitySchemes at the top level of each tool; the SDK's Tool schema drops unknown keys.
        t.diagnostic(`top-level securitySchemes as seen through the SDK: ${JSON.stringify(byName.generate_qr_url.securitySchemes)}`);

        // A public tool, anonymously.
        assert.match(text(await callLookup(client)), /Example Widget/);
        assert.equal(provider.tokens(), undefined, 'still anonymous');

        // The protected tool: 401 -> SDK runs the OAuth flow -> retry.
        const { result, steppedUp } = await withStepUp(transport, provider, () => callQR(client));
        assert.equal(steppedUp, true, 'the first call was challenged');
        assert.equal(text(result), `https://qr.example.com/01/${GTIN}`);
        assert.notEqual(result.isError, true);

        // The token the SDK obtained and now sends.
        const claims = jwtClaims(provider.tokens().access_token);
        assert.equal(claims.iss, ISSUER);
        assert.equal(claims.aud, `${PEP}/mcp`, 'aud = the RFC 8707 resource the SDK requested');
        assert.equal(claims.scope, 'qr:generate');

        // With the token, public tools still work.
        assert.match(text(await callLookup(client)), /Example Widget/);
    } finally {
        await client.close();
    }

    const { pep, as } = await m.since();
    for (const l of timeline({ pep, as })) t.diagnostic(l);
    assertStrictChallenges(pep, t);
    assert.deepEqual(decisions(pep), [
        'initialize 200',
        'notifications/initialized 202',
        'tools/list 200',
        'tools/call[lookup_product] 200',
        'tools/call[generate_qr_url] 401',
        'tools/call[generate_qr_url] 200',
        'tools/call[lookup_product] 200'
    ]);
    const [ch] = challenges(pep);
    assert.equal(ch.www_authenticate, `Bearer resource_metadata="${prmURL('/mcp')}", scope="qr:generate"`);
    // What the PEP sent for tools/list (the PDP's filtered result, before the SDK parsed it).
    const listed = pep.find(e => e.method === 'tools/list').result.tools;
    assert.deepEqual(listed.find(x => x.name === 'generate_qr_url').securitySchemes, [{ type: 'oauth2', scopes: ['qr:generate'] }]);
    assert.equal(pep.find(e => e.method === 'tools/call' && e.status === 401).bearer, false);
    assert.equal(pep.findLast(e => e.tool === 'generate_qr_url').bearer, true);
    // The SDK fetched the metadata named in resource_metadata.
    assert.ok(pep.some(e => e.path === '/.well-known/oauth-protected-resource/mcp' && e.status === 200), 'PRM fetched from the PEP');

    // At the authorization server: registration, one authorization for exactly the challenged scope, one token.
    const authz = as.filter(e => e.type === 'authorize');
    assert.equal(authz.length, 1);
    assert.equal(authz[0].scope, 'qr:generate', 'scope of the challenge (MCP scope selection strategy)');
    assert.equal(authz[0].resource, `${PEP}/mcp`, 'RFC 8707 resource = the PRM resource');
    assert.equal(authz[0].code_challenge_method, 'S256');
    assert.equal(as.filter(e => e.type === 'register').length, 1);
    const tokens = as.filter(e => e.type === 'token');
    assert.equal(tokens.length, 1);
    assert.equal(tokens[0].grant_type, 'authorization_code');
    assert.equal(tokens[0].resource, `${PEP}/mcp`);
    t.diagnostic(`authorize scope=${authz[0].scope} resource=${authz[0].resource}`);
});

// ---------------------------------------------------------------------------
// 2. A token without the scope: 403 insufficient_scope, the SDK upscopes.

test('token with scope profile, then 403 insufficient_scope on generate_qr_url: the SDK re-authorizes with the challenged scope', async t => {
    const m = await mark();
    const provider = new TestOAuthProvider({ name: 'step-up-403' });
    await signInFirst('/mcp', provider, 'profile');
    assert.equal(jwtClaims(provider.tokens().access_token).scope, 'profile');

    const { client, transport } = await connect('/mcp', provider);
    try {
        assert.match(text(await callLookup(client)), /Example Widget/);
        const { result, steppedUp } = await withStepUp(transport, provider, () => callQR(client));
        assert.equal(steppedUp, true);
        assert.equal(text(result), `https://qr.example.com/01/${GTIN}`);
        const claims = jwtClaims(provider.tokens().access_token);
        assert.equal(claims.scope, 'qr:generate', 'SDK 1.x replaces its scope with the challenged one (no client-side union)');
        assert.equal(claims.aud, `${PEP}/mcp`);
    } finally {
        await client.close();
    }

    const { pep, as } = await m.since();
    for (const l of timeline({ pep, as })) t.diagnostic(l);
    assertStrictChallenges(pep, t);
    assert.deepEqual(decisions(pep), [
        'initialize 200',
        'notifications/initialized 202',
        'tools/call[lookup_product] 200',
        'tools/call[generate_qr_url] 403',
        'tools/call[generate_qr_url] 200'
    ]);
    assert.equal(
        challenges(pep)[0].www_authenticate,
        `Bearer error="insufficient_scope", scope="qr:generate", resource_metadata="${prmURL('/mcp')}", error_description="missing scopes: qr:generate"`
    );
    assert.deepEqual(
        as.filter(e => e.type === 'authorize').map(e => e.scope),
        ['profile', 'qr:generate'],
        'first sign-in for profile, then exactly the challenged scope'
    );
    assert.equal(as.filter(e => e.type === 'register').length, 1, 'registered once, reused for the step-up');
});

// ---------------------------------------------------------------------------
// 3. The same with challenge_scopes: accumulate: the 403 carries the granted
//    scopes too, so a client that replaces its scopes (as SDK 1.x does) keeps them.

test('challenge_scopes accumulate: the 403 names qr:generate and profile, and the SDK keeps profile', async t => {
    const m = await mark();
    const provider = new TestOAuthProvider({ name: 'step-up-403-accumulate' });
    await signInFirst('/mcp-accumulate', provider, 'profile');

    const { client, transport } = await connect('/mcp-accumulate', provider);
    try {
        const { result, steppedUp } = await withStepUp(transport, provider, () => callQR(client));
        assert.equal(steppedUp, true);
        assert.equal(text(result), `https://qr.example.com/01/${GTIN}`);
        const claims = jwtClaims(provider.tokens().access_token);
        assert.equal(claims.scope, 'qr:generate profile');
        assert.equal(claims.aud, `${PEP}/mcp-accumulate`);
    } finally {
        await client.close();
    }

    const { pep, as } = await m.since();
    for (const l of timeline({ pep, as })) t.diagnostic(l);
    assertStrictChallenges(pep, t);
    assert.deepEqual(decisions(pep), [
        'initialize 200',
        'notifications/initialized 202',
        'tools/call[generate_qr_url] 403',
        'tools/call[generate_qr_url] 200'
    ]);
    assert.equal(
        challenges(pep)[0].www_authenticate,
        `Bearer error="insufficient_scope", scope="qr:generate profile", resource_metadata="${prmURL('/mcp-accumulate')}", error_description="missing scopes: qr:generate"`
    );
    assert.deepEqual(
        as.filter(e => e.type === 'authorize').map(e => e.scope),
        ['profile', 'qr:generate profile']
    );
});

// ---------------------------------------------------------------------------
// 4. A token the PDP rejects: 401 invalid_token even on initialize; the SDK
//    re-authorizes (no scope in the challenge: falls back to scopes_supported).

test('rejected token: 401 invalid_token on initialize, the SDK re-authorizes and reconnects', async t => {
    const m = await mark();
    const provider = new TestOAuthProvider({ name: 'invalid-token' });
    await signInFirst('/mcp', provider, 'profile');
    // Corrupt the signature of the stored token.
    const tok = provider.tokens();
    const [h, p, s] = tok.access_token.split('.');
    provider.saveTokens({ ...tok, access_token: `${h}.${p}.${s.slice(0, -4)}AAAA` });

    // As the SDK's own example client does: connect; on UnauthorizedError finish
    // the flow on that transport, then connect again with a fresh transport.
    const first = new StreamableHTTPClientTransport(new URL(`${PEP}/mcp`), { authProvider: provider });
    await assert.rejects(new Client({ name: 'pdp-client-test', version: '0.0.0' }).connect(first), UnauthorizedError);
    await first.finishAuth(provider.takeCode());
    const { client } = await connect('/mcp', provider);
    try {
        assert.match(text(await callLookup(client)), /Example Widget/);
        assert.equal(text(await callQR(client)), `https://qr.example.com/01/${GTIN}`, 'the scopes_supported fallback included qr:generate');
    } finally {
        await client.close();
    }

    const { pep, as } = await m.since();
    for (const l of timeline({ pep, as })) t.diagnostic(l);
    assertStrictChallenges(pep, t);
    const ch = challenges(pep)[0];
    assert.equal(ch.method, 'initialize');
    assert.equal(ch.status, 401);
    const params = parseBearerChallenge(ch.www_authenticate).params;
    assert.equal(params.error, 'invalid_token');
    assert.equal(params.resource_metadata, prmURL('/mcp'));
    assert.equal(params.scope, undefined, 'initialize needs no scope');
    // Without a scope in the challenge the SDK asks for the PRM's scopes_supported.
    assert.deepEqual(
        as.filter(e => e.type === 'authorize').map(e => e.scope),
        ['profile', 'qr:generate profile']
    );
});

// ---------------------------------------------------------------------------
// 5. A client holding a refresh token: on 403 insufficient_scope SDK 1.32
//    refreshes instead of re-authorizing. A refresh cannot widen the scope
//    (RFC 6749 §6), so the retry is challenged again with the same header.
//    Recorded here as the SDK's behaviour, with the workaround an application
//    can apply: drop the tokens and let the SDK authorize afresh.

test('refresh-token client on 403: SDK refreshes (cannot upscope), gives up; dropping the tokens makes it re-authorize', async t => {
    const m = await mark();
    const provider = new TestOAuthProvider({ name: 'refresh-client', grantTypes: ['authorization_code', 'refresh_token'] });
    await signInFirst('/mcp', provider, 'profile');
    assert.ok(provider.tokens().refresh_token, 'AS issued a refresh token');

    const { client, transport } = await connect('/mcp', provider);
    try {
        await assert.rejects(callQR(client), err => {
            t.diagnostic(`SDK error: ${err.constructor.name}: ${err.message}`);
            return /403 after trying upscoping/.test(err.message);
        });
        // Workaround: forget the tokens (keep the registration); the SDK then runs the authorization flow.
        provider.invalidateCredentials('tokens');
        const { result, steppedUp } = await withStepUp(transport, provider, () => callQR(client));
        assert.equal(steppedUp, true);
        assert.equal(text(result), `https://qr.example.com/01/${GTIN}`);
    } finally {
        await client.close();
    }

    const { pep, as } = await m.since();
    for (const l of timeline({ pep, as })) t.diagnostic(l);
    assertStrictChallenges(pep, t);
    assert.deepEqual(decisions(pep), [
        'initialize 200',
        'notifications/initialized 202',
        'tools/call[generate_qr_url] 403',
        'tools/call[generate_qr_url] 403',
        'tools/call[generate_qr_url] 401',
        'tools/call[generate_qr_url] 200'
    ]);
    const tokens = as.filter(e => e.type === 'token').map(e => `${e.grant_type}:${e.issued_scope}${e.scope_param !== undefined ? ` (asked ${e.scope_param})` : ''}`);
    assert.deepEqual(tokens, ['authorization_code:profile', 'refresh_token:profile', 'authorization_code:qr:generate']);
});

// ---------------------------------------------------------------------------
// 6. Every challenge shape the PDP builds parses under the strict RFC 7235 /
//    RFC 6750 parser, and the SDK's own header reader (a regular expression per
//    parameter) extracts the same resource_metadata, scope and error from it.

const PDP = process.env.PDP_URL;

async function decideDirect(path, authorization, message, result) {
    const body = { resource: PEP + path, message };
    if (authorization !== undefined) body.authorization = authorization;
    if (result !== undefined) body.result = result;
    const r = await fetch(`${PDP}/v1/decide`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(r.status, 200, await r.clone().text());
    return r.json();
}
const b64 = o => Buffer.from(JSON.stringify(o)).toString('base64url');
const fakeJWT = header => `${b64(header)}.${b64({ iss: ISSUER, aud: `${PEP}/mcp`, exp: 4102444800 })}.AAAA`;
const callMsg = name => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { gtin: GTIN } } });

/** What the SDK reads from a challenge, via its exported helper. */
function sdkReads(header, status) {
    const p = extractWWWAuthenticateParams(new Response(null, { status, headers: { 'WWW-Authenticate': header } }));
    return { resource_metadata: p.resourceMetadataUrl?.href, scope: p.scope, error: p.error };
}
function strictReads(header) {
    const { params } = parseBearerChallenge(header);
    return { resource_metadata: params.resource_metadata, scope: params.scope, error: params.error };
}

test('every challenge shape parses strictly, and the SDK reads the same parameters', async t => {
    // A real token for /mcp, to present at /mcp-accumulate (wrong audience).
    const provider = new TestOAuthProvider({ name: 'shapes' });
    await signInFirst('/mcp', provider, 'profile');
    const real = provider.tokens().access_token;

    const cases = [
        ['anonymous, protected tool', '/mcp', undefined, callMsg('generate_qr_url'), 401],
        ['token lacking the scope', '/mcp', `Bearer ${real}`, callMsg('generate_qr_url'), 403],
        ['anonymous, accumulate resource', '/mcp-accumulate', undefined, callMsg('generate_qr_url'), 401],
        ['wrong audience', '/mcp-accumulate', `Bearer ${real}`, callMsg('generate_qr_url'), 401],
        ['garbage token', '/mcp', 'Bearer not.a.jwt', callMsg('lookup_product'), 401],
        ['bad signature on initialize', '/mcp', `Bearer ${real.slice(0, -4)}AAAA`, { jsonrpc: '2.0', id: 1, method: 'initialize', params: {} }, 401],
        ['invalid token, hidden tool', '/mcp', 'Bearer not.a.jwt', callMsg('internal_debug'), 401],
        ['invalid token, tools/list', '/mcp', 'Bearer not.a.jwt', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, 401],
        ['Basic scheme', '/mcp', 'Basic dXNlcjpwYXNz', callMsg('generate_qr_url'), 401],
        ['two tokens', '/mcp', 'Bearer a b', callMsg('generate_qr_url'), 401],
        ['quote in token', '/mcp', 'Bearer "x"', callMsg('generate_qr_url'), 401],
        ['unknown kid', '/mcp', `Bearer ${fakeJWT({ alg: 'ES256', kid: 'nope"\\' })}`, callMsg('generate_qr_url'), 401],
        ['alg with quote and backslash', '/mcp', `Bearer ${fakeJWT({ alg: 'x"\\,y' })}`, callMsg('generate_qr_url'), 401]
    ];
    for (const [name, path, authz, msg, status] of cases) {
        const result = msg.method === 'tools/list' ? { tools: [{ name: 'lookup_product', inputSchema: { type: 'object' } }] } : undefined;
        const d = await decideDirect(path, authz, msg, result);
        // A malformed Authorization header is answered 401 invalid_token, so the SDK re-authorizes.
        assert.ok([status].flat().includes(d.http_status), `${name}: status ${d.http_status}, want ${status}: ${JSON.stringify(d)}`);
        assert.ok(d.www_authenticate, `${name}: a challenge`);
        t.diagnostic(`${name}: ${d.http_status} ${d.www_authenticate}`);
        const strict = strictReads(d.www_authenticate);
        assert.deepEqual(sdkReads(d.www_authenticate, d.http_status), strict, `${name}: the SDK reads what a strict parser reads`);
        assert.equal(strict.resource_metadata, prmURL(path), `${name}: resource_metadata`);
    }
});

// The SDK (1.32.2) reads each parameter with an unanchored regular expression
// and takes the first "name=" anywhere in the header, including inside the
// quoted error_description. The PDP reflects the token's `alg` and `kid`
// headers in error_description ("algorithm not allowed: <alg>", "unknown
// signing key (kid '<kid>')"), so it puts error_description last in every
// challenge and never lets '=' or ',' into it: a token whose alg or kid
// contains "resource_metadata=<url>" must not redirect the SDK.
for (const field of ['alg', 'kid']) {
    test(`a token-controlled ${field} in error_description cannot redirect the SDK`, async t => {
        const evil = 'http://evil.example/prm';
        const payload = `resource_metadata=${evil} scope=admin`;
        const header = field === 'alg' ? { alg: `HS256 ${payload}` } : { alg: 'ES256', kid: payload };
        const d = await decideDirect('/mcp', `Bearer ${fakeJWT(header)}`, callMsg('generate_qr_url'));
        t.diagnostic(`${d.http_status} ${d.www_authenticate}`);
        assert.equal(strictReads(d.www_authenticate).resource_metadata, prmURL('/mcp'));
        const sdk = sdkReads(d.www_authenticate, d.http_status);
        t.diagnostic(`SDK reads resource_metadata=${sdk.resource_metadata} scope=${sdk.scope}`);
        assert.equal(sdk.resource_metadata, prmURL('/mcp'));
        assert.equal(sdk.scope, 'qr:generate');
    });
}
