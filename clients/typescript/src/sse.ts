// An incremental reader of server-sent events, fed with the chunks an MCP
// SDK writes to its response (the same rules as the Go gateway's reader:
// LF or CRLF line endings, a leading byte order mark dropped, data lines
// joined by "\n", every event bounded).
import { oneLine } from './rawjson.js';

/** One server-sent event as the server wrote it. */
export interface SseEvent {
    /** The event as written, through its terminating blank line. */
    raw: Buffer;
    /** Its lines, without line endings. */
    lines: Buffer[];
    /** Its data lines' values joined by "\n"; undefined when it has none. */
    data: string | undefined;
    /** A line holds a lone CR: valid SSE framing this reader does not split. */
    bareCR: boolean;
}

/** An event over the bound. */
export class EventTooLargeError extends Error {
    constructor(limit: number) {
        super(`an SSE event over ${limit} bytes`);
        this.name = 'EventTooLargeError';
    }
}

const LF = 0x0a;
const CR = 0x0d;

function isField(line: Buffer, name: string): boolean {
    if (line.length < name.length || line.toString('latin1', 0, name.length) !== name) return false;
    return line.length === name.length || line[name.length] === 0x3a; // ':'
}

/** Splits a byte stream into events. */
export class EventReader {
    readonly #limit: number;
    #pending: Buffer = Buffer.alloc(0);
    #started = false;

    constructor(limit: number) {
        this.#limit = limit;
    }

    /** Feeds a chunk; returns the events it completed. Throws EventTooLargeError. */
    push(chunk: Buffer): SseEvent[] {
        let buf = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
        if (!this.#started) {
            if (buf.length < 3 && Buffer.from([0xef, 0xbb, 0xbf]).subarray(0, buf.length).equals(buf)) {
                this.#pending = buf;
                return [];
            }
            this.#started = true;
            if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3);
        }
        const out: SseEvent[] = [];
        let start = 0; // start of the current event in buf
        let lineStart = 0;
        let lines: Buffer[] = [];
        for (let i = 0; i < buf.length; i++) {
            if (buf[i] !== LF) continue;
            let end = i;
            if (end > lineStart && buf[end - 1] === CR) end--;
            const content = buf.subarray(lineStart, end);
            lineStart = i + 1;
            if (content.length === 0) {
                if (lines.length === 0) {
                    start = lineStart; // blank lines between events
                    continue;
                }
                out.push(finish(Buffer.from(buf.subarray(start, lineStart)), lines));
                lines = [];
                start = lineStart;
                continue;
            }
            lines.push(Buffer.from(content));
        }
        this.#pending = Buffer.from(buf.subarray(start));
        if (this.#pending.length > this.#limit) throw new EventTooLargeError(this.#limit);
        for (const ev of out) if (ev.raw.length > this.#limit) throw new EventTooLargeError(this.#limit);
        return out;
    }

    /**
     * The end of the stream: what was left, as an event (an event cut short
     * still counts, so that a list answer without its blank line is seen).
     */
    end(): SseEvent | undefined {
        const rest = this.#pending;
        this.#pending = Buffer.alloc(0);
        if (rest.length === 0) return undefined;
        const lines: Buffer[] = [];
        for (const l of rest.toString('latin1').split('\n')) {
            const content = l.endsWith('\r') ? l.slice(0, -1) : l;
            if (content.length) lines.push(Buffer.from(content, 'latin1'));
        }
        if (lines.length === 0) return undefined;
        return finish(rest, lines);
    }
}

function finish(raw: Buffer, lines: Buffer[]): SseEvent {
    const data: Buffer[] = [];
    let bareCR = false;
    for (const l of lines) {
        if (l.includes(CR)) bareCR = true;
        if (!isField(l, 'data')) continue;
        let v = l.subarray(4);
        if (v.length > 0) {
            v = v.subarray(1); // the colon
            if (v.length > 0 && v[0] === 0x20) v = v.subarray(1);
        }
        data.push(v);
    }
    return {
        raw,
        lines,
        data: data.length ? Buffer.concat(data.flatMap((d, i) => (i ? [Buffer.from('\n'), d] : [d]))).toString('utf8') : undefined,
        bareCR
    };
}

/** The event with its data (JSON text) replaced by one data line, every other field kept in place. */
export function withData(ev: SseEvent, data: string): Buffer {
    const parts: string[] = [];
    let wrote = false;
    for (const l of ev.lines) {
        if (isField(l, 'data')) {
            if (!wrote) {
                parts.push(`data: ${oneLine(data)}\n`);
                wrote = true;
            }
            continue;
        }
        parts.push(l.toString('utf8') + '\n');
    }
    parts.push('\n');
    return Buffer.from(parts.join(''), 'utf8');
}

/** An SSE event carrying one JSON-RPC message. */
export function messageEvent(json: string): Buffer {
    return Buffer.from(`event: message\ndata: ${oneLine(json)}\n\n`, 'utf8');
}
