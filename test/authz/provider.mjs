// A real OAuth 2.0 authorization server for mcp-pdp's introspection and DPoP
// tests (issue #14): oidc-provider (panva, OpenID certified), in memory, on
// 127.0.0.1. It issues opaque or JWT access tokens per resource (RFC 8707),
// Bearer or DPoP-bound (RFC 9449), and answers RFC 7662 introspection, plain
// JSON or as a signed JWT (RFC 9701), and RFC 7009 revocation.
//
//   const as = await startProvider({ port: 0, resources: [
//       'http://127.0.0.1:8080/mcp',                                   // opaque, DEFAULT_SCOPES
//       { uri: 'http://127.0.0.1:8080/jwt', format: 'jwt', scopes: ['read'] },
//   ] });
//   const t = await as.token({ resource: 'http://127.0.0.1:8080/mcp', scope: 'read', dpopKey });
//   await as.revoke(t.access_token);
//   await as.close();
//
// Built-in clients (ids fixed, secrets new each start; see CLIENTS below):
//   pdp-basic  client_secret_basic  introspects, JWT responses signed RS256
//   pdp-post   client_secret_post   introspects, JWT responses signed ES256
//   pdp-jwt    private_key_jwt      introspects, JWT responses signed ES256; its
//                                  ES256 private key is written to a file (PKCS#8 PEM
//                                  and JWK) the test hands to the PDP
//   svc-a      client_secret_basic  client_credentials (the default for token())
//   svc-b      client_secret_post   client_credentials (a second client_id)
//   app        none (public)        authorization code + PKCE, auto-approved: its tokens
//                                  have sub = the user (token({ client: 'app', user }))
//
// Routes beside oidc-provider's own, under /_test/ (loopback test control; they
// take private keys in JSON, so never expose them beyond a test):
//   GET  /_test/interaction/:uid  the auto-approving login and consent (code flow)
//   POST /_test/token    {client?, resource, scope?, user?, dpop_jwk?}  -> token()'s result
//   POST /_test/revoke   {token}                                        -> 200 {}
//   POST /_test/proof    {jwk, htm, htu, access_token?, ...}            -> {proof} (see dpop.mjs)
//   GET  /_test/counts   requests so far per oidc-provider route        -> {introspection: n, ...}
import { createServer } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import * as oauth from 'oauth4webapi';
import { exportJWK, exportPKCS8, generateKeyPair, importJWK } from 'jose';
import { proof as makeProof } from './dpop.mjs';

/** The scopes a resource accepts when its definition names none. */
export const DEFAULT_SCOPES = ['read', 'write', 'admin'];

/** The redirect URI of the `app` client; never contacted (the Location header is read). */
export const APP_REDIRECT_URI = 'http://127.0.0.1:9/callback';

const secret = () => randomBytes(32).toString('base64url');
const insecure = { [oauth.allowInsecureRequests]: true };

/** A short, non-reversible name for a token in messages (never the token itself). */
export const fingerprint = token => createHash('sha256').update(String(token)).digest('hex').slice(0, 12);

/**
 * Normalizes the resources option: a URI string is an opaque-token resource
 * with DEFAULT_SCOPES.
 * @returns {Map<string, {uri: string, format: 'opaque'|'jwt', scopes: string[], ttl: number, alg: string}>}
 */
function resourceMap(resources, ttl) {
    const m = new Map();
    for (const r of resources) {
        const d = typeof r === 'string' ? { uri: r } : r;
        if (!d.uri) throw new TypeError('a resource needs a uri');
        const format = d.format ?? 'opaque';
        if (format !== 'opaque' && format !== 'jwt') throw new TypeError(`resource ${d.uri}: format must be opaque or jwt`);
        m.set(d.uri, { uri: d.uri, format, scopes: d.scopes ?? DEFAULT_SCOPES, ttl: d.ttl ?? ttl, alg: d.alg ?? 'ES256' });
    }
    return m;
}

async function readJSON(req) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
        size += c.length;
        if (size > 64 << 10) throw new Error('body too large');
        chunks.push(c);
    }
    return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
}

const sendJSON = (res, status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
};

/**
 * Starts the authorization server.
 *
 * @param {object} o
 * @param {number} [o.port]            0 (default) picks a free port
 * @param {string} [o.host]            127.0.0.1
 * @param {Array<string|{uri: string, format?: 'opaque'|'jwt', scopes?: string[], ttl?: number, alg?: string}>} o.resources
 *        the RFC 8707 resource indicators it issues tokens for; format opaque (default) or
 *        jwt (RFC 9068, signed with alg: ES256, the default, or RS256); ttl in seconds (default accessTokenTTL)
 * @param {object[]} [o.clients]       extra oidc-provider client metadata, registered beside the built-in ones
 * @param {number} [o.accessTokenTTL]  seconds, 300
 * @param {string} [o.dir]             where the private_key_jwt key files go; default a new
 *                                     temporary directory, removed by close()
 * @param {boolean} [o.requireDpopNonce]  require server DPoP nonces at the token endpoint (default false)
 */
export async function startProvider({ port = 0, host = '127.0.0.1', resources = [], clients = [], accessTokenTTL = 300, dir, requireDpopNonce = false } = {}) {
    const rs = resourceMap(resources, accessTokenTTL);

    // The provider's signing keys: RS256 (oidc-provider's default alg) and ES256.
    const signing = [];
    for (const [alg, opts] of [['RS256', { modulusLength: 2048 }], ['ES256', {}]]) {
        const { privateKey } = await generateKeyPair(alg, { extractable: true, ...opts });
        const jwk = await exportJWK(privateKey);
        signing.push({ ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}` });
    }

    // The private_key_jwt client's key, in a file the PDP can be configured with.
    const ownDir = !dir;
    const keyDir = dir ?? (await mkdtemp(join(tmpdir(), 'mcp-pdp-authz-')));
    const pkj = await generateKeyPair('ES256', { extractable: true });
    const pkjKid = `pdp-jwt-${randomBytes(4).toString('hex')}`;
    const pkjPublic = { ...(await exportJWK(pkj.publicKey)), alg: 'ES256', use: 'sig', kid: pkjKid };
    const pkjPrivate = { ...(await exportJWK(pkj.privateKey)), alg: 'ES256', use: 'sig', kid: pkjKid };
    const privateKeyFile = join(keyDir, 'pdp-jwt.key.pem');
    const privateJwkFile = join(keyDir, 'pdp-jwt.jwk.json');
    await writeFile(privateKeyFile, await exportPKCS8(pkj.privateKey), { mode: 0o600 });
    await writeFile(privateJwkFile, JSON.stringify(pkjPrivate), { mode: 0o600 });

    const noRedirects = { redirect_uris: [], response_types: [] };
    const CLIENTS = {
        'pdp-basic': { ...noRedirects, grant_types: [], token_endpoint_auth_method: 'client_secret_basic', client_secret: secret(), introspection_signed_response_alg: 'RS256' },
        'pdp-post': { ...noRedirects, grant_types: [], token_endpoint_auth_method: 'client_secret_post', client_secret: secret(), introspection_signed_response_alg: 'ES256' },
        'pdp-jwt': {
            ...noRedirects,
            grant_types: [],
            token_endpoint_auth_method: 'private_key_jwt',
            token_endpoint_auth_signing_alg: 'ES256',
            jwks: { keys: [pkjPublic] },
            introspection_signed_response_alg: 'ES256'
        },
        'svc-a': { ...noRedirects, grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_basic', client_secret: secret() },
        'svc-b': { ...noRedirects, grant_types: ['client_credentials'], token_endpoint_auth_method: 'client_secret_post', client_secret: secret() },
        app: {
            application_type: 'native',
            redirect_uris: [APP_REDIRECT_URI],
            response_types: ['code'],
            grant_types: ['authorization_code'],
            token_endpoint_auth_method: 'none'
        }
    };
    const registered = [...Object.entries(CLIENTS).map(([client_id, m]) => ({ client_id, ...m })), ...clients];

    const configuration = {
        clients: registered,
        jwks: { keys: signing },
        cookies: { keys: [secret(), secret()] },
        // A resource's ttl wins (a number here would override it); then accessTokenTTL.
        ttl: {
            AccessToken: (ctx, t) => t.resourceServer?.accessTokenTTL ?? accessTokenTTL,
            ClientCredentials: (ctx, t) => t.resourceServer?.accessTokenTTL ?? accessTokenTTL,
            AuthorizationCode: 60,
            IdToken: 3600,
            Interaction: 600,
            Session: 3600,
            Grant: 3600
        },
        // The code flow's interactions are answered by this module (auto-approve), below.
        interactions: { url: (ctx, interaction) => `/_test/interaction/${interaction.uid}` },
        findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
        pkce: { required: () => true },
        enabledJWA: { dPoPSigningAlgValues: ['ES256', 'ES384', 'PS256', 'RS256', 'Ed25519', 'EdDSA'] },
        features: {
            devInteractions: { enabled: false },
            clientCredentials: { enabled: true },
            // oidc-provider's default policy, written out: a public client may introspect only its own tokens.
            introspection: { enabled: true, allowedPolicy: (ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId },
            jwtIntrospection: { enabled: true },
            // A client may revoke only the tokens it obtained (oidc-provider's default, written out).
            revocation: {
                enabled: true,
                allowedPolicy(ctx, client, token) {
                    if (token.clientId === client.clientId) return true;
                    if (client.clientAuthMethod === 'none') return false;
                    throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
                }
            },
            // With requireDpopNonce the token endpoint answers a proof without a nonce with
            // use_dpop_nonce and a DPoP-Nonce header (RFC 9449 §8); token() retries once.
            dPoP: { enabled: true, ...(requireDpopNonce ? { nonceSecret: randomBytes(32), requireNonce: ctx => ctx.oidc.route === 'token' } : {}) },
            resourceIndicators: {
                enabled: true,
                // A client that names no resource gets none (and so no access token for a resource).
                defaultResource: (ctx, client, oneOf) => oneOf,
                useGrantedResource: () => true,
                getResourceServerInfo(ctx, indicator) {
                    const r = rs.get(indicator);
                    if (!r) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
                    return {
                        scope: r.scopes.join(' '),
                        accessTokenTTL: r.ttl,
                        accessTokenFormat: r.format,
                        ...(r.format === 'jwt' ? { jwt: { sign: { alg: r.alg } } } : {})
                    };
                }
            }
        }
    };

    const server = createServer();
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, resolve);
    });
    const issuer = `http://${host}:${server.address().port}`;
    const provider = new Provider(issuer, configuration);
    // Requests per oidc-provider route ('introspection', 'revocation', 'token', 'jwks',
    // 'discovery', ...), counted as they arrive, whatever their outcome: the PDP tests
    // assert how often the PDP introspects (counts(), GET /_test/counts).
    const counts = {};
    provider.use(async (ctx, next) => {
        try {
            await next();
        } finally {
            const route = ctx.oidc?.route;
            if (route) counts[route] = (counts[route] ?? 0) + 1;
        }
    });
    const callback = provider.callback();

    // Which client obtained which token (by fingerprint), so revoke() can use it.
    const issuedBy = new Map();

    const discoveryURL = new URL(issuer);
    let asMetadata;
    const metadata = async () =>
        (asMetadata ??= await oauth.processDiscoveryResponse(discoveryURL, await oauth.discoveryRequest(discoveryURL, { algorithm: 'oauth2', ...insecure })));

    function clientAuth(id) {
        const m = registered.find(c => c.client_id === id);
        if (!m) throw new Error(`unknown client ${id}`);
        switch (m.token_endpoint_auth_method ?? 'client_secret_basic') {
            case 'client_secret_basic':
                return { client: { client_id: id }, auth: oauth.ClientSecretBasic(m.client_secret) };
            case 'client_secret_post':
                return { client: { client_id: id }, auth: oauth.ClientSecretPost(m.client_secret) };
            case 'none':
                return { client: { client_id: id }, auth: oauth.None() };
            case 'private_key_jwt':
                if (id !== 'pdp-jwt') throw new Error(`no private key for client ${id}`);
                return { client: { client_id: id }, auth: oauth.PrivateKeyJwt({ key: pkj.privateKey, kid: pkjKid }) };
            default:
                throw new Error(`client ${id}: unsupported auth method ${m.token_endpoint_auth_method}`);
        }
    }

    // Sends a token request, once more with the server's nonce when it asks for one.
    async function withNonceRetry(send, process) {
        try {
            return await process(await send());
        } catch (err) {
            if (!oauth.isDPoPNonceError(err)) throw err;
            return process(await send());
        }
    }

    // The "browser" of the code flow: follows redirects through the auto-approving
    // interaction, with a cookie jar, until the redirect to the app's redirect_uri.
    async function authorize(url) {
        const jar = new Map();
        for (let hop = 0; hop < 10; hop++) {
            const res = await fetch(url, {
                redirect: 'manual',
                headers: jar.size ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } : {},
                signal: AbortSignal.timeout(5000)
            });
            for (const c of res.headers.getSetCookie()) {
                const [pair] = c.split(';');
                const i = pair.indexOf('=');
                jar.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
            }
            const location = res.headers.get('location');
            if (res.status < 300 || res.status >= 400 || !location) {
                throw new Error(`authorization: ${res.status} at ${new URL(url).pathname}: ${(await res.text()).slice(0, 300)}`);
            }
            const next = new URL(location, url);
            if (next.href.startsWith(APP_REDIRECT_URI)) return next;
            url = next;
        }
        throw new Error('authorization: too many redirects');
    }

    /**
     * Obtains an access token with oauth4webapi: client_credentials for a confidential
     * client, the authorization code flow with PKCE (auto-approved, sub = user) for `app`.
     *
     * @param {object} o
     * @param {string} [o.client]    client id, 'svc-a' by default ('app' when user is given)
     * @param {string} [o.resource]  an RFC 8707 resource indicator configured here; required except
     *                               for the code flow, where none means a token for oidc-provider's
     *                               own userinfo endpoint (with scope 'openid': a real DPoP verifier)
     * @param {string} [o.scope]     space-separated; scopes the resource does not accept are dropped
     * @param {string} [o.user]      the end user (code flow only), 'alice' by default
     * @param {CryptoKeyPair} [o.dpopKey]  binds the token to this key (RFC 9449)
     * @returns {Promise<{access_token: string, token_type: string, expires_in: number, scope?: string}>}
     */
    async function token({ client, resource, scope, user, dpopKey } = {}) {
        client ??= user ? 'app' : 'svc-a';
        const as = await metadata();
        const { client: c, auth } = clientAuth(client);
        const codeFlow = client === 'app' || registered.find(m => m.client_id === client)?.grant_types?.includes('authorization_code');
        if (!resource && !codeFlow) throw new TypeError('token: resource is required');
        const DPoP = dpopKey ? oauth.DPoP(c, dpopKey) : undefined;
        let result;
        if (codeFlow) {
            const verifier = oauth.generateRandomCodeVerifier();
            const state = oauth.generateRandomState();
            const url = new URL(as.authorization_endpoint);
            url.search = new URLSearchParams({
                client_id: c.client_id,
                redirect_uri: APP_REDIRECT_URI,
                response_type: 'code',
                state,
                code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
                code_challenge_method: 'S256',
                login_hint: user ?? 'alice'
            });
            if (scope !== undefined) url.searchParams.set('scope', scope);
            if (resource) url.searchParams.set('resource', resource);
            const params = oauth.validateAuthResponse(as, c, await authorize(url), state);
            result = await withNonceRetry(
                () => oauth.authorizationCodeGrantRequest(as, c, auth, params, APP_REDIRECT_URI, verifier, { DPoP, additionalParameters: resource ? { resource } : {}, ...insecure }),
                res => oauth.processAuthorizationCodeResponse(as, c, res)
            );
        } else {
            const params = new URLSearchParams({ resource });
            if (scope !== undefined) params.set('scope', scope);
            result = await withNonceRetry(
                () => oauth.clientCredentialsGrantRequest(as, c, auth, params, { DPoP, ...insecure }),
                res => oauth.processClientCredentialsResponse(as, c, res)
            );
        }
        issuedBy.set(fingerprint(result.access_token), client);
        const { access_token, token_type, expires_in, scope: granted } = result;
        return { access_token, token_type, expires_in, scope: granted };
    }

    /**
     * Revokes a token (RFC 7009) as the client that obtained it (or `client`).
     * Introspection answers active: false afterwards.
     */
    async function revoke(accessToken, { client } = {}) {
        client ??= issuedBy.get(fingerprint(accessToken));
        if (!client) throw new Error(`revoke: token ${fingerprint(accessToken)} was not issued by token(); name the client`);
        const as = await metadata();
        const { client: c, auth } = clientAuth(client);
        const res = await oauth.revocationRequest(as, c, auth, accessToken, { additionalParameters: { token_type_hint: 'access_token' }, ...insecure });
        await oauth.processRevocationResponse(res);
    }

    // The auto-approving interaction: login as login_hint, then consent to what is asked.
    async function interaction(req, res) {
        const details = await provider.interactionDetails(req, res);
        const { prompt, params, session } = details;
        if (prompt.name === 'login') {
            return provider.interactionFinished(req, res, { login: { accountId: String(params.login_hint || 'alice') } }, { mergeWithLastSubmission: false });
        }
        if (prompt.name === 'consent') {
            const grant = details.grantId
                ? await provider.Grant.find(details.grantId)
                : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
            const d = prompt.details;
            if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
            if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
            for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
            const grantId = await grant.save();
            return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        }
        throw new Error(`unexpected prompt ${prompt.name}`);
    }

    async function control(req, res, path) {
        if (req.method === 'GET' && path.startsWith('/_test/interaction/')) return interaction(req, res);
        if (req.method === 'GET' && path === '/_test/counts') return sendJSON(res, 200, { ...counts });
        if (req.method !== 'POST') return sendJSON(res, 405, { error: 'method_not_allowed' });
        const body = await readJSON(req);
        switch (path) {
            case '/_test/token': {
                let dpopKey;
                if (body.dpop_jwk) dpopKey = await keyPairFromJWK(body.dpop_jwk);
                return sendJSON(res, 200, await token({ client: body.client, resource: body.resource, scope: body.scope, user: body.user, dpopKey }));
            }
            case '/_test/revoke':
                await revoke(body.token, { client: body.client });
                return sendJSON(res, 200, {});
            case '/_test/proof': {
                const { jwk, access_token, sign_jwk, extra_header, extra_claims, private_jwk_in_header, ...rest } = body;
                const p = await makeProof({
                    ...rest,
                    key: await keyPairFromJWK(jwk),
                    accessToken: access_token,
                    signWith: sign_jwk ? (await keyPairFromJWK(sign_jwk)).privateKey : undefined,
                    extraHeader: extra_header,
                    extraClaims: extra_claims,
                    privateJwkInHeader: private_jwk_in_header
                });
                return sendJSON(res, 200, { proof: p });
            }
            default:
                return sendJSON(res, 404, { error: 'not_found', path });
        }
    }

    server.on('request', (req, res) => {
        const path = new URL(req.url, issuer).pathname;
        if (!path.startsWith('/_test/')) return callback(req, res);
        control(req, res, path).catch(err => {
            // An OAuth error from the server keeps its status (ResponseBodyError, challenges).
            const status = Number.isInteger(err.status) ? err.status : err.response?.status ?? 500;
            const body = { error: err.error ?? 'test_control_error', error_description: String(err.error_description ?? err.message ?? err) };
            if (!res.headersSent) sendJSON(res, status, body);
            else res.destroy();
        });
    });

    const publicClients = {};
    for (const m of registered) {
        const { client_id, client_secret, token_endpoint_auth_method = 'client_secret_basic', grant_types, introspection_signed_response_alg } = m;
        publicClients[client_id] = { client_id, token_endpoint_auth_method };
        if (client_secret) publicClients[client_id].client_secret = client_secret;
        if (grant_types) publicClients[client_id].grant_types = grant_types;
        if (introspection_signed_response_alg) publicClients[client_id].introspection_signed_response_alg = introspection_signed_response_alg;
    }
    Object.assign(publicClients['pdp-jwt'], { private_key_file: privateKeyFile, private_jwk_file: privateJwkFile, kid: pkjKid, alg: 'ES256' });
    Object.assign(publicClients.app, { redirect_uri: APP_REDIRECT_URI });

    return {
        issuer,
        url: issuer,
        metadataUrl: `${issuer}/.well-known/oauth-authorization-server`,
        tokenEndpoint: `${issuer}/token`,
        introspectionEndpoint: `${issuer}/token/introspection`,
        revocationEndpoint: `${issuer}/token/revocation`,
        jwksUri: `${issuer}/jwks`,
        controlUrl: `${issuer}/_test`,
        resources: [...rs.values()].map(({ uri, format, scopes, ttl }) => ({ uri, format, scopes, ttl })),
        clients: publicClients,
        keyDir,
        provider,
        token,
        revoke,
        counts: () => ({ ...counts }),
        close: async () => {
            await new Promise(resolve => {
                server.close(() => resolve());
                server.closeAllConnections();
            });
            if (ownDir) await rm(keyDir, { recursive: true, force: true });
        }
    };
}

/** An extractable CryptoKeyPair from a private JWK (its alg, or one fitting its curve/type). */
export async function keyPairFromJWK(jwk) {
    const alg = jwk.alg ?? (jwk.kty === 'EC' ? { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv] : jwk.kty === 'OKP' ? 'Ed25519' : 'PS256');
    const { d, p, q, dp, dq, qi, ...pub } = jwk;
    if (!d) throw new TypeError('a private JWK is required');
    return {
        privateKey: await importJWK({ ...jwk, alg }, alg, { extractable: true }),
        publicKey: await importJWK({ ...pub, alg }, alg, { extractable: true })
    };
}
