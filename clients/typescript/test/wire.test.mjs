// What pdpAuth writes, held to what the Go middleware (pep.Middleware)
// writes: JSON-RPC ids exactly as the client wrote them (1.0 stays 1.0; an
// answer under another spelling of the id does not answer the request), the
// allowed messages handed on as received, no Retry-After when the PDP
// rate-limits (pep/middleware.go undecided sends none), and an SSE relay that
// respects backpressure when the client reads slowly. Real SDK servers and a
// real, rate-limited mcp-pdp.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { pdpAuth } from '../dist/index.js';
import { SCOPE_A, freePorts, startEnv } from './lib/env.mjs';
import { startHostileBatch } from './lib/hostile-batch.mjs';
import { open, post } from './lib/raw.mjs';
import { startMcpServer } from './lib/servers.mjs';

let env, limitedEnv, sdkJSON, sdkSSE, hostile, limited, slowReader;
/** What the backpressure handler did. */
const pump = { written: 0, sawFalse: false, done: false };
const EVENT_BYTES = 64 << 10;
const TOTAL_BYTES = 64 << 20;

before(async () => {
    const [pJSON, pSSE, pHostile, pLimited, pSlow] = await freePorts(5);
    const url = p => `http://127.0.0.1:${p}/mcp`;
    env = await startEnv([pJSON, pSSE, pHostile, pSlow].map(url));
    // One decision, then 429 for 20 s.
    limitedEnv = await startEnv([url(pLimited)], { limits: { rate_per_pep: 0.05, rate_burst: 1 } });
    sdkJSON = await startMcpServer({ line: 1, json: true, framework: 'http', port: pJSON, auth: { pdpUrl: env.pdpUrl } });
    sdkSSE = await startMcpServer({ line: 2, json: false, framework: 'http', port: pSSE, auth: { pdpUrl: env.pdpUrl } });
    hostile = await startHostileBatch({ port: pHostile, auth: { pdpUrl: env.pdpUrl } });
    limited = await startHostileBatch({ port: pLimited, auth: { pdpUrl: limitedEnv.pdpUrl } });
    slowReader = await startPump(pSlow, env.pdpUrl);
});

after(async () => {
    for (const s of [sdkJSON, sdkSSE, hostile, limited, slowReader]) await s?.close();
    await env?.close();
    await limitedEnv?.close();
});

const HIDDEN = '"secret"';

describe('ids as the client wrote them', () => {
    test('a refusal answers under the id as written: alone (1.0, "\\u0031", 2.50) and in a batch', async () => {
        const s = sdkJSON;
        const h = { 'Mcp-Session-Id': await open(s.url) };
        const hidden = await post(s.url, '{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"secret","arguments":{}}}', h);
        assert.equal(hidden.status, 200);
        assert.ok(hidden.text.startsWith('{"jsonrpc":"2.0","id":1.0,"error":{"code":-32602,'), hidden.text);
        const challenge = await post(s.url, '{"jsonrpc":"2.0","id":"\\u0031","method":"tools/call","params":{"name":"get-sum","arguments":{}}}', h);
        assert.equal(challenge.status, 401);
        assert.ok(challenge.text.startsWith('{"jsonrpc":"2.0","id":"\\u0031","error":{"code":-32001,'), challenge.text);
        const mismatch = await post(s.url, '{"jsonrpc":"2.0","id":2.50,"method":"tools/call","params":{"name":"echo","arguments":{}}}', { ...h, 'Mcp-Method': 'tools/list' });
        assert.equal(mismatch.status, 400);
        assert.ok(mismatch.text.startsWith('{"jsonrpc":"2.0","id":2.50,"error":{"code":-32020,'), mismatch.text);

        const batch = await post(
            s.url,
            `[{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{"name":"secret","arguments":{}}},
              {"jsonrpc":"2.0","id":"\\u0034","method":"tools/call","params":{"name":"get-sum","arguments":{}}},
              {"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}]`,
            h
        );
        assert.equal(batch.status, 200, batch.text);
        assert.ok(batch.text.startsWith('[{"jsonrpc":"2.0","id":3.0,"error":{"code":-32602,'), batch.text);
        assert.ok(batch.text.includes(',{"jsonrpc":"2.0","id":"\\u0034","error":{"code":-32001,'), batch.text);
        assert.equal(batch.byId(5).result.content[0].text, 'echo');
        const dup = await post(s.url, '[{"jsonrpc":"2.0","id":7.0,"method":"ping"},{"jsonrpc":"2.0","id":7.0,"method":"ping"}]', h);
        assert.deepEqual([dup.status, dup.messages[0].error.message], [400, 'two requests of the batch have the id 7.0']);
    });

    for (const [kind, server] of [
        ['JSON', () => sdkJSON],
        ['SSE', () => sdkSSE]
    ]) {
        test(`${kind}: the SDK answers the id 6.0 as 6, which does not answer it: -32603 under 6.0, as the Go middleware`, async () => {
            const s = server();
            const h = { 'Mcp-Session-Id': await open(s.url) };
            const before = s.calls.length;
            const r = await post(s.url, '[{"jsonrpc":"2.0","id":6.0,"method":"tools/call","params":{"name":"echo","arguments":{}}}]', h);
            assert.equal(r.status, 200, r.text);
            assert.equal(s.calls.length, before + 1, 'the call was handed on');
            assert.ok(!/"id":6[,}]/.test(r.text), `the answer under the id 6 is dropped: ${r.text}`);
            const why = kind === 'JSON' ? 'the MCP server did not answer this request' : 'the MCP server ended its stream without answering the request';
            assert.ok(r.text.includes(`{"jsonrpc":"2.0","id":6.0,"error":{"code":-32603,"message":"${why}"}}`), r.text);
            // A list answered under another spelling is never relayed.
            const l = await post(s.url, '{"jsonrpc":"2.0","id":8.0,"method":"tools/list","params":{}}', h);
            assert.ok(!l.text.includes('"tools"'), l.text);
            assert.ok(l.text.includes('"id":8.0,"error":{"code":-32603,'), l.text);
        });
    }

    test('allowed messages are handed on as received; answers under the id as written are relayed, lists filtered', async () => {
        const h = { 'Mcp-Session-Id': await open(hostile.url) };
        const echo = '{ "jsonrpc" : "2.0", "id" : 1.0, "method" : "tools/call", "params" : { "name" : "echo", "arguments" : {} } }';
        const list = '{"id":2.50,"jsonrpc":"2.0","method":"tools/list"}';
        const hidden = '{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{"name":"secret"}}';
        const r = await post(hostile.url, `[ ${echo} ,\n ${list}, ${hidden} ]`, { ...h, 'X-Hostile': 'json-raw-ids' });
        assert.equal(r.status, 200, r.text);
        assert.equal(hostile.rawSeen.at(-1), `[${echo},${list}]`, 'the allowed elements, byte for byte');
        assert.ok(!r.text.includes(HIDDEN), r.text);
        assert.ok(r.text.startsWith('[{"jsonrpc":"2.0","id":3.0,"error":'), r.text);
        assert.ok(r.text.includes('{"jsonrpc":"2.0","id":1.0,"result":{"content":'), r.text);
        assert.ok(r.text.includes('{"jsonrpc":"2.0","id":2.50,"result":{"cacheScope":"private",'), r.text);
        const alone = await post(hostile.url, echo, h);
        assert.equal(alone.status, 200, alone.text);
        assert.equal(hostile.rawSeen.at(-1), echo, 'a lone message, byte for byte');
    });
});

describe('the PDP rate-limits (429 with Retry-After)', () => {
    test('answered 429 / in band -32603, without Retry-After, as the Go middleware', async () => {
        await post(limited.url, { jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'echo', arguments: {} } }); // the bucket's one decision
        const r = await post(limited.url, { jsonrpc: '2.0', id: 11, method: 'tools/call', params: { name: 'echo', arguments: {} } });
        assert.equal(r.status, 429, r.text);
        assert.equal(r.headers.get('retry-after'), null);
        assert.deepEqual([r.messages[0].id, r.messages[0].error.code, r.messages[0].error.message], [11, -32603, 'too many requests; retry later']);
        const b = await post(limited.url, [
            { jsonrpc: '2.0', id: 12, method: 'tools/call', params: { name: 'echo', arguments: {} } },
            { jsonrpc: '2.0', id: 13, method: 'tools/list' }
        ]);
        assert.equal(b.status, 200, b.text);
        assert.equal(b.headers.get('retry-after'), null);
        assert.deepEqual(
            b.messages.map(m => [m.id, m.error?.code, m.error?.message]),
            [
                [12, -32603, 'too many requests; retry later'],
                [13, -32603, 'too many requests; retry later']
            ]
        );
        const g = await fetch(limited.url, { headers: { Accept: 'text/event-stream' } });
        assert.equal(g.status, 429);
        assert.equal(g.headers.get('retry-after'), null);
        await g.body?.cancel();
        assert.equal(limited.rawSeen.length, 1, 'only the first call, decided before the limit, reached the server');
        // The PDP did send one: the middleware dropped it.
        const direct = await fetch(`${limitedEnv.pdpUrl}/v1/decide`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ resource: limited.resource, message: { jsonrpc: '2.0', id: 1, method: 'tools/list' } })
        });
        assert.equal(direct.status, 429);
        assert.match(direct.headers.get('retry-after') ?? '', /^\d+$/);
    });
});

describe('SSE backpressure', () => {
    test('a client that reads slowly: write() answers false and the server waits for drain; nothing is lost', async () => {
        const agent = new http.Agent({ keepAlive: false });
        const body = JSON.stringify({ jsonrpc: '2.0', id: 'bp', method: 'tools/call', params: { name: 'echo', arguments: {} } });
        const req = http.request(slowReader.url, {
            method: 'POST',
            agent,
            headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': '2025-06-18', 'Content-Length': Buffer.byteLength(body) }
        });
        req.end(body);
        const [res] = await once(req, 'response');
        assert.equal(res.statusCode, 200);
        assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
        res.pause(); // the client does not read
        await new Promise(r => setTimeout(r, 800));
        const whileStalled = pump.written;
        assert.ok(pump.sawFalse, 'write() answered false');
        assert.ok(whileStalled < TOTAL_BYTES / 2, `the server wrote ${whileStalled} bytes into a stalled stream; nothing held it back`);
        assert.equal(pump.done, false);
        let received = 0;
        let tail = '';
        res.on('data', c => {
            received += c.length;
            tail = (tail + c.toString('utf8')).slice(-400);
        });
        res.resume();
        await once(res, 'end');
        assert.equal(pump.done, true);
        assert.ok(received >= TOTAL_BYTES, `received ${received} of ${TOTAL_BYTES} bytes`);
        assert.match(tail, /"id":"bp","result":\{"content":\[\{"type":"text","text":"done"\}\]\}\}\n\n$/);
        agent.destroy();
    });
});

/**
 * A server behind pdpAuth that answers a call with an SSE stream of
 * TOTAL_BYTES of notifications, written as fast as write() lets it (waiting
 * for 'drain' after false), then the answer.
 */
async function startPump(port, pdpUrl) {
    const resource = `http://127.0.0.1:${port}/mcp`;
    const guard = pdpAuth({ resource, pdpUrl });
    const event = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'x'.repeat(EVENT_BYTES) } })}\n\n`;
    const server = http.createServer((req, res) =>
        guard(req, res, () => {
            const id = req.body?.id;
            res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
            const go = () => {
                while (pump.written < TOTAL_BYTES) {
                    pump.written += event.length;
                    if (!res.write(event)) {
                        pump.sawFalse = true;
                        res.once('drain', go);
                        return;
                    }
                }
                pump.done = true;
                res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'done' }] } })}\n\n`);
            };
            go();
        })
    );
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
    });
    return {
        url: resource,
        close: () => {
            server.closeAllConnections?.();
            return new Promise(r => server.close(() => r()));
        }
    };
}
