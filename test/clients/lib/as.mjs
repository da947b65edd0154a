// A minimal OAuth 2.1 authorization server for the client tests. Loopback
// only, in memory, auto-approving. It implements just what an MCP client needs:
//
//   RFC 8414 metadata   GET  /.well-known/oauth-authorization-server<issuer path>
//   RFC 7591 DCR        POST <issuer>/register          (public clients, auth method "none")
//   authorization code  GET  <issuer>/authorize         auto-approves, 302 to redirect_uri?code&state
//   token endpoint      POST <issuer>/token             authorization_code (PKCE S256) and refresh_token
//   JWKS                GET  <issuer>/jwks.json         one ES256 key
//
// Access tokens are RFC 9068 JWTs: iss, sub, aud = the RFC 8707 `resource`,
// client_id, scope = exactly the requested scopes that are supported, iat, exp, jti.
// Refresh tokens are issued only to clients registered for the refresh_token grant.
//
// Every request the tests care about is recorded; GET /_test/log returns the records.
// mint() issues a token directly, for tests that speak raw HTTP. Shared by the
// client tests here and the tests of clients/typescript (it imports only
// node built-ins, so it resolves from either package).
import { createServer } from 'node:http';
import { createHash, generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';

const b64url = buf => Buffer.from(buf).toString('base64url');

export const SCOPES_SUPPORTED = ['qr:generate', 'profile'];

/**
 * @param {object} [o]
 * @param {string[]} [o.scopes]  the scopes this server grants and advertises (default SCOPES_SUPPORTED)
 */
export function startAS({ port = 0, host = '127.0.0.1', issuerPath = '/oauth', tokenTTL = 300, scopes = SCOPES_SUPPORTED } = {}) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const kid = b64url(randomBytes(8));
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' };

    const clients = new Map(); // client_id -> registration
    const codes = new Map(); // code -> grant
    const refreshTokens = new Map(); // refresh token -> grant
    const log = [];

    let issuer; // set once listening
    const record = (type, fields) => log.push({ seq: log.length, type, at: performance.timeOrigin + performance.now(), ...fields });

    function mintAccessToken({ sub, clientId, resource, scope, ttl = tokenTTL }) {
        const now = Math.floor(Date.now() / 1000);
        const header = { alg: 'ES256', typ: 'at+jwt', kid };
        const claims = {
            iss: issuer,
            sub,
            aud: resource,
            client_id: clientId,
            scope,
            iat: now,
            exp: now + ttl,
            jti: randomUUID()
        };
        const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
        const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
        return { token: `${input}.${b64url(sig)}`, claims };
    }

    // Grant exactly the requested scopes this server knows; unknown ones are dropped (RFC 6749 §3.3).
    const grantScopes = requested =>
        (requested ?? '')
            .split(' ')
            .filter(s => scopes.includes(s))
            .filter((s, i, a) => a.indexOf(s) === i)
            .join(' ');

    const json = (res, status, body, headers = {}) => {
        res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
        res.end(JSON.stringify(body));
    };
    const oauthError = (res, status, error, description) => json(res, status, { error, error_description: description });

    async function readBody(req) {
        const chunks = [];
        let size = 0;
        for await (const c of req) {
            size += c.length;
            if (size > 64 << 10) throw new Error('body too large');
            chunks.push(c);
        }
        return Buffer.concat(chunks).toString('utf8');
    }

    async function handle(req, res) {
        const url = new URL(req.url, issuer);
        const p = url.pathname;

        if (req.method === 'GET' && (p === `/.well-known/oauth-authorization-server${issuerPath}` || p === `${issuerPath}/.well-known/oauth-authorization-server`)) {
            record('metadata', { path: p });
            return json(res, 200, {
                issuer,
                authorization_endpoint: `${issuer}/authorize`,
                token_endpoint: `${issuer}/token`,
                registration_endpoint: `${issuer}/register`,
                jwks_uri: `${issuer}/jwks.json`,
                scopes_supported: scopes,
                response_types_supported: ['code'],
                grant_types_supported: ['authorization_code', 'refresh_token'],
                token_endpoint_auth_methods_supported: ['none'],
                code_challenge_methods_supported: ['S256'],
                authorization_response_iss_parameter_supported: true
            });
        }
        if (req.method === 'GET' && p === `${issuerPath}/jwks.json`) {
            record('jwks', {});
            return json(res, 200, { keys: [jwk] }, { 'Cache-Control': 'max-age=60' });
        }
        if (req.method === 'POST' && p === `${issuerPath}/register`) {
            let meta;
            try {
                meta = JSON.parse(await readBody(req));
            } catch {
                return oauthError(res, 400, 'invalid_client_metadata', 'body is not JSON');
            }
            if (!Array.isArray(meta.redirect_uris) || meta.redirect_uris.length === 0) {
                return oauthError(res, 400, 'invalid_redirect_uri', 'redirect_uris is required');
            }
            const grantTypes = meta.grant_types ?? ['authorization_code'];
            const reg = {
                ...meta,
                client_id: `client-${randomUUID()}`,
                client_id_issued_at: Math.floor(Date.now() / 1000),
                token_endpoint_auth_method: 'none',
                grant_types: grantTypes,
                response_types: meta.response_types ?? ['code']
            };
            clients.set(reg.client_id, reg);
            record('register', { client_id: reg.client_id, client_name: meta.client_name, scope: meta.scope, grant_types: grantTypes });
            return json(res, 201, reg);
        }
        if (req.method === 'GET' && p === `${issuerPath}/authorize`) {
            const q = Object.fromEntries(url.searchParams);
            const entry = {
                client_id: q.client_id,
                scope: q.scope,
                resource: q.resource,
                resources: url.searchParams.getAll('resource'),
                redirect_uri: q.redirect_uri,
                state: q.state,
                code_challenge_method: q.code_challenge_method,
                has_code_challenge: !!q.code_challenge
            };
            const client = clients.get(q.client_id);
            // Errors before the redirect URI is trusted are answered directly (RFC 6749 §4.1.2.1).
            if (!client) return record('authorize', { ...entry, error: 'unknown client' }), oauthError(res, 400, 'invalid_request', 'unknown client_id');
            if (!client.redirect_uris.includes(q.redirect_uri)) {
                return record('authorize', { ...entry, error: 'redirect_uri' }), oauthError(res, 400, 'invalid_request', 'redirect_uri not registered');
            }
            const back = new URL(q.redirect_uri);
            if (q.state !== undefined) back.searchParams.set('state', q.state);
            const fail = (error, description) => {
                record('authorize', { ...entry, error: `${error}: ${description}` });
                back.searchParams.set('error', error);
                back.searchParams.set('error_description', description);
                res.writeHead(302, { Location: back.href });
                res.end();
            };
            if (q.response_type !== 'code') return fail('unsupported_response_type', 'only code');
            if (!q.code_challenge || q.code_challenge_method !== 'S256') return fail('invalid_request', 'PKCE S256 required');
            if (entry.resources.length !== 1) return fail('invalid_target', 'exactly one resource parameter required (RFC 8707)');
            const code = b64url(randomBytes(24));
            const scope = grantScopes(q.scope);
            codes.set(code, {
                clientId: q.client_id,
                redirectUri: q.redirect_uri,
                codeChallenge: q.code_challenge,
                resource: q.resource,
                scope,
                expires: Date.now() + 60_000
            });
            record('authorize', { ...entry, granted_scope: scope });
            back.searchParams.set('code', code);
            // RFC 9207: identify the issuer in the authorization response.
            back.searchParams.set('iss', issuer);
            res.writeHead(302, { Location: back.href });
            return res.end();
        }
        if (req.method === 'POST' && p === `${issuerPath}/token`) {
            const form = new URLSearchParams(await readBody(req));
            const f = Object.fromEntries(form);
            const entry = { grant_type: f.grant_type, client_id: f.client_id, resource: f.resource, scope_param: f.scope };
            const client = clients.get(f.client_id);
            if (!client) return record('token', { ...entry, error: 'invalid_client' }), oauthError(res, 401, 'invalid_client', 'unknown client_id');
            let grant;
            if (f.grant_type === 'authorization_code') {
                const c = codes.get(f.code);
                codes.delete(f.code);
                if (!c || c.expires < Date.now() || c.clientId !== f.client_id) {
                    return record('token', { ...entry, error: 'invalid_grant' }), oauthError(res, 400, 'invalid_grant', 'unknown or expired code');
                }
                if (c.redirectUri !== f.redirect_uri) return record('token', { ...entry, error: 'redirect_uri' }), oauthError(res, 400, 'invalid_grant', 'redirect_uri mismatch');
                const challenge = createHash('sha256').update(f.code_verifier ?? '').digest('base64url');
                if (challenge !== c.codeChallenge) return record('token', { ...entry, error: 'pkce' }), oauthError(res, 400, 'invalid_grant', 'PKCE verification failed');
                if (f.resource !== undefined && f.resource !== c.resource) {
                    return record('token', { ...entry, error: 'invalid_target' }), oauthError(res, 400, 'invalid_target', 'resource differs from the authorization request');
                }
                grant = { clientId: c.clientId, resource: c.resource, scope: c.scope };
            } else if (f.grant_type === 'refresh_token') {
                const r = refreshTokens.get(f.refresh_token);
                if (!r || r.clientId !== f.client_id) return record('token', { ...entry, error: 'invalid_grant' }), oauthError(res, 400, 'invalid_grant', 'unknown refresh token');
                // RFC 6749 §6: a refresh may narrow the scope, never widen it.
                let scope = r.scope;
                if (f.scope !== undefined) {
                    const asked = f.scope.split(' ');
                    if (asked.some(s => !r.scope.split(' ').includes(s))) {
                        return record('token', { ...entry, error: 'invalid_scope' }), oauthError(res, 400, 'invalid_scope', 'refresh cannot widen the scope');
                    }
                    scope = asked.join(' ');
                }
                if (f.resource !== undefined && f.resource !== r.resource) {
                    return record('token', { ...entry, error: 'invalid_target' }), oauthError(res, 400, 'invalid_target', 'resource differs from the grant');
                }
                grant = { clientId: r.clientId, resource: r.resource, scope };
            } else {
                return record('token', { ...entry, error: 'unsupported_grant_type' }), oauthError(res, 400, 'unsupported_grant_type', String(f.grant_type));
            }
            const { token, claims } = mintAccessToken({ sub: 'alice', clientId: grant.clientId, resource: grant.resource, scope: grant.scope });
            const body = { access_token: token, token_type: 'Bearer', expires_in: tokenTTL, scope: grant.scope };
            if (client.grant_types.includes('refresh_token')) {
                body.refresh_token = b64url(randomBytes(24));
                refreshTokens.set(body.refresh_token, grant);
            }
            record('token', { ...entry, issued_scope: grant.scope, aud: claims.aud, refresh_token_issued: !!body.refresh_token });
            return json(res, 200, body);
        }
        if (req.method === 'GET' && p === '/_test/log') return json(res, 200, log);
        record('not_found', { method: req.method, path: p });
        return oauthError(res, 404, 'not_found', `${req.method} ${p}`);
    }

    const server = createServer((req, res) => {
        handle(req, res).catch(err => {
            if (!res.headersSent) oauthError(res, 500, 'server_error', String(err?.message ?? err));
            else res.destroy();
        });
    });
    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
            const { port: actual } = server.address();
            issuer = `http://${host}:${actual}${issuerPath}`;
            resolve({
                url: `http://${host}:${actual}`,
                issuer,
                jwksUri: `${issuer}/jwks.json`,
                log,
                /** A token for resource, issued without a client flow. */
                mint: ({ sub = 'alice', clientId = 'test-client', resource, scope = '', ttl = tokenTTL }) => mintAccessToken({ sub, clientId, resource, scope, ttl }).token,
                close: () => new Promise(r => server.close(() => r()))
            });
        });
    });
}
