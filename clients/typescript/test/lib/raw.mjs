// Raw HTTP helpers for the tests: POST a JSON-RPC body and read the answer as
// JSON or SSE, open a session, read a GET stream for a while.
import assert from 'node:assert/strict';

/** The data of each SSE event (events without data are left out). */
export function events(text) {
    return text
        .split(/\r?\n\r?\n/)
        .map(block => block.split(/\r?\n/).filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')))
        .filter(d => d.length > 0)
        .map(d => d.join('\n'));
}

/**
 * POSTs body; returns status, headers, the raw text and the JSON-RPC
 * messages: the elements of a JSON array answer, or of every SSE event
 * (an event carrying an array counts its elements).
 */
export async function post(url, body, headers = {}, version = '2025-03-26') {
    const r = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': version, ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000)
    });
    const text = await r.text();
    const ct = r.headers.get('content-type') ?? '';
    const sse = ct.startsWith('text/event-stream');
    let messages = [];
    if (sse) messages = events(text).filter(d => d.trim()).flatMap(d => [JSON.parse(d)].flat());
    else if (text) messages = [JSON.parse(text)].flat();
    return { status: r.status, headers: r.headers, text, sse, messages, array: !sse && text.trim().startsWith('['), byId: id => messages.find(m => m.id === id && !m.method) };
}

let nextId = 1000;
/** Opens a session (initialize + initialized) with the headers given; returns its id. */
export async function open(url, headers = {}, version = '2025-03-26') {
    const init = await post(url, { jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '0' } } }, headers, version);
    assert.equal(init.status, 200, init.text);
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid, 'the server opened a session');
    const done = await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { ...headers, 'Mcp-Session-Id': sid }, version);
    assert.equal(done.status, 202, done.text);
    return sid;
}

/** GETs the server's stream and reads it until it ends or for ms; returns status, headers, text. */
export async function readStream(url, headers = {}, ms = 1500) {
    const ac = new AbortController();
    const r = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: ac.signal });
    let text = '';
    if (r.body) {
        const timer = setTimeout(() => ac.abort(), ms);
        try {
            for await (const c of r.body) text += Buffer.from(c).toString('utf8');
        } catch {
            // aborted: read for long enough
        }
        clearTimeout(timer);
    }
    return { status: r.status, headers: r.headers, text, messages: events(text).filter(d => d.trim()).map(d => { try { return JSON.parse(d); } catch { return d; } }) };
}
