// pdpAuth: the policy enforcement point in front of an MCP SDK's Streamable
// HTTP transport, as Node (req, res, next) middleware. Every JSON-RPC message
// is decided by mcp-pdp (POST /v1/decide) before the transport sees it; a
// denial is answered exactly as decided; an allowed request reaches the
// transport with req.auth set (the SDKs hand it to tool handlers) and its
// list answers filtered per caller.
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
    CODE_FORBIDDEN,
    CODE_HEADER_MISMATCH,
    CODE_INTERNAL_ERROR,
    CODE_INVALID_REQUEST,
    CODE_PARSE_ERROR,
    type Message,
    MessageError,
    LIST_METHODS,
    headerMismatch,
    isNotification,
    isRequest,
    type RawId,
    denial,
    readMessage,
    rpcError,
    rpcResponse,
    writeDenial,
    writeRPCError
} from './jsonrpc.js';
import { type Batch, FilterError, Owed, batchAnswer, intercept } from './intercept.js';
import { metadataHandler, metadataPath } from './metadata.js';
import { DecideError, PdpClient } from './pdp.js';
import { arrayElements } from './rawjson.js';
import { Sessions, ownerOf } from './sessions.js';
import type { AuthInfo, Caller, Decision, DecideRequest, HTTPRequest } from './wire.js';

/** Options of {@link pdpAuth}. */
export interface PdpAuthOptions {
    /** The PDP's base URL, e.g. `http://127.0.0.1:8181` (required). */
    pdpUrl: string;
    /** The canonical URI of this MCP server, byte-identical to a `resources[].uri` of the PDP (required). */
    resource: string;
    /** The PEP's API key (`pdp apikey`), sent as `X-PDP-API-Key`; needed when the PDP has `auth.api_keys`. */
    apiKey?: string;
    /** How long to wait for one decision before failing closed (default 2000 ms). */
    timeoutMs?: number;
    /** The agent for the PDP (default: a keep-alive agent; pass an `https.Agent` with `ca`/`cert`/`key` for a private CA or mTLS). */
    agent?: http.Agent;
    /** Bound of a client's request body (default 4 MiB). */
    maxBodyBytes?: number;
    /** Bound of an answer of the server read whole: a JSON answer, one SSE event (default 16 MiB). */
    maxResponseBytes?: number;
    /**
     * The browser origins that may call the server ("*": any); the
     * resource's own origin always may. A request with another Origin header
     * is refused with 403 (MCP transports: validate Origin, against DNS rebinding).
     */
    allowedOrigins?: string[];
    /** Bound of the remembered session owners (default 100 000; the oldest is forgotten first). */
    maxSessions?: number;
    /**
     * The authorization servers to publish in the RFC 9728 metadata document
     * served by `metadata`; without them `metadata` proxies the PDP's document.
     */
    authorizationServers?: string[];
    /** `scopes_supported` of the served metadata document. */
    scopesSupported?: string[];
    /**
     * Names an anonymous client for the PDP's rate limits and quotas (the
     * decision request's rate_key; a caller with a token is counted by its
     * token). Default: the request's remote address. Behind a proxy return
     * the client address the proxy forwards (only from a proxy you trust),
     * or '' to let anonymous callers share one budget.
     */
    rateKey?: (req: IncomingMessage) => string;
    /** Called with every decision (for logs: `decision_id`, `outcome`, `reason`). */
    onDecision?: (d: Decision, req: IncomingMessage) => void;
    /** Called when a request is refused without a decision or an answer of the server is not relayed. */
    onError?: (err: Error, req: IncomingMessage) => void;
}

/** Express-compatible Node middleware. */
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** The middleware returned by {@link pdpAuth}. */
export interface PdpAuthMiddleware extends Middleware {
    /** Serves the RFC 9728 protected resource metadata document at {@link metadataPath}. */
    metadata: (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;
    /** The path of the metadata document: `/.well-known/oauth-protected-resource` + the resource's path. */
    metadataPath: string;
}

/** Bound of the messages of one JSON-RPC batch: each is a decision (as the Go middleware's pep.MaxBatch). */
const MAX_BATCH = 100;

const DEFAULTS = { timeoutMs: 2000, maxBodyBytes: 4 << 20, maxResponseBytes: 16 << 20, maxSessions: 100_000 };

/** CORS: what a browser-based client may send and read. */
const CORS_ALLOW_HEADERS = 'Authorization, DPoP, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name';
const CORS_EXPOSE_HEADERS = 'Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, DPoP-Nonce, Retry-After';

const callers = new WeakMap<IncomingMessage, Caller | null>();

/**
 * The verified caller of an allowed request: undefined for an anonymous
 * caller and for requests pdpAuth did not allow.
 */
export function getCaller(req: IncomingMessage): Caller | undefined {
    return callers.get(req) ?? undefined;
}

/**
 * The verified caller from a tool handler's authInfo (`extra.authInfo` in
 * SDK 1.x, `ctx.http?.authInfo` in 2.x); undefined for an anonymous caller.
 */
export function callerFromAuthInfo(authInfo: { extra?: Record<string, unknown> } | undefined): Caller | undefined {
    const c = authInfo?.extra?.caller;
    return typeof c === 'object' && c !== null ? (c as Caller) : undefined;
}

/** The token of an Authorization header (`Bearer <token>`, or `DPoP <token>` for a token bound to a DPoP key), or "". */
function bearerToken(h: string | undefined): string {
    const m = /^\s*(?:bearer|dpop)\s+(\S+)\s*$/i.exec(h ?? '');
    return m?.[1] ?? '';
}

/** The values of every header line of the request named name (lower case), in order. */
function headerLines(req: IncomingMessage, name: string): string[] {
    const values: string[] = [];
    const raw = req.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
        if (raw[i]!.toLowerCase() === name) values.push(raw[i + 1]!);
    }
    return values;
}

/**
 * The request's Authorization as the PDP is to see it. Node keeps only the
 * first of several Authorization headers in `req.headers`; they are read
 * from `rawHeaders` and joined with ", " (RFC 9110 §5.3), never one of them
 * picked, so that the PDP refuses the request (a comma is in no token), as
 * the Go middleware does.
 */
function authorizationOf(req: IncomingMessage): string | undefined {
    const values = headerLines(req, 'authorization');
    if (values.length === 0) return req.headers.authorization;
    return values.length === 1 ? values[0] : values.join(', ');
}

/**
 * What a request presents to the PDP: its Authorization and, with a DPoP
 * proof, the proof and the HTTP request it signs. Read once per HTTP
 * request: every decision made for it (a batch's messages, a list's
 * response phase, the filter of a GET stream's replays) sends the same.
 */
interface Credentials {
    authorization: string | undefined;
    dpop?: string;
    http?: HTTPRequest;
    rateKey?: string;
}

/** Adds c to a decision request. */
function withCredentials(body: DecideRequest, c: Credentials): DecideRequest {
    if (c.authorization) body.authorization = c.authorization;
    if (c.dpop) body.dpop = c.dpop;
    if (c.http) body.http = c.http;
    if (c.rateKey) body.rate_key = c.rateKey;
    return body;
}

/**
 * The path of the request as the client sent it, without the query (the
 * part of the URL a DPoP proof's htu names after scheme://host). Under
 * express, originalUrl: a router that mounts the middleware strips its
 * prefix from req.url, not from what the client addressed.
 */
function requestPath(req: IncomingMessage): string {
    const target = (req as { originalUrl?: unknown }).originalUrl;
    let t = typeof target === 'string' && target ? target : (req.url ?? '/');
    if (!t.startsWith('/')) {
        // The absolute form (RFC 9112 §3.2.2): its path.
        try {
            t = new URL(t).pathname;
        } catch {
            // not a URL: as it is
        }
    }
    const q = t.indexOf('?');
    return q < 0 ? t : t.slice(0, q);
}

function authInfoOf(caller: Caller, authorization: string | undefined, resource: URL | undefined, decisionId: string): AuthInfo {
    const info: AuthInfo = {
        token: bearerToken(authorization),
        clientId: caller.client_id ?? '',
        scopes: [...caller.scopes],
        extra: { caller, decisionId }
    };
    if (resource) info.resource = resource;
    return info;
}

class BodyError extends Error {
    constructor(
        readonly status: number,
        readonly code: number,
        message: string
    ) {
        super(message);
    }
}

/** A request body: its value and, unless a body parser that ran before had parsed it, its JSON text. */
interface Body {
    value: unknown;
    text: string | undefined;
}

/** Reads the request body, bounded; uses what a body parser that ran before left in req.body. */
async function readBody(req: IncomingMessage, limit: number): Promise<Body> {
    const pre = (req as { body?: unknown }).body;
    if (pre !== undefined && (req.readableEnded || (req as { _body?: boolean })._body)) {
        if (Buffer.isBuffer(pre) || typeof pre === 'string') return parseJSON(pre.toString());
        return { value: pre, text: undefined };
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) throw new BodyError(413, CODE_INVALID_REQUEST, `the request body exceeds ${limit} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    await new Promise<void>((resolve, reject) => {
        const onData = (c: Buffer) => {
            size += c.length;
            if (size > limit) {
                cleanup();
                req.resume(); // drain, answer 413
                reject(new BodyError(413, CODE_INVALID_REQUEST, `the request body exceeds ${limit} bytes`));
                return;
            }
            chunks.push(c);
        };
        const onEnd = () => {
            cleanup();
            resolve();
        };
        const onError = () => {
            cleanup();
            reject(new BodyError(400, CODE_PARSE_ERROR, 'the request body could not be read'));
        };
        const cleanup = () => {
            req.off('data', onData);
            req.off('end', onEnd);
            req.off('error', onError);
        };
        req.on('data', onData);
        req.on('end', onEnd);
        req.on('error', onError);
    });
    return parseJSON(Buffer.concat(chunks).toString('utf8'));
}

function parseJSON(text: string): Body {
    try {
        return { value: JSON.parse(text), text };
    } catch {
        throw new BodyError(400, CODE_PARSE_ERROR, 'the body is not valid JSON');
    }
}

/**
 * Creates the middleware that protects one MCP endpoint (one resource).
 * Create it once: it remembers which caller owns each MCP session.
 *
 * ```ts
 * const auth = pdpAuth({ pdpUrl: 'http://127.0.0.1:8181', resource: 'https://mcp.example.com/mcp' });
 * app.get(auth.metadataPath, auth.metadata);
 * app.all('/mcp', auth, (req, res) => transport.handleRequest(req, res));
 * ```
 */
export function pdpAuth(options: PdpAuthOptions): PdpAuthMiddleware {
    if (!options || typeof options.pdpUrl !== 'string' || !options.pdpUrl) throw new TypeError('pdpAuth: pdpUrl is required');
    if (typeof options.resource !== 'string' || !options.resource) throw new TypeError('pdpAuth: resource is required');
    const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Required<Pick<PdpAuthOptions, keyof typeof DEFAULTS>> & PdpAuthOptions;
    const pdp = new PdpClient({ pdpUrl: o.pdpUrl, apiKey: o.apiKey, timeoutMs: o.timeoutMs, agent: o.agent, maxAnswerBytes: Math.max(o.maxResponseBytes * 2, 1 << 20) });
    const sessions = new Sessions(o.maxSessions);
    let resourceURL: URL | undefined;
    try {
        resourceURL = new URL(o.resource);
    } catch {
        resourceURL = undefined;
    }
    const origins = new Set<string>();
    /** The resource's scheme://host, of the URLs DPoP proofs sign. */
    let base = '';
    if (resourceURL && resourceURL.host) {
        base = `${resourceURL.protocol}//${resourceURL.host}`;
        origins.add(resourceURL.origin);
    }
    for (const origin of o.allowedOrigins ?? []) origins.add(origin.replace(/\/$/, ''));
    /** Refuses a browser request from an origin that is not allowed; marks an allowed one's answer readable by it. */
    const originAllowed = (req: IncomingMessage, res: ServerResponse): boolean => {
        const origin = req.headers.origin;
        if (origin === undefined || origin === '') return true;
        if (!origins.has(origin) && !origins.has('*')) {
            report(new Error(`a request from origin ${origin}, which is not allowed, was refused`), req);
            writeRPCError(res, 403, undefined, CODE_INVALID_REQUEST, `origin ${origin} is not allowed to call this MCP server`);
            return false;
        }
        res.setHeader('Access-Control-Allow-Origin', origin);
        res.appendHeader('Vary', 'Origin');
        res.setHeader('Access-Control-Expose-Headers', CORS_EXPOSE_HEADERS);
        return true;
    };
    /**
     * The request's credentials. A DPoP proof comes with the request's
     * method, its URL as the client addressed it (the resource's scheme and
     * host, the request's path: a proxy in front changes neither for the
     * client) and a random id shared by the decisions of this request, which
     * may all present the one proof. Several DPoP headers are joined (and so
     * refused by the PDP), as the Go middleware does.
     */
    const credentials = (req: IncomingMessage): Credentials => {
        const c: Credentials = { authorization: authorizationOf(req) };
        if (!c.authorization) {
            const k = o.rateKey ? o.rateKey(req) : (req.socket?.remoteAddress ?? '');
            if (k) c.rateKey = k.slice(0, 256);
        }
        let dpop = headerLines(req, 'dpop');
        if (dpop.length === 0 && typeof req.headers.dpop === 'string') dpop = [req.headers.dpop]; // a request without rawHeaders
        if (dpop.length > 0) {
            c.dpop = dpop.join(', ');
            c.http = { method: req.method ?? '', url: base + requestPath(req), id: randomBytes(16).toString('base64url') };
        }
        return c;
    };
    const report = (err: Error, req: IncomingMessage) => {
        try {
            o.onError?.(err, req);
        } catch {
            // a logging hook must not break the request
        }
    };
    const decide = async (body: DecideRequest, req: IncomingMessage): Promise<Decision> => {
        const d = await pdp.decide(body);
        try {
            o.onDecision?.(d, req);
        } catch {
            // a logging hook must not break the request
        }
        return d;
    };

    /**
     * The answer to a message the PDP could not decide: 400 with the reason
     * for a malformed message (the client's fault), 429 when the PDP
     * rate-limits, 503 for everything else (fail closed, without the PDP's
     * reason). As the Go middleware: no Retry-After (the PDP's is about the
     * PEP's own budget, not the client's).
     */
    const undecidedAnswer = (req: IncomingMessage, err: unknown): [number, number, string] => {
        const e = err instanceof Error ? err : new Error(String(err));
        report(e, req);
        if (e instanceof DecideError && e.status === 400 && e.code === 'invalid_message') {
            // The client's message is malformed (the PDP says what is wrong).
            return [400, CODE_INVALID_REQUEST, e.message.replace(/^.*?invalid_message: /, '')];
        }
        if (e instanceof DecideError && e.status === 429) return [429, CODE_INTERNAL_ERROR, 'too many requests; retry later'];
        return [503, CODE_INTERNAL_ERROR, 'authorization unavailable'];
    };

    /** Answers a request the PDP did not decide: fail closed. */
    const undecided = (res: ServerResponse, req: IncomingMessage, id: RawId | undefined, err: unknown) => {
        const [status, code, why] = undecidedAnswer(req, err);
        writeRPCError(res, status, id, code, why);
    };

    /** Refuses a request on another caller's session (the PDP refuses the rest). */
    const sessionAllowed = (req: IncomingMessage, res: ServerResponse, id: RawId | undefined, d: Decision): boolean => {
        const sid = sessionId(req);
        if (!sid || sessions.check(sid, ownerOf(d.caller))) return true;
        report(new Error(`a request on another caller's session was refused (decision ${d.decision_id})`), req);
        writeRPCError(res, 403, id, CODE_FORBIDDEN, 'this session belongs to another caller');
        return false;
    };

    const allow = (req: IncomingMessage, res: ServerResponse, d: Decision, creds: Credentials) => {
        // The nonce to use next (RFC 9449 §8.2), before this one expires.
        if (d.dpop_nonce) res.setHeader('DPoP-Nonce', d.dpop_nonce);
        const r = req as IncomingMessage & { auth?: AuthInfo };
        if (d.caller) {
            r.auth = authInfoOf(d.caller, creds.authorization, resourceURL, d.decision_id);
            callers.set(req, d.caller);
        } else {
            r.auth = undefined; // anonymous, whatever ran before
            callers.set(req, null);
        }
    };

    /**
     * The JSON-RPC response `response` to the list request `list` with its
     * result filtered for the caller of `creds` (the response phase
     * of the list decision). An error response passes; anything that is not
     * a response to list is refused (FilterError), so that nothing
     * unfiltered is relayed.
     */
    const filterList = async (list: Message, m: Message, creds: Credentials, req: IncomingMessage): Promise<string> => {
        if (m.method !== undefined || m.rawId === undefined || !(m.hasResult || m.hasError)) {
            throw new FilterError(`the MCP server's ${list.method} answer is not a JSON-RPC response; it was not relayed`);
        }
        // The id as written: an answer with the id 1 does not answer the list 1.0.
        if (m.rawId !== list.rawId) throw new FilterError(`the MCP server answered ${list.method} with another request's id; it was not relayed`);
        if (m.hasError) {
            if (m.hasResult) throw new FilterError(`the MCP server answered ${list.method} with both a result and an error; it was not relayed`);
            return m.text ?? rpcResponse(list.rawId, 'error', m.raw.error);
        }
        const result = m.raw.result;
        if (typeof result !== 'object' || result === null || Array.isArray(result)) {
            throw new FilterError(`the MCP server's ${list.method} result is not an object; it was not relayed`);
        }
        const fb = withCredentials({ resource: o.resource, message: list.raw, result }, creds);
        let fd: Decision;
        try {
            fd = await decide(fb, req);
        } catch (err) {
            report(err as Error, req);
            throw new FilterError(`the MCP server's ${list.method} answer could not be filtered; it was not relayed`);
        }
        if (!fd.allow) {
            // Refused at the response phase (the token expired in between): in band.
            return rpcResponse(list.rawId, 'error', fd.jsonrpc_error ?? { code: CODE_INTERNAL_ERROR, message: 'the list was refused' });
        }
        if (typeof fd.result !== 'object' || fd.result === null || Array.isArray(fd.result)) {
            throw new FilterError(`the PDP returned no filtered ${list.method} result; it was not relayed`);
        }
        // A filtered list varies per caller: no cache may share it (MCP 2026-07-28).
        const { cacheScope: _ignored, ...rest } = fd.result as Record<string, unknown>;
        return rpcResponse(list.rawId, 'result', { cacheScope: 'private', ...rest });
    };

    /** The decision request for msg: the message itself, or, for a client's answer to a server request, the caller only. */
    const decideRequest = (req: IncomingMessage, msg: Message, creds: Credentials): DecideRequest => {
        const owner = sessions.ownerCaller(sessionId(req));
        const body = withCredentials({ resource: o.resource }, creds);
        if (isRequest(msg) || isNotification(msg)) body.message = msg.raw;
        else body.http_method = 'POST';
        if (owner) body.session_owner = owner;
        return body;
    };

    /**
     * Refuses a message whose Mcp-Method or Mcp-Name header contradicts its
     * body. The PDP is asked with the headers, so that it refuses and audits
     * the mismatch; its refusal is the answer. Should it not refuse (it
     * failed, or it does not compare the headers), the mismatch is refused
     * here all the same.
     */
    const refuseMismatch = async (req: IncomingMessage, res: ServerResponse, msg: Message, why: string) => {
        const body = decideRequest(req, msg, credentials(req));
        const method = req.headersDistinct['mcp-method'];
        const name = req.headersDistinct['mcp-name'];
        if (method) body.mcp_method = method.join(', ');
        if (name) body.mcp_name = name.join(', ');
        try {
            const d = await decide(body, req);
            if (!d.allow) {
                writeDenial(res, msg.rawId, d);
                return;
            }
        } catch (err) {
            report(err as Error, req);
        }
        writeRPCError(res, 400, msg.rawId, CODE_HEADER_MISMATCH, why);
    };

    /** Binds the session the server answers on to the caller of d. */
    const onHead = (req: IncomingMessage, d: Decision) => {
        const owned = ownerOf(d.caller);
        return (resp: ServerResponse, status: number) => {
            if (status >= 300) return;
            const sid = resp.getHeader('mcp-session-id');
            if (typeof sid === 'string' && sid) sessions.bind(sid, owned);
            else if (req.method !== 'DELETE' && sessionId(req)) sessions.bind(sessionId(req) as string, owned);
        };
    };

    const post = async (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
        let body: Body;
        try {
            body = await readBody(req, o.maxBodyBytes);
        } catch (err) {
            if (err instanceof BodyError) {
                writeRPCError(res, err.status, undefined, err.code, err.message, err.status === 413 ? { Connection: 'close' } : {});
                return;
            }
            throw err;
        }
        if (Array.isArray(body.value)) return postBatch(req, res, next, body.value, body.text);
        let msg: Message;
        try {
            msg = readMessage(body.value, body.text);
        } catch (err) {
            writeRPCError(res, 400, undefined, err instanceof MessageError ? err.code : CODE_INVALID_REQUEST, (err as Error).message);
            return;
        }
        const why = headerMismatch(req.headersDistinct as Record<string, string[] | undefined>, msg);
        if (why) {
            await refuseMismatch(req, res, msg, why);
            return;
        }
        // The transport parses the text that was decided, as received
        // (without it, the decided value encoded now, before anything can change it).
        const text = msg.text ?? JSON.stringify(msg.raw);
        const creds = credentials(req);
        let d: Decision;
        try {
            d = await decide(decideRequest(req, msg, creds), req);
        } catch (err) {
            undecided(res, req, msg.rawId, err);
            return;
        }
        if (!d.allow) {
            writeDenial(res, msg.rawId, d);
            return;
        }
        if (!sessionAllowed(req, res, msg.rawId, d)) return;
        allow(req, res, d, creds);
        const r = req as IncomingMessage & { body?: unknown; rawBody?: Buffer };
        r.body = msg.raw;
        r.rawBody = Buffer.from(text, 'utf8'); // read by the SDKs' Node adapters (@hono/node-server)
        const list = isRequest(msg) && LIST_METHODS.has(msg.method ?? '');
        const sid = sessionId(req);
        if (list && sid) sessions.rememberList(sid, msg); // a GET stream may replay its answer
        intercept(res, {
            msg,
            list,
            maxResponseBytes: o.maxResponseBytes,
            onHead: onHead(req, d),
            onRefused: why => report(new Error(why), req),
            filter: (l, response) => filterList(l, response, creds, req)
        });
        next();
    };

    /**
     * A JSON-RPC batch (MCP 2025-03-26): every message decided as if it came
     * alone, the refused requests answered by the middleware, the allowed
     * messages handed to the transport together as one batch, its answers
     * merged with the middleware's (intercept). The batch as a whole is
     * refused when it is empty, too long, has two requests with one id, or
     * comes with Mcp-Method/Mcp-Name headers (they describe one message).
     */
    const postBatch = async (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void, values: unknown[], text: string | undefined) => {
        if (values.length === 0) {
            writeRPCError(res, 400, undefined, CODE_INVALID_REQUEST, 'an empty batch');
            return;
        }
        if (values.length > MAX_BATCH) {
            writeRPCError(res, 413, undefined, CODE_INVALID_REQUEST, `a batch of ${values.length} messages; at most ${MAX_BATCH} are taken`);
            return;
        }
        if (req.headers['mcp-method'] !== undefined || req.headers['mcp-name'] !== undefined) {
            writeRPCError(res, 400, undefined, CODE_HEADER_MISMATCH, 'the Mcp-Method and Mcp-Name headers describe one message, not a batch');
            return;
        }
        // Each message's text as received (its id as written; handed on as it came).
        let texts = text !== undefined ? arrayElements(text) : [];
        if (texts.length !== values.length) texts = values.map(v => JSON.stringify(v));
        const answers: string[] = [];
        const forward: Message[] = [];
        const ids: RawId[] = [];
        let allowed: Decision | undefined;
        let challenge: Decision | undefined;
        const creds = credentials(req); // one HTTP request: its decisions (and the lists' filters) share its DPoP proof
        for (const [i, v] of values.entries()) {
            let msg: Message;
            try {
                if (Array.isArray(v)) throw new MessageError(CODE_INVALID_REQUEST, 'a batch inside a batch');
                msg = readMessage(v, texts[i]);
            } catch (err) {
                answers.push(rpcError(undefined, err instanceof MessageError ? err.code : CODE_INVALID_REQUEST, (err as Error).message));
                continue;
            }
            if (isRequest(msg)) {
                const id = msg.rawId as RawId;
                if (ids.includes(id)) {
                    writeRPCError(res, 400, undefined, CODE_INVALID_REQUEST, `two requests of the batch have the id ${id}`);
                    return;
                }
                ids.push(id);
            }
            let d: Decision;
            try {
                d = await decide(decideRequest(req, msg, creds), req);
            } catch (err) {
                if (isRequest(msg)) {
                    const [, code, why] = undecidedAnswer(req, err);
                    answers.push(rpcError(msg.rawId, code, why));
                }
                continue;
            }
            if (!d.allow) {
                if (isRequest(msg)) answers.push(denial(msg.rawId, d)[1]);
                if (!challenge && d.http_status !== 200) challenge = d;
                continue;
            }
            forward.push(msg);
            allowed ??= d;
        }
        const due: RawId[] = [];
        const lists = new Map<number, Message>();
        for (const f of forward) {
            if (!isRequest(f)) continue;
            if (LIST_METHODS.has(f.method ?? '')) lists.set(due.length, f);
            due.push(f.rawId as RawId);
        }
        const b: Batch = { answers, forwarded: forward.length, due: new Owed(due), lists, challenge };
        if (!allowed) {
            const a = batchAnswer(b, 200);
            res.writeHead(a.status, a.body === undefined ? a.headers : { ...a.headers, 'Content-Length': Buffer.byteLength(a.body) });
            res.end(a.body);
            return;
        }
        if (!sessionAllowed(req, res, undefined, allowed)) return;
        allow(req, res, allowed, creds);
        const r = req as IncomingMessage & { body?: unknown; rawBody?: Buffer };
        r.body = forward.map(f => f.raw);
        r.rawBody = Buffer.from(`[${forward.map(f => f.text).join(',')}]`, 'utf8'); // the allowed messages as received
        intercept(res, {
            list: false,
            batch: b,
            maxResponseBytes: o.maxResponseBytes,
            onHead: onHead(req, allowed),
            onRefused: why => report(new Error(why), req),
            filter: (l, response) => filterList(l, response, creds, req)
        });
        next();
    };

    /** GET (the server's SSE stream) and DELETE (end of session): the caller is authenticated. */
    const transport = async (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
        const creds = credentials(req);
        const body = withCredentials({ resource: o.resource, http_method: req.method as 'GET' | 'DELETE' }, creds);
        const owner = sessions.ownerCaller(sessionId(req));
        if (owner) body.session_owner = owner;
        let d: Decision;
        try {
            d = await decide(body, req);
        } catch (err) {
            undecided(res, req, undefined, err);
            return;
        }
        if (!d.allow) {
            writeDenial(res, undefined, d);
            return;
        }
        if (!sessionAllowed(req, res, undefined, d)) return;
        allow(req, res, d, creds);
        const sid = sessionId(req);
        if (req.method === 'DELETE' && sid) {
            res.once('finish', () => {
                if (res.statusCode >= 200 && res.statusCode < 300) sessions.forget(sid);
            });
        }
        if (req.method === 'GET') {
            // The server's stream: what it replays of earlier answers (after
            // Last-Event-ID) is held to the session's list requests.
            intercept(res, {
                list: false,
                replay: id => (sid ? sessions.listRequest(sid, id) : undefined),
                maxResponseBytes: o.maxResponseBytes,
                onHead: onHead(req, d),
                onRefused: why => report(new Error(why), req),
                filter: (l, response) => filterList(l, response, creds, req)
            });
        }
        next();
    };

    const mPath = metadataPath(o.resource);
    const metadata = metadataHandler({
        path: mPath,
        resource: o.resource,
        authorizationServers: o.authorizationServers,
        scopesSupported: o.scopesSupported,
        pdp,
        timeoutMs: o.timeoutMs
    });

    const middleware = ((req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => {
        callers.delete(req);
        if (!originAllowed(req, res)) return;
        let work: Promise<void>;
        switch (req.method) {
            case 'POST':
                work = post(req, res, next);
                break;
            case 'GET':
            case 'DELETE':
                work = transport(req, res, next);
                break;
            case 'OPTIONS':
                if (!req.headers.origin) {
                    res.writeHead(204, { Allow: 'GET, POST, DELETE, OPTIONS' }).end();
                    return;
                }
                res.writeHead(204, {
                    'Access-Control-Allow-Methods': 'GET, POST, DELETE',
                    'Access-Control-Allow-Headers': CORS_ALLOW_HEADERS,
                    'Access-Control-Max-Age': '600'
                }).end();
                return;
            default:
                res.setHeader('Allow', 'GET, POST, DELETE, OPTIONS');
                writeRPCError(res, 405, undefined, CODE_INVALID_REQUEST, `method ${req.method} is not allowed on an MCP endpoint`);
                return;
        }
        work.catch(err => {
            report(err instanceof Error ? err : new Error(String(err)), req);
            if (!res.headersSent) writeRPCError(res, 500, undefined, CODE_INTERNAL_ERROR, 'internal error');
            else res.destroy();
        });
    }) as PdpAuthMiddleware;
    middleware.metadata = metadata;
    middleware.metadataPath = mPath;
    return middleware;
}

function sessionId(req: IncomingMessage): string | undefined {
    const v = req.headers['mcp-session-id'];
    return typeof v === 'string' && v ? v : undefined;
}
