// MCP servers built with the official SDKs (1.x: @modelcontextprotocol/sdk,
// 2.x: @modelcontextprotocol/server + @modelcontextprotocol/node), stateful
// (one transport per session), JSON or SSE answers, behind pdpAuth, served
// with express or with plain node:http; or (modern) the 2.x entry for MCP
// 2026-07-28 (createMcpHandler: stateless, one server per request). Every
// tool handler call is recorded with the caller it saw, every request with
// the protocol version it named.
import { createHash, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import express from 'express';
import { z } from 'zod';
import { McpServer as McpServerV1 } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport as TransportV1 } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { McpServer as McpServerV2, createMcpHandler } from '@modelcontextprotocol/server';
import { NodeStreamableHTTPServerTransport as TransportV2, toNodeHandler } from '@modelcontextprotocol/node';
import { callerFromAuthInfo, getCaller, pdpAuth } from '../../dist/index.js';

const text = s => ({ content: [{ type: 'text', text: s }] });

/** A token's fingerprint (SHA-256, 16 hex digits): what the tests compare instead of the token. */
export const fingerprint = token => createHash('sha256').update(token).digest('hex').slice(0, 16);

/** What a handler saw of its caller: authInfo without the token (its fingerprint), and the caller. */
function seen(authInfo) {
    if (!authInfo) return { anonymous: true };
    const { token, resource, ...rest } = authInfo;
    const hasToken = typeof token === 'string' && token.length > 0;
    return { ...rest, hasToken, tokenFingerprint: hasToken ? fingerprint(token) : undefined, resource: resource?.href, caller: callerFromAuthInfo(authInfo) };
}

function registerTools(server, line, calls, demoTools) {
    const tool = (name, handler) => {
        if (line === 1) {
            server.registerTool(name, { description: name, inputSchema: { x: z.string().optional() } }, async (_args, extra) => {
                calls.push({ name, authInfo: extra.authInfo });
                return handler(extra.authInfo);
            });
        } else {
            server.registerTool(name, { description: name, inputSchema: z.object({ x: z.string().optional() }) }, async (_args, ctx) => {
                calls.push({ name, authInfo: ctx.http?.authInfo });
                return handler(ctx.http?.authInfo);
            });
        }
    };
    tool('echo', () => text('echo'));
    tool('whoami', authInfo => text(JSON.stringify(seen(authInfo))));
    tool('get-sum', () => text('3'));
    tool('get-weather', () => text('sunny'));
    tool('secret', () => text('the secret'));
    tool('unlisted', () => text('not in the catalog'));
    if (demoTools) {
        // Tools of the dev PDP's demo catalog (lookup_product public, generate_qr_url needs qr:generate), answering what they saw of the caller.
        tool('lookup_product', authInfo => text(JSON.stringify(seen(authInfo))));
        tool('generate_qr_url', authInfo => text(JSON.stringify(seen(authInfo))));
    }
}

/** Instead of pdpAuth (an upstream of the gateway): reads a POST's body as JSON into req.body, serves no metadata. */
function openGuard() {
    const guard = (req, res, next) => {
        if (req.method !== 'POST') return next();
        const chunks = [];
        req.on('data', c => chunks.push(c));
        req.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
                req.body = JSON.parse(text);
            } catch {
                req.body = undefined;
            }
            req.rawBody = Buffer.from(text, 'utf8');
            next();
        });
        req.on('error', next);
    };
    guard.metadataPath = '/.well-known/oauth-protected-resource/none';
    guard.metadata = (_req, res) => res.writeHead(404).end();
    return guard;
}

/**
 * Starts one protected MCP endpoint at http://127.0.0.1:<port>/mcp.
 * @param {object} o
 * @param {1|2} o.line           the SDK line
 * @param {boolean} o.json       enableJsonResponse
 * @param {'express'|'http'} o.framework
 * @param {number} o.port
 * @param {object|null} o.auth   pdpAuth options (resource is set here); null: no pdpAuth (an upstream of the gateway, which reads the body as JSON)
 * @param {() => object} [o.eventStore] makes each session's event store (resumability: the server replays on GET after Last-Event-ID)
 * @param {boolean} [o.demoTools] also the tools of the dev PDP's demo catalog (lookup_product, generate_qr_url)
 * @param {string[]} [o.protocolVersions] the 2.x server's supportedProtocolVersions (e.g. ['2025-06-18']: its initialize answer)
 * @param {boolean} [o.modern] line 2 only: serve with createMcpHandler (MCP 2026-07-28, legacy requests served stateless)
 */
export async function startMcpServer({ line, json, framework, port, auth, eventStore, demoTools = false, protocolVersions, modern = false }) {
    const resource = `http://127.0.0.1:${port}/mcp`;
    const calls = [];
    const errors = [];
    const routeCallers = [];
    /** Per POST handed on: its method, MCP-Protocol-Version and Mcp-Method headers, _meta protocol version (2026-07-28). */
    const versions = [];
    const guard = auth === null ? openGuard() : pdpAuth({ resource, onError: err => errors.push(err.message), ...auth });
    const transports = new Map();
    const v2Options = protocolVersions ? { supportedProtocolVersions: protocolVersions } : undefined;
    if (modern && line !== 2) throw new Error('modern: the 2.x server only');
    const modernHandler = modern
        ? toNodeHandler(
              createMcpHandler(() => {
                  const server = new McpServerV2({ name: 'ts-pep-test', version: '0.0.0' }, v2Options);
                  registerTools(server, 2, calls, demoTools);
                  return server;
              }, { onerror: err => errors.push(`createMcpHandler: ${err.message}`) }),
              { onerror: err => errors.push(`toNodeHandler: ${err.message}`) }
          )
        : undefined;

    async function mcp(req, res) {
        routeCallers.push(getCaller(req));
        if (req.method === 'POST' && req.body && !Array.isArray(req.body)) {
            versions.push({
                method: req.body.method,
                header: req.headers['mcp-protocol-version'],
                mcpMethod: req.headers['mcp-method'],
                meta: req.body.params?._meta?.['io.modelcontextprotocol/protocolVersion']
            });
        }
        // req.body: what pdpAuth decided.
        if (modernHandler) return modernHandler(req, res, req.body);
        const sid = req.headers['mcp-session-id'];
        let t = sid ? transports.get(sid) : undefined;
        if (!t) {
            if (sid) {
                res.writeHead(404, { 'Content-Type': 'application/json' });
                return res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
            }
            const Transport = line === 1 ? TransportV1 : TransportV2;
            const server = line === 1 ? new McpServerV1({ name: 'ts-pep-test', version: '0.0.0' }) : new McpServerV2({ name: 'ts-pep-test', version: '0.0.0' }, v2Options);
            registerTools(server, line, calls, demoTools);
            t = new Transport({
                sessionIdGenerator: () => randomUUID(),
                enableJsonResponse: json,
                ...(eventStore ? { eventStore: eventStore() } : {}),
                onsessioninitialized: id => transports.set(id, t)
            });
            t.onclose = () => t.sessionId && transports.delete(t.sessionId);
            await server.connect(t);
        }
        // req.body: what pdpAuth decided (the transports also read req.rawBody).
        await t.handleRequest(req, res, req.body);
    }

    let server;
    if (framework === 'express') {
        const app = express();
        app.get(guard.metadataPath, guard.metadata);
        app.all('/mcp', guard, (req, res, next) => mcp(req, res).catch(next));
        server = createServer(app);
    } else {
        server = createServer((req, res) => {
            const path = new URL(req.url, 'http://x').pathname;
            if (path === guard.metadataPath) return guard.metadata(req, res);
            if (path !== '/mcp') {
                res.writeHead(404);
                return res.end();
            }
            guard(req, res, () =>
                mcp(req, res).catch(err => {
                    errors.push(String(err));
                    if (!res.headersSent) res.writeHead(500).end();
                })
            );
        });
    }
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
    });
    return {
        url: resource,
        resource,
        calls,
        errors,
        routeCallers,
        versions,
        async close() {
            for (const t of transports.values()) await t.close().catch(() => {});
            server.closeAllConnections?.();
            await new Promise(r => server.close(() => r()));
        }
    };
}
