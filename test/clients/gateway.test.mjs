// mcp-pdp's gateway in front of an unmodified third-party MCP server, with
// real clients. The server is @modelcontextprotocol/server-everything (pinned
// in package.json), once as a stdio program the gateway starts and once in its
// Streamable HTTP mode; the clients are the official TypeScript SDK (Client,
// StreamableHTTPClientTransport, its OAuth code) and
// @modelcontextprotocol/inspector-cli. Started by run.sh, which passes PDP_BIN;
// lib/gateway-env.mjs starts everything else (see its header).
//
// The catalog (lib/gateway-env.mjs CATALOG): echo, get-annotated-message and
// get-tiny-image are public; get-sum needs math:sum and get-structured-content
// weather:read (step-up: listed to all, challenged when called without the
// scope); get-env is denied, and every tool the catalog does not name is
// hidden (unknown: deny). Both resources use challenge_scopes: accumulate, so
// the 403 for weather:read also names the math:sum already granted.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { TestOAuthProvider, jwtClaims } from './lib/provider.mjs';
import { parseBearerChallenge } from './lib/challenge.mjs';
import { CATALOG, EVERYTHING_ENTRY, INSPECTOR_CLI, SCOPE_A, SCOPE_B, startGatewayEnv } from './lib/gateway-env.mjs';

const PDP_BIN = process.env.PDP_BIN;
if (!PDP_BIN) throw new Error('PDP_BIN must be set: run test/clients/run.sh');

const VISIBLE = [...CATALOG.public, ...Object.keys(CATALOG.stepUp)].sort();
const ASSERTION_HEADER = 'x-mcp-pdp-assertion';

/** Lists with a bound, so that a list the gateway never answers fails the test quickly instead of hanging. */
const LIST_OPTS = { timeout: 5000 };

let env;
/** server-everything's own, unfiltered tool names, per upstream kind (asked directly, not through the gateway). */
const upstreamTools = {};
/** Every access token any client in this file obtained: none may reach an upstream. */
const issuedTokens = new Set();

// ---------------------------------------------------------------------------
// helpers

/**
 * A fetch for the SDK transport that records what the client sent and got:
 * HTTP method, JSON-RPC method and tool, whether Authorization was sent, and
 * the answer's status, WWW-Authenticate, Content-Type and (JSON answers only;
 * SSE streams are not consumed here) body.
 */
function recordingFetch(log) {
    return async (url, init = {}) => {
        let msg;
        try {
            msg = typeof init.body === 'string' ? JSON.parse(init.body) : undefined;
        } catch {
            msg = undefined;
        }
        const headers = new Headers(init.headers);
        const entry = {
            http: init.method ?? 'GET',
            url: String(url),
            method: msg?.method,
            tool: msg?.method === 'tools/call' ? msg.params?.name : undefined,
            bearer: headers.has('authorization'),
            request: { headers: Object.fromEntries(headers), body: init.body }
        };
        log.push(entry);
        const res = await fetch(url, init);
        entry.status = res.status;
        entry.www_authenticate = res.headers.get('www-authenticate') ?? undefined;
        entry.content_type = res.headers.get('content-type') ?? undefined;
        entry.headers = Object.fromEntries(res.headers);
        if (!entry.content_type?.includes('text/event-stream')) entry.body = await res.clone().text();
        return res;
    };
}

/** The JSON-RPC requests the client sent to the MCP endpoint, as "method[tool] status". */
const exchanges = (log, endpoint) =>
    log.filter(e => e.url === endpoint && e.http === 'POST' && e.method).map(e => `${e.method}${e.tool ? `[${e.tool}]` : ''} ${e.status}`);

/** For a failing assertion: what the client sent and got, in full. */
const dump = log => JSON.stringify(log, null, 2);

async function connect(uri, provider, log) {
    const transport = new StreamableHTTPClientTransport(new URL(uri), { authProvider: provider, fetch: recordingFetch(log) });
    const client = new Client({ name: 'pdp-gateway-client-test', version: '0.0.0' });
    await client.connect(transport);
    return { client, transport };
}

/** The application's half of a step-up (as in stepup.test.mjs): on UnauthorizedError finish the flow and retry once. */
async function withStepUp(transport, provider, op) {
    try {
        return { result: await op(), steppedUp: false };
    } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
        await transport.finishAuth(provider.takeCode());
        return { result: await op(), steppedUp: true };
    }
}

/** Signs in up front with the SDK's auth() for scope (a user who signed in for something else first). */
async function signInFirst(uri, provider, scope) {
    const serverUrl = new URL(uri);
    assert.equal(await auth(provider, { serverUrl, scope }), 'REDIRECT');
    assert.equal(await auth(provider, { serverUrl, authorizationCode: provider.takeCode() }), 'AUTHORIZED');
    keepTokens(provider);
}

function keepTokens(provider) {
    for (const t of provider.savedTokens) issuedTokens.add(t.access_token);
}

const text = result => result.content.map(c => c.text ?? '').join('');
const callSum = client => client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
const callWeather = client => client.callTool({ name: 'get-structured-content', arguments: { location: 'Chicago' } });
const scopeSet = s => new Set(s.split(' '));

/** Strictly parses every challenge the client got; returns them. */
function strictChallenges(log, t) {
    const out = log.filter(e => e.www_authenticate);
    for (const e of out) {
        const c = parseBearerChallenge(e.www_authenticate);
        assert.equal(c.scheme, 'Bearer');
        t.diagnostic(`challenge ${e.status} on ${e.method}${e.tool ? ` ${e.tool}` : ''}: ${e.www_authenticate}`);
    }
    return out;
}

const prmURL = uri => {
    const u = new URL(uri);
    return `${u.origin}/.well-known/oauth-protected-resource${u.pathname}`;
};

/** The unfiltered tool list of server-everything, asked with the SDK client directly (no gateway). */
async function directToolNames(kind) {
    const client = new Client({ name: 'pdp-gateway-client-test-direct', version: '0.0.0' });
    const transport =
        kind === 'stdio'
            ? new StdioClientTransport({ command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], stderr: 'ignore' })
            : new StreamableHTTPClientTransport(new URL(env.everythingURL));
    await client.connect(transport);
    try {
        return (await client.listTools()).tools.map(x => x.name).sort();
    } finally {
        await client.close();
    }
}

// ---------------------------------------------------------------------------

before(async () => {
    env = await startGatewayEnv({ pdpBin: PDP_BIN });
    for (const kind of ['stdio', 'http']) upstreamTools[kind] = await directToolNames(kind);
});

after(async () => {
    await env?.close();
});

for (const kind of ['stdio', 'http']) {
    describe(`server-everything over ${kind}, through the gateway`, () => {
        const uri = () => env.resources[kind];

        test('the upstream has every catalog tool and the hidden get-env (the catalog names real tools)', () => {
            for (const name of [...VISIBLE, CATALOG.hidden]) assert.ok(upstreamTools[kind].includes(name), `server-everything has ${name}: ${upstreamTools[kind]}`);
            assert.ok(upstreamTools[kind].length > VISIBLE.length + 1, 'it has tools the catalog does not name (hidden by unknown: deny)');
        });

        test('anonymous tools/list: public and step-up tools with their securitySchemes, not the hidden ones', async t => {
            const log = [];
            const provider = new TestOAuthProvider({ name: `${kind}-anonymous-list` });
            const { client } = await connect(uri(), provider, log);
            try {
                const { tools } = await client.listTools(undefined, LIST_OPTS);
                const byName = Object.fromEntries(tools.map(x => [x.name, x]));
                assert.deepEqual(Object.keys(byName).sort(), VISIBLE, dump(log));
                assert.deepEqual(byName.echo._meta?.securitySchemes, [{ type: 'noauth' }]);
                assert.deepEqual(byName['get-sum']._meta?.securitySchemes, [{ type: 'oauth2', scopes: [SCOPE_A] }]);
                assert.deepEqual(byName['get-structured-content']._meta?.securitySchemes, [{ type: 'oauth2', scopes: [SCOPE_B] }]);
                // The upstream's own tool definitions come through intact.
                assert.equal(byName['get-sum'].title, 'Get Sum Tool');
                assert.deepEqual(Object.keys(byName['get-sum'].inputSchema.properties).sort(), ['a', 'b']);
                assert.match(text(await client.callTool({ name: 'echo', arguments: { message: 'hi' } })), /^Echo: hi$/);
                assert.equal(provider.tokens(), undefined, 'still anonymous');
            } finally {
                await client.close();
            }
            t.diagnostic(exchanges(log, uri()).join(', '));
            const list = log.find(e => e.method === 'tools/list');
            assert.equal(list.status, 200);
            assert.equal(list.bearer, false);
        });

        test(`anonymous call of get-sum: 401 scope="${SCOPE_A}", the SDK authorizes against the test AS, the retry is allowed`, async t => {
            const log = [];
            const asMark = env.as.log.length;
            const provider = new TestOAuthProvider({ name: `${kind}-step-up-401` });
            const { client, transport } = await connect(uri(), provider, log);
            try {
                const { result, steppedUp } = await withStepUp(transport, provider, () => callSum(client));
                keepTokens(provider);
                assert.equal(steppedUp, true, `the first call was challenged:\n${dump(log)}`);
                assert.notEqual(result.isError, true, JSON.stringify(result));
                assert.equal(text(result), 'The sum of 2 and 3 is 5.');
                const claims = jwtClaims(provider.tokens().access_token);
                assert.equal(claims.iss, env.as.issuer);
                assert.equal(claims.aud, uri(), 'aud = the RFC 8707 resource = the gateway resource');
                assert.equal(claims.scope, SCOPE_A);
                // Still the same session, now with a token: public tools work too.
                assert.match(text(await client.callTool({ name: 'echo', arguments: { message: 'again' } })), /^Echo: again$/);
            } finally {
                await client.close();
            }
            t.diagnostic(exchanges(log, uri()).join(', '));
            assert.deepEqual(exchanges(log, uri()), [
                'initialize 200',
                'notifications/initialized 202',
                'tools/call[get-sum] 401',
                'tools/call[get-sum] 200',
                'tools/call[echo] 200'
            ]);
            const [ch] = strictChallenges(log, t);
            const p = parseBearerChallenge(ch.www_authenticate).params;
            assert.equal(p.scope, SCOPE_A);
            assert.equal(p.resource_metadata, prmURL(uri()));
            assert.equal(ch.headers['content-type'], 'application/json', 'the 401 carries a JSON-RPC error body');
            assert.equal(typeof JSON.parse(ch.body).error?.code, 'number', ch.body);
            assert.ok(log.some(e => e.url === prmURL(uri()) && e.status === 200), 'the SDK read the resource metadata from the gateway');
            const as = env.as.log.slice(asMark);
            const authz = as.filter(e => e.type === 'authorize');
            assert.deepEqual(
                authz.map(e => [e.scope, e.resource, e.code_challenge_method]),
                [[SCOPE_A, uri(), 'S256']]
            );
            assert.deepEqual(
                as.filter(e => e.type === 'token').map(e => [e.grant_type, e.resource, e.issued_scope]),
                [['authorization_code', uri(), SCOPE_A]]
            );
            assert.equal(log.findLast(e => e.tool === 'get-sum').bearer, true);
        });

        test(`token with ${SCOPE_A}, call of get-structured-content: 403 insufficient_scope for ${SCOPE_B} (+ ${SCOPE_A}), the SDK re-authorizes, allowed`, async t => {
            const log = [];
            const provider = new TestOAuthProvider({ name: `${kind}-step-up-403` });
            await signInFirst(uri(), provider, SCOPE_A);
            const asMark = env.as.log.length;
            const { client, transport } = await connect(uri(), provider, log);
            try {
                assert.equal(text(await callSum(client)), 'The sum of 2 and 3 is 5.');
                const { result, steppedUp } = await withStepUp(transport, provider, () => callWeather(client));
                keepTokens(provider);
                assert.equal(steppedUp, true, `the call was challenged:\n${dump(log)}`);
                assert.notEqual(result.isError, true, JSON.stringify(result));
                assert.equal(typeof result.structuredContent?.conditions, 'string', JSON.stringify(result));
                const claims = jwtClaims(provider.tokens().access_token);
                assert.deepEqual(scopeSet(claims.scope), new Set([SCOPE_A, SCOPE_B]), 'accumulate: the new token keeps math:sum');
                assert.equal(claims.aud, uri());
                // Both step-up tools with the one token.
                assert.equal(text(await callSum(client)), 'The sum of 2 and 3 is 5.');
            } finally {
                await client.close();
            }
            t.diagnostic(exchanges(log, uri()).join(', '));
            assert.deepEqual(exchanges(log, uri()), [
                'initialize 200',
                'notifications/initialized 202',
                'tools/call[get-sum] 200',
                'tools/call[get-structured-content] 403',
                'tools/call[get-structured-content] 200',
                'tools/call[get-sum] 200'
            ]);
            const [ch] = strictChallenges(log, t);
            const p = parseBearerChallenge(ch.www_authenticate).params;
            assert.equal(p.error, 'insufficient_scope');
            assert.deepEqual(scopeSet(p.scope), new Set([SCOPE_A, SCOPE_B]));
            assert.equal(p.resource_metadata, prmURL(uri()));
            const authz = env.as.log.slice(asMark).filter(e => e.type === 'authorize');
            assert.equal(authz.length, 1);
            assert.deepEqual(scopeSet(authz[0].scope), new Set([SCOPE_A, SCOPE_B]));
            assert.equal(authz[0].resource, uri());
        });

        test('tools/list with both step-up scopes: the same tools, get-env still not listed', async () => {
            const log = [];
            const provider = new TestOAuthProvider({ name: `${kind}-list-user` });
            await signInFirst(uri(), provider, `${SCOPE_A} ${SCOPE_B}`);
            const { client } = await connect(uri(), provider, log);
            try {
                const { tools } = await client.listTools(undefined, LIST_OPTS);
                assert.deepEqual(tools.map(x => x.name).sort(), VISIBLE, dump(log));
                assert.equal(log.find(e => e.method === 'tools/list').bearer, true);
            } finally {
                await client.close();
            }
        });

        test('the hidden tool get-env is answered as unknown, anonymously and with every scope', async t => {
            const anonLog = [];
            const anon = await connect(uri(), new TestOAuthProvider({ name: `${kind}-hidden-anon` }), anonLog);
            const userLog = [];
            const provider = new TestOAuthProvider({ name: `${kind}-hidden-user` });
            await signInFirst(uri(), provider, `${SCOPE_A} ${SCOPE_B}`);
            const user = await connect(uri(), provider, userLog);
            try {
                for (const [who, { client }, log] of [
                    ['anonymous', anon, anonLog],
                    ['with both scopes', user, userLog]
                ]) {
                    await assert.rejects(
                        client.callTool({ name: CATALOG.hidden, arguments: {} }),
                        err => {
                            assert.ok(err instanceof McpError, `${who}: ${err}\n${dump(log)}`);
                            assert.equal(err.code, -32602, `${who}: ${err.message}`);
                            assert.match(err.message, /unknown tool/i);
                            return true;
                        },
                        `${who}: get-env must not run`
                    );
                    const call = log.find(e => e.tool === CATALOG.hidden);
                    assert.equal(call.status, 200, 'in band, no challenge');
                    assert.equal(call.www_authenticate, undefined);
                    t.diagnostic(`${who}: ${call.body}`);
                }
            } finally {
                await anon.client.close();
                await user.client.close();
            }
        });
    });
}

// ---------------------------------------------------------------------------
// @modelcontextprotocol/inspector-cli, headless (--cli), through the gateway.

/**
 * Runs the inspector CLI bin (it runs its build/index.js as a child); kills its process group after 20 s.
 * The working directory is the CLI's own build/: inspector-cli 1.0.3 picks the package.json it imports
 * for its client name with fs.existsSync("../package.json") (relative to the working directory) but
 * imports it relative to build/index.js, so from any directory whose parent has no package.json it
 * fails with "Cannot find module .../node_modules/@modelcontextprotocol/package.json".
 */
function inspector(args) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [INSPECTOR_CLI, '--cli', ...args], {
            cwd: dirname(INSPECTOR_CLI),
            detached: true,
            stdio: ['ignore', 'pipe', 'pipe']
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', c => (stdout += c));
        child.stderr.on('data', c => (stderr += c));
        const killGroup = () => {
            try {
                process.kill(-child.pid, 'SIGKILL');
            } catch {
                // already gone
            }
        };
        const timer = setTimeout(killGroup, 20_000);
        process.on('exit', killGroup);
        child.on('error', reject);
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            killGroup();
            process.off('exit', killGroup);
            resolve({ code, signal, stdout, stderr });
        });
    });
}

for (const kind of ['stdio', 'http']) {
    test(`inspector-cli over ${kind}: tools/list anonymously`, async () => {
        const list = await inspector([env.resources[kind], '--transport', 'http', '--method', 'tools/list']);
        assert.equal(list.code, 0, `exit ${list.code} ${list.signal ?? ''}\nstdout: ${list.stdout}\nstderr: ${list.stderr}`);
        assert.deepEqual(JSON.parse(list.stdout).tools.map(x => x.name).sort(), VISIBLE);
    });

    // inspector-cli's tools/call lists the tools first (to convert the arguments to the schema's types).
    test(`inspector-cli over ${kind}: get-sum refused anonymously, allowed with a token in --header`, async t => {
        const uri = env.resources[kind];
        const sumArgs = ['--transport', 'http', '--method', 'tools/call', '--tool-name', 'get-sum', '--tool-arg', 'a=2', 'b=3'];
        const anon = await inspector([uri, ...sumArgs]);
        assert.notEqual(anon.code, 0, `anonymous get-sum must fail:\n${anon.stdout}`);
        assert.doesNotMatch(anon.stdout, /The sum of/);
        // The CLI has no OAuth flow; it reports the gateway's JSON-RPC error body of the 401.
        assert.match(anon.stderr, /Failed to call tool get-sum: .*"message":"authorization required/, anon.stderr);
        t.diagnostic(`anonymous get-sum: exit ${anon.code}: ${anon.stderr.replace(/\s+/g, ' ').trim().slice(-160)}`);

        const provider = new TestOAuthProvider({ name: `${kind}-inspector` });
        await signInFirst(uri, provider, SCOPE_A);
        const withToken = await inspector([uri, ...sumArgs, '--header', `Authorization: Bearer ${provider.tokens().access_token}`]);
        assert.equal(withToken.code, 0, `exit ${withToken.code}\nstdout: ${withToken.stdout}\nstderr: ${withToken.stderr}`);
        assert.equal(text(JSON.parse(withToken.stdout)), 'The sum of 2 and 3 is 5.');
    });
}

// ---------------------------------------------------------------------------
// No token passthrough: what the upstreams actually received.

test('the HTTP upstream never received an Authorization header, only the gateway identity assertion', t => {
    const seen = env.recorder.log;
    assert.ok(seen.length > 0);
    assert.ok(
        seen.some(e => e.body.includes('"get-sum"')),
        'the step-up calls reached the upstream through the recorder'
    );
    const subjects = new Set();
    for (const e of seen) {
        assert.equal(e.headers.authorization, undefined, `request ${e.seq} (${e.method} ${e.body.slice(0, 80)}) carried Authorization`);
        for (const tok of issuedTokens) {
            assert.ok(!JSON.stringify(e.headers).includes(tok) && !e.body.includes(tok), `request ${e.seq} carried an access token`);
        }
        const a = e.headers[ASSERTION_HEADER];
        assert.ok(a, `request ${e.seq} (${e.method}) has no ${ASSERTION_HEADER}`);
        const claims = jwtClaims(a);
        assert.equal(claims.aud, env.httpUpstream, 'assertion audience = the upstream URL');
        subjects.add(claims.anon === true ? '(anonymous)' : `${claims.sub} ${claims.scope ?? ''}`.trim());
    }
    t.diagnostic(`${seen.length} requests recorded; assertion subjects: ${[...subjects].join(', ')}`);
    assert.ok(subjects.has('(anonymous)'));
    assert.ok([...subjects].some(s => s.startsWith('alice ') && s.includes(SCOPE_A)), [...subjects].join(', '));
    assert.ok(issuedTokens.size >= 6, `tokens were issued and sent to the gateway (${issuedTokens.size})`);
});

test('the stdio upstream never read a token on stdin nor got one in its environment', t => {
    const lines = readFileSync(env.stdinLog, 'utf8').trim().split('\n').map(l => JSON.parse(l));
    const envs = lines.filter(l => l.env);
    const data = lines.filter(l => l.data !== undefined).map(l => l.data).join('');
    assert.ok(envs.length >= 4, `one child per MCP session (${envs.length} started)`);
    assert.ok(data.includes('"get-sum"'), 'the step-up calls reached a child');
    for (const { env: childEnv, pid } of envs) {
        assert.deepEqual(
            Object.keys(childEnv).filter(k => /auth|token|bearer/i.test(k)),
            [],
            `child ${pid} environment`
        );
        for (const tok of issuedTokens) assert.ok(!JSON.stringify(childEnv).includes(tok), `child ${pid} got a token in its environment`);
    }
    assert.doesNotMatch(data, /bearer|authorization/i);
    for (const tok of issuedTokens) assert.ok(!data.includes(tok), 'a child read an access token');
    t.diagnostic(`${envs.length} children, ${data.length} bytes read on stdin, environment keys: ${Object.keys(envs[0].env).sort().join(' ')}`);
});
