// What the middleware reads of a JSON-RPC message, and the answers it writes.
import type { ServerResponse } from 'node:http';
import { memberText } from './rawjson.js';
import type { Decision, JSONRPCErrorObject } from './wire.js';

/** JSON-RPC error codes the middleware answers with. */
export const CODE_PARSE_ERROR = -32700;
export const CODE_INVALID_REQUEST = -32600;
export const CODE_INTERNAL_ERROR = -32603;
/** The PDP's code for authorization refusals. */
export const CODE_FORBIDDEN = -32001;
/** HTTP headers that contradict the body (MCP 2026-07-28, HeaderMismatch). */
export const CODE_HEADER_MISMATCH = -32020;

export type Id = string | number;

/**
 * A JSON-RPC id as JSON text, exactly as the client (or the server) wrote
 * it: the middleware answers with it and matches answers by it, as the Go
 * middleware does (an id 1.0 is answered 1.0, and an answer with the id 1
 * does not answer it).
 */
export type RawId = string;

/** A JSON-RPC message as the middleware sees it. */
export interface Message {
    raw: Record<string, unknown>;
    /** The message's JSON text as received, when it is known (not for a body parsed before pdpAuth). */
    text: string | undefined;
    id: Id | undefined;
    /** The id as written (see RawId); undefined when absent or null. */
    rawId: RawId | undefined;
    method: string | undefined;
    /** params.name (tools/call, prompts/get) or params.uri (resources/read). */
    name: string | undefined;
    hasResult: boolean;
    hasError: boolean;
}

export class MessageError extends Error {
    readonly code: number;
    constructor(code: number, message: string) {
        super(message);
        this.code = code;
    }
}

export const isRequest = (m: Message) => m.method !== undefined && m.id !== undefined;
export const isNotification = (m: Message) => m.method !== undefined && m.id === undefined;
export const isResponse = (m: Message) => m.method === undefined && m.id !== undefined && (m.hasResult || m.hasError);

const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);

/**
 * Checks a parsed value as one JSON-RPC message (not a batch). text is the
 * JSON text v was parsed from, when known: the message's id is read from it
 * as written (without it, the id is v's id encoded again).
 */
export function readMessage(v: unknown, text?: string): Message {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        throw new MessageError(CODE_INVALID_REQUEST, 'the body is not a JSON-RPC message object');
    }
    const o = v as Record<string, unknown>;
    if (o.jsonrpc !== '2.0') throw new MessageError(CODE_INVALID_REQUEST, 'jsonrpc must be "2.0"');
    let method: string | undefined;
    if (own(o, 'method') && o.method !== null) {
        if (typeof o.method !== 'string') throw new MessageError(CODE_INVALID_REQUEST, 'method must be a string');
        if (o.method === '') throw new MessageError(CODE_INVALID_REQUEST, 'method must not be empty');
        method = o.method;
    }
    let id: Id | undefined;
    if (own(o, 'id') && o.id !== null) {
        if (typeof o.id !== 'string' && typeof o.id !== 'number') throw new MessageError(CODE_INVALID_REQUEST, 'the id must be a string or a number');
        id = o.id;
    }
    const params = o.params;
    let name: string | undefined;
    if (typeof params === 'object' && params !== null && !Array.isArray(params)) {
        const p = params as Record<string, unknown>;
        const n = method === 'resources/read' ? p.uri : p.name;
        if (typeof n === 'string') name = n;
    }
    const m: Message = {
        raw: o,
        text,
        id,
        rawId: id === undefined ? undefined : ((text === undefined ? undefined : memberText(text, 'id')) ?? JSON.stringify(id)),
        method,
        name,
        hasResult: own(o, 'result') && o.result !== null && o.result !== undefined,
        hasError: own(o, 'error') && o.error !== null && o.error !== undefined
    };
    if (m.method === undefined && !isResponse(m)) {
        throw new MessageError(CODE_INVALID_REQUEST, 'a message needs a method, or an id with a result or an error');
    }
    return m;
}

export const LIST_METHODS = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);

/** A JSON-RPC response for the request id (as written; undefined: null) with member (`result` or `error`) set to value. */
export function rpcResponse(id: RawId | undefined, member: 'result' | 'error', value: unknown): string {
    return `{"jsonrpc":"2.0","id":${id ?? 'null'},"${member}":${JSON.stringify(value)}}`;
}

/** A JSON-RPC error response for the request id (as written; undefined: null). */
export function rpcError(id: RawId | undefined, code: number, message: string): string {
    return rpcResponse(id, 'error', { code, message });
}

/** Answers with status and a JSON-RPC error body (clients drop their session on an empty error body). */
export function writeRPCError(res: ServerResponse, status: number, id: RawId | undefined, code: number, message: string, headers: Record<string, string> = {}): void {
    const body = rpcError(id, code, message);
    res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
}

/**
 * The HTTP status and the JSON-RPC response that answer the request id
 * refused by d: exactly what the decision says (docs/api.md, "What the PEP must do").
 */
export function denial(id: RawId | undefined, d: Decision): [number, string] {
    const status = d.http_status || 403;
    if (status === 200 && d.tool_result) return [status, rpcResponse(id, 'result', d.tool_result)];
    if (d.jsonrpc_error) return [status, rpcResponse(id, 'error', d.jsonrpc_error)];
    let e: JSONRPCErrorObject = { code: CODE_FORBIDDEN, message: 'forbidden: the token lacks a scope this operation needs (see WWW-Authenticate)' };
    if (status === 401) e = { code: CODE_FORBIDDEN, message: 'authorization required (see WWW-Authenticate)' };
    else if (status === 503) e = { code: CODE_INTERNAL_ERROR, message: 'authorization unavailable; retry later' };
    return [status, rpcResponse(id, 'error', e)];
}

/** Answers a refused message as the decision says. */
export function writeDenial(res: ServerResponse, id: RawId | undefined, d: Decision): void {
    const [status, body] = denial(id, d);
    const headers: Record<string, string | number> = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    if (d.www_authenticate) headers['WWW-Authenticate'] = d.www_authenticate;
    if (d.dpop_nonce) headers['DPoP-Nonce'] = d.dpop_nonce; // RFC 9449 §8
    if (d.retry_after) headers['Retry-After'] = String(d.retry_after); // RFC 9110 §10.2.3
    res.writeHead(status, headers);
    res.end(body);
}

/** Decodes a header value that may be Base64-encoded as =?base64?...?=. */
function decodeHeaderValue(v: string): string | undefined {
    if (v.startsWith('=?base64?') && v.endsWith('?=') && v.length >= 11) {
        const enc = v.slice('=?base64?'.length, -2);
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(enc) || enc.length % 4 !== 0) return undefined;
        return Buffer.from(enc, 'base64').toString('utf8');
    }
    return v;
}

/**
 * Checks the Mcp-Method and Mcp-Name headers against the body: the decision
 * is taken on the body, so a header that says otherwise is refused. Returns
 * what is wrong, or "".
 */
export function headerMismatch(headers: Record<string, string[] | undefined>, m: Message): string {
    if (m.method === undefined) return '';
    const method = headers['mcp-method'];
    if (method && method.length > 0) {
        if (method.length > 1 || decodeHeaderValue(method[0] ?? '') !== m.method) {
            return `the Mcp-Method header does not match the method of the body (${JSON.stringify(m.method)})`;
        }
    }
    if (m.method === 'tools/call' || m.method === 'prompts/get' || m.method === 'resources/read') {
        const name = headers['mcp-name'];
        if (name && name.length > 0) {
            if (name.length > 1 || decodeHeaderValue(name[0] ?? '') !== (m.name ?? '')) {
                return "the Mcp-Name header does not match the name of the body's target";
            }
        }
    }
    return '';
}
