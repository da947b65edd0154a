// Interception of what the MCP SDK's transport writes to its response, for
// an allowed POST: the answer to a list request is filtered through the PDP
// (its response phase) before anything of it reaches the client, as JSON or
// SSE; the answer to any other request is watched so that a stream that ends
// before answering gets a JSON-RPC error event, and a JSON answer over the
// bound becomes a JSON-RPC error rather than a truncated body. An answer
// that cannot be filtered (too large, malformed, another id) is never
// relayed unfiltered.
//
// The same interception serves a JSON-RPC batch (its allowed messages
// handed on together: the answers merged with the middleware's own, list
// results filtered, responses to requests not handed on dropped, requests
// left unanswered answered with an error) and a GET stream (what the server
// replays there of earlier answers is filtered when it answers one of the
// session's list requests, dropped when it looks like a list answering
// anything else).
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { CODE_INTERNAL_ERROR, type Message, type RawId, readMessage, rpcError } from './jsonrpc.js';
import { arrayElements } from './rawjson.js';
import { EventReader, EventTooLargeError, messageEvent, type SseEvent, withData } from './sse.js';
import type { Decision } from './wire.js';

/** An answer that must not be relayed; its message says why (it goes to the client). */
export class FilterError extends Error {}

/** The requests an answer must respond to: a batch's handed-on requests, by id as written. */
export class Owed {
    readonly ids: RawId[];
    readonly done: boolean[];
    left: number;

    constructor(ids: RawId[]) {
        this.ids = ids;
        this.done = ids.map(() => false);
        this.left = ids.length;
    }

    /** Marks id answered; reports whether it was owed and not answered before. */
    answer(id: RawId | undefined): boolean {
        for (let i = 0; i < this.ids.length; i++) {
            if (!this.done[i] && this.ids[i] === id) {
                this.done[i] = true;
                this.left--;
                return true;
            }
        }
        return false;
    }

    /** The position of id among the owed requests, answered or not; -1 when it is none of them. */
    index(id: RawId | undefined): number {
        return id === undefined ? -1 : this.ids.indexOf(id);
    }
}

/** A JSON-RPC batch on its way to the transport (the Go middleware's pep/batch.go). */
export interface Batch {
    /** The middleware's own answers (refusals, malformed messages), in the batch's order; then the server's. */
    answers: string[];
    /** How many messages were handed on. */
    forwarded: number;
    /** The handed-on requests' ids. */
    due: Owed;
    /** The handed-on list requests, by position in due. */
    lists: Map<number, Message>;
    /** The first refusal at the HTTP level (401, 403, 503): the batch's status when nothing is handed on. */
    challenge: Decision | undefined;
}

/** Fails every handed-on request still owed with a JSON-RPC error. */
export function failOwed(b: Batch, why: string): void {
    b.due.ids.forEach((id, i) => {
        if (!b.due.done[i]) {
            b.due.done[i] = true;
            b.due.left--;
            b.answers.push(rpcError(id, CODE_INTERNAL_ERROR, why));
        }
    });
}

/**
 * The answer to a batch: its answers as a JSON array; with nothing handed on
 * and a refusal at the HTTP level, that refusal's status and challenge; with
 * no answer at all (notifications only), 202 and no body.
 */
export function batchAnswer(b: Batch, status: number): { status: number; headers: Record<string, string>; body: string | undefined } {
    const headers: Record<string, string> = {};
    if (b.forwarded === 0 && b.challenge) {
        status = b.challenge.http_status || 403;
        if (b.challenge.www_authenticate) headers['WWW-Authenticate'] = b.challenge.www_authenticate;
        if (b.challenge.dpop_nonce) headers['DPoP-Nonce'] = b.challenge.dpop_nonce;
        if (b.challenge.retry_after) headers['Retry-After'] = String(b.challenge.retry_after);
    }
    if (status >= 200 && status < 300) {
        if (b.answers.length === 0) return { status: 202, headers, body: undefined };
        status = 200;
    }
    headers['Content-Type'] = 'application/json';
    return { status, headers, body: `[${b.answers.join(',')}]` };
}

/** Reports whether a result has a member that list results carry. */
function looksLikeList(result: unknown): boolean {
    if (typeof result !== 'object' || result === null || Array.isArray(result)) return false;
    return ['tools', 'prompts', 'resources', 'resourceTemplates'].some(k => Object.prototype.hasOwnProperty.call(result, k));
}

/** Filters the JSON-RPC response `response` (a message of the server) to the list request `list`; returns the JSON to relay. Throws FilterError. */
export type ListFilter = (list: Message, response: Message) => Promise<string>;

export interface InterceptOptions {
    /** The allowed request whose answer this is (a single message). */
    msg?: Message;
    /** A list request: its answer is filtered with filter. */
    list: boolean;
    /** A batch: the answer is merged with the middleware's own answers. */
    batch?: Batch;
    /**
     * A GET stream: the list request of the session with this id, if it is one
     * of those remembered; a response on the stream to it is filtered.
     */
    replay?: (id: RawId) => Message | undefined;
    /** Filters a list answer. */
    filter: ListFilter;
    /** Bound of an answer read whole (JSON) and of one SSE event. */
    maxResponseBytes: number;
    /** Called with the response headers when they are known (session binding). */
    onHead: (res: ServerResponse, status: number) => void;
    /** Reports a refused answer (for logs). */
    onRefused: (why: string) => void;
}

type Mode = 'init' | 'pass' | 'json' | 'failure' | 'sse' | 'replay' | 'done';

/** Bound of a failure answer (HTTP 3xx-5xx) read to see whether it is a JSON-RPC error. */
const MAX_FAILURE_BYTES = 64 << 10;

const toBuffer = (chunk: unknown, encoding?: BufferEncoding): Buffer =>
    Buffer.isBuffer(chunk) ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.from(String(chunk), encoding ?? 'utf8');

/** Parses one SSE event's data as a JSON-RPC message; batch: it is an array; undefined: not JSON-RPC. */
function parseEventMessage(data: string): { m: Message | undefined; batch: boolean } {
    let v: unknown;
    try {
        v = JSON.parse(data);
    } catch {
        return { m: undefined, batch: false };
    }
    if (Array.isArray(v)) return { m: undefined, batch: true };
    try {
        return { m: readMessage(v, data), batch: false };
    } catch {
        return { m: undefined, batch: false };
    }
}

/** Installs the interception on res. */
export function intercept(res: ServerResponse, o: InterceptOptions): void {
    const orig = {
        writeHead: res.writeHead.bind(res) as (status: number, headers?: OutgoingHttpHeaders) => ServerResponse,
        write: res.write.bind(res) as (chunk: Buffer) => boolean,
        end: res.end.bind(res) as (chunk?: Buffer) => ServerResponse,
        flushHeaders: res.flushHeaders.bind(res)
    };
    const batch = o.batch;
    /** The single request whose answer is owed, if any (its id as written). */
    const owedId = o.msg && o.msg.id !== undefined && o.msg.method !== undefined ? o.msg.rawId : undefined;
    let mode: Mode = 'init';
    let status = 200;
    let chunks: Buffer[] = [];
    let size = 0;
    let overflow = false;
    // SSE state
    let reader: EventReader | undefined;
    let answered = false;
    let queue: Promise<void> = Promise.resolve();
    // SSE backpressure: the bytes the server wrote that are not relayed yet,
    // and whether a write() of the server was answered false (it then waits
    // for 'drain' before it writes more).
    let backlog = 0;
    let owesDrain = false;
    const highWater = res.writableHighWaterMark || 16 << 10;

    /** Waits until the client's connection takes more, or is gone. */
    const drained = () =>
        new Promise<void>(resolve => {
            const done = () => {
                res.off('drain', done);
                res.off('close', done);
                resolve();
            };
            res.on('drain', done);
            res.on('close', done);
        });

    /** n bytes of the server's were relayed (or dropped): a server waiting for 'drain' may write on once all are. */
    const relayed = (n: number) => {
        backlog -= n;
        if (owesDrain && backlog === 0 && !res.writableNeedDrain) {
            owesDrain = false;
            res.emit('drain');
        }
    };

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
        o.onHead(res, st);
        if (o.replay) {
            // The server's GET stream: only an SSE stream carries replayed answers.
            if (st < 300 && isSSE()) {
                mode = 'replay';
                reader = new EventReader(o.maxResponseBytes);
                res.removeHeader('content-length');
                orig.writeHead(st);
                orig.flushHeaders();
            } else {
                mode = 'pass';
                orig.writeHead(st);
            }
        } else if (owedId === undefined && !batch) {
            mode = 'pass';
            orig.writeHead(st);
        } else if (st >= 300) {
            mode = 'failure';
        } else if (isSSE()) {
            mode = 'sse';
            reader = new EventReader(o.maxResponseBytes);
            res.removeHeader('content-length');
            orig.writeHead(st);
            // A batch's stream starts with the middleware's own answers.
            for (const a of batch?.answers ?? []) orig.write(messageEvent(a));
            orig.flushHeaders();
        } else {
            mode = 'json';
        }
    };

    /** Answers in place of the server, keeping its session headers. */
    const replace = (st: number, body: string | undefined, headers: Record<string, string> = {}) => {
        mode = 'done';
        res.removeHeader('content-length');
        res.removeHeader('content-encoding');
        res.removeHeader('transfer-encoding');
        for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
        if (body === undefined) {
            orig.writeHead(st);
            orig.end();
            return;
        }
        res.setHeader('Content-Type', 'application/json');
        res.setHeader('Content-Length', Buffer.byteLength(body));
        orig.writeHead(st);
        orig.end(Buffer.from(body, 'utf8'));
    };

    /** Answers the batch: what it holds, every owed request still unanswered failed with why. */
    const writeBatch = (b: Batch, st: number, why: string) => {
        failOwed(b, why);
        const a = batchAnswer(b, st);
        replace(a.status, a.body, a.headers);
    };

    const refuseJSON = (st: number, why: string) => {
        o.onRefused(why);
        if (batch) writeBatch(batch, st, why);
        else replace(st, rpcError(owedId, CODE_INTERNAL_ERROR, why));
    };

    /** Ends an SSE stream with an error event for every request still owed. */
    const failStream = (why: string) => {
        if (mode === 'done') return;
        o.onRefused(why);
        mode = 'done';
        if (batch) {
            batch.due.ids.forEach((id, i) => {
                if (!batch.due.done[i]) {
                    batch.due.done[i] = true;
                    batch.due.left--;
                    orig.write(messageEvent(rpcError(id, CODE_INTERNAL_ERROR, why)));
                }
            });
        } else if (!answered && owedId !== undefined && !o.replay) orig.write(messageEvent(rpcError(owedId, CODE_INTERNAL_ERROR, why)));
        orig.end();
    };

    /**
     * What the client may see of an answer of the server to a batch (one
     * JSON-RPC message or an array of them): the server's own requests and
     * notifications, and the responses to handed-on requests, each once,
     * list results filtered. A response to any other id is dropped (it could
     * be an unfiltered list under a forged id). With a list among the
     * requests, an answer that is not JSON-RPC is refused.
     */
    const filterBatchAnswer = async (b: Batch, data: string): Promise<{ kept: string[]; array: boolean }> => {
        let whole: unknown;
        let parsed = true;
        try {
            whole = JSON.parse(data);
        } catch {
            parsed = false;
        }
        // Each element as the server wrote it (its JSON text), and its value.
        let elems: [string, unknown][];
        const array = data.trim().startsWith('[');
        if (array) {
            const texts = parsed && Array.isArray(whole) ? arrayElements(data) : [];
            elems = texts.map((t, i) => [t, (whole as unknown[])[i]]);
        } else {
            elems = [[data, parsed ? whole : undefined]];
        }
        const kept: string[] = [];
        for (const [text, e] of elems) {
            let m: Message | undefined;
            if (parsed && !Array.isArray(e)) {
                try {
                    m = readMessage(e, text);
                } catch {
                    m = undefined;
                }
            }
            if (!m) {
                if (b.lists.size > 0) throw new FilterError('the MCP server answered a batch with a list request with something that is not JSON-RPC; it was not relayed');
                kept.push(text);
                continue;
            }
            if (m.method !== undefined) {
                kept.push(text);
                continue;
            }
            const i = b.due.index(m.rawId);
            if (i < 0 || !b.due.answer(m.rawId)) {
                o.onRefused(`dropped a response to a request that was not handed on (id ${m.rawId ?? 'null'})`);
                continue;
            }
            const list = b.lists.get(i);
            kept.push(list ? await o.filter(list, m) : text);
        }
        return { kept, array };
    };

    const write = (buf: Buffer) => {
        if (mode !== 'done') orig.write(buf);
    };

    const onEvent = async (ev: SseEvent, terminated: boolean): Promise<void> => {
        const raw = terminated ? ev.raw : Buffer.concat([ev.raw, Buffer.from('\n\n')]);
        if (mode === 'replay') return relayReplay(ev, raw);
        if (batch) {
            if (ev.bareCR) throw new FilterError('the MCP server framed its stream with bare CR line endings, which pdpAuth does not read; the stream was cut');
            if (ev.data === undefined || ev.data.trim() === '') {
                write(raw); // no message; a priming event
                return;
            }
            const { kept, array } = await filterBatchAnswer(batch, ev.data);
            if (kept.length === 0) return; // nothing of it may pass
            write(withData(ev, !array && kept.length === 1 ? (kept[0] as string) : `[${kept.join(',')}]`));
            return;
        }
        if (!o.list) {
            if (ev.data !== undefined && !answered) markAnswered(ev.data);
            write(raw);
            return;
        }
        if (ev.bareCR) throw new FilterError('the MCP server framed its stream with bare CR line endings, which pdpAuth does not read; the stream was cut');
        if (ev.data === undefined || ev.data.trim() === '') {
            write(raw); // a priming event (an id to resume from, no message)
            return;
        }
        const { m } = parseEventMessage(ev.data);
        if (!m) throw new FilterError(`the MCP server sent an event that is not one JSON-RPC message during ${o.msg?.method}; the stream was cut`);
        if (m.method !== undefined) {
            write(raw); // the server's own request or notification
            return;
        }
        if (m.rawId !== owedId) {
            // A response in a list stream is the list's, whatever its id says.
            throw new FilterError(`the MCP server answered ${o.msg?.method} with another id; the stream was cut`);
        }
        const out = await o.filter(o.msg as Message, m);
        answered = true;
        write(withData(ev, out));
    };

    /**
     * One event of a GET stream. The server's requests and notifications
     * pass; a response is a replayed answer: one to a remembered list request
     * of the session is filtered for this caller; one that is not but looks
     * like a list (its result has tools, prompts, resources or
     * resourceTemplates) is dropped; others pass. An event that cannot be
     * read (bare CR framing, with or without a visible data field; a batch)
     * is dropped.
     */
    const relayReplay = async (ev: SseEvent, raw: Buffer): Promise<void> => {
        if (ev.bareCR) {
            // Its fields cannot be seen (a data line may hide behind the CR):
            // dropped whether or not a data field was found.
            o.onRefused('dropped a GET stream event framed with bare CR line endings');
            return;
        }
        if (ev.data !== undefined && ev.data.trim() !== '') {
            const { m, batch: isBatch } = parseEventMessage(ev.data);
            if (isBatch) {
                o.onRefused('dropped a GET stream event that cannot be read');
                return;
            }
            if (m && m.method === undefined && m.rawId !== undefined) {
                const list = o.replay?.(m.rawId);
                if (list) {
                    let out: string;
                    try {
                        out = await o.filter(list, m);
                    } catch (err) {
                        o.onRefused(`dropped a replayed list answer: ${(err as Error).message}`);
                        return;
                    }
                    write(withData(ev, out));
                    return;
                }
                if (looksLikeList(m.raw.result)) {
                    o.onRefused(`dropped a replayed answer to an unknown list request (id ${m.rawId})`);
                    return;
                }
            }
        }
        write(raw);
    };

    const markAnswered = (data: string) => {
        let v: unknown;
        try {
            v = JSON.parse(data);
        } catch {
            return;
        }
        const elems: [unknown, string][] = Array.isArray(v) ? arrayElements(data).map((t, i) => [(v as unknown[])[i], t]) : [[v, data]];
        for (const [e, text] of elems) {
            try {
                const m = readMessage(e, text);
                if (m.method === undefined && m.rawId === owedId) answered = true;
            } catch {
                // not a message: nothing answered
            }
        }
    };

    const sseChunk = async (chunk: Buffer) => {
        if ((mode !== 'sse' && mode !== 'replay') || !reader) return;
        try {
            for (const ev of reader.push(chunk)) {
                if ((mode as Mode) !== 'sse' && (mode as Mode) !== 'replay') return;
                await onEvent(ev, true);
                // A client that reads slowly: relay no more until it has taken what was written.
                while (res.writableNeedDrain) await drained();
            }
        } catch (err) {
            failStream(streamFailure(err, o.maxResponseBytes));
        }
    };

    const sseEnd = async () => {
        if ((mode !== 'sse' && mode !== 'replay') || !reader) return;
        try {
            const last = reader.end();
            if (last) await onEvent(last, false);
        } catch (err) {
            failStream(streamFailure(err, o.maxResponseBytes));
            return;
        }
        if ((mode as Mode) !== 'sse' && (mode as Mode) !== 'replay') return;
        if (batch ? batch.due.left > 0 : !answered && owedId !== undefined && mode === 'sse') {
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
            if (batch) {
                const why = status === 502 && body.length === 0 ? 'the MCP server sent no answer' : `the MCP server answered HTTP ${status}`;
                writeBatch(batch, status, why);
                return;
            }
            if (!overflow) {
                // A JSON-RPC error is answered with its code and message
                // under the request's id, as the Go middleware does.
                let e: { code: number; message: string } | undefined;
                try {
                    const text = body.toString('utf8');
                    const m = readMessage(JSON.parse(text), text);
                    const err = m.raw.error as { code?: unknown; message?: unknown } | null;
                    const code = typeof err === 'object' && err !== null ? (err.code ?? 0) : undefined;
                    if (m.method === undefined && m.hasError && !m.hasResult && Number.isInteger(code) && typeof err?.message === 'string' && err.message !== '') {
                        e = { code: code as number, message: err.message };
                    }
                } catch {
                    // not a JSON-RPC error: answered below
                }
                if (e) {
                    replace(status, rpcError(owedId, e.code, e.message));
                    return;
                }
            }
            // Nothing else of it is relayed (it could carry a list).
            replace(status, rpcError(owedId, CODE_INTERNAL_ERROR, `the MCP server answered HTTP ${status}`));
            return;
        }
        // mode === 'json'
        if (overflow) {
            refuseJSON(502, batch ? `the MCP server's answer is over ${o.maxResponseBytes} bytes; it was not relayed` : `the MCP server's answer is too large (over ${o.maxResponseBytes} bytes); it was not relayed`);
            return;
        }
        const body = Buffer.concat(chunks);
        chunks = [];
        if (batch) {
            const text = body.toString('utf8');
            if (text.trim() !== '') {
                try {
                    JSON.parse(text);
                } catch {
                    refuseJSON(502, "the MCP server's answer is not valid JSON (cut short?); it was not relayed");
                    return;
                }
                let kept: string[];
                try {
                    kept = (await filterBatchAnswer(batch, text)).kept;
                } catch (err) {
                    refuseJSON(502, err instanceof FilterError ? err.message : "the MCP server's answer could not be filtered; it was not relayed");
                    return;
                }
                batch.answers.push(...kept);
            }
            writeBatch(batch, status, 'the MCP server did not answer this request');
            return;
        }
        const text = body.toString('utf8');
        if (!o.list) {
            try {
                JSON.parse(text);
            } catch {
                refuseJSON(502, "the MCP server's answer is not valid JSON (cut short?); it was not relayed");
                return;
            }
            mode = 'done';
            orig.writeHead(status);
            orig.end(body);
            return;
        }
        const method = o.msg?.method;
        let answer: Message;
        try {
            answer = readMessage(JSON.parse(text), text);
        } catch {
            refuseJSON(502, `the MCP server's ${method} answer is not a JSON-RPC response; it was not relayed`);
            return;
        }
        try {
            const out = await o.filter(o.msg as Message, answer);
            replace(200, out);
        } catch (err) {
            refuseJSON(502, err instanceof FilterError ? err.message : `the MCP server's ${method} answer could not be filtered; it was not relayed`);
        }
    };

    const ensureHead = () => {
        if (mode === 'init') head(res.statusCode);
    };

    res.writeHead = function (this: ServerResponse, st: number, a?: unknown, b?: unknown): ServerResponse {
        if (mode === 'pass' || mode === 'sse' || mode === 'replay' || mode === 'done') {
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
        if (mode === 'pass' || mode === 'sse' || mode === 'replay') orig.flushHeaders();
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
            case 'replay': {
                backlog += buf.length;
                queue = queue.then(async () => {
                    try {
                        await sseChunk(buf);
                    } finally {
                        relayed(buf.length);
                    }
                });
                if (typeof callback === 'function') queueMicrotask(() => (callback as () => void)());
                // Backpressure: false while the relay is behind or the client's connection is full;
                // 'drain' follows (from the connection, or from relayed()).
                if (backlog <= highWater && !res.writableNeedDrain) return true;
                owesDrain = true;
                return false;
            }
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
            case 'replay':
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
