// Dev mode with real clients and no other authorization server: `pdp serve
// --dev --resource <PEP>/mcp` (as `make run` starts it) protects an MCP server
// of ours (lib/pep.mjs), and its dev authorization server (<PDP>/dev) is the
// only one. Started by run.sh, which passes PDP_BIN; lib/devmode-env.mjs
// starts the rest.
//
// - The official TypeScript SDK client with its OAuth provider steps up from a
//   401: it reads the PEP's RFC 9728 document, discovers the dev authorization
//   server, registers (RFC 7591), authorizes (PKCE, resource) and retries.
// - The same with a Client ID Metadata Document (provider.clientMetadataUrl,
//   https on loopback): no registration, the client_id is the document's URL.
// - A browser at /authorize sees the consent page.
// - @modelcontextprotocol/inspector-cli (headless; it has no OAuth flow of its
//   own) is refused anonymously and allowed with a token from
//   `pdp token --url`, run from a directory without the dev server's data.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { TestOAuthProvider, jwtClaims } from './lib/provider.mjs';
import { INSPECTOR_CLI } from './lib/gateway-env.mjs';
import { REDIRECT_URI, startDevModeEnv } from './lib/devmode-env.mjs';

const PDP_BIN = process.env.PDP_BIN;
if (!PDP_BIN) throw new Error('PDP_BIN must be set: run test/clients/run.sh');
const GTIN = '4006381333931';

let env;
before(async () => {
    env = await startDevModeEnv({ pdpBin: PDP_BIN });
});
after(async () => {
    await env?.close();
});

/** A provider whose client identifies itself by a metadata document URL (SEP-991) instead of registering. */
class MetadataDocumentProvider extends TestOAuthProvider {
    constructor(url) {
        super({ name: 'unused: the document names the client' });
        this._clientMetadataUrl = url;
    }
    get clientMetadataUrl() {
        return this._clientMetadataUrl;
    }
}

async function connect(provider) {
    const transport = new StreamableHTTPClientTransport(new URL(env.resource), { authProvider: provider });
    const client = new Client({ name: 'pdp-devmode-test', version: '0.0.0' });
    await client.connect(transport);
    return { client, transport };
}

/** Runs op; when the SDK sent the "user" to the authorization server (UnauthorizedError), finishes the flow and runs it again. */
async function withStepUp(transport, provider, op) {
    try {
        return { result: await op(), steppedUp: false };
    } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
        await transport.finishAuth(provider.takeCode(), provider.pendingIss);
        return { result: await op(), steppedUp: true };
    }
}

const callQR = client => client.callTool({ name: 'generate_qr_url', arguments: { gtin: GTIN } });
const text = result => result.content.map(c => c.text).join('');

/** The SDK's whole step-up for generate_qr_url, anonymous first; returns the token's claims. */
async function stepUp(provider, t) {
    const { client, transport } = await connect(provider);
    try {
        const list = await client.listTools();
        assert.deepEqual(list.tools.map(x => x.name).sort(), ['generate_qr_url', 'lookup_product']);
        const lookup = await client.callTool({ name: 'lookup_product', arguments: { gtin: GTIN } });
        assert.equal(lookup.isError, undefined);
        assert.equal(provider.authorizations.length, 0, 'authorized before any challenge');

        const { result, steppedUp } = await withStepUp(transport, provider, () => callQR(client));
        assert.ok(steppedUp, 'generate_qr_url ran without a step-up');
        assert.equal(text(result), `https://qr.example.com/01/${GTIN}`);
        assert.equal(provider.authorizations.length, 1);
        const asked = provider.authorizations[0];
        assert.equal(asked.origin + asked.pathname, `${env.pdp}/dev/authorize`);
        assert.equal(asked.searchParams.get('scope'), 'qr:generate');
        assert.equal(asked.searchParams.get('resource'), env.resource);
        assert.equal(asked.searchParams.get('code_challenge_method'), 'S256');
        const claims = jwtClaims(provider.tokens().access_token);
        assert.equal(claims.iss, `${env.pdp}/dev`);
        assert.equal(claims.aud, env.resource);
        assert.equal(claims.sub, 'alice');
        assert.equal(claims.scope, 'qr:generate');
        t.diagnostic(`client_id ${claims.client_id}`);
        return claims;
    } finally {
        await client.close();
    }
}

test('the dev authorization server: real endpoints, registration and metadata documents advertised', async () => {
    const prm = await (await fetch(`${env.pep}/.well-known/oauth-protected-resource/mcp`)).json();
    assert.equal(prm.resource, env.resource);
    assert.deepEqual(prm.authorization_servers, [`${env.pdp}/dev`]);
    const meta = await (await fetch(`${env.pdp}/.well-known/oauth-authorization-server/dev`)).json();
    assert.equal(meta.issuer, `${env.pdp}/dev`);
    assert.equal(meta.authorization_endpoint, `${env.pdp}/dev/authorize`);
    assert.equal(meta.token_endpoint, `${env.pdp}/dev/token`);
    assert.equal(meta.registration_endpoint, `${env.pdp}/dev/register`);
    assert.equal(meta.client_id_metadata_document_supported, true);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
});

test('TypeScript SDK: 401 → registration → authorization → allowed, with no other authorization server', async t => {
    const provider = new TestOAuthProvider({ name: 'ts-sdk-devmode' });
    const claims = await stepUp(provider, t);
    assert.match(claims.client_id, /^dev-client-/);
    assert.equal(provider.clientInformation().client_id, claims.client_id);
});

test('TypeScript SDK: the same with a Client ID Metadata Document (no registration)', async t => {
    if (!env.cimd) {
        t.skip('openssl is needed to make the document server a certificate');
        return;
    }
    const provider = new MetadataDocumentProvider(env.cimd.url);
    const claims = await stepUp(provider, t);
    assert.equal(claims.client_id, env.cimd.url);
    assert.equal(provider.clientInformation().client_id, env.cimd.url);
    assert.equal(provider.authorizations[0].searchParams.get('client_id'), env.cimd.url);
    assert.ok(env.cimd.fetches() >= 1, 'the dev authorization server did not fetch the document');
    assert.match(env.pdpLog(), /client metadata document fetched/);
});

test('a browser at /authorize sees the consent page: user, client, scopes, resource; it continues by itself', async () => {
    const reg = await (
        await fetch(`${env.pdp}/dev/register`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ client_name: 'Browser Client', redirect_uris: [REDIRECT_URI] })
        })
    ).json();
    const q = new URLSearchParams({
        response_type: 'code', client_id: reg.client_id, redirect_uri: REDIRECT_URI, state: 's1',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
        resource: env.resource, scope: 'qr:generate'
    });
    const res = await fetch(`${env.pdp}/dev/authorize?${q}`, {
        redirect: 'manual',
        headers: { Accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' }
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    const page = await res.text();
    assert.match(page, /<strong id="subject">alice<\/strong>/);
    assert.match(page, /<strong id="client">Browser Client<\/strong>/);
    assert.ok(page.includes(`<code id="resource">${env.resource}</code>`));
    assert.match(page, /<li><code>qr:generate<\/code><\/li>/);
    const refresh = page.match(/<meta http-equiv="refresh" content="\d+;url=([^"]+)">/);
    assert.ok(refresh, 'no meta refresh');
    const next = new URL(refresh[1].replaceAll('&amp;', '&'));
    assert.equal(next.origin + next.pathname, REDIRECT_URI);
    assert.equal(next.searchParams.get('state'), 's1');
    assert.ok(next.searchParams.get('code'));
});

// ---------------------------------------------------------------------------
// inspector-cli, headless (--cli).

/** Runs the inspector CLI (from its build/ directory, see gateway.test.mjs); kills its process group after 20 s. */
function inspector(args) {
    return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [INSPECTOR_CLI, '--cli', ...args], { cwd: dirname(INSPECTOR_CLI), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
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

test('inspector-cli: generate_qr_url refused anonymously, allowed with a token from `pdp token --url`', async t => {
    // Not all digits: inspector-cli 1.0.3 sends a numeric-looking value as a number whatever the schema says.
    const code = 'sku-4006381333931';
    const qrArgs = ['--transport', 'http', '--method', 'tools/call', '--tool-name', 'generate_qr_url', '--tool-arg', `gtin=${code}`];
    const list = await inspector([env.resource, '--transport', 'http', '--method', 'tools/list']);
    assert.equal(list.code, 0, `exit ${list.code}\nstdout: ${list.stdout}\nstderr: ${list.stderr}`);
    assert.deepEqual(JSON.parse(list.stdout).tools.map(x => x.name).sort(), ['generate_qr_url', 'lookup_product']);

    const anon = await inspector([env.resource, ...qrArgs]);
    assert.notEqual(anon.code, 0, `anonymous generate_qr_url must fail:\n${anon.stdout}`);
    assert.doesNotMatch(anon.stdout, /qr\.example\.com/);
    t.diagnostic(`anonymous: ${(anon.stderr || anon.stdout).trim().split('\n').at(-1)}`);

    // pdp token from the test's working directory (no .pdp-data there): the running server mints.
    const { stdout: token } = await promisify(execFile)(PDP_BIN, ['token', '--url', env.pdp, '--resource', env.resource, '--scope', 'qr:generate'], { timeout: 10_000 });
    assert.equal(jwtClaims(token.trim()).aud, env.resource);
    const withToken = await inspector([env.resource, ...qrArgs, '--header', `Authorization: Bearer ${token.trim()}`]);
    assert.equal(withToken.code, 0, `exit ${withToken.code}\nstdout: ${withToken.stdout}\nstderr: ${withToken.stderr}`);
    assert.equal(text(JSON.parse(withToken.stdout)), `https://qr.example.com/01/${code}`);
});
