// Pieces of JSON text as they were written: the elements of a batch and the
// id of a message, so that the middleware answers a client with its id as
// the client wrote it (1.0 stays 1.0, "\u0031" stays "\u0031"), hands the
// allowed messages on as they were received, and matches an answer to a
// request by the id's bytes, as the Go middleware does with
// json.RawMessage. The input is valid JSON (JSON.parse accepted it): nothing
// here validates.

/** The characters that open or close a string, an object or an array. */
const STRUCTURE = /["{}[\]]/g;

function isSpace(c: number): boolean {
    return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(s: string, i: number): number {
    while (i < s.length && isSpace(s.charCodeAt(i))) i++;
    return i;
}

/** The index after the string that starts at i (s[i] is '"'). */
function skipString(s: string, i: number): number {
    let from = i + 1;
    for (;;) {
        const q = s.indexOf('"', from);
        if (q < 0) return s.length;
        let backslashes = 0;
        for (let k = q - 1; s.charCodeAt(k) === 0x5c; k--) backslashes++;
        if (backslashes % 2 === 0) return q + 1;
        from = q + 1;
    }
}

/** The index after the value that starts at i. */
function skipValue(s: string, i: number): number {
    const c = s.charCodeAt(i);
    if (c === 0x22) return skipString(s, i);
    if (c === 0x7b || c === 0x5b) {
        let depth = 0;
        let from = i;
        for (;;) {
            STRUCTURE.lastIndex = from;
            const m = STRUCTURE.exec(s);
            if (!m) return s.length;
            const k = m.index;
            const ch = s.charCodeAt(k);
            if (ch === 0x22) {
                from = skipString(s, k);
                continue;
            }
            if (ch === 0x7b || ch === 0x5b) depth++;
            else if (--depth === 0) return k + 1;
            from = k + 1;
        }
    }
    // A number or a literal: up to the next delimiter.
    let j = i;
    while (j < s.length) {
        const ch = s.charCodeAt(j);
        if (ch === 0x2c || ch === 0x7d || ch === 0x5d || isSpace(ch)) break;
        j++;
    }
    return j;
}

/** The elements of the JSON array text s, each as written; [] when s is not an array. */
export function arrayElements(s: string): string[] {
    let i = skipSpace(s, 0);
    const out: string[] = [];
    if (s.charCodeAt(i) !== 0x5b) return out;
    i = skipSpace(s, i + 1);
    if (s.charCodeAt(i) === 0x5d) return out;
    for (;;) {
        const end = skipValue(s, i);
        out.push(s.slice(i, end));
        i = skipSpace(s, end);
        if (s.charCodeAt(i) !== 0x2c) return out;
        i = skipSpace(s, i + 1);
    }
}

/**
 * The value of the member key of the JSON object text s, as written: the
 * last one, which is the one JSON.parse keeps. Undefined when s is not an
 * object or has no such member.
 */
export function memberText(s: string, key: string): string | undefined {
    let i = skipSpace(s, 0);
    if (s.charCodeAt(i) !== 0x7b) return undefined;
    i = skipSpace(s, i + 1);
    let found: string | undefined;
    while (s.charCodeAt(i) === 0x22) {
        const keyEnd = skipString(s, i);
        const inner = s.slice(i + 1, keyEnd - 1);
        const k = inner.includes('\\') ? (JSON.parse(s.slice(i, keyEnd)) as string) : inner;
        i = skipSpace(s, skipSpace(s, keyEnd) + 1); // past the colon
        const end = skipValue(s, i);
        if (k === key) found = s.slice(i, end);
        i = skipSpace(s, end);
        if (s.charCodeAt(i) !== 0x2c) break;
        i = skipSpace(s, i + 1);
    }
    return found;
}

/**
 * JSON text on one line: a line break in valid JSON is white space between
 * tokens (a string cannot hold one), so each becomes a space. For the data
 * line of an SSE event.
 */
export function oneLine(s: string): string {
    return s.includes('\n') || s.includes('\r') ? s.replace(/[\r\n]/g, ' ') : s;
}
