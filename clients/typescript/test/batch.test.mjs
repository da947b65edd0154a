// JSON-RPC batches (MCP 2025-03-26) and GET stream replays through pdpAuth,
// against real SDK servers of both lines (JSON and SSE answers; the 1.x
// server with an event store replays a list answer on GET after
// Last-Event-ID) and against a hand-written hostile server. The behaviour
// is the Go middleware's (pep/batch.go, pep/respond.go relayReplay).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SCOPE_A, freePorts, startEnv } from './lib/env.mjs';
import { startHostileBatch } from './lib/hostile-batch.mjs';
import { open, post, readStream } from './lib/raw.mjs';
import { startMcpServer } from './lib/servers.mjs';
import { OrderedEventStore } from '../../../test/clients/lib/events.mjs'; // the SDK example's store replays out of order

const COMBOS = [
    { line: 1, json: true },
    { line: 1, json: false },
    { line: 2, json: true },
    { line: 2, json: false }
];
const HIDDEN = ['"secret"', '"unlisted"'];

let env, servers, hostile, resumable;

before(async () => {
    const ports = await freePorts(COMBOS.length + 2);
    env = await startEnv(ports.map(p => `http://127.0.0.1:${p}/mcp`));
    servers = [];
    for (const [i, c] of COMBOS.entries()) servers.push(await startMcpServer({ ...c, framework: 'http', port: ports[i], auth: { pdpUrl: env.pdpUrl } }));
    hostile = await startHostileBatch({ port: ports[COMBOS.length], auth: { pdpUrl: env.pdpUrl } });
    resumable = await startMcpServer({ line: 1, json: false, framework: 'express', port: ports[COMBOS.length + 1], auth: { pdpUrl: env.pdpUrl }, eventStore: () => new OrderedEventStore() });
});

after(async () => {
    for (const s of [...(servers ?? []), hostile, resumable]) await s?.close();
    await env?.close();
});

let nextId = 1;
const call = (name, id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });
const list = (id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/list', params: {} });
const bearer = token => ({ Authorization: `Bearer ${token}` });
const tokenFor = (server, scope, sub = 'alice') => env.as.mint({ sub, scope, resource: server.resource });
const noHidden = (r, what) => {
    for (const h of HIDDEN) assert.ok(!r.text.includes(h), `${what}: ${h} reached the client: ${r.text}`);
};
/** The body a lone request gets (its id replaced). */
const lone = async (server, msg, headers) => (await post(server.url, msg, headers)).messages[0];

for (const [i, c] of COMBOS.entries()) {
    describe(`batches, SDK ${c.line}.x server, ${c.json ? 'JSON' : 'SSE'} answers`, () => {
        const s = () => servers[i];

        test('each message decided alone: refusals in band as a lone request gets them, the rest handed on as one batch, the list filtered', async () => {
            const sid = await open(s().url);
            const h = { 'Mcp-Session-Id': sid };
            const before = s().calls.length;
            const [l, e, g, x, u] = [list(), call('echo'), call('get-sum'), call('secret'), call('unlisted')];
            const r = await post(s().url, [l, e, g, x, u, { jsonrpc: '1.0', id: 'bad', method: 'ping' }, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'none' } }], h);
            assert.equal(r.status, 200, r.text);
            assert.equal(r.sse, !c.json);
            noHidden(r, 'batch');
            // The middleware's own answers come first, in the batch's order.
            assert.deepEqual(r.messages.slice(0, 4).map(m => m.id), [g.id, x.id, u.id, null]);
            for (const m of [g, x, u]) assert.deepEqual(r.byId(m.id), await lone(s(), m, h), `${m.params.name}: the body of a lone request`);
            assert.equal(r.messages[3].error.code, -32600, 'a malformed message: -32600, id null');
            const listed = r.byId(l.id);
            assert.equal(listed.result.cacheScope, 'private');
            assert.deepEqual(listed.result.tools.map(t => t.name).sort(), ['echo', 'get-sum', 'get-weather', 'whoami']);
            assert.equal(r.byId(e.id).result.content[0].text, 'echo');
            assert.equal(r.messages.length, 6);
            assert.deepEqual(s().calls.slice(before).map(x => x.name), ['echo'], 'only the allowed call reached a handler');
        });

        test('with a token: the handed-on calls see the caller', async () => {
            const h = bearer(tokenFor(s(), SCOPE_A));
            const sid = await open(s().url, h);
            const [a, b] = [call('get-sum'), call('whoami')];
            const r = await post(s().url, [a, b], { ...h, 'Mcp-Session-Id': sid });
            assert.equal(r.status, 200, r.text);
            assert.equal(r.byId(a.id).result.content[0].text, '3');
            assert.equal(JSON.parse(r.byId(b.id).result.content[0].text).caller.sub, 'alice');
        });

        test('nothing allowed and a refusal at the HTTP level: its status and WWW-Authenticate', async () => {
            const sid = await open(s().url);
            const before = s().calls.length;
            const [a, b] = [call('get-sum'), call('secret')];
            const r = await post(s().url, [a, b], { 'Mcp-Session-Id': sid });
            assert.equal(r.status, 401, r.text);
            assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer /);
            assert.equal(r.headers.get('www-authenticate'), (await post(s().url, a, { 'Mcp-Session-Id': sid })).headers.get('www-authenticate'));
            assert.ok(r.array);
            assert.deepEqual(r.messages.map(m => [m.id, m.error.code]), [[a.id, -32001], [b.id, -32602]]);
            assert.equal(s().calls.length, before);
            // Only in-band refusals: 200.
            const inBand = await post(s().url, [call('secret')], { 'Mcp-Session-Id': sid });
            assert.equal(inBand.status, 200);
            assert.equal(inBand.messages[0].error.code, -32602);
        });

        test('another user on the session: refused', async () => {
            const sid = await open(s().url, bearer(tokenFor(s(), SCOPE_A)));
            const r = await post(s().url, [call('echo'), call('whoami')], { ...bearer(tokenFor(s(), SCOPE_A, 'bob')), 'Mcp-Session-Id': sid });
            assert.equal(r.status, 403, r.text);
            assert.ok(r.messages.every(m => m.error), r.text);
        });
    });
}

test('batches refused whole: empty, duplicate request ids, Mcp-Method/Mcp-Name headers, over 100 messages', async () => {
    const s = servers[0];
    const sid = await open(s.url);
    const h = { 'Mcp-Session-Id': sid };
    const before = s.calls.length;
    const empty = await post(s.url, [], h);
    assert.deepEqual([empty.status, empty.messages[0].id, empty.messages[0].error.code], [400, null, -32600]);
    const dup = await post(s.url, [call('echo', 7), call('whoami', 7)], h);
    assert.deepEqual([dup.status, dup.messages[0].error.code], [400, -32600]);
    assert.match(dup.messages[0].error.message, /two requests of the batch have the id 7/);
    const hm = await post(s.url, [call('echo')], { ...h, 'Mcp-Method': 'tools/call' });
    assert.deepEqual([hm.status, hm.messages[0].error.code], [400, -32020]);
    const hn = await post(s.url, [call('echo')], { ...h, 'Mcp-Name': 'echo' });
    assert.deepEqual([hn.status, hn.messages[0].error.code], [400, -32020]);
    const big = await post(s.url, Array.from({ length: 101 }, () => call('echo')), h);
    assert.deepEqual([big.status, big.messages[0].error.code], [413, -32600]);
    const nested = await post(s.url, [[call('echo')]], h);
    assert.deepEqual([nested.status, nested.messages[0].id, nested.messages[0].error.code], [200, null, -32600]);
    assert.equal(s.calls.length, before, 'nothing reached a handler');
});

test('a batch of notifications only: 202', async () => {
    const s = servers[2];
    const sid = await open(s.url);
    const r = await post(s.url, [{ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'x' } }], { 'Mcp-Session-Id': sid });
    assert.equal(r.status, 202, r.text);
});

describe('batches, hostile server', () => {
    const h = async () => ({ 'Mcp-Session-Id': await open(hostile.url) });

    test('a response to an id not handed on is dropped; an answer given twice is relayed once; lists filtered', async () => {
        const [l, e, x] = [list(), call('echo'), call('secret')];
        const r = await post(hostile.url, [l, e, x], { ...(await h()), 'X-Hostile': 'json-forged' });
        assert.equal(r.status, 200, r.text);
        noHidden(r, 'forged');
        assert.deepEqual(r.messages.map(m => m.id), [x.id, l.id, e.id]);
        assert.deepEqual(r.byId(l.id).result.tools.map(t => t.name), ['echo']);
    });

    test('an unanswered handed-on request: -32603', async () => {
        const [e, w] = [call('echo'), call('whoami')];
        const r = await post(hostile.url, [e, w], { ...(await h()), 'X-Hostile': 'json-partial' });
        assert.equal(r.status, 200);
        assert.equal(r.byId(e.id).result.content[0].text, 'answered tools/call');
        assert.deepEqual([r.byId(w.id).error.code, r.byId(w.id).error.message], [-32603, 'the MCP server did not answer this request']);
    });

    test('one object for an answer: merged into the array', async () => {
        const l = list();
        const r = await post(hostile.url, [l, call('secret')], { ...(await h()), 'X-Hostile': 'json-single' });
        assert.equal(r.status, 200);
        assert.ok(r.array);
        assert.deepEqual(r.byId(l.id).result.tools.map(t => t.name), ['echo']);
    });

    test('an answer that is not JSON, or not JSON-RPC with a list among the requests, or an HTTP failure: nothing of it relayed', async () => {
        for (const [behaviour, status] of [
            ['json-invalid', 502],
            ['json-notrpc', 502],
            ['status-500', 500]
        ]) {
            const [l, x] = [list(), call('secret')];
            const r = await post(hostile.url, [l, x], { ...(await h()), 'X-Hostile': behaviour });
            assert.equal(r.status, status, `${behaviour}: ${r.text}`);
            noHidden(r, behaviour);
            assert.equal(r.byId(x.id).error.code, -32602, behaviour);
            assert.equal(r.byId(l.id).error.code, -32603, behaviour);
        }
    });

    test('SSE: the middleware answers first, forged ids dropped, an array event filtered, every request answered', async () => {
        const [x, l, e] = [call('secret'), list(), call('echo')];
        const r = await post(hostile.url, [x, l, e], { ...(await h()), 'X-Hostile': 'sse' });
        assert.equal(r.status, 200);
        assert.ok(r.sse);
        noHidden(r, 'sse');
        assert.equal(r.messages[0].id, x.id, 'the refusal is the first event');
        assert.deepEqual(r.byId(l.id).result.tools.map(t => t.name), ['echo']);
        assert.equal(r.byId(e.id).result.content[0].text, 'answered tools/call');
        assert.ok(!r.text.includes('"forged'), 'responses to forged ids are dropped');
        assert.ok(r.text.includes('notifications/message'), "the server's notification passes");
    });

    test('SSE: a stream that ends before answering, or carries something that is not JSON-RPC during a list: error events', async () => {
        const [l, e] = [list(), call('echo')];
        const cut = await post(hostile.url, [l, e], { ...(await h()), 'X-Hostile': 'sse-cut' });
        assert.deepEqual([cut.byId(l.id).error.code, cut.byId(e.id).error.code], [-32603, -32603]);
        assert.equal(cut.byId(e.id).error.message, 'the MCP server ended its stream without answering the request');
        const bad = await post(hostile.url, [list(), call('echo')], { ...(await h()), 'X-Hostile': 'sse-notrpc' });
        noHidden(bad, 'sse-notrpc');
        assert.ok(bad.messages.length === 2 && bad.messages.every(m => m.error?.code === -32603), bad.text);
    });
});

describe('GET stream replay', () => {
    test('a real SDK server with an event store: the list answer replayed after Last-Event-ID is filtered for the GET caller', async () => {
        const s = resumable;
        const auth = bearer(tokenFor(s, SCOPE_A));
        const version = '2025-11-25'; // the server primes each stream with an event id
        const sid = await open(s.url, auth, version);
        const l = list();
        const first = await post(s.url, l, { ...auth, 'Mcp-Session-Id': sid }, version);
        assert.ok(first.sse, first.text);
        const priming = /^id: (\S+)\r?\ndata: ?\r?\n/m.exec(first.text);
        assert.ok(priming, `a priming event with an id: ${first.text}`);
        const r = await readStream(s.url, { ...auth, 'Mcp-Session-Id': sid, 'MCP-Protocol-Version': version, 'Last-Event-ID': priming[1] });
        assert.equal(r.status, 200);
        const replayed = r.messages.find(m => m.id === l.id);
        assert.ok(replayed, `the server replayed the list answer: ${r.text}`);
        assert.equal(replayed.result.cacheScope, 'private');
        assert.deepEqual(replayed.result.tools.map(t => t.name).sort(), ['echo', 'get-sum', 'get-weather', 'whoami']);
        for (const hdn of HIDDEN) assert.ok(!r.text.includes(hdn), `${hdn} replayed unfiltered`);
    });

    test('hostile server: a remembered list id filtered, list-shaped answers to other ids and unreadable events dropped, the rest passes', async () => {
        const sid = await open(hostile.url);
        const l = list();
        const first = await post(hostile.url, l, { 'Mcp-Session-Id': sid });
        assert.deepEqual(first.messages[0].result.tools.map(t => t.name), ['echo']);
        const r = await readStream(hostile.url, { 'Mcp-Session-Id': sid, 'X-List-Id': JSON.stringify(l.id) });
        assert.equal(r.status, 200);
        noHidden(r, 'replay');
        const ids = r.messages.map(m => (typeof m === 'string' ? m : m.id ?? m.params?.data));
        assert.deepEqual(ids, ['passes', l.id, 'unknown-2', 'not json, passes', 'the end']);
        assert.deepEqual(r.messages[1].result.tools.map(t => t.name), ['echo']);
        assert.match(r.text, /^id: r1$/m, 'the event keeps its id');
    });

    test('hostile server: only the last 16 list requests of a session are remembered; another session has none', async () => {
        const sid = await open(hostile.url);
        const first = list();
        await post(hostile.url, first, { 'Mcp-Session-Id': sid });
        for (let k = 0; k < 16; k++) await post(hostile.url, list(), { 'Mcp-Session-Id': sid });
        const r = await readStream(hostile.url, { 'Mcp-Session-Id': sid, 'X-List-Id': JSON.stringify(first.id) });
        noHidden(r, 'forgotten');
        assert.ok(!r.messages.some(m => m.id === first.id), 'the 17th list request back is forgotten: its answer is dropped');
        const other = await open(hostile.url);
        const o = await readStream(hostile.url, { 'Mcp-Session-Id': other, 'X-List-Id': JSON.stringify(first.id) });
        assert.ok(!o.messages.some(m => m.id === first.id), "another session's list id: dropped");
    });
});
