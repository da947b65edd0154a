// The behaviour parity test: one table of cases, each run with raw HTTP
// against the three enforcement points in front of the same dev PDP (the Go
// middleware in examples/go-sdk, the TypeScript middleware in
// examples/typescript, the gateway in front of a plain TypeScript SDK
// server). Each point runs twice: its server answering with JSON and with SSE
// streams (whose events it keeps for Last-Event-ID); a case names the one it
// runs against. What the enforcement point answers itself is compared: HTTP
// status, the answer's kind (json, sse), WWW-Authenticate (its resource
// URL's origin replaced by <origin>), the JSON-RPC error code and message,
// the names of a list. An allowed answer's own content differs by server and
// is not compared (only that it is a result). Batch answers are compared
// element by element, ordered by id as written.
//
// DPoP (RFC 9449): each point and mode has a P-256 key made here
// (node:crypto) and a dev token bound to it (pdp token --jkt); each request
// of the DPoP cases carries a fresh proof unless the case says otherwise.
//
// Env: PARITY_POINTS  JSON [{"name":"go","json":"http://127.0.0.1:P/mcp","sse":"http://127.0.0.1:Q/mcp"}, ...]
//      PDP_BIN, PDP_DATA_DIR  to mint dev tokens (pdp token --aud URL [--jkt THUMBPRINT])
// Prints the table; the last line is "parity: N passed, M failed"; exit 1 on a difference.
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// The JSON text of each element of a batch answer, the id of a message as
// written: @mcp-pdp/pep's reader (run.sh builds the package).
const { arrayElements, memberText } = await import(pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'clients', 'typescript', 'dist', 'rawjson.js')).href);

const points = JSON.parse(process.env.PARITY_POINTS ?? '[]');
const VERSION = '2025-06-18';
/** Batches: the go-sdk takes them only before 2025-06-18. */
const BATCH_VERSION = '2025-03-26';
/** GET replays: the servers prime each stream with an event id from 2025-11-25 on. */
const RESUME_VERSION = '2025-11-25';

/** A dev token for url; jkt (a DPoP key's RFC 7638 thumbprint) binds it to that key (cnf.jkt). */
const mint = (url, { scope = '', sub = 'alice', jkt } = {}) =>
    execFileSync(process.env.PDP_BIN, ['token', '--data-dir', process.env.PDP_DATA_DIR, '--aud', url, '--scope', scope, '--sub', sub, ...(jkt ? ['--jkt', jkt] : [])], { encoding: 'utf8' }).trim();

const b64u = b => Buffer.from(b).toString('base64url');

/** A DPoP key (P-256): the private key, the public JWK and its RFC 7638 thumbprint. */
function dpopKey() {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { crv, kty, x, y } = publicKey.export({ format: 'jwk' });
    const jwk = { crv, kty, x, y }; // the required members in lexicographic order (RFC 7638 §3)
    return { privateKey, jwk, jkt: b64u(createHash('sha256').update(JSON.stringify(jwk)).digest()) };
}

/** A DPoP proof (RFC 9449 §4.2) of key for htm htu, bound to token (ath). */
function dpopProof(key, { htm = 'POST', htu, token }) {
    const header = b64u(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }));
    const claims = b64u(JSON.stringify({ jti: randomUUID(), htm, htu, iat: Math.floor(Date.now() / 1000), ath: b64u(createHash('sha256').update(token).digest()) }));
    return `${header}.${claims}.${b64u(sign('sha256', Buffer.from(`${header}.${claims}`), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }))}`;
}

/** The events of an SSE stream: their id and data fields. */
function events(text) {
    return text
        .split(/\r?\n\r?\n/)
        .map(block => {
            const lines = block.split(/\r?\n/);
            const data = lines.filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, ''));
            const id = lines.find(l => l.startsWith('id:'))?.slice(3).trim();
            return { id, data: data.length ? data.join('\n') : undefined };
        })
        .filter(e => e.id !== undefined || e.data !== undefined);
}

/** The JSON-RPC messages of a JSON text (a message or an array of them), each with its text. */
function messagesOf(text) {
    const t = text.trim();
    if (!t) return [];
    JSON.parse(t); // throws when it is not JSON
    return (t.startsWith('[') ? arrayElements(t) : [t]).map(x => ({ text: x, value: JSON.parse(x) }));
}

/** Reads an answer: status, headers, its kind, its SSE events, its JSON-RPC messages. */
async function read(r, text) {
    const ct = r.headers.get('content-type') ?? '';
    const kind = ct.startsWith('text/event-stream') ? 'sse' : ct.startsWith('application/json') ? 'json' : '';
    const evs = kind === 'sse' ? events(text) : [];
    let messages = [];
    try {
        messages = kind === 'sse' ? evs.filter(e => e.data?.trim()).flatMap(e => messagesOf(e.data)) : messagesOf(text);
    } catch {
        messages = [{ text, value: { unparsed: text.slice(0, 200) } }];
    }
    return { status: r.status, headers: r.headers, kind, events: evs, messages };
}

/** One HTTP exchange (body: JSON-encoded; raw: sent as is). */
async function send(url, { method = 'POST', body, raw, headers = {}, version = VERSION } = {}) {
    const payload = raw ?? (body === undefined ? undefined : JSON.stringify(body));
    const r = await fetch(url, {
        method,
        headers: { Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': version, ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
        body: payload,
        signal: AbortSignal.timeout(10_000)
    });
    // A GET that is allowed is a stream: read no further than its head.
    if (method === 'GET' && r.ok) {
        await r.body?.cancel();
        return read(r, '');
    }
    return read(r, await r.text());
}

/**
 * A POST with header lines as given (a header whose value is an array is
 * sent as several lines, which fetch would join into one): node:http.
 */
function sendLines(url, body, headers) {
    return new Promise((resolve, reject) => {
        const payload = JSON.stringify(body);
        const r = request(url, { method: 'POST', headers: { Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': VERSION, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload), ...headers }, timeout: 10_000 }, res => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', c => (text += c));
            res.on('end', () => resolve(read({ status: res.statusCode, headers: new Headers(Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)])) }, text)));
        });
        r.on('timeout', () => r.destroy(new Error('timed out')));
        r.on('error', reject);
        r.end(payload);
    });
}

/**
 * GETs the server's stream and reads it until it ends, an answer (a result
 * or an error) has come, or for ms (a stream that replays nothing stays open).
 */
async function stream(url, headers, version, ms = 2500) {
    const ac = new AbortController();
    const r = await fetch(url, { headers: { Accept: 'text/event-stream', 'MCP-Protocol-Version': version, ...headers }, signal: ac.signal });
    let text = '';
    const timer = setTimeout(() => ac.abort(), ms);
    try {
        for await (const c of r.body ?? []) {
            text += Buffer.from(c).toString('utf8');
            const whole = text.slice(0, text.lastIndexOf('\n\n') + 1); // the events complete so far
            if (events(whole).some(e => /"(result|error)"\s*:/.test(e.data ?? ''))) break;
        }
    } catch {
        // aborted: read for long enough
    }
    clearTimeout(timer);
    ac.abort();
    return read(r, text);
}

let nextId = 1;
const call = (name, args = {}, id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
const list = (id = nextId++) => ({ jsonrpc: '2.0', id, method: 'tools/list', params: {} });
const bearer = t => ({ Authorization: `Bearer ${t}` });
const sid = s => ({ 'Mcp-Session-Id': s });

/** Opens a session (initialize + initialized); returns its Mcp-Session-Id. headers: an object, or a function making each request's (DPoP: a fresh proof). */
async function open(url, headers = {}, version = VERSION) {
    const h = typeof headers === 'function' ? headers : () => headers;
    const init = await send(url, { body: { jsonrpc: '2.0', id: nextId++, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'parity', version: '0' } } }, headers: h(), version });
    const s = init.headers.get('mcp-session-id');
    if (init.status !== 200 || !s) throw new Error(`initialize at ${url}: HTTP ${init.status} ${JSON.stringify(init.messages.map(m => m.value))}`);
    const done = await send(url, { body: { jsonrpc: '2.0', method: 'notifications/initialized' }, headers: { ...h(), ...sid(s) }, version });
    if (done.status !== 202) throw new Error(`notifications/initialized at ${url}: HTTP ${done.status}`);
    return s;
}

/**
 * What is compared of an answer. ids: each answer's id as written is shown,
 * and the answers are ordered by it (a batch: the order of a merged answer
 * is the PEP's business).
 */
function observe(url, r, { list = false, ids = false } = {}) {
    const origin = new URL(url).origin;
    const www = r.headers.get('www-authenticate');
    const o = { status: r.status, kind: r.kind };
    if (www) o.www = www.split(origin).join('<origin>');
    o.answers = r.messages.map(({ text, value: m }) => {
        const id = m.unparsed === undefined && m.id !== undefined && m.id !== null ? memberText(text, 'id') : null;
        const a = ids ? { id } : {};
        if (m.error) return { ...a, nullId: id === null, code: m.error.code, message: m.error.message };
        if (m.result) {
            if (list && m.result.tools) return { ...a, names: m.result.tools.map(t => t.name).sort(), cacheScope: m.result.cacheScope };
            return { ...a, result: m.result.isError ? 'tool error' : 'result' };
        }
        return m.unparsed !== undefined ? { unparsed: true } : { ...a, other: Object.keys(m).sort().join(',') };
    });
    if (ids) o.answers.sort((x, y) => (x.id === null) - (y.id === null) || (x.id === null ? 0 : x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    return o;
}

/** A GET replay: a list on a fresh resumable session, (forget: 16 lists more,) then GET after its priming event. */
async function replay(url, headers, { forget = false } = {}) {
    const s = await open(url, headers, RESUME_VERSION);
    const h = { ...headers, ...sid(s) };
    const first = await send(url, { body: list(), headers: h, version: RESUME_VERSION });
    const priming = first.events.find(e => e.id && !e.data?.trim());
    if (!priming) return { status: `no priming event (HTTP ${first.status} ${first.kind})`, answers: [] };
    for (let i = 0; forget && i < 16; i++) await send(url, { body: list(), headers: h, version: RESUME_VERSION });
    return observe(url, await stream(url, { ...h, 'Last-Event-ID': priming.id }, RESUME_VERSION), { list: true });
}

/** A batch of every kind: allowed (a call, a list), refused (401 in band, hidden), malformed, a notification; ids of every spelling. */
const MIXED_BATCH = `[${[
    JSON.stringify(call('lookup_product', {}, 201)),
    JSON.stringify(list('list-1')),
    '{"jsonrpc":"2.0","id":3.0,"method":"tools/call","params":{"name":"generate_qr_url","arguments":{"text":"x"}}}',
    '{"jsonrpc":"2.0","id":"\\u0034","method":"tools/call","params":{"name":"internal_debug","arguments":{}}}',
    '{"jsonrpc":"1.0","method":"x"}',
    '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"none"}}'
].join(',')}]`;
/** An allowed call whose id the servers answer respelt (5.0 as 5). */
const RESPELT_BATCH = '[{"jsonrpc":"2.0","id":5.0,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}]';
const RESPELT_CALL = '{"jsonrpc":"2.0","id":9.0,"method":"tools/call","params":{"name":"lookup_product","arguments":{}}}';

/** A bound token's request headers: the DPoP scheme and a fresh proof (or the one given). */
const dpop = (s, proof = dpopProof(s.key, { htu: s.url, token: s.bound })) => ({ Authorization: `DPoP ${s.bound}`, DPoP: proof });

/** The same DPoP proof twice: what the second request gets, after the status of the first. */
async function replayedProof(s) {
    const h = { ...dpop(s), ...sid(s.boundSid) };
    const first = await send(s.url, { body: call('lookup_product'), headers: h });
    const second = observe(s.url, await send(s.url, { body: call('lookup_product'), headers: h }));
    return { ...second, status: `${first.status}, then ${second.status}` };
}

/**
 * The cases: [name, mode, run]; run gets the point's state for that mode
 * (its URL, tokens, sessions) and returns what is compared.
 */
const CASES = [
    ['anonymous tools/list: the visible names', 'json', async s => observe(s.url, await send(s.url, { body: list(), headers: sid(s.anon) }), { list: true })],
    ['anonymous lookup_product: allowed', 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: sid(s.anon) }))],
    ['anonymous generate_qr_url: 401 challenge', 'json', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: sid(s.anon) }))],
    ['token without the scope: 403 insufficient_scope', 'json', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...bearer(s.noScope), ...sid(s.noScopeSid) } }))],
    ['token with the scope: generate_qr_url allowed', 'json', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...bearer(s.alice), ...sid(s.aliceSid) } }))],
    ['SSE: anonymous tools/list: the list event filtered', 'sse', async s => observe(s.url, await send(s.url, { body: list(), headers: sid(s.anon) }), { list: true })],
    ['SSE: anonymous lookup_product: allowed', 'sse', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: sid(s.anon) }))],
    ['SSE: token with the scope: generate_qr_url allowed', 'sse', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...bearer(s.alice), ...sid(s.aliceSid) } }))],
    ['SSE: with the scope: tools/list filtered for the user', 'sse', async s => observe(s.url, await send(s.url, { body: list(), headers: { ...bearer(s.alice), ...sid(s.aliceSid) } }), { list: true })],
    ['invalid token: 401 invalid_token', 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: { ...bearer('not.a.token'), ...sid(s.anon) } }))],
    ['token for another resource: 401', 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: { ...bearer(s.foreign), ...sid(s.anon) } }))],
    ['hidden tool internal_debug: in band -32602', 'json', async s => observe(s.url, await send(s.url, { body: call('internal_debug'), headers: sid(s.anon) }))],
    ['hidden tool, id 1.0: answered under 1.0', 'json', async s => observe(s.url, await send(s.url, { raw: '{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"internal_debug","arguments":{}}}', headers: sid(s.anon) }), { ids: true })],
    ['a lone call with id 9.0, answered 9 by the servers: relayed as it is', 'json', async s => observe(s.url, await send(s.url, { raw: RESPELT_CALL, headers: sid(s.anon) }), { ids: true })],
    ['SSE: a lone call with id 9.0, answered 9 by the servers: relayed, then -32603 under 9.0', 'sse', async s => observe(s.url, await send(s.url, { raw: RESPELT_CALL, headers: sid(s.anon) }), { ids: true })],
    ['GET with an invalid token: 401', 'json', async s => observe(s.url, await send(s.url, { method: 'GET', headers: { ...bearer('not.a.token'), ...sid(s.anon) } }))],
    ['DELETE with an invalid token: 401', 'json', async s => observe(s.url, await send(s.url, { method: 'DELETE', headers: { ...bearer('not.a.token'), ...sid(s.anon) } }))],
    ['GET anonymous on an anonymous session: allowed', 'json', async s => observe(s.url, await send(s.url, { method: 'GET', headers: sid(s.anon) }))],
    ['GET replay after Last-Event-ID: the list answer filtered for the caller', 'sse', async s => replay(s.url, {})],
    ['GET replay, with the scope: filtered for the user', 'sse', async s => replay(s.url, bearer(s.alice))],
    ['GET replay of a list 17 lists back (not remembered): dropped', 'sse', async s => replay(s.url, {}, { forget: true })],
    ['Mcp-Method header mismatch: 400 -32020', 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: { 'Mcp-Method': 'tools/list', ...sid(s.anon) } }))],
    ['Mcp-Name header mismatch: 400 -32020', 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: { 'Mcp-Method': 'tools/call', 'Mcp-Name': 'generate_qr_url', ...sid(s.anon) } }))],
    ["another user's token on a session: 403", 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: { ...bearer(s.bob), ...sid(s.aliceSid) } }))],
    ["anonymous on an authenticated user's session: 403", 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: sid(s.aliceSid) }))],
    ['not JSON: 400 -32700', 'json', async s => observe(s.url, await send(s.url, { raw: '{"jsonrpc":', headers: sid(s.anon) }))],
    ['a batch, allowed and refused: each refusal in band under its id as written, the rest answered by the server', 'json', async s => observe(s.url, await send(s.url, { raw: MIXED_BATCH, headers: sid(s.batchSid), version: BATCH_VERSION }), { list: true, ids: true })],
    ['SSE: a batch, allowed and refused', 'sse', async s => observe(s.url, await send(s.url, { raw: MIXED_BATCH, headers: sid(s.batchSid), version: BATCH_VERSION }), { list: true, ids: true })],
    ['a batch: an allowed call with id 5.0, answered 5 by the servers: not an answer, -32603 under 5.0', 'json', async s => observe(s.url, await send(s.url, { raw: RESPELT_BATCH, headers: sid(s.batchSid), version: BATCH_VERSION }), { ids: true })],
    ['SSE: a batch: an allowed call with id 5.0, answered 5: -32603 under 5.0', 'sse', async s => observe(s.url, await send(s.url, { raw: RESPELT_BATCH, headers: sid(s.batchSid), version: BATCH_VERSION }), { ids: true })],
    ['a batch, nothing allowed: the first HTTP refusal, every request answered', 'json', async s => observe(s.url, await send(s.url, { body: [call('generate_qr_url', { text: 'x' }), call('internal_debug'), { jsonrpc: '1.0', method: 'x' }], headers: sid(s.anon) }))],
    ['an empty batch: 400', 'json', async s => observe(s.url, await send(s.url, { body: [], headers: sid(s.anon) }))],
    ['a batch with Mcp-Method: 400 -32020', 'json', async s => observe(s.url, await send(s.url, { body: [call('internal_debug')], headers: { 'Mcp-Method': 'tools/call', ...sid(s.anon) } }))],
    ['a batch with two requests of one id: 400', 'json', async s => observe(s.url, await send(s.url, { body: [{ ...call('internal_debug'), id: 7 }, { ...call('internal_debug'), id: 7 }], headers: sid(s.anon) }))],
    ['a batch of 101 messages: 413', 'json', async s => observe(s.url, await send(s.url, { body: Array.from({ length: 101 }, () => call('internal_debug')), headers: sid(s.anon) }))],
    ['PUT: 405', 'json', async s => observe(s.url, await send(s.url, { method: 'PUT', body: {} }))],
    ['two Authorization headers, each with a valid token: 401 invalid_token, never one of them used', 'json', async s => observe(s.url, await sendLines(s.url, call('generate_qr_url', { text: 'x' }), { Authorization: [`Bearer ${s.alice}`, `Bearer ${s.alice}`], ...sid(s.aliceSid) }))],
    ['an Authorization header and an empty one: 401', 'json', async s => observe(s.url, await sendLines(s.url, call('lookup_product'), { Authorization: [`Bearer ${s.alice}`, ''], ...sid(s.anon) }))],
    ['a foreign Origin: 403', 'json', async s => observe(s.url, await send(s.url, { body: call('lookup_product'), headers: { Origin: 'http://evil.example', ...sid(s.anon) } }))],
    ['DPoP: a bound token and a valid proof: generate_qr_url allowed', 'json', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...dpop(s), ...sid(s.boundSid) } }))],
    ['SSE: DPoP: a bound token and a valid proof: generate_qr_url allowed', 'sse', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...dpop(s), ...sid(s.boundSid) } }))],
    ['DPoP: the bound token as Bearer: 401 invalid_token', 'json', async s => observe(s.url, await send(s.url, { body: call('generate_qr_url', { text: 'x' }), headers: { ...bearer(s.bound), ...sid(s.boundSid) } }))],
    ['DPoP: the same proof twice: the second 401 invalid_dpop_proof', 'json', async s => replayedProof(s)],
    ['DPoP: a batch of two allowed calls with one proof: both answered by the server', 'json', async s => observe(s.url, await send(s.url, { body: [call('generate_qr_url', { text: 'x' }, 601), call('lookup_product', {}, 602)], headers: { ...dpop(s), ...sid(s.boundBatchSid) }, version: BATCH_VERSION }), { ids: true })],
    ['SSE: DPoP: a batch of two allowed calls with one proof', 'sse', async s => observe(s.url, await send(s.url, { body: [call('generate_qr_url', { text: 'x' }, 601), call('lookup_product', {}, 602)], headers: { ...dpop(s), ...sid(s.boundBatchSid) }, version: BATCH_VERSION }), { ids: true })],
    ['DPoP: a batch of a list and a call with one proof: the list filtered (its answer checked with the same proof)', 'json', async s => observe(s.url, await send(s.url, { body: [list(611), call('lookup_product', {}, 612)], headers: { ...dpop(s), ...sid(s.boundBatchSid) }, version: BATCH_VERSION }), { list: true, ids: true })],
    ['DPoP: a lone tools/list with a proof: filtered', 'json', async s => observe(s.url, await send(s.url, { body: list(), headers: { ...dpop(s), ...sid(s.boundSid) } }), { list: true })]
];

// Per enforcement point and answer mode: its URL, tokens and sessions.
const state = {};
for (const p of points) {
    state[p.name] = {};
    for (const mode of ['json', 'sse']) {
        const url = p[mode];
        const alice = mint(url, { scope: 'qr:generate' });
        const noScope = mint(url, { scope: '' });
        const s = { url, alice, noScope, bob: mint(url, { scope: 'qr:generate', sub: 'bob' }), foreign: mint('http://127.0.0.1:9/elsewhere', { scope: 'qr:generate' }) };
        s.anon = await open(url);
        s.aliceSid = await open(url, bearer(alice));
        s.noScopeSid = await open(url, bearer(noScope));
        s.batchSid = await open(url, {}, BATCH_VERSION);
        s.key = dpopKey();
        s.bound = mint(url, { scope: 'qr:generate', jkt: s.key.jkt });
        s.boundSid = await open(url, () => dpop(s));
        s.boundBatchSid = await open(url, () => dpop(s), BATCH_VERSION);
        state[p.name][mode] = s;
    }
}

const show = o => {
    const parts = [o.kind ? `${o.status} ${o.kind}` : String(o.status)];
    for (const a of o.answers ?? []) {
        const id = a.id !== undefined ? `id=${a.id ?? 'null'}: ` : '';
        if (a.code !== undefined) parts.push(`${id}${a.code}${a.nullId && a.id === undefined ? '(id null)' : ''} ${JSON.stringify(a.message)}`);
        else if (a.names) parts.push(`${id}[${a.names.join(',')}]${a.cacheScope ? ` ${a.cacheScope}` : ''}`);
        else parts.push(id + Object.entries(a).filter(([k]) => k !== 'id').map(([, v]) => v).join(''));
    }
    if (o.www) parts.push(`WWW-Authenticate: ${o.www}`);
    return parts.join(' | ');
};

let passed = 0;
let failed = 0;
const rows = [];
for (const [name, mode, run] of CASES) {
    const got = {};
    for (const p of points) {
        try {
            got[p.name] = await run(state[p.name][mode]);
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
