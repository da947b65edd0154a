// Interception of what the MCP SDK's transport writes to its response, for
// an allowed POST: the answer to a list request is filtered through the PDP
// (its response phase) before anything of it reaches the client, as JSON or
// SSE; the answer to any other request is watched so that a stream that ends
// before answering gets a JSON-RPC error event, and a JSON answer over the
// bound becomes a JSON-RPC error rather than a truncated body. An answer
// that cannot be filtered (too large, malformed, another id) is never
// relayed unfiltered.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { CODE_INTERNAL_ERROR, type Id, type Message, readMessage, rpcError } from './jsonrpc.js';
import { EventReader, EventTooLargeError, messageEvent, type SseEvent, withData } from './sse.js';

/** An answer that must not be relayed; its message says why (it goes to the client). */
export class FilterError extends Error {}

export interface InterceptOptions {
    /** The allowed request whose answer this is. */
    msg: Message;
    /** A list request: its answer is filtered with filter. */
    list: boolean;
    /** Filters a parsed JSON-RPC response to msg; returns the JSON to relay. Throws FilterError. */
    filter: (response: Record<string, unknown>) => Promise<string>;
    /** Bound of an answer read whole (JSON) and of one SSE event. */
    maxResponseBytes: number;
    /** Called with the response headers when they are known (session binding). */
    onHead: (res: ServerResponse) => void;
    /** Reports a refused answer (for logs). */
    onRefused: (why: string) => void;
}

type Mode = 'init' | 'pass' | 'json' | 'failure' | 'sse' | 'done';

/** Bound of a failure answer (HTTP 3xx-5xx) read to see whether it is a JSON-RPC error. */
const MAX_FAILURE_BYTES = 64 << 10;

const toBuffer = (chunk: unknown, encoding?: BufferEncoding): Buffer =>
    Buffer.isBuffer(chunk) ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.from(String(chunk), encoding ?? 'utf8');

const sameId = (a: unknown, b: Id | undefined) => b !== undefined && typeof a === typeof b && a === b;

/** Installs the interception on res. */
export function intercept(res: ServerResponse, o: InterceptOptions): void {
    const orig = {
        writeHead: res.writeHead.bind(res) as (status: number, headers?: OutgoingHttpHeaders) => ServerResponse,
        write: res.write.bind(res) as (chunk: Buffer) => boolean,
        end: res.end.bind(res) as (chunk?: Buffer) => ServerResponse,
        flushHeaders: res.flushHeaders.bind(res)
    };
    let mode: Mode = 'init';
    let status = 200;
    let chunks: Buffer[] = [];
    let size = 0;
    let overflow = false;
    // SSE state
    let reader: EventReader | undefined;
    let answered = false;
    let queue: Promise<void> = Promise.resolve();

    const applyHeaders = (h: unknown) => {
        if (!h) return;
        if (Array.isArray(h)) {
            if (h.length && Array.isArray(h[0])) for (const [k, v] of h as [string, string][]) res.setHeader(k, v);
            else for (let i = 0; i + 1 < h.length; i += 2) res.setHeader(String(h[i]), h[i + 1] as string);
            return;
        }
        for (const [k, v] of Object.entries(h as OutgoingHttpHeaders)) if (v !== undefined) res.setHeader(k, v);
    };

    const isSSE = () => String(res.getHeader('content-type') ?? '').trim().toLowerCase().startsWith('text/event-stream');

    const head = (st: number) => {
        status = st;
        o.onHead(res);
        if (st >= 300) {
            mode = 'failure';
        } else if (isSSE()) {
            mode = 'sse';
            reader = new EventReader(o.maxResponseBytes);
            res.removeHeader('content-length');
            orig.writeHead(st);
            orig.flushHeaders();
        } else if (o.msg.id !== undefined && o.msg.method !== undefined) {
            mode = 'json';
        } else {
            mode = 'pass';
            orig.writeHead(st);
        }
    };

    /** Answers in place of the server, keeping its session headers. */
    const replace = (st: number, body: string) => {
        mode = 'done';
        res.removeHeader('content-length');
        res.removeHeader('content-encoding');
        res.removeHeader('transfer-encoding');
        res.setHeader('Content-Type', 'application/json');
        res.setHeader('Content-Length', Buffer.byteLength(body));
        orig.writeHead(st);
        orig.end(Buffer.from(body, 'utf8'));
    };

    const refuseJSON = (st: number, why: string) => {
        o.onRefused(why);
        replace(st, rpcError(o.msg.id, CODE_INTERNAL_ERROR, why));
    };

    /** Ends an SSE stream with an error event for the request, when it is still owed. */
    const failStream = (why: string) => {
        if (mode === 'done') return;
        o.onRefused(why);
        mode = 'done';
        if (!answered && o.msg.id !== undefined && o.msg.method !== undefined) orig.write(messageEvent(rpcError(o.msg.id, CODE_INTERNAL_ERROR, why)));
        orig.end();
    };

    const onEvent = async (ev: SseEvent, terminated: boolean): Promise<void> => {
        const raw = terminated ? ev.raw : Buffer.concat([ev.raw, Buffer.from('\n\n')]);
        if (!o.list) {
            if (ev.data !== undefined && !answered) markAnswered(ev.data);
            orig.write(raw);
            return;
        }
        if (ev.bareCR) throw new FilterError('the MCP server framed its stream with bare CR line endings, which pdpAuth does not read; the stream was cut');
        if (ev.data === undefined || ev.data.trim() === '') {
            orig.write(raw); // a priming event (an id to resume from, no message)
            return;
        }
        let parsed: unknown;
        try {
            parsed = JSON.parse(ev.data);
        } catch {
            throw new FilterError(`the MCP server sent an event that is not one JSON-RPC message during ${o.msg.method}; the stream was cut`);
        }
        let m: Message;
        try {
            if (Array.isArray(parsed)) throw new Error('batch');
            m = readMessage(parsed);
        } catch {
            throw new FilterError(`the MCP server sent an event that is not one JSON-RPC message during ${o.msg.method}; the stream was cut`);
        }
        if (m.method !== undefined) {
            orig.write(raw); // the server's own request or notification
            return;
        }
        if (!sameId(m.id, o.msg.id)) {
            // A response in a list stream is the list's, whatever its id says.
            throw new FilterError(`the MCP server answered ${o.msg.method} with another id; the stream was cut`);
        }
        const out = await o.filter(m.raw);
        answered = true;
        orig.write(withData(ev, out));
    };

    const markAnswered = (data: string) => {
        let v: unknown;
        try {
            v = JSON.parse(data);
        } catch {
            return;
        }
        for (const e of Array.isArray(v) ? v : [v]) {
            try {
                const m = readMessage(e);
                if (m.method === undefined && sameId(m.id, o.msg.id)) answered = true;
            } catch {
                // not a message: nothing answered
            }
        }
    };

    const sseChunk = async (chunk: Buffer) => {
        if (mode !== 'sse' || !reader) return;
        try {
            for (const ev of reader.push(chunk)) {
                if ((mode as Mode) !== 'sse') return;
                await onEvent(ev, true);
            }
        } catch (err) {
            failStream(streamFailure(err, o.maxResponseBytes));
        }
    };

    const sseEnd = async () => {
        if (mode !== 'sse' || !reader) return;
        try {
            const last = reader.end();
            if (last) await onEvent(last, false);
        } catch (err) {
            failStream(streamFailure(err, o.maxResponseBytes));
            return;
        }
        if ((mode as Mode) !== 'sse') return;
        if (!answered && o.msg.id !== undefined && o.msg.method !== undefined) {
            failStream('the MCP server ended its stream without answering the request');
            return;
        }
        mode = 'done';
        orig.end();
    };

    const bufferedEnd = async () => {
        if (mode === 'failure') {
            const body = Buffer.concat(chunks);
            chunks = [];
            if (!overflow) {
                try {
                    const m = readMessage(JSON.parse(body.toString('utf8')));
                    if (m.method === undefined && m.hasError && !m.hasResult) {
                        mode = 'done';
                        res.removeHeader('content-length');
                        res.setHeader('Content-Type', 'application/json');
                        res.setHeader('Content-Length', body.length);
                        orig.writeHead(status);
                        orig.end(body);
                        return;
                    }
                } catch {
                    // not a JSON-RPC error: answered below
                }
            }
            // Nothing else of it is relayed (it could carry a list).
            replace(status, rpcError(o.msg.id, CODE_INTERNAL_ERROR, `the MCP server answered HTTP ${status}`));
            return;
        }
        // mode === 'json'
        if (overflow) {
            refuseJSON(502, `the MCP server's answer is too large (over ${o.maxResponseBytes} bytes); it was not relayed`);
            return;
        }
        const body = Buffer.concat(chunks);
        chunks = [];
        if (!o.list) {
            mode = 'done';
            orig.writeHead(status);
            orig.end(body);
            return;
        }
        let parsed: unknown;
        try {
            parsed = JSON.parse(body.toString('utf8'));
        } catch {
            refuseJSON(502, `the MCP server's ${o.msg.method} answer is not a JSON-RPC response; it was not relayed`);
            return;
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
            refuseJSON(502, `the MCP server's ${o.msg.method} answer is not a JSON-RPC response; it was not relayed`);
            return;
        }
        try {
            const out = await o.filter(parsed as Record<string, unknown>);
            replace(200, out);
        } catch (err) {
            refuseJSON(502, err instanceof FilterError ? err.message : `the MCP server's ${o.msg.method} answer could not be filtered; it was not relayed`);
        }
    };

    const ensureHead = () => {
        if (mode === 'init') head(res.statusCode);
    };

    res.writeHead = function (this: ServerResponse, st: number, a?: unknown, b?: unknown): ServerResponse {
        if (mode === 'pass' || mode === 'sse' || mode === 'done') {
            return (orig.writeHead as (...args: unknown[]) => ServerResponse)(st, a, b);
        }
        if (typeof a === 'string') res.statusMessage = a;
        applyHeaders(typeof a === 'string' ? b : a);
        if (mode === 'init') head(st);
        else {
            // A second head while buffering (an error handler): it replaces the first.
            status = st;
            mode = st >= 300 ? 'failure' : 'json';
            chunks = [];
            size = 0;
            overflow = false;
        }
        return res;
    } as ServerResponse['writeHead'];

    res.flushHeaders = function () {
        ensureHead();
        if (mode === 'pass' || mode === 'sse') orig.flushHeaders();
    };

    res.write = function (this: ServerResponse, chunk: unknown, encOrCb?: unknown, cb?: unknown): boolean {
        const callback = typeof encOrCb === 'function' ? encOrCb : cb;
        const enc = typeof encOrCb === 'string' ? (encOrCb as BufferEncoding) : undefined;
        ensureHead();
        const buf = toBuffer(chunk, enc);
        switch (mode) {
            case 'pass':
                return orig.write(buf);
            case 'json':
            case 'failure': {
                const limit = mode === 'failure' ? MAX_FAILURE_BYTES : o.maxResponseBytes;
                size += buf.length;
                if (size > limit) {
                    overflow = true;
                    chunks = [];
                } else if (!overflow) chunks.push(buf);
                break;
            }
            case 'sse':
                queue = queue.then(() => sseChunk(buf));
                break;
            default:
                break; // done: the answer was cut; the rest is dropped
        }
        if (typeof callback === 'function') queueMicrotask(() => (callback as () => void)());
        return true;
    } as ServerResponse['write'];

    res.end = function (this: ServerResponse, chunk?: unknown, encOrCb?: unknown, cb?: unknown): ServerResponse {
        const callback = typeof chunk === 'function' ? chunk : typeof encOrCb === 'function' ? encOrCb : cb;
        if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
            res.write(chunk, typeof encOrCb === 'string' ? (encOrCb as BufferEncoding) : 'utf8');
        }
        ensureHead();
        if (typeof callback === 'function') res.once('finish', callback as () => void);
        switch (mode) {
            case 'pass':
                mode = 'done';
                orig.end();
                break;
            case 'json':
            case 'failure':
                queue = queue.then(bufferedEnd);
                break;
            case 'sse':
                queue = queue.then(sseEnd);
                break;
            default:
                break;
        }
        queue = queue.catch(err => {
            // Never relay what could not be checked.
            o.onRefused(String(err));
            if (!res.headersSent) refuseJSON(502, 'the MCP server answer could not be checked; it was not relayed');
            else res.destroy();
        });
        return res;
    } as ServerResponse['end'];
}

function streamFailure(err: unknown, limit: number): string {
    if (err instanceof EventTooLargeError) return `the MCP server sent an event over ${limit} bytes; the stream was cut`;
    if (err instanceof FilterError) return err.message;
    return 'the MCP server answer could not be checked; the stream was cut';
}
