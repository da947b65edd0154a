// The RFC 9728 protected resource metadata document of the resource, at the
// well-known URI the PDP's challenges point clients to (RFC 9728 §3.1): served
// from the options, or proxied from the PDP, which serves it at the same path.
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PdpClient } from './pdp.js';

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** The metadata path of a resource URI: the well-known prefix, then its path without a trailing "/". */
export function metadataPath(resource: string): string {
    let p = '';
    try {
        p = new URL(resource).pathname;
    } catch {
        p = '';
    }
    if (p.endsWith('/')) p = p.slice(0, -1);
    return WELL_KNOWN + p;
}

export interface MetadataOptions {
    path: string;
    resource: string;
    authorizationServers?: string[] | undefined;
    scopesSupported?: string[] | undefined;
    pdp: PdpClient;
    timeoutMs: number;
}

const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(body);
};

export function metadataHandler(o: MetadataOptions) {
    let doc: string | undefined;
    if (o.authorizationServers && o.authorizationServers.length > 0) {
        const d: Record<string, unknown> = { resource: o.resource, authorization_servers: o.authorizationServers };
        if (o.scopesSupported && o.scopesSupported.length > 0) d.scopes_supported = o.scopesSupported;
        d.bearer_methods_supported = ['header'];
        doc = JSON.stringify(d);
    }
    return (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void => {
        const path = (req.url ?? '').split('?')[0];
        const originalPath = ((req as { originalUrl?: string }).originalUrl ?? '').split('?')[0];
        if (path !== o.path && originalPath !== o.path) {
            if (next) next();
            else send(res, 404, JSON.stringify({ error: 'not_found' }));
            return;
        }
        if (req.method !== 'GET' && req.method !== 'HEAD') {
            send(res, 405, JSON.stringify({ error: 'method_not_allowed' }), { Allow: 'GET' });
            return;
        }
        if (doc !== undefined) {
            send(res, 200, doc, { 'Cache-Control': 'public, max-age=300' });
            return;
        }
        const url = new URL(o.path.slice(1), o.pdp.base);
        const get = url.protocol === 'https:' ? https.get : http.get;
        // The PDP picks among resources that share a path by the Host header.
        let host: string | undefined;
        try {
            host = new URL(o.resource).host;
        } catch {
            host = undefined;
        }
        const up = get(url, { agent: o.pdp.agent, timeout: o.timeoutMs, headers: host ? { Host: host } : {} }, upRes => {
            const chunks: Buffer[] = [];
            let size = 0;
            upRes.on('data', (c: Buffer) => {
                size += c.length;
                if (size > 64 << 10) upRes.destroy(new Error('too large'));
                else chunks.push(c);
            });
            upRes.on('error', () => {
                if (!res.headersSent) send(res, 503, JSON.stringify({ error: 'temporarily_unavailable' }));
            });
            upRes.on('end', () => {
                if (res.headersSent) return;
                const status = upRes.statusCode ?? 502;
                send(res, status === 200 ? 200 : status === 404 ? 404 : 503, Buffer.concat(chunks).toString('utf8'), {
                    'Cache-Control': String(upRes.headers['cache-control'] ?? 'no-store')
                });
            });
        });
        up.on('timeout', () => up.destroy(new Error('timeout')));
        up.on('error', () => {
            if (!res.headersSent) send(res, 503, JSON.stringify({ error: 'temporarily_unavailable' }));
        });
    };
}
