// pdpAuth on the wire, with raw HTTP requests, a real mcp-pdp and real SDK
// servers: filtered lists in JSON and SSE answers, denials exactly as
// decided, GET/DELETE authenticated, sessions bound to their user, header
// mismatches; a hostile server whose answers must never reach the client
// unfiltered; the PDP down, slow or stopped: fail closed, nothing reaches a
// tool handler.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SCOPE_A, SCOPE_B, freePorts, startEnv } from './lib/env.mjs';
import { HIDDEN_MARK, startHostile } from './lib/hostile.mjs';
import { startMcpServer } from './lib/servers.mjs';

let env, sse, json, hostile, down, slow, slowPdp, own;
const sseDecisions = [];
const slowSockets = new Set();

before(async () => {
    const [pSSE, pJSON, pHostile, pDown, pSlow, pOwn, deadPort] = await freePorts(7);
    env = await startEnv([pSSE, pJSON, pHostile, pOwn].map(p => `http://127.0.0.1:${p}/mcp`), { structuredDenials: [`http://127.0.0.1:${pOwn}/mcp`] });
    sse = await startMcpServer({ line: 1, json: false, framework: 'http', port: pSSE, auth: { pdpUrl: env.pdpUrl, onDecision: d => sseDecisions.push(d) } });
    json = await startMcpServer({ line: 2, json: true, framework: 'express', port: pJSON, auth: { pdpUrl: env.pdpUrl } });
    hostile = await startHostile({ port: pHostile, auth: { pdpUrl: env.pdpUrl, maxResponseBytes: 64 << 10 } });
    own = await startMcpServer({
        line: 2,
        json: false,
        framework: 'express',
        port: pOwn,
        auth: { pdpUrl: env.pdpUrl, authorizationServers: [env.as.issuer], scopesSupported: [SCOPE_A] }
    });
    // A PDP that is not there (nothing listens on deadPort) ...
    down = await startMcpServer({ line: 1, json: true, framework: 'express', port: pDown, auth: { pdpUrl: `http://127.0.0.1:${deadPort}` } });
    // ... and one that accepts connections and never answers.
    slowPdp = net.createServer(s => {
        slowSockets.add(s);
        s.on('close', () => slowSockets.delete(s));
    });
    await new Promise(r => slowPdp.listen(0, '127.0.0.1', r));
    slow = await startMcpServer({
        line: 2,
        json: false,
        framework: 'http',
        port: pSlow,
        auth: { pdpUrl: `http://127.0.0.1:${slowPdp.address().port}`, timeoutMs: 300 }
    });
});

after(async () => {
    for (const s of [sse, json, hostile, down, slow, own]) await s?.close();
    for (const s of slowSockets) s.destroy();
    await new Promise(r => (slowPdp ? slowPdp.close(() => r()) : r()));
    await env?.close();
});

// ---------------------------------------------------------------------------
// helpers

let nextId = 1;
const call = (name, id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
const list = (id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/list', params: {} });
const bearer = token => ({ Authorization: `Bearer ${token}` });

/** The data of each SSE event (events without data are left out). */
function events(text) {
    return text
        .split(/\r?\n\r?\n/)
        .map(block => block.split(/\r?\n/).filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')))
        .filter(d => d.length > 0)
        .map(d => d.join('\n'));
}

/** POSTs body; returns status, headers, the raw text and the JSON-RPC messages (JSON or SSE). */
async function post(url, body, headers = {}) {
    const r = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-06-18', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000)
    });
    const text = await r.text();
    const ct = r.headers.get('content-type') ?? '';
    let messages = [];
    if (ct.startsWith('text/event-stream')) messages = events(text).filter(d => d.trim()).map(d => JSON.parse(d));
    else if (text) messages = [JSON.parse(text)];
    return { status: r.status, headers: r.headers, text, sse: ct.startsWith('text/event-stream'), messages, last: messages.at(-1) };
}

/** Opens a session (initialize + initialized) with the headers given; returns its id. */
async function open(url, headers = {}) {
    const init = await post(url, { jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }, headers);
    assert.equal(init.status, 200, init.text);
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid, 'the server opened a session');
    const done = await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { ...headers, 'Mcp-Session-Id': sid });
    assert.equal(done.status, 202, done.text);
    return sid;
}

const token = (scope, sub = 'alice') => env.as.mint({ sub, scope, resource: sse.resource });
const tokenFor = (server, scope, sub = 'alice') => env.as.mint({ sub, scope, resource: server.resource });

// ---------------------------------------------------------------------------
// filtered lists

test('SSE answers: only the list response event is rewritten, filtered and marked cacheScope private', async () => {
    const sid = await open(sse.url);
    const r = await post(sse.url, list(), { 'Mcp-Session-Id': sid });
    assert.equal(r.status, 200);
    assert.equal(r.sse, true, 'the SDK answered with an SSE stream');
    const res = r.messages.find(m => m.result);
    assert.deepEqual(res.result.tools.map(t => t.name).sort(), ['echo', 'get-sum', 'get-weather', 'whoami']);
    assert.equal(res.result.cacheScope, 'private');
    assert.equal(Object.keys(res.result)[0], 'cacheScope');
    assert.ok(!r.text.includes(HIDDEN_MARK) && !r.text.includes('"unlisted"'));
});

test('JSON answers: the list is filtered and marked cacheScope private', async () => {
    const sid = await open(json.url);
    const r = await post(json.url, list(), { 'Mcp-Session-Id': sid });
    assert.equal(r.status, 200);
    assert.equal(r.sse, false);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.deepEqual(r.last.result.tools.map(t => t.name).sort(), ['echo', 'get-sum', 'get-weather', 'whoami']);
    assert.equal(r.last.result.cacheScope, 'private');
    assert.equal(Number(r.headers.get('content-length')), Buffer.byteLength(r.text), 'Content-Length matches the rewritten body');
});

// ---------------------------------------------------------------------------
// denials

test('denials are answered exactly as decided: 401 and 403 with WWW-Authenticate and a JSON-RPC error body', async () => {
    const sid = await open(sse.url);
    const before = sse.calls.length;
    const anon = await post(sse.url, call('get-sum', 41), { 'Mcp-Session-Id': sid });
    assert.equal(anon.status, 401);
    const www = anon.headers.get('www-authenticate');
    assert.match(www, /^Bearer /);
    assert.match(www, new RegExp(`resource_metadata="${sse.url.replace('/mcp', '/.well-known/oauth-protected-resource/mcp')}"`));
    assert.equal(anon.last.id, 41);
    assert.ok(anon.last.error.code, 'a JSON-RPC error body');

    const sidA = await open(sse.url, bearer(token(SCOPE_A)));
    const lacking = await post(sse.url, call('get-weather', 42), { ...bearer(token(SCOPE_A)), 'Mcp-Session-Id': sidA });
    assert.equal(lacking.status, 403);
    assert.match(lacking.headers.get('www-authenticate'), /error="insufficient_scope"/);
    assert.match(lacking.headers.get('www-authenticate'), new RegExp(`scope="[^"]*${SCOPE_B}`));
    assert.equal(lacking.last.id, 42);

    const bad = await post(sse.url, call('echo', 43), { Authorization: 'Bearer not.a.jwt', 'Mcp-Session-Id': sid });
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('www-authenticate'), /error="invalid_token"/);

    const hidden = await post(sse.url, call('secret', 44), { 'Mcp-Session-Id': sid });
    assert.equal(hidden.status, 200);
    assert.equal(hidden.last.id, 44);
    assert.equal(hidden.last.error.code, -32602);
    assert.equal(sse.calls.length, before, 'no refused call reached a handler');
});

test('over a rate limit: 429 with Retry-After and the JSON-RPC error -32029, as decided; no handler runs', async () => {
    // The catalog's "limited" allows one call an hour per subject (the
    // servers have no such tool: the allowed call gets their error).
    const tok = token(SCOPE_A, 'rate-limited-user');
    const sid = await open(sse.url, bearer(tok));
    const first = await post(sse.url, call('limited', 51), { ...bearer(tok), 'Mcp-Session-Id': sid });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.last.id, 51);
    const before = sse.calls.length;
    const over = await post(sse.url, call('limited', 52), { ...bearer(tok), 'Mcp-Session-Id': sid });
    assert.equal(over.status, 429, over.text);
    const retry = Number(over.headers.get('retry-after'));
    assert.ok(retry > 3500 && retry <= 3600, `Retry-After ${over.headers.get('retry-after')}`);
    assert.equal(over.last.id, 52);
    assert.equal(over.last.error.code, -32029);
    assert.deepEqual(over.last.error.data, { retryAfter: retry, limit: 'rate' });
    assert.equal(sse.calls.length, before, 'the limited call reached no handler');
    const decision = sseDecisions.at(-1);
    assert.equal(decision.outcome, 'limited');
    assert.equal(decision.retry_after, retry);
});

test('structured denials (SEP-2643, draft): the PDP envelope reaches the client in error.data.authorization, as decided', async () => {
    const before = own.calls.length;
    const anon = await post(own.url, call('get-sum', 45));
    assert.equal(anon.status, 401);
    const a = anon.last.error.data?.authorization;
    assert.equal(anon.last.error.code, -32001);
    assert.equal(a?.reason, 'insufficient_authorization', JSON.stringify(anon.last));
    assert.equal(a.remediation, 'available');
    assert.ok(a.authorizationContextId, 'the decision id');
    assert.equal(a.remediationHints[0].type, 'oauth_scopes');

    const lacking = await post(own.url, call('get-weather', 46), bearer(tokenFor(own, SCOPE_A)));
    assert.equal(lacking.status, 403);
    const l = lacking.last.error.data.authorization;
    assert.ok(l.remediationHints[0].scopes.includes(SCOPE_B), JSON.stringify(l));
    assert.notEqual(l.authorizationContextId, a.authorizationContextId);

    // A resource without structured_denials answers as before: no data.
    const plain = await post(sse.url, call('get-sum', 47));
    assert.equal(plain.status, 401);
    assert.equal(plain.last.error.data, undefined);
    assert.equal(own.calls.length, before, 'no refused call reached a handler');
});

test('GET and DELETE are authenticated', async () => {
    const sid = await open(sse.url, bearer(token(SCOPE_A)));
    for (const method of ['GET', 'DELETE']) {
        const r = await fetch(sse.url, { method, headers: { Accept: 'text/event-stream', Authorization: 'Bearer nope', 'Mcp-Session-Id': sid } });
        assert.equal(r.status, 401, method);
        assert.match(r.headers.get('www-authenticate'), /invalid_token/);
        assert.equal((await r.json()).jsonrpc, '2.0');
    }
    // The owner's GET opens the stream.
    const ac = new AbortController();
    const g = await fetch(sse.url, { headers: { Accept: 'text/event-stream', ...bearer(token(SCOPE_A)), 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-06-18' }, signal: ac.signal });
    assert.equal(g.status, 200);
    assert.match(g.headers.get('content-type'), /text\/event-stream/);
    ac.abort();
    const d = await fetch(sse.url, { method: 'DELETE', headers: { ...bearer(token(SCOPE_A)), 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': '2025-06-18' } });
    assert.equal(d.status, 200);
});

test('a session is bound to the user who opened it', async () => {
    const sid = await open(sse.url, bearer(token(SCOPE_A)));
    const bob = await post(sse.url, call('echo', 51), { ...bearer(token(SCOPE_A, 'bob')), 'Mcp-Session-Id': sid });
    assert.equal(bob.status, 403);
    assert.equal(bob.last.id, 51);
    assert.equal(bob.last.error.code, -32001);
    const anon = await post(sse.url, call('echo', 52), { 'Mcp-Session-Id': sid });
    assert.equal(anon.status, 403, 'an anonymous caller on alice session');
    const bobDelete = await fetch(sse.url, { method: 'DELETE', headers: { ...bearer(token(SCOPE_A, 'bob')), 'Mcp-Session-Id': sid } });
    assert.equal(bobDelete.status, 403);
    const bobGet = await fetch(sse.url, { headers: { Accept: 'text/event-stream', ...bearer(token(SCOPE_A, 'bob')), 'Mcp-Session-Id': sid } });
    assert.equal(bobGet.status, 403);
    await bobGet.body?.cancel();
    // A new client registration of the same user (a step-up) keeps the session.
    const again = await post(sse.url, call('echo', 53), { Authorization: `Bearer ${env.as.mint({ sub: 'alice', clientId: 'another-client', scope: SCOPE_A, resource: sse.resource })}`, 'Mcp-Session-Id': sid });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.last.result.content[0].text, 'echo');
    // An anonymous session is claimed by its first authenticated caller, then it is theirs.
    const anonSid = await open(sse.url);
    assert.equal((await post(sse.url, call('echo'), { ...bearer(token(SCOPE_A)), 'Mcp-Session-Id': anonSid })).status, 200);
    assert.equal((await post(sse.url, call('echo'), { ...bearer(token(SCOPE_A, 'bob')), 'Mcp-Session-Id': anonSid })).status, 403);
});

test('Mcp-Method and Mcp-Name that contradict the body: -32020, refused by the PDP (audited) and never served; locally when the PDP is down', async () => {
    const sid = await open(sse.url);
    const before = sse.calls.length;
    const decided = sseDecisions.length;
    const m = await post(sse.url, call('echo', 61), { 'Mcp-Session-Id': sid, 'Mcp-Method': 'tools/list' });
    assert.equal(m.status, 400);
    assert.deepEqual([m.last.id, m.last.error.code], [61, -32020]);
    const n = await post(sse.url, call('echo', 62), { 'Mcp-Session-Id': sid, 'Mcp-Method': 'tools/call', 'Mcp-Name': 'secret' });
    assert.equal(n.status, 400);
    assert.equal(n.last.error.code, -32020);
    // Both refusals were the PDP's decisions (each one audit event), with the mismatch as the reason.
    const refusals = sseDecisions.slice(decided);
    assert.deepEqual(refusals.map(d => [d.allow, d.outcome, d.http_status]), [[false, 'deny', 400], [false, 'deny', 400]]);
    assert.ok(refusals.every(d => d.reason.startsWith('header mismatch: the Mcp-') && d.decision_id), JSON.stringify(refusals));
    const offline = await post(down.url, call('echo', 64), { 'Mcp-Method': 'tools/list' });
    assert.deepEqual([offline.status, offline.last.error.code], [400, -32020]);
    const b64 = await post(sse.url, call('echo', 63), { 'Mcp-Session-Id': sid, 'Mcp-Method': 'tools/call', 'Mcp-Name': `=?base64?${Buffer.from('echo').toString('base64')}?=` });
    assert.equal(b64.status, 200, 'a matching Base64 header passes');
    assert.equal(sse.calls.length, before + 1);
});

test('Origin: another origin is refused (403), the resource own origin is allowed, with CORS', async () => {
    const before = sse.calls.length;
    const evil = await post(sse.url, call('echo', 64), { Origin: 'http://evil.example' });
    assert.equal(evil.status, 403);
    assert.equal(evil.last.error.code, -32600);
    assert.equal(sse.calls.length, before);
    const self = new URL(sse.url).origin;
    const pre = await fetch(sse.url, { method: 'OPTIONS', headers: { Origin: self, 'Access-Control-Request-Method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), self);
    assert.match(pre.headers.get('access-control-allow-headers'), /Mcp-Session-Id/);
    const sid = await open(sse.url, { Origin: self });
    const ok = await post(sse.url, list(), { Origin: self, 'Mcp-Session-Id': sid });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), self);
    assert.match(ok.headers.get('access-control-expose-headers'), /WWW-Authenticate/);
});

test('malformed requests: not JSON, too large', async () => {
    assert.equal((await post(sse.url, '{"jsonrpc":')).last.error.code, -32700);
    const big = await post(sse.url, { ...call('echo'), params: { name: 'echo', arguments: { x: 'x'.repeat(5 << 20) } } });
    assert.equal(big.status, 413);
});

test('the RFC 9728 metadata document: proxied from the PDP, or from authorizationServers', async () => {
    const proxied = await fetch(sse.url.replace('/mcp', '/.well-known/oauth-protected-resource/mcp'));
    assert.equal(proxied.status, 200);
    const doc = await proxied.json();
    assert.equal(doc.resource, sse.resource, 'the PDP document of this resource (chosen by Host)');
    assert.deepEqual(doc.authorization_servers, [env.as.issuer]);
    const served = await fetch(own.url.replace('/mcp', '/.well-known/oauth-protected-resource/mcp'));
    assert.deepEqual(await served.json(), { resource: own.resource, authorization_servers: [env.as.issuer], scopes_supported: [SCOPE_A], bearer_methods_supported: ['header'] });
});

// ---------------------------------------------------------------------------
// a hostile server

const REFUSED = {
    'json-oversized': 502,
    'json-malformed': 502,
    'json-badlist': 502,
    'json-otherid': 502,
    'json-both': 502,
    'json-batch': 502,
    'json-string-result': 502,
    'status-500-list': 500
};
for (const [behaviour, status] of Object.entries(REFUSED)) {
    test(`hostile server, ${behaviour}: refused with a JSON-RPC error, never relayed`, async () => {
        const r = await post(hostile.url, list(71), { 'X-Hostile': behaviour });
        assert.equal(r.status, status, r.text);
        assert.equal(r.last.id, 71);
        assert.equal(r.last.error.code, -32603);
        assert.ok(!r.text.includes(HIDDEN_MARK), r.text);
    });
}

for (const behaviour of ['sse-otherid', 'sse-notjson', 'sse-bare-cr', 'sse-oversized', 'sse-cut']) {
    test(`hostile server, ${behaviour}: the stream is cut with a JSON-RPC error event`, async () => {
        const r = await post(hostile.url, list(72), { 'X-Hostile': behaviour });
        assert.equal(r.status, 200);
        assert.equal(r.sse, true);
        assert.ok(!r.text.includes(HIDDEN_MARK), r.text);
        assert.equal(r.last.id, 72);
        assert.equal(r.last.error.code, -32603, r.text);
    });
}

for (const behaviour of ['json-good', 'sse-good', 'sse-split', 'sse-unterminated', 'sse-multiline']) {
    test(`hostile server, ${behaviour}: the list is filtered`, async () => {
        const r = await post(hostile.url, list(73), { 'X-Hostile': behaviour });
        assert.equal(r.status, 200);
        assert.ok(!r.text.includes(HIDDEN_MARK), r.text);
        const res = r.messages.find(m => m.id === 73);
        assert.deepEqual(res.result.tools.map(t => t.name), ['echo']);
        assert.equal(res.result.cacheScope, 'private');
        if (behaviour === 'sse-good') {
            assert.equal(r.messages[0].method, 'notifications/message', 'the server notification passes untouched');
            assert.match(r.text, /^: a comment\n\nid: 1\ndata: \n\n/, 'comments and the priming event pass untouched');
        }
    });
}

test('hostile server: a call whose SSE stream ends before the answer gets a JSON-RPC error event; an oversized JSON answer is refused', async () => {
    const cut = await post(hostile.url, call('echo', 81), { 'X-Hostile': 'sse-cut' });
    assert.equal(cut.messages[0].method, 'notifications/progress');
    assert.deepEqual([cut.last.id, cut.last.error?.code], [81, -32603]);
    assert.match(cut.last.error.message, /ended its stream without answering/);
    const big = await post(hostile.url, call('echo', 82), { 'X-Hostile': 'json-oversized' });
    assert.equal(big.status, 502);
    assert.ok(!big.text.includes(HIDDEN_MARK));
});

// ---------------------------------------------------------------------------
// the PDP down, slow, stopped

test('PDP unreachable: fail closed with a JSON-RPC error, no handler runs; the SDK client cannot connect', async () => {
    for (const msg of [call('echo', 91), list(92), { jsonrpc: '2.0', id: 93, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '0' } } }]) {
        const r = await post(down.url, msg);
        assert.equal(r.status, 503);
        assert.deepEqual([r.last.id, r.last.error.code], [msg.id, -32603]);
    }
    const g = await fetch(down.url, { headers: { Accept: 'text/event-stream' } });
    assert.equal(g.status, 503);
    const client = new Client({ name: 'x', version: '0' });
    await assert.rejects(client.connect(new StreamableHTTPClientTransport(new URL(down.url))));
    assert.equal(down.calls.length, 0);
    assert.equal(down.routeCallers.length, 0, 'no request reached the MCP route');
});

test('PDP slow: the decision times out, fail closed', async () => {
    const t0 = performance.now();
    const r = await post(slow.url, call('echo', 94));
    assert.equal(r.status, 503);
    assert.deepEqual([r.last.id, r.last.error.code], [94, -32603]);
    assert.ok(performance.now() - t0 < 5000);
    assert.equal(slow.routeCallers.length, 0);
});

test('PDP stopped while the server runs: fail closed', async () => {
    const sid = await open(json.url);
    const ok = await post(json.url, call('echo'), { 'Mcp-Session-Id': sid });
    assert.equal(ok.status, 200);
    const before = json.calls.length;
    await env.stopPdp();
    for (const msg of [call('echo', 95), list(96)]) {
        const r = await post(json.url, msg, { 'Mcp-Session-Id': sid });
        assert.equal(r.status, 503, r.text);
        assert.deepEqual([r.last.id, r.last.error.code], [msg.id, -32603]);
    }
    assert.equal(json.calls.length, before);
});
