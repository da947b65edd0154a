// A hand-written MCP "server" behind pdpAuth for batches and GET stream
// replays: it answers a batch as the X-Hostile header asks (responses under
// forged ids, requests left unanswered, answers that are not JSON-RPC, SSE
// streams cut short) and replays on its GET stream what a server with an
// event store could: list answers under remembered and unknown ids, events
// that cannot be read. Every list it writes has the tool the catalog hides
// ("secret"), so that a test sees whether anything unfiltered got through.
import { createServer } from 'node:http';
import { pdpAuth } from '../../dist/index.js';
import { arrayElements, memberText } from '../../dist/rawjson.js';

const tools = [
    { name: 'echo', description: 'echo', inputSchema: { type: 'object' } },
    { name: 'secret', description: 'must never reach a client', inputSchema: { type: 'object' } }
];
const listResult = id => ({ jsonrpc: '2.0', id, result: { tools } });
const text = (id, s) => ({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: s }] } });
const isList = m => ['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list'].includes(m.method);
/** The server's honest answer to each request of a batch. */
const answers = batch => batch.filter(m => m.id !== undefined && m.method).map(m => (isList(m) ? listResult(m.id) : text(m.id, `answered ${m.method}`)));
const ev = obj => `event: message\ndata: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`;
const sse = res => res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
const FORGED = 'forged';

/** Answers to a batch, by X-Hostile value. */
const BATCH = {
    // Every answer, plus a list under an id that was not handed on and a second answer to the first request.
    'json-forged': (b, res) => {
        const a = answers(b);
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify([...a, listResult(FORGED), ...(a.length ? [{ ...listResult(a[0].id) }] : [])]));
    },
    // Only the first request is answered.
    'json-partial': (b, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answers(b).slice(0, 1))),
    // One object, not an array.
    'json-single': (b, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answers(b)[0])),
    'json-invalid': (_b, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}'),
    'json-notrpc': (_b, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify([{ tools }])),
    'status-500': (b, res) => res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify(answers(b))),
    // An SSE stream: a priming event, a notification, each answer as an event, a forged list, and one event carrying an array.
    sse: (b, res) => {
        sse(res);
        res.write('id: p1\ndata: \n\n');
        res.write(ev({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'working' } }));
        const a = answers(b);
        for (const m of a.slice(1)) res.write(ev(m));
        res.write(ev(listResult(FORGED)));
        res.write(ev([listResult(`${FORGED}-2`), ...a.slice(0, 1)]));
        res.end();
    },
    'sse-cut': (_b, res) => {
        sse(res);
        res.write(ev({ jsonrpc: '2.0', method: 'notifications/progress', params: { progress: 1, progressToken: 't' } }));
        res.end();
    },
    // Answers every request under its id as written in the body it was handed (as a Go server keeping raw ids would).
    'json-raw-ids': (_b, res, raw) => {
        const out = [];
        for (const t of arrayElements(raw)) {
            const m = JSON.parse(t);
            const id = memberText(t, 'id');
            if (!m.method || id === undefined) continue;
            const result = isList(m) ? { tools } : { content: [{ type: 'text', text: `answered ${m.method}` }] };
            out.push(`{"jsonrpc":"2.0","id":${id},"result":${JSON.stringify(result)}}`);
        }
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(`[${out.join(',')}]`);
    },
    'sse-notrpc': (_b, res) => {
        sse(res);
        res.write(ev({ tools }));
        res.end();
    }
};

/**
 * The GET stream: what a server replays; X-List-Id names (as JSON) the id of
 * a list request the test made on the session.
 */
function replay(listId, res) {
    sse(res);
    res.write(ev({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'passes' } }));
    res.write(`id: r1\n${ev(listResult(listId))}`); // filtered
    res.write(ev(listResult('unknown-1'))); // dropped: list-shaped, unknown id
    res.write(ev(text('unknown-2', 'not a list: passes')));
    res.write(ev([listResult(listId)])); // dropped: a batch
    res.write('event: message\ndata: not json, passes\n\n');
    res.write(`event: message\rdata: ${JSON.stringify(listResult(listId))}\r\r\n\n`); // dropped: bare CR
    res.write(ev({ ...listResult(listId), error: { code: -1, message: 'both' } })); // dropped: cannot be filtered
    res.write(ev({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'the end' } }));
    res.end();
}

export async function startHostileBatch({ port, auth }) {
    const resource = `http://127.0.0.1:${port}/mcp`;
    const errors = [];
    const seen = [];
    const rawSeen = [];
    let sessions = 0;
    const guard = pdpAuth({ resource, onError: err => errors.push(err.message), ...auth });
    const server = createServer((req, res) => {
        guard(req, res, () => {
            if (req.method === 'GET') return replay(JSON.parse(req.headers['x-list-id'] ?? 'null'), res);
            if (req.method !== 'POST') return res.writeHead(405).end();
            const body = req.body;
            const raw = req.rawBody?.toString('utf8');
            seen.push(body);
            rawSeen.push(raw);
            if (Array.isArray(body)) {
                const b = BATCH[req.headers['x-hostile']];
                if (!b) return res.writeHead(400, { 'Content-Type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'unknown behaviour' } }));
                return b(body, res, raw);
            }
            if (body.method === 'initialize') {
                return res
                    .writeHead(200, { 'Content-Type': 'application/json', 'Mcp-Session-Id': `hostile-${++sessions}` })
                    .end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { protocolVersion: body.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'hostile', version: '0' } } }));
            }
            if (body.id === undefined) return res.writeHead(202).end();
            const a = isList(body) ? listResult(body.id) : text(body.id, 'ok');
            res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(a));
        });
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
    });
    return {
        url: resource,
        resource,
        errors,
        seen,
        /** The bodies handed on, as text (req.rawBody). */
        rawSeen,
        close: () => {
            server.closeAllConnections?.();
            return new Promise(r => server.close(() => r()));
        }
    };
}
