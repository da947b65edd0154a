// A small OAuth 2.1 authorization server for the tests: loopback, in memory,
// auto-approving. What the SDK clients need (RFC 8414 metadata, RFC 7591
// registration, the authorization code flow with PKCE S256 and RFC 8707
// resource indicators, a JWKS) plus mint(), which issues a token directly for
// the raw HTTP tests. Access tokens are RFC 9068 JWTs signed with ES256.
// The subject of the code flow is `subject` (settable), "alice" by default.
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';

const b64url = b => Buffer.from(b).toString('base64url');

export async function startAS({ scopes, issuerPath = '/oauth' }) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const kid = b64url(randomBytes(8));
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };
    const clients = new Map();
    const codes = new Map();
    const log = [];
    let issuer;
    const state = { subject: 'alice' };

    function mint({ sub = state.subject, clientId = 'test-client', resource, scope = '', ttl = 300 }) {
        const now = Math.floor(Date.now() / 1000);
        const claims = { iss: issuer, sub, aud: resource, client_id: clientId, scope, iat: now, exp: now + ttl, jti: randomUUID() };
        const input = `${b64url(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid }))}.${b64url(JSON.stringify(claims))}`;
        const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
        return `${input}.${b64url(sig)}`;
    }

    const json = (res, status, body) => {
        res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        res.end(JSON.stringify(body));
    };
    const readBody = async req => {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        return Buffer.concat(chunks).toString('utf8');
    };
    const grant = requested => [...new Set((requested ?? '').split(' ').filter(s => scopes.includes(s)))].join(' ');

    async function handle(req, res) {
        const url = new URL(req.url, issuer);
        const p = url.pathname;
        if (req.method === 'GET' && (p === `/.well-known/oauth-authorization-server${issuerPath}` || p === `/.well-known/openid-configuration${issuerPath}`)) {
            return json(res, 200, {
                issuer,
                authorization_endpoint: `${issuer}/authorize`,
                token_endpoint: `${issuer}/token`,
                registration_endpoint: `${issuer}/register`,
                jwks_uri: `${issuer}/jwks.json`,
                scopes_supported: scopes,
                response_types_supported: ['code'],
                grant_types_supported: ['authorization_code'],
                token_endpoint_auth_methods_supported: ['none'],
                code_challenge_methods_supported: ['S256']
            });
        }
        if (req.method === 'GET' && p === `${issuerPath}/jwks.json`) return json(res, 200, { keys: [jwk] });
        if (req.method === 'POST' && p === `${issuerPath}/register`) {
            const meta = JSON.parse((await readBody(req)) || '{}');
            const reg = { ...meta, client_id: `client-${randomUUID()}`, client_id_issued_at: Math.floor(Date.now() / 1000), token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] };
            clients.set(reg.client_id, reg);
            return json(res, 201, reg);
        }
        if (req.method === 'GET' && p === `${issuerPath}/authorize`) {
            const q = Object.fromEntries(url.searchParams);
            const client = clients.get(q.client_id);
            if (!client || !client.redirect_uris?.includes(q.redirect_uri)) return json(res, 400, { error: 'invalid_request' });
            if (q.code_challenge_method !== 'S256' || !q.code_challenge) return json(res, 400, { error: 'invalid_request', error_description: 'PKCE S256 required' });
            const code = b64url(randomBytes(24));
            const scope = grant(q.scope);
            codes.set(code, { clientId: q.client_id, redirectUri: q.redirect_uri, challenge: q.code_challenge, resource: q.resource, scope, sub: state.subject });
            log.push({ type: 'authorize', scope: q.scope, granted: scope, resource: q.resource });
            const back = new URL(q.redirect_uri);
            back.searchParams.set('code', code);
            if (q.state !== undefined) back.searchParams.set('state', q.state);
            back.searchParams.set('iss', issuer);
            res.writeHead(302, { Location: back.href });
            return res.end();
        }
        if (req.method === 'POST' && p === `${issuerPath}/token`) {
            const f = Object.fromEntries(new URLSearchParams(await readBody(req)));
            const c = codes.get(f.code);
            codes.delete(f.code);
            if (f.grant_type !== 'authorization_code' || !c || c.clientId !== f.client_id || c.redirectUri !== f.redirect_uri) return json(res, 400, { error: 'invalid_grant' });
            if (createHash('sha256').update(f.code_verifier ?? '').digest('base64url') !== c.challenge) return json(res, 400, { error: 'invalid_grant', error_description: 'PKCE' });
            const token = mint({ sub: c.sub, clientId: c.clientId, resource: f.resource ?? c.resource, scope: c.scope });
            log.push({ type: 'token', scope: c.scope });
            return json(res, 200, { access_token: token, token_type: 'Bearer', expires_in: 300, scope: c.scope });
        }
        return json(res, 404, { error: 'not_found' });
    }

    const server = createServer((req, res) => {
        handle(req, res).catch(err => {
            if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(err) });
            else res.destroy();
        });
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
    });
    const base = `http://127.0.0.1:${server.address().port}`;
    issuer = base + issuerPath;
    return {
        issuer,
        jwksUri: `${issuer}/jwks.json`,
        log,
        state,
        mint,
        close: () => new Promise(r => server.close(() => r()))
    };
}
