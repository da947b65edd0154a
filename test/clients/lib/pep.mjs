// A small policy enforcement point: an MCP server (the official TypeScript
// SDK's McpServer behind StreamableHTTPServerTransport, stateless, JSON
// responses) that asks mcp-pdp about every JSON-RPC message before answering,
// and does exactly what the answer says (docs/api.md, "What the PEP must do").
//
// One PEP serves several MCP endpoints (paths); each is its own protected
// resource, whose canonical URI is <PEP base><path>, configured in the PDP.
// It also serves each resource's RFC 9728 metadata at the RFC 9728 §3.1
// well-known URL by proxying the PDP's document.
//
// Every decision is recorded; GET /_test/log returns the records.
import { createServer } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const WELL_KNOWN = '/.well-known/oauth-protected-resource';
const LIST_METHODS = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);

// The MCP server behind the PEP. It knows nothing about authorization: it
// registers every tool it has, including one the demo catalog hides.
export function buildServer() {
    const server = new McpServer({ name: 'pdp-client-test-server', version: '0.0.0' });
    server.registerTool(
        'lookup_product',
        { description: 'Look up a product by GTIN', inputSchema: { gtin: z.string() } },
        async ({ gtin }) => ({ content: [{ type: 'text', text: `product ${gtin}: Example Widget` }] })
    );
    server.registerTool(
        'generate_qr_url',
        { description: 'Generate a QR code URL for a GTIN', inputSchema: { gtin: z.string() } },
        async ({ gtin }) => ({ content: [{ type: 'text', text: `https://qr.example.com/01/${gtin}` }] })
    );
    server.registerTool('internal_debug', { description: 'Not in the catalog: hidden by the PDP', inputSchema: {} }, async () => ({
        content: [{ type: 'text', text: 'debug' }]
    }));
    return server;
}

// The unfiltered result the MCP server would return for a list method,
// obtained from the SDK server itself over an in-memory transport pair.
async function unfilteredList(message) {
    const server = buildServer();
    const client = new Client({ name: 'pep-internal', version: '0.0.0' });
    const [ct, st] = InMemoryTransport.createLinkedPair();
    await server.connect(st);
    await client.connect(ct);
    try {
        const params = message.params ?? {};
        switch (message.method) {
            case 'tools/list':
                return await client.listTools(params);
            case 'prompts/list':
                return await client.listPrompts(params);
            case 'resources/list':
                return await client.listResources(params);
            case 'resources/templates/list':
                return await client.listResourceTemplates(params);
        }
    } finally {
        await client.close();
        await server.close();
    }
}

export function startPEP({ port = 0, host = '127.0.0.1', pdpURL, paths = ['/mcp'], decideTimeoutMs = 2000 }) {
    const log = [];
    let base;
    const record = fields => log.push({ seq: log.length, at: performance.timeOrigin + performance.now(), ...fields });

    const sendJSON = (res, status, body, headers = {}) => {
        res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
    };
    const rpcError = (id, code, message) => ({ jsonrpc: '2.0', id: id ?? null, error: { code, message } });

    async function readBody(req) {
        const chunks = [];
        let size = 0;
        for await (const c of req) {
            size += c.length;
            if (size > 1 << 20) throw new Error('body too large');
            chunks.push(c);
        }
        return Buffer.concat(chunks).toString('utf8');
    }

    async function decide(body) {
        const res = await fetch(`${pdpURL}/v1/decide`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(decideTimeoutMs)
        });
        const text = await res.text();
        if (res.status !== 200) throw new Error(`PDP answered HTTP ${res.status}: ${text}`);
        return JSON.parse(text);
    }

    async function handleMCP(req, res, path) {
        const resource = base + path;
        if (req.method !== 'POST') {
            // Stateless server: no standalone SSE stream, no sessions to delete.
            record({ path, http: req.method, status: 405 });
            return sendJSON(res, 405, rpcError(null, -32000, 'Method not allowed'), { Allow: 'POST' });
        }
        let message;
        try {
            message = JSON.parse(await readBody(req));
        } catch {
            record({ path, status: 400, note: 'parse error' });
            return sendJSON(res, 400, rpcError(null, -32700, 'Parse error'));
        }
        if (Array.isArray(message) || typeof message !== 'object' || message === null || typeof message.method !== 'string') {
            // Batches were removed in MCP 2025-06-18; responses from the client are not expected here.
            record({ path, status: 400, note: 'not a single request' });
            return sendJSON(res, 400, rpcError(null, -32600, 'Invalid Request: one JSON-RPC request or notification per POST'));
        }
        const authorization = req.headers.authorization;
        const entry = {
            path,
            method: message.method,
            tool: message.method === 'tools/call' ? message.params?.name : undefined,
            bearer: !!authorization
        };
        const isNotification = message.id === undefined;

        let d;
        try {
            const body = { resource, message };
            if (authorization !== undefined) body.authorization = authorization;
            if (LIST_METHODS.has(message.method)) body.result = await unfilteredList(message);
            d = await decide(body);
        } catch (err) {
            // Fail closed.
            record({ ...entry, status: 503, note: `PDP unavailable: ${err.message}` });
            return sendJSON(res, 503, rpcError(message.id, -32603, 'Authorization unavailable'));
        }
        entry.outcome = d.outcome;
        entry.decision_id = d.decision_id;

        // 1. allowed list: the filtered result replaces the server's own.
        if (d.allow && d.result !== undefined) {
            record({ ...entry, status: 200, result: d.result });
            return sendJSON(res, 200, { jsonrpc: '2.0', id: message.id, result: d.result });
        }
        // 2. allowed: the SDK server handles the request.
        if (d.allow) {
            record({ ...entry, status: isNotification ? 202 : 200 });
            const server = buildServer();
            const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
            res.on('close', () => {
                transport.close();
                server.close();
            });
            await server.connect(transport);
            return transport.handleRequest(req, res, message);
        }
        // 3. challenge: the HTTP form (this PEP targets clients that act on 401/403).
        if (d.www_authenticate) {
            record({ ...entry, status: d.http_status, www_authenticate: d.www_authenticate });
            return sendJSON(res, d.http_status, rpcError(message.id, -32001, d.reason || 'Unauthorized'), {
                'WWW-Authenticate': d.www_authenticate
            });
        }
        if (isNotification) {
            record({ ...entry, status: 202, note: 'refused notification dropped' });
            res.writeHead(202);
            return res.end();
        }
        // 4. a refused tools/call: a failed tool result.
        if (d.tool_result) {
            record({ ...entry, status: 200, tool_result: d.tool_result });
            return sendJSON(res, 200, { jsonrpc: '2.0', id: message.id, result: d.tool_result });
        }
        // 5. a JSON-RPC error.
        if (d.jsonrpc_error) {
            const status = d.http_status || 200;
            record({ ...entry, status, jsonrpc_error: d.jsonrpc_error });
            return sendJSON(res, status, { jsonrpc: '2.0', id: message.id, error: d.jsonrpc_error });
        }
        record({ ...entry, status: 503, note: 'unrecognized decision' });
        return sendJSON(res, 503, rpcError(message.id, -32603, 'Authorization unavailable'));
    }

    async function handleMetadata(req, res, path) {
        // Proxy the PDP's RFC 9728 document (same path on the PDP).
        try {
            const r = await fetch(pdpURL + WELL_KNOWN + path, { signal: AbortSignal.timeout(decideTimeoutMs) });
            const text = await r.text();
            record({ path: WELL_KNOWN + path, http: 'GET', status: r.status });
            res.writeHead(r.status, { 'Content-Type': r.headers.get('content-type') ?? 'application/json', 'Cache-Control': 'no-store' });
            return res.end(text);
        } catch (err) {
            record({ path: WELL_KNOWN + path, http: 'GET', status: 503, note: err.message });
            return sendJSON(res, 503, { error: 'temporarily_unavailable' });
        }
    }

    const server = createServer((req, res) => {
        const p = new URL(req.url, base).pathname;
        let done;
        if (paths.includes(p)) done = handleMCP(req, res, p);
        else if (req.method === 'GET' && p.startsWith(WELL_KNOWN) && paths.includes(p.slice(WELL_KNOWN.length))) {
            done = handleMetadata(req, res, p.slice(WELL_KNOWN.length));
        } else if (req.method === 'GET' && p === '/_test/log') {
            return sendJSON(res, 200, log);
        } else {
            record({ path: p, http: req.method, status: 404 });
            return sendJSON(res, 404, { error: 'not_found' });
        }
        done.catch(err => {
            record({ path: p, status: 500, note: String(err?.stack ?? err) });
            if (!res.headersSent) sendJSON(res, 500, rpcError(null, -32603, 'Internal error'));
            else res.destroy();
        });
    });
    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
            base = `http://${host}:${server.address().port}`;
            resolve({ url: base, log, close: () => new Promise(r => server.close(() => r())) });
        });
    });
}
