// The behaviour parity test: one table of cases, each run with raw HTTP
// against the three enforcement points in front of the same dev PDP (the Go
// middleware in examples/go-sdk, the TypeScript middleware in
// examples/typescript, the gateway in front of a plain TypeScript SDK
// server). What the enforcement point answers itself is compared: HTTP
// status, WWW-Authenticate (its resource URL's origin replaced by
// <origin>), the JSON-RPC error code and message, the names of a list. An
// allowed answer's own content differs by server and is not compared (only
// that it is a result).
//
// Env: PARITY_POINTS  JSON [{"name":"go","url":"http://127.0.0.1:P/mcp"}, ...]
//      PDP_BIN, PDP_DATA_DIR  to mint dev tokens (pdp token --aud URL)
// Prints the table; the last line is "parity: N passed, M failed"; exit 1 on a difference.
import { execFileSync } from 'node:child_process';

const points = JSON.parse(process.env.PARITY_POINTS ?? '[]');
const VERSION = '2025-06-18';

const mint = (url, { scope = '', sub = 'alice' } = {}) =>
    execFileSync(process.env.PDP_BIN, ['token', '--data-dir', process.env.PDP_DATA_DIR, '--aud', url, '--scope', scope, '--sub', sub], { encoding: 'utf8' }).trim();

function events(text) {
    return text
        .split(/\r?\n\r?\n/)
        .map(b => b.split(/\r?\n/).filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')))
        .filter(d => d.length && d.join('').trim())
        .map(d => JSON.parse(d.join('\n')));
}

/** One HTTP exchange (body: JSON-encoded; raw: sent as is); returns status, headers and the JSON-RPC messages of the answer. */
async function send(url, { method = 'POST', body, raw, headers = {} } = {}) {
    const payload = raw ?? (body === undefined ? undefined : JSON.stringify(body));
    const r = await fetch(url, {
        method,
        headers: { Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': VERSION, ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
        body: payload,
        signal: AbortSignal.timeout(10_000)
    });
    // A GET that is allowed is a stream: read no further than its head.
    const ct = r.headers.get('content-type') ?? '';
    if (method === 'GET' && r.ok) {
        await r.body?.cancel();
        return { status: r.status, headers: r.headers, messages: [] };
    }
    const text = await r.text();
    let messages = [];
    try {
        messages = ct.startsWith('text/event-stream') ? events(text) : text ? [JSON.parse(text)].flat() : [];
    } catch {
        messages = [{ unparsed: text.slice(0, 200) }];
    }
    return { status: r.status, headers: r.headers, messages };
}

let nextId = 1;
const call = (name, args = {}) => ({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name, arguments: args } });
const bearer = t => ({ Authorization: `Bearer ${t}` });

/** Opens a session (initialize + initialized); returns its Mcp-Session-Id. */
async function open(url, headers = {}) {
    const init = await send(url, { body: { jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 'parity', version: '0' } } }, headers });
    const sid = init.headers.get('mcp-session-id');
    if (init.status !== 200 || !sid) throw new Error(`initialize at ${url}: HTTP ${init.status} ${JSON.stringify(init.messages)}`);
    const done = await send(url, { body: { jsonrpc: '2.0', method: 'notifications/initialized' }, headers: { ...headers, 'Mcp-Session-Id': sid } });
    if (done.status !== 202) throw new Error(`notifications/initialized at ${url}: HTTP ${done.status}`);
    return sid;
}

/** What is compared of an answer. */
function observe(url, r, { list = false } = {}) {
    const origin = new URL(url).origin;
    const www = r.headers.get('www-authenticate');
    const o = { status: r.status };
    if (www) o.www = www.split(origin).join('<origin>');
    o.answers = r.messages.map(m => {
        if (m.error) return { id: m.id === null ? null : 'id', code: m.error.code, message: m.error.message };
        if (m.result) {
            if (list) return { names: (m.result.tools ?? []).map(t => t.name).sort(), cacheScope: m.result.cacheScope };
            return { result: m.result.isError ? 'tool error' : 'result' };
        }
        return m.unparsed !== undefined ? { unparsed: true } : { other: Object.keys(m).sort().join(',') };
    });
    return o;
}

/** The cases: each runs against one enforcement point (its URL) and returns what is compared. */
const CASES = [
    ['anonymous tools/list: the visible names', async (url, s) => observe(url, await send(url, { body: { jsonrpc: '2.0', id: nextId++, method: 'tools/list', params: {} }, headers: { 'Mcp-Session-Id': s.anon } }), { list: true })],
    ['anonymous lookup_product: allowed', async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { 'Mcp-Session-Id': s.anon } }))],
    ['anonymous generate_qr_url: 401 challenge', async (url, s) => observe(url, await send(url, { body: call('generate_qr_url', { text: 'x' }), headers: { 'Mcp-Session-Id': s.anon } }))],
    ['token without the scope: 403 insufficient_scope', async (url, s) => observe(url, await send(url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...bearer(s.noScope), 'Mcp-Session-Id': s.noScopeSid } }))],
    ['token with the scope: generate_qr_url allowed', async (url, s) => observe(url, await send(url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...bearer(s.alice), 'Mcp-Session-Id': s.aliceSid } }))],
    ['invalid token: 401 invalid_token', async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { ...bearer('not.a.token'), 'Mcp-Session-Id': s.anon } }))],
    ['token for another resource: 401', async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { ...bearer(s.foreign), 'Mcp-Session-Id': s.anon } }))],
    ['hidden tool internal_debug: in band -32602', async (url, s) => observe(url, await send(url, { body: call('internal_debug'), headers: { 'Mcp-Session-Id': s.anon } }))],
    ['GET with an invalid token: 401', async (url, s) => observe(url, await send(url, { method: 'GET', headers: { ...bearer('not.a.token'), 'Mcp-Session-Id': s.anon } }))],
    ['DELETE with an invalid token: 401', async (url, s) => observe(url, await send(url, { method: 'DELETE', headers: { ...bearer('not.a.token'), 'Mcp-Session-Id': s.anon } }))],
    ['GET anonymous on an anonymous session: allowed', async (url, s) => observe(url, await send(url, { method: 'GET', headers: { 'Mcp-Session-Id': s.anon } }))],
    ['Mcp-Method header mismatch: 400 -32020', async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { 'Mcp-Method': 'tools/list', 'Mcp-Session-Id': s.anon } }))],
    ['Mcp-Name header mismatch: 400 -32020', async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { 'Mcp-Method': 'tools/call', 'Mcp-Name': 'generate_qr_url', 'Mcp-Session-Id': s.anon } }))],
    ["another user's token on a session: 403", async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { ...bearer(s.bob), 'Mcp-Session-Id': s.aliceSid } }))],
    ["anonymous on an authenticated user's session: 403", async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { 'Mcp-Session-Id': s.aliceSid } }))],
    ['not JSON: 400 -32700', async (url, s) => observe(url, await send(url, { raw: '{"jsonrpc":', headers: { 'Mcp-Session-Id': s.anon } }))],
    ['a batch, nothing allowed: the first HTTP refusal, every request answered', async (url, s) => observe(url, await send(url, { body: [call('generate_qr_url', { text: 'x' }), call('internal_debug'), { jsonrpc: '1.0', method: 'x' }], headers: { 'Mcp-Session-Id': s.anon } }))],
    ['an empty batch: 400', async (url, s) => observe(url, await send(url, { body: [], headers: { 'Mcp-Session-Id': s.anon } }))],
    ['a batch with Mcp-Method: 400 -32020', async (url, s) => observe(url, await send(url, { body: [call('internal_debug')], headers: { 'Mcp-Method': 'tools/call', 'Mcp-Session-Id': s.anon } }))],
    ['a batch with two requests of one id: 400', async (url, s) => observe(url, await send(url, { body: [{ ...call('internal_debug'), id: 7 }, { ...call('internal_debug'), id: 7 }], headers: { 'Mcp-Session-Id': s.anon } }))],
    ['a batch of 101 messages: 413', async (url, s) => observe(url, await send(url, { body: Array.from({ length: 101 }, () => call('internal_debug')), headers: { 'Mcp-Session-Id': s.anon } }))],
    ['PUT: 405', async url => observe(url, await send(url, { method: 'PUT', body: {} }))],
    ['a foreign Origin: 403', async (url, s) => observe(url, await send(url, { body: call('lookup_product'), headers: { Origin: 'http://evil.example', 'Mcp-Session-Id': s.anon } }))]
];

// Per enforcement point: its sessions and tokens.
const state = {};
for (const p of points) {
    const alice = mint(p.url, { scope: 'qr:generate' });
    const noScope = mint(p.url, { scope: '' });
    const s = { alice, noScope, bob: mint(p.url, { scope: 'qr:generate', sub: 'bob' }), foreign: mint('http://127.0.0.1:9/elsewhere', { scope: 'qr:generate' }) };
    s.anon = await open(p.url);
    s.aliceSid = await open(p.url, bearer(alice));
    s.noScopeSid = await open(p.url, bearer(noScope));
    state[p.name] = s;
}

const show = o => {
    const parts = [String(o.status)];
    for (const a of o.answers ?? []) {
        if (a.code !== undefined) parts.push(`${a.code}${a.id === null ? '(id null)' : ''} ${JSON.stringify(a.message)}`);
        else if (a.names) parts.push(`[${a.names.join(',')}]${a.cacheScope ? ` ${a.cacheScope}` : ''}`);
        else parts.push(Object.values(a).join(''));
    }
    if (o.www) parts.push(`WWW-Authenticate: ${o.www}`);
    return parts.join(' | ');
};

let passed = 0;
let failed = 0;
const rows = [];
for (const [name, run] of CASES) {
    const got = {};
    for (const p of points) {
        try {
            got[p.name] = await run(p.url, state[p.name]);
        } catch (err) {
            got[p.name] = { status: 'error', answers: [{ other: String(err) }] };
        }
    }
    const shown = points.map(p => show(got[p.name]));
    const same = shown.every(x => x === shown[0]);
    if (same) passed++;
    else failed++;
    rows.push({ name, same, shown });
}

for (const r of rows) {
    console.log(`${r.same ? 'same' : 'DIFF'}  ${r.name}`);
    if (r.same) console.log(`      all: ${r.shown[0]}`);
    else points.forEach((p, i) => console.log(`      ${p.name.padEnd(8)} ${r.shown[i]}`));
}
console.log(`parity: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
