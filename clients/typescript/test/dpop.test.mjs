// DPoP (RFC 9449) through pdpAuth: sender-constrained tokens of a real dev
// PDP (`pdp token --jkt`), proofs made here with node:crypto, real SDK
// servers of both lines (JSON and SSE answers). The middleware sends the
// DPoP header as received and the HTTP request it signs (method, URL, an id
// shared by every decision of one HTTP request), and answers DPoP-Nonce; the
// PDP does the checking, so each case is asserted by what the client gets.
// A second PDP (`pdp serve --config`, trusting the dev issuer) asks for
// nonces (dpop_nonce: true).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { request } from 'node:http';
import { freePorts, startDevEnv } from './lib/env.mjs';
import { post, readStream } from './lib/raw.mjs';
import { fingerprint, startMcpServer } from './lib/servers.mjs';
import { OrderedEventStore } from '../../../test/clients/lib/events.mjs';

const SCOPE = 'qr:generate'; // the demo catalog's generate_qr_url needs it
const COMBOS = [
    { line: 1, json: true, framework: 'express' },
    { line: 2, json: false, framework: 'http' }
];

let env, servers, resumable, nonced;

before(async () => {
    const ports = await freePorts(COMBOS.length + 2);
    const urls = ports.map(p => `http://127.0.0.1:${p}/mcp`);
    const nonceURL = urls.pop();
    env = await startDevEnv(urls, { configResources: [nonceURL], configExtra: '    dpop_nonce: true' });
    servers = [];
    for (const [i, c] of COMBOS.entries()) servers.push(await startMcpServer({ ...c, port: ports[i], auth: { pdpUrl: env.pdpUrl }, demoTools: true }));
    resumable = await startMcpServer({ line: 1, json: false, framework: 'express', port: ports[COMBOS.length], auth: { pdpUrl: env.pdpUrl }, demoTools: true, eventStore: () => new OrderedEventStore() });
    nonced = await startMcpServer({ line: 2, json: true, framework: 'express', port: ports[COMBOS.length + 1], auth: { pdpUrl: env.configUrl }, demoTools: true });
});

after(async () => {
    for (const s of [...(servers ?? []), resumable, nonced]) await s?.close();
    await env?.close();
});

// ---------------------------------------------------------------------------
// DPoP keys and proofs (RFC 9449 §4), node:crypto only

const b64u = b => Buffer.from(b).toString('base64url');

/** A P-256 key: its private key, public JWK and RFC 7638 thumbprint. */
function newKey() {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { crv, kty, x, y } = publicKey.export({ format: 'jwk' });
    const jwk = { crv, kty, x, y }; // the RFC 7638 members, in lexicographic order
    return { privateKey, jwk, jkt: b64u(createHash('sha256').update(JSON.stringify(jwk)).digest()) };
}

/** A DPoP proof of key for htm htu, bound to token (ath). */
function proof(key, { htm = 'POST', htu, token, jti = randomUUID(), iat = Math.floor(Date.now() / 1000), nonce }) {
    const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk };
    const claims = { jti, htm, htu, iat, ath: b64u(createHash('sha256').update(token).digest()) };
    if (nonce !== undefined) claims.nonce = nonce;
    const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}`;
    return `${input}.${b64u(sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }))}`;
}

// ---------------------------------------------------------------------------
// helpers

let nextId = 1;
const call = (name, id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
const list = (id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/list', params: {} });

/** A caller with a DPoP key and a token bound to it; dpop() the headers of one request with a fresh proof. */
function caller(server, { scope = SCOPE, sub = 'alice' } = {}) {
    const key = newKey();
    const token = env.mint({ aud: server.resource, scope, sub, jkt: key.jkt });
    return {
        key,
        token,
        proof: (o = {}) => proof(key, { htu: server.url, token, ...o }),
        dpop(o = {}) {
            return { Authorization: `DPoP ${token}`, DPoP: this.proof(o) };
        }
    };
}

/** Opens a session, each request with a fresh proof; returns its id. */
async function open(server, c, version = '2025-06-18') {
    const init = await post(server.url, { jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'dpop', version: '0' } } }, c.dpop(), version);
    assert.equal(init.status, 200, init.text);
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid, 'the server opened a session');
    const done = await post(server.url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { ...c.dpop(), 'Mcp-Session-Id': sid }, version);
    assert.equal(done.status, 202, done.text);
    return sid;
}

/** What the tool handler answered of its caller (the demo tools answer it). */
const whoSaw = m => JSON.parse(m.result.content[0].text);

/** A POST with header lines as given (an array value: several lines, which fetch would join): node:http. */
function postLines(url, body, headers) {
    return new Promise((resolve, reject) => {
        const payload = JSON.stringify(body);
        const r = request(url, { method: 'POST', headers: { Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-06-18', 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), ...headers }, timeout: 10_000 }, res => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', c => (text += c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
        });
        r.on('timeout', () => r.destroy(new Error('timed out')));
        r.on('error', reject);
        r.end(payload);
    });
}

const INVALID_PROOF = /error="invalid_dpop_proof"/;

for (const [i, c] of COMBOS.entries()) {
    describe(`DPoP, SDK ${c.line}.x server, ${c.json ? 'JSON' : 'SSE'} answers (${c.framework})`, () => {
        const s = () => servers[i];

        test('a bound token with a valid proof: allowed; the handler sees the caller and the token', async () => {
            const a = caller(s());
            const sid = await open(s(), a);
            const before = s().calls.length;
            const m = call('generate_qr_url');
            const r = await post(s().url, m, { ...a.dpop(), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(r.status, 200, r.text);
            assert.equal(r.sse, !c.json);
            const who = whoSaw(r.byId(m.id));
            assert.equal(who.caller.sub, 'alice');
            assert.deepEqual(who.caller.scopes, [SCOPE]);
            assert.deepEqual(who.scopes, [SCOPE]);
            assert.equal(who.tokenFingerprint, fingerprint(a.token), "AuthInfo.token is the DPoP scheme's token");
            assert.deepEqual(s().calls.slice(before).map(x => x.name), ['generate_qr_url']);
            assert.equal(s().routeCallers.at(-1)?.sub, 'alice', 'getCaller(req) in the route');
        });

        test('the same proof again: 401 invalid_dpop_proof with a DPoP challenge, the handler not called', async () => {
            const a = caller(s());
            const sid = await open(s(), a);
            const h = { ...a.dpop(), 'Mcp-Session-Id': sid };
            const first = await post(s().url, call('lookup_product'), h, '2025-06-18');
            assert.equal(first.status, 200, first.text);
            const before = s().calls.length;
            const again = await post(s().url, call('lookup_product'), h, '2025-06-18');
            assert.equal(again.status, 401, again.text);
            const www = again.headers.get('www-authenticate') ?? '';
            assert.match(www, /DPoP algs="[^"]*ES256/);
            assert.match(www, INVALID_PROOF);
            assert.equal(again.messages[0].error.code, -32001, again.text);
            assert.equal(s().calls.length, before, 'the replayed request reached no handler');
        });

        test('the bound token with the Bearer scheme: 401 naming the DPoP scheme', async () => {
            const a = caller(s());
            const r = await post(s().url, call('lookup_product'), { Authorization: `Bearer ${a.token}` }, '2025-06-18');
            assert.equal(r.status, 401, r.text);
            const www = r.headers.get('www-authenticate') ?? '';
            // The token is bound: both challenges, the error in the DPoP one (the client learns the algs).
            assert.match(www, /^Bearer resource_metadata="[^"]+"(, scope="[^"]*")?, DPoP algs="[^"]+", error="invalid_token"/);
            assert.match(www, /error_description="[^"]*the DPoP scheme/);
            // With a valid proof besides, still the wrong scheme.
            const withProof = await post(s().url, call('lookup_product'), { Authorization: `Bearer ${a.token}`, DPoP: a.proof() }, '2025-06-18');
            assert.equal(withProof.status, 401, withProof.text);
            assert.match(withProof.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
        });

        test('a batch (2025-03-26) of two calls with one proof: both allowed (the decisions share the request id)', async () => {
            const a = caller(s());
            const version = '2025-03-26';
            const sid = await open(s(), a, version);
            const before = s().calls.length;
            const [q, l] = [call('generate_qr_url'), call('lookup_product')];
            const r = await post(s().url, [q, l], { ...a.dpop(), 'Mcp-Session-Id': sid }, version);
            assert.equal(r.status, 200, r.text);
            assert.equal(whoSaw(r.byId(q.id)).caller.sub, 'alice', r.text);
            assert.equal(whoSaw(r.byId(l.id)).caller.sub, 'alice', r.text);
            assert.deepEqual(s().calls.slice(before).map(x => x.name).sort(), ['generate_qr_url', 'lookup_product']);
        });

        test('a batch with tools/list and a call, one proof: the list filtered at the response phase with that proof', async () => {
            const a = caller(s());
            const version = '2025-03-26';
            const sid = await open(s(), a, version);
            const [l, q] = [list(), call('generate_qr_url')];
            const r = await post(s().url, [l, q], { ...a.dpop(), 'Mcp-Session-Id': sid }, version);
            assert.equal(r.status, 200, r.text);
            assert.deepEqual(r.byId(l.id).result?.tools?.map(t => t.name).sort(), ['generate_qr_url', 'lookup_product'], r.text);
            assert.equal(r.byId(l.id).result.cacheScope, 'private');
            assert.equal(whoSaw(r.byId(q.id)).caller.sub, 'alice');
        });

        test('tools/list with DPoP: filtered for the caller (the request and response phases share the proof)', async () => {
            const a = caller(s());
            const sid = await open(s(), a);
            const l = list();
            const r = await post(s().url, l, { ...a.dpop(), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(r.status, 200, r.text);
            const res = r.byId(l.id).result;
            assert.ok(res, r.text);
            // Of the server's eight tools, the demo catalog's two: the test tools (echo, whoami, ...) are unknown there, denied, hidden.
            assert.deepEqual(res.tools.map(t => t.name).sort(), ['generate_qr_url', 'lookup_product']);
            assert.equal(res.cacheScope, 'private');
            assert.deepEqual(res.tools.find(t => t.name === 'generate_qr_url').securitySchemes, [{ type: 'oauth2', scopes: [SCOPE] }], 'the PDP annotated the list');
        });

        test('a proof for another URL or another method: 401 invalid_dpop_proof; the URL is without the query', async () => {
            const a = caller(s());
            const sid = await open(s(), a);
            const before = s().calls.length;
            const other = await post(s().url, call('lookup_product'), { ...a.dpop({ htu: new URL('/other', s().url).href }), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(other.status, 401, other.text);
            assert.match(other.headers.get('www-authenticate') ?? '', INVALID_PROOF);
            const port = new URL(s().url).port;
            const host = await post(s().url, call('lookup_product'), { ...a.dpop({ htu: `http://localhost:${port}/mcp` }), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(host.status, 401, `another host: ${host.text}`);
            const method = await post(s().url, call('lookup_product'), { ...a.dpop({ htm: 'GET' }), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(method.status, 401, method.text);
            assert.match(method.headers.get('www-authenticate') ?? '', INVALID_PROOF);
            assert.equal(s().calls.length, before, 'no refused request reached a handler');
            // A query in the request is not part of the URL the proof signs.
            const q = await post(`${s().url}?trace=1`, call('lookup_product'), { ...a.dpop(), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(q.status, 200, q.text);
        });

        test('the DPoP header reaches the PDP as the client sent it: a changed byte, two header lines, none at all are refused', async () => {
            const a = caller(s());
            const sid = await open(s(), a);
            const before = s().calls.length;
            const p = a.proof();
            const flipped = p.slice(0, -2) + (p.at(-2) === 'A' ? 'B' : 'A') + p.at(-1); // the signature changed
            const bad = await post(s().url, call('lookup_product'), { Authorization: `DPoP ${a.token}`, DPoP: flipped, 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(bad.status, 401, bad.text);
            assert.match(bad.headers.get('www-authenticate') ?? '', INVALID_PROOF);
            // Two header lines, each a valid proof: joined, so refused (never one of them picked).
            const two = await postLines(s().url, call('lookup_product'), { Authorization: `DPoP ${a.token}`, DPoP: [a.proof(), a.proof()], 'Mcp-Session-Id': sid });
            assert.equal(two.status, 401, two.text);
            assert.match(two.headers['www-authenticate'] ?? '', INVALID_PROOF);
            // The DPoP scheme without a proof.
            const none = await post(s().url, call('lookup_product'), { Authorization: `DPoP ${a.token}`, 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(none.status, 401, none.text);
            assert.equal(s().calls.length, before, 'no refused request reached a handler');
            // The proof unchanged, as one line: allowed (p was never presented).
            const ok = await postLines(s().url, call('lookup_product'), { Authorization: `DPoP ${a.token}`, DPoP: p, 'Mcp-Session-Id': sid });
            assert.equal(ok.status, 200, ok.text);
        });

        test('GET and DELETE with DPoP: the proof names the method; DELETE ends the session', async () => {
            const a = caller(s());
            const sid = await open(s(), a);
            const h = p => ({ Authorization: `DPoP ${a.token}`, DPoP: p, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-06-18' });
            const wrong = await readStream(s().url, h(a.proof({ htm: 'POST' })), 300);
            assert.equal(wrong.status, 401, wrong.text);
            assert.match(wrong.headers.get('www-authenticate') ?? '', INVALID_PROOF);
            const get = await readStream(s().url, h(a.proof({ htm: 'GET' })), 300);
            assert.equal(get.status, 200, get.text);
            assert.match(get.headers.get('content-type') ?? '', /^text\/event-stream/);
            const del = await fetch(s().url, { method: 'DELETE', headers: h(a.proof({ htm: 'DELETE' })) });
            assert.equal(del.status, 200, await del.text());
            const after = await post(s().url, call('lookup_product'), { ...a.dpop(), 'Mcp-Session-Id': sid }, '2025-06-18');
            assert.equal(after.status, 404, 'the session is gone');
        });
    });
}

test('GET replay after Last-Event-ID with DPoP: the replayed list filtered with the GET request`s proof', async () => {
    const s = resumable;
    const version = '2025-11-25'; // the server primes each stream with an event id
    const a = caller(s);
    const sid = await open(s, a, version);
    const l = list();
    const first = await post(s.url, l, { ...a.dpop(), 'Mcp-Session-Id': sid }, version);
    assert.ok(first.sse, first.text);
    const priming = /^id: (\S+)\r?\ndata: ?\r?\n/m.exec(first.text);
    assert.ok(priming, `a priming event with an id: ${first.text}`);
    const r = await readStream(s.url, { Authorization: `DPoP ${a.token}`, DPoP: a.proof({ htm: 'GET' }), 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': version, 'Last-Event-ID': priming[1] });
    assert.equal(r.status, 200, r.text);
    const replayed = r.messages.find(m => m.id === l.id);
    assert.ok(replayed, `the list answer was replayed and filtered: ${r.text}`);
    assert.deepEqual(replayed.result.tools.map(t => t.name).sort(), ['generate_qr_url', 'lookup_product']);
    assert.equal(replayed.result.cacheScope, 'private');
    assert.ok(!r.text.includes('"whoami"'), 'nothing unfiltered replayed');
});

describe('DPoP nonces (a PDP with dpop_nonce)', () => {
    test('a proof without the nonce: 401 use_dpop_nonce with DPoP-Nonce; with it: allowed', async () => {
        const a = caller(nonced);
        const first = await post(nonced.url, call('generate_qr_url'), a.dpop(), '2025-06-18');
        assert.equal(first.status, 401, first.text);
        assert.match(first.headers.get('www-authenticate') ?? '', /DPoP .*error="use_dpop_nonce"/);
        const nonce = first.headers.get('dpop-nonce');
        assert.ok(nonce, 'the DPoP-Nonce header is sent');
        const init = await post(nonced.url, { jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'dpop', version: '0' } } }, a.dpop({ nonce }), '2025-06-18');
        assert.equal(init.status, 200, init.text);
        const sid = init.headers.get('mcp-session-id');
        const m = call('generate_qr_url');
        const r = await post(nonced.url, m, { ...a.dpop({ nonce }), 'Mcp-Session-Id': sid }, '2025-06-18');
        assert.equal(r.status, 200, r.text);
        assert.equal(whoSaw(r.byId(m.id)).caller.sub, 'alice');
        // The allowed answer carries the nonce to use next (RFC 9449 §8.2).
        assert.ok(r.headers.get('dpop-nonce'), 'the allowed answer carries DPoP-Nonce');
    });

    test('a batch refused as a whole: the challenge with its DPoP-Nonce', async () => {
        const a = caller(nonced);
        const [q, l] = [call('generate_qr_url'), call('lookup_product')];
        const r = await post(nonced.url, [q, l], a.dpop(), '2025-03-26');
        assert.equal(r.status, 401, r.text);
        assert.ok(r.array);
        assert.match(r.headers.get('www-authenticate') ?? '', /error="use_dpop_nonce"/);
        assert.ok(r.headers.get('dpop-nonce'), 'the batch challenge carries DPoP-Nonce');
        assert.deepEqual(r.messages.map(m => m.id).sort(), [q.id, l.id].sort());
    });

    test('CORS: DPoP may be sent, DPoP-Nonce read', async () => {
        const origin = new URL(nonced.url).origin;
        const pre = await fetch(nonced.url, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'dpop' } });
        assert.equal(pre.status, 204);
        assert.match(pre.headers.get('access-control-allow-headers') ?? '', /(^|, )DPoP(,|$)/);
        const a = caller(nonced);
        const r = await post(nonced.url, call('lookup_product'), { ...a.dpop(), Origin: origin }, '2025-06-18');
        assert.equal(r.status, 401);
        assert.ok(r.headers.get('dpop-nonce'));
        assert.match(r.headers.get('access-control-expose-headers') ?? '', /(^|, )DPoP-Nonce(,|$)/);
    });
});
