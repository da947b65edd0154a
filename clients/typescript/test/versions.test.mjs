// Each MCP protocol version end to end through pdpAuth (issue #15 §5), with
// the official TypeScript SDK clients and a real mcp-pdp and authorization
// server:
//   2025-06-18  the 1.x client; a 2.x server whose supportedProtocolVersions
//               is ['2025-06-18'] answers initialize with it (the 1.x client
//               always offers its latest, 2025-11-25, and takes the answer)
//   2025-11-25  the 1.x client and a 1.x server (their common latest)
//   2026-07-28  the 2.x client pinned to it (versionNegotiation: {mode:
//               {pin}}: a server/discover probe, no initialize, no fallback)
//               and a 2.x server served by createMcpHandler (stateless)
// and the 2.x client negotiating (versionNegotiation: {mode: 'auto'}): the
// probe answered by the modern server (2026-07-28), and the probe refused by
// a stateful 1.x server, the client falling back to initialize (2025-11-25).
// Each once through pdpAuth and once through the PDP's gateway (upstream.url:
// the same server without pdpAuth).
// For each: the negotiated version as both ends see it (the client's, and the
// MCP-Protocol-Version header and _meta protocol version on every request the
// server got), an anonymous list without the hidden tools, an anonymous public
// call, a step-up through 401 with the SDK's OAuth provider, hidden tools
// refused as unknown without reaching their handler.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as ClientTransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError as UnauthorizedV1 } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client as ClientV2, StreamableHTTPClientTransport as ClientTransportV2, UnauthorizedError as UnauthorizedV2 } from '@modelcontextprotocol/client';
import { SCOPE_A, freePorts, startEnv } from './lib/env.mjs';
import { TestOAuthProvider } from '../../../test/clients/lib/provider.mjs'; // shared with the repository's client tests
import { startMcpServer } from './lib/servers.mjs';

const VERSIONS = [
    { version: '2025-06-18', client: 1, server: { line: 2, protocolVersions: ['2025-06-18'], json: true, framework: 'express' } },
    { version: '2025-11-25', client: 1, server: { line: 1, json: false, framework: 'http' } },
    { version: '2026-07-28', client: 2, server: { line: 2, modern: true, json: true, framework: 'express' } },
    { version: '2026-07-28', client: 2, auto: true, server: { line: 2, modern: true, json: false, framework: 'http' } },
    { version: '2025-11-25', client: 2, auto: true, server: { line: 1, json: true, framework: 'express' } }
];
const LISTED = ['echo', 'get-sum', 'get-weather', 'whoami'];

// Each version through pdpAuth, and through the PDP's gateway in front of the same kind of server without pdpAuth.
const CASES = [...VERSIONS.map(v => ({ ...v, via: 'pdpAuth' })), ...VERSIONS.map(v => ({ ...v, via: 'gateway' }))];

let env;
const servers = [];

before(async () => {
    const ports = await freePorts(CASES.length);
    const [gatewayPort] = await freePorts(1);
    const upstreams = {};
    const resources = [];
    for (const [i, c] of CASES.entries()) {
        if (c.via === 'gateway') upstreams[`http://127.0.0.1:${gatewayPort}/v${i}/mcp`] = `http://127.0.0.1:${ports[i]}/mcp`;
        else resources.push(`http://127.0.0.1:${ports[i]}/mcp`);
    }
    env = await startEnv(resources, { gateway: { port: gatewayPort, upstreams } });
    for (const [i, c] of CASES.entries()) {
        const s = await startMcpServer({ ...c.server, port: ports[i], auth: c.via === 'gateway' ? null : { pdpUrl: env.pdpUrl } });
        if (c.via === 'gateway') {
            s.url = s.resource = `http://127.0.0.1:${gatewayPort}/v${i}/mcp`;
            s.upstream = true;
        }
        servers.push(s);
    }
    // the gateway listens once the PDP is ready; wait for its metadata all the same
    for (let i = 0; ; i++) {
        const ok = await fetch(`http://127.0.0.1:${gatewayPort}/.well-known/oauth-protected-resource/v${VERSIONS.length}/mcp`).then(r => r.ok, () => false);
        if (ok) break;
        if (i > 100) throw new Error(`the gateway did not answer:\n${env.pdpOutput()}`);
        await new Promise(r => setTimeout(r, 100));
    }
});

after(async () => {
    for (const s of servers) await s.close();
    await env?.close();
});

const text = r => r.content.map(c => c.text).join('');

async function connect(v, server, provider) {
    if (v.client === 1) {
        const transport = new ClientTransportV1(new URL(server.url), { authProvider: provider });
        const client = new ClientV1({ name: 'ts-pep-versions', version: '0.0.0' });
        await client.connect(transport);
        // The 1.x client keeps what the server's initialize answered on its transport (the MCP-Protocol-Version header it sends).
        return { client, transport, negotiated: () => transport.protocolVersion, Unauthorized: UnauthorizedV1 };
    }
    const transport = new ClientTransportV2(new URL(server.url), { authProvider: provider });
    const client = new ClientV2({ name: 'ts-pep-versions', version: '0.0.0' }, { versionNegotiation: { mode: v.auto ? 'auto' : { pin: v.version } } });
    await client.connect(transport);
    return { client, transport, negotiated: () => client.getNegotiatedProtocolVersion(), Unauthorized: UnauthorizedV2 };
}

for (const [i, v] of CASES.entries()) {
    test(`MCP ${v.version}: SDK ${v.client}.x client${v.auto ? ' (auto)' : ''}, ${v.server.line}.x server${v.server.modern ? ' (createMcpHandler)' : ''} behind ${v.via}`, async t => {
        const server = servers[i];
        const provider = new TestOAuthProvider({ name: `ts-pep-versions-${i}` });
        const { client, transport, negotiated, Unauthorized } = await connect(v, server, provider);
        try {
            await t.test('the negotiated version, at the client and on every request the server got', async () => {
                assert.equal(negotiated(), v.version);
                if (v.client === 2) assert.equal(client.getProtocolEra(), v.version >= '2026-07-28' ? 'modern' : 'legacy');
                const methods = server.versions.map(x => x.method);
                if (v.version >= '2026-07-28') {
                    // stateless: a server/discover probe, no initialize; the version in _meta and in the header of each request
                    assert.equal(methods[0], 'server/discover');
                    assert.ok(!methods.includes('initialize'), `no initialize: ${methods}`);
                    for (const x of server.versions) {
                        assert.equal(x.meta, v.version, `${x.method}: _meta protocol version`);
                        assert.equal(x.header, v.version, `${x.method}: MCP-Protocol-Version`);
                        assert.equal(x.mcpMethod, x.method, `${x.method}: Mcp-Method`);
                    }
                } else {
                    // a negotiating client probes first (the PDP lets server/discover through; the 2025 server refuses it)
                    const start = v.auto ? 1 : 0;
                    if (v.auto) assert.equal(methods[0], 'server/discover');
                    assert.deepEqual(methods.slice(start, start + 2), ['initialize', 'notifications/initialized']);
                    for (const x of server.versions.slice(start + 1)) assert.equal(x.header, v.version, `${x.method}: MCP-Protocol-Version`);
                }
            });

            await t.test('anonymous list: the public and step-up tools, hidden ones removed', async () => {
                const { tools } = await client.listTools();
                assert.deepEqual(tools.map(x => x.name).sort(), LISTED);
                const sum = tools.find(x => x.name === 'get-sum');
                assert.ok(sum.securitySchemes ?? sum._meta, 'the PDP annotates step-up tools');
            });

            await t.test('anonymous call of a public tool: the handler sees no caller', async () => {
                const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
                assert.deepEqual(who, { anonymous: true });
            });

            await t.test(`step-up: 401, the SDK authorizes for ${SCOPE_A}, the retry is allowed and the handler sees the caller`, async () => {
                const before = server.calls.length;
                let steppedUp = false;
                let result;
                try {
                    result = await client.callTool({ name: 'get-sum', arguments: {} });
                } catch (err) {
                    if (!(err instanceof Unauthorized)) throw err;
                    await transport.finishAuth(provider.takeCode(), provider.pendingIss);
                    steppedUp = true;
                    result = await client.callTool({ name: 'get-sum', arguments: {} });
                }
                assert.equal(steppedUp, true, 'the first call was refused with 401');
                assert.equal(text(result), '3');
                assert.deepEqual(
                    provider.authorizations.map(u => u.searchParams.get('scope')),
                    [SCOPE_A]
                );
                assert.deepEqual(
                    server.calls.slice(before).map(x => x.name),
                    ['get-sum'],
                    'the refused call never reached the handler'
                );
                const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })));
                if (server.upstream) {
                    // behind the gateway the upstream gets no token (an identity assertion instead)
                    assert.deepEqual(who, { anonymous: true });
                    return;
                }
                assert.equal(who.hasToken, true);
                assert.deepEqual(who.scopes, [SCOPE_A]);
                assert.equal(who.caller.sub, 'alice');
                assert.equal(who.resource, server.resource);
            });

            await t.test('hidden tools are unknown (-32602) and never reach their handler, with or without a token', async () => {
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
                assert.deepEqual(tools.map(x => x.name).sort(), LISTED);
            });

            await t.test('the version held to the end', async () => {
                assert.equal(negotiated(), v.version);
                const last = server.versions.at(-1);
                assert.equal(last.method, 'tools/list');
                assert.equal(last.header, v.version);
                if (v.version >= '2026-07-28') assert.equal(last.meta, v.version);
            });
            assert.deepEqual(server.errors, [], 'pdpAuth and the server reported no error');
        } finally {
            await client.close();
        }
    });
}
