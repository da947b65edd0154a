// Drives the example with the official TypeScript SDK client (1.x) and its
// OAuth provider against the dev authorization server of `pdp serve --dev`:
// tools/list, an anonymous lookup_product, generate_qr_url (401, then the
// authorization code flow with PKCE and a resource indicator, then the call
// again, answered for alice). Prints one line per check; exits 1 on a failure.
// Usage: node client.mjs <resource URL>
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const url = new URL(process.argv[2]);

/** An in-memory OAuth client whose "user agent" follows the auto-approving /dev/authorize once and keeps the code. */
class Provider {
    redirectUrl = 'http://127.0.0.1:9/callback'; // never contacted
    clientMetadata = { client_name: 'typescript-example', redirect_uris: [this.redirectUrl], grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none' };
    authorizeUrl;
    code;
    #s = {};
    state() {
        return (this.#s.state = randomBytes(16).toString('base64url'));
    }
    clientInformation() {
        return this.#s.client;
    }
    saveClientInformation(c) {
        this.#s.client = c;
    }
    tokens() {
        return this.#s.tokens;
    }
    saveTokens(t) {
        this.#s.tokens = t;
    }
    saveCodeVerifier(v) {
        this.#s.verifier = v;
    }
    codeVerifier() {
        return this.#s.verifier;
    }
    async redirectToAuthorization(u) {
        this.authorizeUrl = new URL(u);
        const r = await fetch(u, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
        const back = new URL(r.headers.get('location') ?? 'x:', 'http://invalid');
        if (r.status !== 302 || back.searchParams.get('state') !== this.#s.state) throw new Error(`the authorization endpoint answered ${r.status}: ${await r.text()}`);
        this.code = back.searchParams.get('code');
    }
}

let passed = 0;
let failed = 0;
const check = (name, ok, detail = '') => {
    if (ok) passed++;
    else failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok || !detail ? '' : `: ${detail}`}`);
};
const textOf = r => r?.content?.[0]?.text;

const provider = new Provider();
const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
const client = new Client({ name: 'typescript-example', version: '1.0.0' });
try {
    await client.connect(transport);
    const { tools } = await client.listTools();
    const names = tools.map(t => t.name).sort();
    check('tools/list shows 2 tools', names.join(',') === 'generate_qr_url,lookup_product', names.join(','));
    const product = await client.callTool({ name: 'lookup_product', arguments: {} });
    check('anonymous lookup_product is answered', textOf(product) === 'a product', JSON.stringify(product));
    let refused;
    try {
        await client.callTool({ name: 'generate_qr_url', arguments: { text: 'hello' } });
    } catch (err) {
        refused = err;
    }
    check('anonymous generate_qr_url is refused with 401 (the SDK starts the authorization)', refused instanceof UnauthorizedError, String(refused));
    const au = provider.authorizeUrl;
    check(
        'the authorization request asks for qr:generate, for this resource, with PKCE S256',
        au?.searchParams.get('scope')?.split(' ').includes('qr:generate') && au?.searchParams.getAll('resource').join() === url.href && au?.searchParams.get('code_challenge_method') === 'S256',
        au?.href
    );
    check('the dev authorization server approved (a code)', typeof provider.code === 'string' && provider.code.length > 0);
    await transport.finishAuth(provider.code);
    const qr = await client.callTool({ name: 'generate_qr_url', arguments: { text: 'hello' } });
    check('generate_qr_url with the token is answered for alice', textOf(qr) === 'https://qr.example/hello for alice', JSON.stringify(qr));
} catch (err) {
    check('the client ran', false, err?.stack ?? String(err));
} finally {
    await client.close().catch(() => {});
}
console.log(`typescript example: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
