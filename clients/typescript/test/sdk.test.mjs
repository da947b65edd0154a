// The official SDK clients (1.x and 2.x) with their OAuth provider against
// SDK servers (1.x and 2.x) protected by pdpAuth, in JSON and SSE answer
// modes, with a real mcp-pdp and a test authorization server: anonymous list,
// a 401 step-up, a 403 step-up to a second scope, hidden tools answered as
// unknown, and the caller reaching the tool handlers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as ClientTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError as UnauthorizedV1 } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client as ClientV2, StreamableHTTPClientTransport as ClientTransportV2, UnauthorizedError as UnauthorizedV2 } from '@modelcontextprotocol/client';
import { SCOPE_A, SCOPE_B, freePorts, startEnv } from './lib/env.mjs';
import { TestOAuthProvider } from '../../../test/clients/lib/provider.mjs'; // shared with the repository's client tests
import { startMcpServer } from './lib/servers.mjs';

const COMBOS = [
    { line: 1, json: true, framework: 'express' },
    { line: 1, json: false, framework: 'http' },
    { line: 2, json: true, framework: 'http' },
    { line: 2, json: false, framework: 'express' },
    // across the lines: the 1.x client against a 2.x server and the other way round
    { line: 2, client: 1, json: false, framework: 'http' },
    { line: 1, client: 2, json: true, framework: 'http' }
];
const clientLine = c => c.client ?? c.line;
const label = c =>
    c.client ? `SDK ${c.client}.x client, ${c.line}.x server (${c.framework}), ${c.json ? 'JSON' : 'SSE'} answers` : `SDK ${c.line}.x client and server (${c.framework}), ${c.json ? 'JSON' : 'SSE'} answers`;

let env;
const servers = [];

before(async () => {
    const ports = await freePorts(COMBOS.length);
    env = await startEnv(ports.map(p => `http://127.0.0.1:${p}/mcp`));
    for (const [i, c] of COMBOS.entries()) {
        servers.push(await startMcpServer({ line: c.line, json: c.json, framework: c.framework, port: ports[i], auth: { pdpUrl: env.pdpUrl } }));
    }
});

after(async () => {
    for (const s of servers) await s.close();
    await env?.close();
});

const text = r => r.content.map(c => c.text).join('');
/** The scope of every authorization the SDK asked for. */
const scopes = provider => provider.authorizations.map(u => u.searchParams.get('scope'));

async function connect(c, server, provider) {
    const [Client, Transport] = clientLine(c) === 1 ? [ClientV1, ClientTransportV1] : [ClientV2, ClientTransportV2];
    const transport = new Transport(new URL(server.url), { authProvider: provider });
    const client = new Client({ name: 'ts-pep-test-client', version: '0.0.0' });
    await client.connect(transport);
    return { client, transport };
}

/** The application's half of a step-up: on UnauthorizedError finish the flow and run op again. */
async function withStepUp(c, transport, provider, op) {
    const Unauthorized = clientLine(c) === 1 ? UnauthorizedV1 : UnauthorizedV2;
    try {
        return { result: await op(), steppedUp: false };
    } catch (err) {
        if (!(err instanceof Unauthorized)) throw err;
        const iss = provider.pendingIss; // RFC 9207: the 2.x client checks it, 1.x ignores it
        await transport.finishAuth(provider.takeCode(), iss);
        return { result: await op(), steppedUp: true };
    }
}

for (const [i, c] of COMBOS.entries()) {
    test(label(c), async t => {
        const server = servers[i];
        const provider = new TestOAuthProvider({ name: `ts-pep-${i}` });
        const { client, transport } = await connect(c, server, provider);
        try {
            await t.test('anonymous list: the public and step-up tools, hidden ones removed', async () => {
                const { tools } = await client.listTools();
                assert.deepEqual(tools.map(x => x.name).sort(), ['echo', 'get-sum', 'get-weather', 'whoami']);
                const sum = tools.find(x => x.name === 'get-sum');
                assert.ok(sum.securitySchemes ?? sum._meta, 'the PDP annotates step-up tools');
            });

            await t.test('anonymous call of a public tool: the handler sees no caller', async () => {
                const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
                assert.deepEqual(who, { anonymous: true });
            });

            await t.test(`protected tool: 401, the SDK authorizes for ${SCOPE_A}, the retry is allowed`, async () => {
                const before = server.calls.length;
                const { result, steppedUp } = await withStepUp(c, transport, provider, () => client.callTool({ name: 'get-sum', arguments: {} }));
                assert.equal(steppedUp, true);
                assert.equal(text(result), '3');
                assert.deepEqual(scopes(provider), [SCOPE_A]);
                assert.deepEqual(
                    server.calls.slice(before).map(x => x.name),
                    ['get-sum'],
                    'the handler ran once: the refused call never reached it'
                );
            });

            await t.test('the tool handler sees the caller (authInfo)', async () => {
                const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
                assert.equal(who.hasToken, true);
                assert.deepEqual(who.scopes, [SCOPE_A]);
                assert.match(who.clientId, /^client-/);
                assert.equal(who.resource, server.resource);
                assert.equal(who.caller.sub, 'alice');
                assert.equal(who.caller.issuer, env.as.issuer);
                assert.match(who.extra.decisionId, /./);
                const routeCaller = server.routeCallers.at(-1);
                assert.equal(routeCaller?.sub, 'alice', 'getCaller(req) in the route');
            });

            await t.test(`403 step-up to ${SCOPE_B}: the SDK re-authorizes and keeps ${SCOPE_A}`, async () => {
                const { result, steppedUp } = await withStepUp(c, transport, provider, () => client.callTool({ name: 'get-weather', arguments: {} }));
                assert.equal(steppedUp, true);
                assert.equal(text(result), 'sunny');
                assert.equal(provider.authorizations.length, 2);
                assert.deepEqual(scopes(provider)[1].split(' ').sort(), [SCOPE_A, SCOPE_B]);
                const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
                assert.deepEqual([...who.scopes].sort(), [SCOPE_A, SCOPE_B]);
            });

            await t.test('hidden tools are unknown (-32602) and never reach their handler', async () => {
                const before = server.calls.length;
                for (const name of ['secret', 'unlisted']) {
                    const err = await client.callTool({ name, arguments: {} }).then(
                        r => assert.fail(`${name} answered ${JSON.stringify(r)}`),
                        e => e
                    );
                    assert.equal(err.code, -32602, `${name}: ${err.message}`);
                }
                assert.equal(server.calls.length, before);
                const { tools } = await client.listTools();
                assert.deepEqual(tools.map(x => x.name).sort(), ['echo', 'get-sum', 'get-weather', 'whoami']);
            });
            assert.deepEqual(server.errors, [], 'pdpAuth reported no error');
        } finally {
            await client.close();
        }
    });
}
