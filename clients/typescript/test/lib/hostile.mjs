// A hostile MCP "server" behind pdpAuth: a handler that answers what the
// X-Hostile header asks for (an oversized list, a malformed one, a list under
// another id, an SSE stream cut short, ...), always listing a tool the
// catalog hides ("secret"), so that a test sees whether anything unfiltered
// got through.
import { createServer } from 'node:http';
import express from 'express';
import { pdpAuth } from '../../dist/index.js';

export const HIDDEN_MARK = '"secret"';

const tools = (extra = 0) => [
    { name: 'echo', description: 'echo', inputSchema: { type: 'object' } },
    { name: 'secret', description: 'must never reach a client', inputSchema: { type: 'object' } },
    ...Array.from({ length: extra }, (_, i) => ({ name: `pad-${i}`, description: 'x'.repeat(1000), inputSchema: { type: 'object' } }))
];
const listResult = (id, extra) => ({ jsonrpc: '2.0', id, result: { tools: tools(extra) } });
const sse = (res, status = 200) => res.writeHead(status, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
const ev = obj => `event: message\ndata: ${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n\n`;

/** The answers, by X-Hostile value; each gets the request's id. */
const BEHAVIOURS = {
    'json-good': (id, res) => res.json(listResult(id)),
    'json-oversized': (id, res) => res.json(listResult(id, 100)),
    'json-malformed': (id, res) => res.type('application/json').send(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"tools":[{"name":"secret"}`),
    'json-badlist': (id, res) => res.json({ jsonrpc: '2.0', id, result: { tools: [{ name: 'echo' }, { description: 'secret', nom: 'secret' }, { name: 'secret' }] } }),
    'json-otherid': (id, res) => res.json(listResult(typeof id === 'number' ? id + 1 : `${id}x`)),
    'json-both': (id, res) => res.json({ ...listResult(id), error: { code: -32000, message: 'x' } }),
    'json-batch': (id, res) => res.json([listResult(id)]),
    'json-string-result': (id, res) => res.json({ jsonrpc: '2.0', id, result: '"secret"' }),
    'status-500-list': (id, res) => res.status(500).json(listResult(id)),
    'sse-good': (id, res) => {
        sse(res);
        res.write(': a comment\n\n');
        res.write('id: 1\ndata: \n\n'); // priming
        res.write(ev({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'working' } }));
        res.write(ev(listResult(id)));
        res.end();
    },
    'sse-split': (id, res) => {
        // the list event written in small pieces, CRLF framed
        sse(res);
        const s = `event: message\r\ndata: ${JSON.stringify(listResult(id))}\r\n\r\n`;
        for (let i = 0; i < s.length; i += 7) res.write(s.slice(i, i + 7));
        res.end();
    },
    'sse-unterminated': (id, res) => {
        sse(res);
        res.end(`event: message\ndata: ${JSON.stringify(listResult(id))}`); // no blank line
    },
    'sse-otherid': (id, res) => {
        sse(res);
        res.write(ev(listResult(typeof id === 'number' ? id + 1 : `${id}x`)));
        res.end();
    },
    'sse-notjson': (_id, res) => {
        sse(res);
        res.write(`event: message\ndata: {"tools":[{"name":"secret"}]\n\n`);
        res.end();
    },
    'sse-multiline': (id, res) => {
        // data split over two data lines: joined by "\n", still one message; filtered
        sse(res);
        const j = JSON.stringify(listResult(id));
        const cut = j.indexOf('"result"');
        res.write(`event: message\ndata: ${j.slice(0, cut)}\ndata: ${j.slice(cut)}\n\n`);
        res.end();
    },
    'sse-bare-cr': (id, res) => {
        sse(res);
        res.write(`event: message\rdata: ${JSON.stringify(listResult(id))}\r\r`);
        res.end();
    },
    'sse-oversized': (id, res) => {
        sse(res);
        res.write(ev(listResult(id, 100)));
        res.end();
    },
    'sse-cut': (_id, res) => {
        sse(res);
        res.write(ev({ jsonrpc: '2.0', method: 'notifications/progress', params: { progress: 1, progressToken: 't' } }));
        res.end();
    }
};

export async function startHostile({ port, auth }) {
    const resource = `http://127.0.0.1:${port}/mcp`;
    const errors = [];
    const seen = [];
    const app = express();
    app.post('/mcp', pdpAuth({ resource, onError: err => errors.push(err.message), ...auth }), (req, res) => {
        const b = BEHAVIOURS[req.headers['x-hostile']];
        seen.push(req.headers['x-hostile']);
        if (!b) return res.status(400).json({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'unknown behaviour' } });
        b(req.body.id, res);
    });
    const server = createServer(app);
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
    });
    return {
        url: resource,
        errors,
        seen,
        behaviours: Object.keys(BEHAVIOURS),
        close: () => {
            server.closeAllConnections?.();
            return new Promise(r => server.close(() => r()));
        }
    };
}
