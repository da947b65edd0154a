// An MCP server of the official TypeScript SDK (1.x) protected by mcp-pdp:
// lookup_product is public, generate_qr_url needs the scope qr:generate (the
// demo policy of `pdp serve --dev`). Try it:
//
//	pdp serve --dev --resource http://127.0.0.1:3000/mcp
//	npm ci && npm run build && node dist/server.js --pdp http://127.0.0.1:8181 --listen 127.0.0.1:3000
//
// It answers with SSE streams; --json makes it answer with JSON, --resumable
// keeps its streams' events for clients resuming with Last-Event-ID (both for
// the parity test, test/parity).
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import express from 'express';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { callerFromAuthInfo, pdpAuth } from '@mcp-pdp/pep';
import { OrderedEventStore } from './events.js';

const { values: flags } = parseArgs({
    options: {
        pdp: { type: 'string', default: process.env.PDP_URL ?? 'http://127.0.0.1:8181' },
        listen: { type: 'string', default: process.env.LISTEN ?? '127.0.0.1:3000' },
        json: { type: 'boolean', default: false },
        resumable: { type: 'boolean', default: false }
    }
});
const resource = `http://${flags.listen}/mcp`;
const text = (s: string) => ({ content: [{ type: 'text' as const, text: s }] });

function shop(): McpServer {
    const server = new McpServer({ name: 'shop', version: '1.0.0' });
    server.registerTool('lookup_product', { description: 'Look a product up' }, async () => text('a product'));
    server.registerTool('generate_qr_url', { description: 'A QR code URL (scope qr:generate)', inputSchema: { text: z.string() } }, async ({ text: t }, extra) =>
        text(`https://qr.example/${t} for ${callerFromAuthInfo(extra.authInfo)?.sub}`) // allowed: a caller with the scope
    );
    return server;
}

const auth = pdpAuth({ pdpUrl: flags.pdp, resource, authorizationServers: [`${flags.pdp}/dev`], scopesSupported: ['qr:generate'] });
const sessions = new Map<string, StreamableHTTPServerTransport>();
const app = express();
app.get(auth.metadataPath, auth.metadata); // the RFC 9728 document the PDP's challenges point to
app.all('/mcp', auth, async (req, res) => {
    const sid = req.headers['mcp-session-id'];
    let t = typeof sid === 'string' ? sessions.get(sid) : undefined;
    if (!t) {
        if (sid) return void res.status(404).json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } });
        const created = new StreamableHTTPServerTransport({
            sessionIdGenerator: randomUUID,
            enableJsonResponse: flags.json,
            ...(flags.resumable ? { eventStore: new OrderedEventStore() } : {}),
            onsessioninitialized: id => void sessions.set(id, created)
        });
        created.onclose = () => void (created.sessionId && sessions.delete(created.sessionId));
        await shop().connect(created);
        t = created;
    }
    await t.handleRequest(req, res, req.body);
});
const [host, port] = [flags.listen.slice(0, flags.listen.lastIndexOf(':')), Number(flags.listen.slice(flags.listen.lastIndexOf(':') + 1))];
app.listen(port, host, () => console.log(`serving ${resource}`));
