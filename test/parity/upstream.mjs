// The gateway's upstream for the parity test: a plain, unprotected MCP
// server of the official TypeScript SDK (1.x, from examples/typescript's
// node_modules) with the example's two tools plus internal_debug, which the
// demo policy does not name (so it is hidden). Stateful: /mcp answers with
// JSON, /mcp-sse with SSE streams whose events it keeps for clients resuming
// with Last-Event-ID (test/clients/lib/events.mjs).
// Usage: node upstream.mjs <listen host:port>; prints "serving <URL>".
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const example = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'typescript');
const sdk = join(example, 'node_modules', '@modelcontextprotocol', 'sdk', 'dist', 'esm');
const { McpServer } = await import(pathToFileURL(join(sdk, 'server', 'mcp.js')).href);
const { StreamableHTTPServerTransport } = await import(pathToFileURL(join(sdk, 'server', 'streamableHttp.js')).href);
// The SDK example's InMemoryEventStore can replay out of order.
const { OrderedEventStore } = await import('../clients/lib/events.mjs');

const listen = process.argv[2] ?? '127.0.0.1:3001';
const text = s => ({ content: [{ type: 'text', text: s }] });
const sessions = new Map();

function shop() {
    const server = new McpServer({ name: 'shop-upstream', version: '1.0.0' });
    server.registerTool('lookup_product', { description: 'Look a product up' }, async () => text('a product'));
    server.registerTool('generate_qr_url', { description: 'A QR code URL' }, async () => text('https://qr.example/x'));
    server.registerTool('internal_debug', { description: 'must stay hidden' }, async () => text('debug'));
    return server;
}

const http = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path !== '/mcp' && path !== '/mcp-sse') return res.writeHead(404).end();
    const sse = path === '/mcp-sse';
    try {
        const sid = req.headers['mcp-session-id'];
        let t = sid ? sessions.get(sid) : undefined;
        if (!t) {
            if (sid) {
                res.writeHead(404, { 'Content-Type': 'application/json' });
                return res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
            }
            const created = new StreamableHTTPServerTransport({
                sessionIdGenerator: randomUUID,
                enableJsonResponse: !sse,
                ...(sse ? { eventStore: new OrderedEventStore() } : {}),
                onsessioninitialized: id => sessions.set(id, created)
            });
            created.onclose = () => created.sessionId && sessions.delete(created.sessionId);
            await shop().connect(created);
            t = created;
        }
        await t.handleRequest(req, res);
    } catch (err) {
        console.error(err);
        if (!res.headersSent) res.writeHead(500).end();
    }
});
const cut = listen.lastIndexOf(':');
http.listen(Number(listen.slice(cut + 1)), listen.slice(0, cut), () => console.log(`serving http://${listen}/mcp`));
