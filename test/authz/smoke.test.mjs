// Smoke tests of the test authorization server itself (no PDP): what the PDP's
// introspection and DPoP tests will rely on, checked against the real
// oidc-provider. Run: node --test smoke.test.mjs (or ./run.sh).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, exportJWK, importPKCS8, jwtVerify, EmbeddedJWK } from 'jose';
import { startProvider } from './provider.mjs';
import { ath, decode, generateKey, proof, thumbprint } from './dpop.mjs';

const RS = 'http://127.0.0.1:18080/mcp'; // opaque tokens
const JWT_RS = 'http://127.0.0.1:18080/mcp-jwt'; // JWT access tokens
const SHORT_RS = 'http://127.0.0.1:18080/mcp-short'; // opaque, 1 s lifetime
const INTROSPECTION_JWT = 'application/token-introspection+jwt';
const now = () => Math.floor(Date.now() / 1000);

/**
 * RFC 7662 introspection with raw fetch, authenticated as one of the pdp-* clients
 * by its own method (client_secret_basic, client_secret_post, private_key_jwt).
 */
async function introspect(as, clientId, token, { accept, hint = 'access_token', secret } = {}) {
    const c = as.clients[clientId];
    const form = new URLSearchParams({ token });
    if (hint) form.set('token_type_hint', hint);
    const headers = { 'content-type': 'application/x-www-form-urlencoded' };
    if (accept) headers.accept = accept;
    switch (c.token_endpoint_auth_method) {
        case 'client_secret_basic': {
            // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
            const enc = encodeURIComponent;
            headers.authorization = `Basic ${Buffer.from(`${enc(c.client_id)}:${enc(secret ?? c.client_secret)}`).toString('base64')}`;
            break;
        }
        case 'client_secret_post':
            form.set('client_id', c.client_id);
            form.set('client_secret', secret ?? c.client_secret);
            break;
        case 'private_key_jwt': {
            const key = await importPKCS8(await readFile(c.private_key_file, 'utf8'), c.alg);
            const assertion = await new SignJWT({})
                .setProtectedHeader({ alg: c.alg, kid: c.kid })
                .setIssuer(c.client_id)
                .setSubject(c.client_id)
                .setAudience(as.issuer)
                .setJti(randomBytes(16).toString('base64url'))
                .setIssuedAt()
                .setExpirationTime('60s')
                .sign(key);
            form.set('client_id', c.client_id);
            form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
            form.set('client_assertion', assertion);
            break;
        }
        case 'none':
            form.set('client_id', c.client_id);
            break;
        default:
            throw new Error(`no introspection auth for ${c.token_endpoint_auth_method}`);
    }
    const res = await fetch(as.introspectionEndpoint, { method: 'POST', headers, body: form, signal: AbortSignal.timeout(5000) });
    const type = res.headers.get('content-type') ?? '';
    const text = await res.text();
    return { status: res.status, type, body: type.startsWith('application/json') ? JSON.parse(text) : text };
}

const isJWT = t => {
    try {
        return !!decodeProtectedHeader(t);
    } catch {
        return false;
    }
};

let as;
let jwks;
before(async () => {
    as = await startProvider({
        resources: [RS, { uri: JWT_RS, format: 'jwt', scopes: ['read', 'write'] }, { uri: SHORT_RS, ttl: 1 }]
    });
    jwks = createRemoteJWKSet(new URL(as.jwksUri));
});
after(() => as?.close());

describe('metadata', () => {
    test('RFC 8414 metadata at /.well-known/oauth-authorization-server advertises introspection, revocation, jwks_uri and DPoP algs', async () => {
        const res = await fetch(`${as.issuer}/.well-known/oauth-authorization-server`);
        assert.equal(res.status, 200);
        const md = await res.json();
        assert.equal(md.issuer, as.issuer);
        assert.equal(md.issuer, `http://127.0.0.1:${new URL(as.issuer).port}`);
        assert.equal(md.introspection_endpoint, as.introspectionEndpoint);
        assert.equal(md.revocation_endpoint, as.revocationEndpoint);
        assert.equal(md.token_endpoint, as.tokenEndpoint);
        assert.equal(md.jwks_uri, as.jwksUri);
        assert.ok(md.dpop_signing_alg_values_supported.includes('ES256'), JSON.stringify(md.dpop_signing_alg_values_supported));
        assert.deepEqual(md.introspection_signing_alg_values_supported.sort(), ['ES256', 'RS256']);
        assert.ok(md.grant_types_supported.includes('client_credentials'));
        for (const m of ['client_secret_basic', 'client_secret_post', 'private_key_jwt']) assert.ok(md.token_endpoint_auth_methods_supported.includes(m), m);
    });

    test('/.well-known/openid-configuration is the same document', async () => {
        const [a, b] = await Promise.all(
            ['oauth-authorization-server', 'openid-configuration'].map(async p => (await fetch(`${as.issuer}/.well-known/${p}`)).json())
        );
        assert.deepEqual(a, b);
    });

    test('the JWKS holds public keys only (RS256 and ES256)', async () => {
        const { keys } = await (await fetch(as.jwksUri)).json();
        assert.deepEqual(keys.map(k => k.alg).sort(), ['ES256', 'RS256']);
        for (const k of keys) {
            assert.ok(k.kid, 'kid');
            for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[priv], undefined, `${k.kid} has ${priv}`);
        }
    });
});

describe('opaque access tokens', () => {
    test('client_credentials gives an opaque Bearer token (not a JWT) with only the scopes the resource accepts', async () => {
        const t = await as.token({ resource: RS, scope: 'read write bogus' });
        assert.equal(isJWT(t.access_token), false);
        assert.doesNotMatch(t.access_token, /\./);
        assert.equal(t.token_type, 'bearer'); // oauth4webapi lower-cases token_type
        assert.equal(t.scope, 'read write');
        assert.equal(t.expires_in, 300);
    });

    for (const clientId of ['pdp-basic', 'pdp-post', 'pdp-jwt']) {
        describe(`introspected by ${clientId}`, () => {
            test('a Bearer token is active with iss, aud, client_id, scope, iat, exp, token_type Bearer, no cnf', async () => {
                const t = await as.token({ client: 'svc-a', resource: RS, scope: 'read' });
                const r = await introspect(as, clientId, t.access_token);
                assert.equal(r.status, 200);
                assert.match(r.type, /^application\/json/);
                const b = r.body;
                assert.equal(b.active, true);
                assert.equal(b.iss, as.issuer);
                assert.equal(b.aud, RS);
                assert.equal(b.client_id, 'svc-a');
                assert.equal(b.scope, 'read');
                assert.equal(b.token_type, 'Bearer');
                assert.equal(b.cnf, undefined);
                assert.equal(b.sub, undefined); // client_credentials: no end user
                assert.equal(b.exp - b.iat, 300);
                assert.ok(Math.abs(b.iat - now()) <= 5);
            });

            test('a DPoP-bound token shows cnf.jkt = the key\'s RFC 7638 thumbprint and token_type DPoP', async () => {
                const key = await generateKey();
                const t = await as.token({ client: 'svc-b', resource: RS, scope: 'read admin', dpopKey: key });
                assert.equal(t.token_type, 'dpop');
                const { body: b } = await introspect(as, clientId, t.access_token);
                assert.equal(b.active, true);
                assert.equal(b.client_id, 'svc-b');
                assert.equal(b.scope, 'read admin');
                assert.equal(b.token_type, 'DPoP');
                assert.deepEqual(b.cnf, { jkt: await thumbprint(key) });
            });

            test(`Accept: ${INTROSPECTION_JWT} gives an RFC 9701 JWT verifiable with the provider's JWKS`, async () => {
                const key = await generateKey();
                const t = await as.token({ resource: RS, scope: 'write', dpopKey: key });
                const r = await introspect(as, clientId, t.access_token, { accept: INTROSPECTION_JWT });
                assert.equal(r.status, 200);
                assert.match(r.type, /^application\/token-introspection\+jwt/);
                const alg = as.clients[clientId].introspection_signed_response_alg;
                const { payload, protectedHeader } = await jwtVerify(r.body, jwks, {
                    issuer: as.issuer,
                    audience: clientId,
                    typ: 'token-introspection+jwt',
                    algorithms: [alg]
                });
                assert.equal(protectedHeader.alg, alg);
                assert.ok(protectedHeader.kid);
                assert.ok(Math.abs(payload.iat - now()) <= 5);
                const ti = payload.token_introspection;
                assert.equal(ti.active, true);
                assert.equal(ti.aud, RS);
                assert.equal(ti.client_id, 'svc-a');
                assert.equal(ti.scope, 'write');
                assert.equal(ti.token_type, 'DPoP');
                assert.deepEqual(ti.cnf, { jkt: await thumbprint(key) });
            });
        });
    }

    test('Accept: application/json from a client registered for JWT responses still gets JSON', async () => {
        const t = await as.token({ resource: RS, scope: 'read' });
        const r = await introspect(as, 'pdp-basic', t.access_token, { accept: 'application/json' });
        assert.match(r.type, /^application\/json/);
        assert.equal(r.body.active, true);
    });

    test('token_type_hint is only a hint: refresh_token, or none at all, still finds the access token', async () => {
        const t = await as.token({ resource: RS, scope: 'read' });
        for (const hint of ['refresh_token', undefined]) {
            const r = await introspect(as, 'pdp-post', t.access_token, { hint });
            assert.equal(r.body.active, true, `hint ${hint}`);
        }
    });

    test('a revoked token introspects as active: false, another token of the same client stays active', async () => {
        const t1 = await as.token({ resource: RS, scope: 'read' });
        const t2 = await as.token({ resource: RS, scope: 'read' });
        assert.equal((await introspect(as, 'pdp-basic', t1.access_token)).body.active, true);
        await as.revoke(t1.access_token);
        for (const id of ['pdp-basic', 'pdp-post', 'pdp-jwt']) {
            assert.deepEqual((await introspect(as, id, t1.access_token)).body, { active: false }, id);
        }
        assert.equal((await introspect(as, 'pdp-basic', t2.access_token)).body.active, true);
    });

    test('a revoked DPoP-bound token introspects as active: false', async () => {
        const t = await as.token({ resource: RS, scope: 'read', dpopKey: await generateKey() });
        await as.revoke(t.access_token);
        assert.deepEqual((await introspect(as, 'pdp-jwt', t.access_token)).body, { active: false });
    });

    test('a garbage token introspects as active: false', async () => {
        for (const garbage of ['not-a-token', randomBytes(32).toString('base64url')]) {
            const r = await introspect(as, 'pdp-basic', garbage);
            assert.equal(r.status, 200);
            assert.deepEqual(r.body, { active: false });
        }
    });

    test('an expired token introspects as active: false', async () => {
        const t = await as.token({ resource: SHORT_RS, scope: 'read' });
        assert.equal(t.expires_in, 1);
        assert.equal((await introspect(as, 'pdp-basic', t.access_token)).body.active, true);
        await new Promise(r => setTimeout(r, 2100));
        assert.deepEqual((await introspect(as, 'pdp-basic', t.access_token)).body, { active: false });
    });

    test('a wrong client secret is refused with 401 invalid_client', async () => {
        const t = await as.token({ resource: RS, scope: 'read' });
        for (const id of ['pdp-basic', 'pdp-post']) {
            const r = await introspect(as, id, t.access_token, { secret: 'wrong' });
            assert.equal(r.status, 401, id);
            assert.equal(r.body.error, 'invalid_client', id);
        }
    });

    test("a public client may not introspect another client's token (active: false)", async () => {
        const t = await as.token({ resource: RS, scope: 'read' });
        assert.deepEqual((await introspect(as, 'app', t.access_token)).body, { active: false });
    });

    test('an unknown resource is refused with invalid_target', async () => {
        await assert.rejects(as.token({ resource: 'http://127.0.0.1:18080/unknown', scope: 'read' }), err => err.error === 'invalid_target');
    });
});

describe('JWT access tokens', () => {
    test('a token for the jwt resource is an RFC 9068 JWT verifiable against jwks_uri', async () => {
        const t = await as.token({ resource: JWT_RS, scope: 'read write admin' });
        assert.equal(isJWT(t.access_token), true);
        const { payload, protectedHeader } = await jwtVerify(t.access_token, jwks, { issuer: as.issuer, audience: JWT_RS, typ: 'at+jwt' });
        assert.equal(protectedHeader.alg, 'ES256');
        assert.equal(payload.client_id, 'svc-a');
        assert.equal(payload.sub, 'svc-a'); // client_credentials: sub is the client
        assert.equal(payload.scope, 'read write'); // admin is not a scope of this resource
        assert.equal(payload.exp - payload.iat, 300);
        assert.ok(payload.jti);
        assert.equal(payload.cnf, undefined);
    });

    test('a DPoP-bound JWT carries cnf.jkt', async () => {
        const key = await generateKey();
        const t = await as.token({ resource: JWT_RS, scope: 'read', dpopKey: key });
        assert.equal(t.token_type, 'dpop');
        const { payload } = await jwtVerify(t.access_token, jwks, { issuer: as.issuer, audience: JWT_RS });
        assert.deepEqual(payload.cnf, { jkt: await thumbprint(key) });
    });

    test('oidc-provider does not introspect JWT access tokens (400 unsupported_token_type)', async () => {
        const t = await as.token({ resource: JWT_RS, scope: 'read' });
        const r = await introspect(as, 'pdp-basic', t.access_token);
        assert.equal(r.status, 400);
        assert.equal(r.body.error, 'unsupported_token_type');
    });
});

describe('authorization code flow (PKCE, auto-approved)', () => {
    test('a user token: introspection gives sub = the user, client_id app', async () => {
        const key = await generateKey();
        const t = await as.token({ user: 'carol', resource: RS, scope: 'read write', dpopKey: key });
        assert.equal(t.token_type, 'dpop');
        assert.equal(t.scope, 'read write');
        const { body: b } = await introspect(as, 'pdp-basic', t.access_token);
        assert.equal(b.active, true);
        assert.equal(b.sub, 'carol');
        assert.equal(b.client_id, 'app');
        assert.equal(b.aud, RS);
        assert.deepEqual(b.cnf, { jkt: await thumbprint(key) });
    });

    test('a user JWT access token has sub = the user', async () => {
        const t = await as.token({ user: 'dave', resource: JWT_RS, scope: 'read' });
        const { payload } = await jwtVerify(t.access_token, jwks, { issuer: as.issuer, audience: JWT_RS, typ: 'at+jwt' });
        assert.equal(payload.sub, 'dave');
        assert.equal(payload.client_id, 'app');
    });

    test('a revoked user token is inactive', async () => {
        const t = await as.token({ user: 'erin', resource: RS, scope: 'read' });
        await as.revoke(t.access_token);
        assert.deepEqual((await introspect(as, 'pdp-post', t.access_token)).body, { active: false });
    });
});

// oidc-provider's userinfo endpoint verifies DPoP proofs with ath (RFC 9449 §7):
// a real, independent verifier for what dpop.mjs makes.
describe('DPoP proofs (dpop.mjs), judged by oidc-provider\'s userinfo endpoint', () => {
    let key, other, at, htu;
    before(async () => {
        key = await generateKey();
        other = await generateKey();
        ({ access_token: at } = await as.token({ user: 'carol', scope: 'openid', dpopKey: key }));
        htu = `${as.issuer}/me`;
    });
    const userinfo = async (p, token = at) => {
        const res = await fetch(htu, { headers: { authorization: `DPoP ${token}`, dpop: p }, signal: AbortSignal.timeout(5000) });
        return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', body: await res.text() };
    };
    const accepted = r => {
        assert.equal(r.status, 200, `${r.status} ${r.challenge}`);
        assert.equal(JSON.parse(r.body).sub, 'carol');
    };
    // why: the error_description oidc-provider gives (a generic "invalid DPoP key binding"
    // when jose's jwtVerify of the proof fails: signature, alg, typ, jwk).
    const refused = (r, why = 'invalid DPoP key binding', error = 'invalid_dpop_proof') => {
        assert.equal(r.status, 401, r.body);
        assert.match(r.challenge, /^DPoP /);
        assert.ok(r.challenge.includes(`error="${error}"`), r.challenge);
        assert.ok(r.challenge.includes(`error_description="${why}"`), r.challenge);
    };

    // What jose (oidc-provider's verifier) says of a proof, with oidc-provider's options.
    const joseRefuses = (jws, re) =>
        assert.rejects(jwtVerify(jws, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'ES384', 'PS256', 'RS256', 'Ed25519', 'EdDSA'] }), err => re.test(err.message));

    const cases = [
        {
            name: "well-formed (oauth4webapi's own proof)",
            make: () => proof({ key, htm: 'GET', htu, accessToken: at }),
            shape: async ({ header, claims }) => {
                assert.equal(header.typ, 'dpop+jwt');
                assert.equal(header.alg, 'ES256');
                assert.equal(header.jwk.d, undefined);
                assert.equal(claims.htm, 'GET');
                assert.equal(claims.htu, htu);
                assert.equal(claims.ath, await ath(at));
                assert.ok(claims.jti);
                assert.ok(Math.abs(claims.iat - now()) <= 5);
            },
            ok: true
        },
        {
            name: 'well-formed, assembled by jose (extraClaims: {})',
            make: () => proof({ key, htm: 'GET', htu, accessToken: at, extraClaims: {} }),
            shape: async ({ header, claims }) => {
                assert.deepEqual(Object.keys(header).sort(), ['alg', 'jwk', 'typ']);
                assert.equal(claims.ath, await ath(at));
            },
            ok: true
        },
        {
            name: 'htu with a query (verifiers ignore it, RFC 9449 §4.3)',
            make: () => proof({ key, htm: 'GET', htu: `${htu}?x=1`, accessToken: at }),
            shape: ({ claims }) => assert.equal(claims.htu, `${htu}?x=1`),
            ok: true
        },
        { why: 'DPoP proof htm mismatch', name: 'wrong htm', make: () => proof({ key, htm: 'POST', htu, accessToken: at }), shape: ({ claims }) => assert.equal(claims.htm, 'POST') },
        { why: 'DPoP proof htu mismatch', name: 'wrong htu', make: () => proof({ key, htm: 'GET', htu: `${as.issuer}/other`, accessToken: at }), shape: ({ claims }) => assert.equal(claims.htu, `${as.issuer}/other`) },
        { why: 'DPoP proof iat is not recent enough', name: 'stale iat (-600 s)', make: () => proof({ key, htm: 'GET', htu, accessToken: at, iat: now() - 600 }), shape: ({ claims }) => assert.ok(claims.iat < now() - 500) },
        { why: 'DPoP proof iat is not recent enough', name: 'future iat (+600 s)', make: () => proof({ key, htm: 'GET', htu, accessToken: at, iat: now() + 600 }), shape: ({ claims }) => assert.ok(claims.iat > now() + 500) },
        { why: 'DPoP proof ath mismatch', name: 'missing ath', make: () => proof({ key, htm: 'GET', htu, accessToken: at, omit: ['ath'] }), shape: ({ claims }) => assert.equal(claims.ath, undefined) },
        {
            name: 'ath of another token',
            why: 'DPoP proof ath mismatch',
            make: () => proof({ key, htm: 'GET', htu, accessToken: 'another-token' }),
            shape: async ({ claims }) => assert.equal(claims.ath, await ath('another-token'))
        },
        { why: 'DPoP proof must have a jti string property', name: 'missing jti', make: () => proof({ key, htm: 'GET', htu, accessToken: at, omit: ['jti'] }), shape: ({ claims }) => assert.equal(claims.jti, undefined) },
        {
            name: 'signed by another key than the header jwk',
            make: () => proof({ key, htm: 'GET', htu, accessToken: at, signWith: other.privateKey }),
            shape: async ({ jws }) => {
                await joseRefuses(jws, /signature verification failed/);
                assert.equal(await calculateJwkThumbprint(decode(jws).header.jwk), await thumbprint(key));
            }
        },
        {
            name: 'a valid proof by a key the token is not bound to',
            why: 'invalid token provided',
            error: 'invalid_token',
            make: () => proof({ key: other, htm: 'GET', htu, accessToken: at }),
            shape: async ({ jws }) => assert.ok(await jwtVerify(jws, EmbeddedJWK, { typ: 'dpop+jwt' }))
        },
        {
            name: 'alg none (unsigned)',
            make: () => proof({ key, htm: 'GET', htu, accessToken: at, alg: 'none' }),
            shape: async ({ header, jws }) => {
                assert.equal(header.alg, 'none');
                assert.ok(jws.endsWith('.'));
                await joseRefuses(jws, /"alg" \(Algorithm\) Header Parameter value not allowed/);
            }
        },
        {
            name: 'header alg ES384 on an ES256 signature',
            make: () => proof({ key, htm: 'GET', htu, accessToken: at, alg: 'ES384' }),
            shape: async ({ header, jws }) => {
                assert.equal(header.alg, 'ES384');
                await joseRefuses(jws, /"crv" does not match the requested algorithm/);
            }
        },
        { name: 'typ JWT', make: () => proof({ key, htm: 'GET', htu, accessToken: at, typ: 'JWT' }), shape: async ({ header, jws }) => (assert.equal(header.typ, 'JWT'), joseRefuses(jws, /unexpected "typ"/)) },
        { name: 'no typ', make: () => proof({ key, htm: 'GET', htu, accessToken: at, typ: null }), shape: async ({ header, jws }) => (assert.equal(header.typ, undefined), joseRefuses(jws, /unexpected "typ"/)) },
        {
            name: 'a private key in the jwk header',
            make: () => proof({ key, htm: 'GET', htu, accessToken: at, privateJwkInHeader: true }),
            shape: async ({ header, jws }) => (assert.ok(header.jwk.d), joseRefuses(jws, /must be a public key/))
        },
        { name: 'no jwk header', make: () => proof({ key, htm: 'GET', htu, accessToken: at, omit: ['jwk'] }), shape: async ({ header, jws }) => (assert.equal(header.jwk, undefined), joseRefuses(jws, /must be a JSON object/)) }
    ];
    for (const c of cases) {
        test(`${c.ok ? 'accepted' : 'refused'}: ${c.name}`, async () => {
            const jws = await c.make();
            await c.shape({ ...decode(jws), jws });
            const r = await userinfo(jws);
            if (c.ok) accepted(r);
            else refused(r, c.why, c.error);
        });
    }

    test('a replayed proof (same jti) is refused the second time', async () => {
        const jti = randomBytes(16).toString('base64url');
        const p = await proof({ key, htm: 'GET', htu, accessToken: at, jti });
        assert.equal(decode(p).claims.jti, jti);
        accepted(await userinfo(p));
        // The same request again: only the jti's reuse differs. oidc-provider's userinfo
        // reports a DPoP replay as invalid_token.
        refused(await userinfo(p), 'invalid token provided', 'invalid_token');
    });

    for (const alg of ['Ed25519', 'PS256', 'RS256']) {
        test(`a ${alg} key: the bound token and both proof makers' proofs are accepted`, async () => {
            const k = await generateKey(alg);
            const { access_token } = await as.token({ user: 'carol', scope: 'openid', dpopKey: k });
            const a = await proof({ key: k, htm: 'GET', htu, accessToken: access_token });
            const b = await proof({ key: k, htm: 'GET', htu, accessToken: access_token, extraClaims: {} });
            assert.equal(decode(a).header.alg, alg);
            assert.equal(decode(b).header.alg, alg);
            accepted(await userinfo(a, access_token));
            accepted(await userinfo(b, access_token));
        });
    }
});

describe('server DPoP nonces (requireDpopNonce)', () => {
    let nas;
    before(async () => (nas = await startProvider({ resources: [RS], requireDpopNonce: true })));
    after(() => nas?.close());

    test('the token endpoint asks for a nonce (use_dpop_nonce + DPoP-Nonce) and token() retries with it', async () => {
        const key = await generateKey();
        // A proof without a nonce, by hand: refused with a nonce to use.
        const form = new URLSearchParams({ grant_type: 'client_credentials', resource: RS, scope: 'read' });
        const c = nas.clients['svc-a'];
        const res = await fetch(nas.tokenEndpoint, {
            method: 'POST',
            headers: {
                authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`,
                'content-type': 'application/x-www-form-urlencoded',
                dpop: await proof({ key, htm: 'POST', htu: nas.tokenEndpoint })
            },
            body: form
        });
        assert.equal(res.status, 400);
        assert.equal((await res.json()).error, 'use_dpop_nonce');
        const nonce = res.headers.get('dpop-nonce');
        assert.ok(nonce);
        // token() (oauth4webapi) picks the nonce up and retries.
        const t = await nas.token({ resource: RS, scope: 'read', dpopKey: key });
        assert.equal(t.token_type, 'dpop');
        const { body } = await introspect(nas, 'pdp-basic', t.access_token);
        assert.equal(body.active, true);
        assert.deepEqual(body.cnf, { jkt: await thumbprint(key) });
        // A proof with the server's nonce, by hand (dpop.mjs's nonce option), is accepted.
        const res2 = await fetch(nas.tokenEndpoint, {
            method: 'POST',
            headers: {
                authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`,
                'content-type': 'application/x-www-form-urlencoded',
                dpop: await proof({ key, htm: 'POST', htu: nas.tokenEndpoint, nonce })
            },
            body: form
        });
        assert.equal(res2.status, 200, await res2.clone().text());
        assert.equal((await res2.json()).token_type, 'DPoP');
    });
});

describe('serve.mjs', () => {
    test('prints one JSON line, its /_test routes issue, prove and revoke, SIGTERM ends it', async () => {
        const child = spawn(
            process.execPath,
            [fileURLToPath(new URL('./serve.mjs', import.meta.url)), '--port', '0', '--resource', `${RS},${SHORT_RS}`, '--jwt-resource', JWT_RS, '--scopes', 'read,write'],
            { stdio: ['ignore', 'pipe', 'pipe'] }
        );
        let stderr = '';
        child.stderr.on('data', d => (stderr += d));
        try {
            const lines = createInterface({ input: child.stdout });
            const [line] = await Promise.race([
                once(lines, 'line'),
                once(child, 'exit').then(([code]) => Promise.reject(new Error(`serve.mjs exited ${code}: ${stderr}`)))
            ]);
            const info = JSON.parse(line);
            assert.match(info.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
            assert.equal(info.introspectionEndpoint, `${info.issuer}/token/introspection`);
            assert.equal(info.jwksUri, `${info.issuer}/jwks`);
            assert.equal(info.controlUrl, `${info.issuer}/_test`);
            assert.deepEqual(
                info.resources.map(r => [r.uri, r.format, r.scopes.join(' ')]),
                [[RS, 'opaque', 'read write'], [SHORT_RS, 'opaque', 'read write'], [JWT_RS, 'jwt', 'read write']]
            );
            assert.deepEqual(Object.keys(info.clients).sort(), ['app', 'pdp-basic', 'pdp-jwt', 'pdp-post', 'svc-a', 'svc-b']);
            assert.match(await readFile(info.clients['pdp-jwt'].private_key_file, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
            assert.equal(JSON.parse(await readFile(info.clients['pdp-jwt'].private_jwk_file, 'utf8')).kid, info.clients['pdp-jwt'].kid);
            const md = await (await fetch(info.metadataUrl)).json();
            assert.equal(md.issuer, info.issuer);

            const post = async (path, body) => {
                const res = await fetch(`${info.controlUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
                return { status: res.status, body: await res.json() };
            };
            const key = await generateKey();
            const jwk = await exportJWK(key.privateKey);
            // A DPoP-bound opaque token for a resource, introspected by the PDP's client.
            const t = await post('/token', { client: 'svc-b', resource: RS, scope: 'read', dpop_jwk: jwk });
            assert.equal(t.status, 200, JSON.stringify(t.body));
            assert.equal(t.body.token_type, 'dpop');
            const i = await introspect(info, 'pdp-jwt', t.body.access_token);
            assert.equal(i.body.active, true);
            assert.equal(i.body.client_id, 'svc-b');
            assert.deepEqual(i.body.cnf, { jkt: await thumbprint(key) });
            // A proof from /_test/proof is accepted by userinfo with a user token bound to the key.
            const u = await post('/token', { user: 'frank', scope: 'openid', dpop_jwk: jwk });
            assert.equal(u.status, 200, JSON.stringify(u.body));
            const p = await post('/proof', { jwk, htm: 'GET', htu: `${info.issuer}/me`, access_token: u.body.access_token });
            const ui = await fetch(`${info.issuer}/me`, { headers: { authorization: `DPoP ${u.body.access_token}`, dpop: p.body.proof } });
            assert.equal(ui.status, 200);
            assert.equal((await ui.json()).sub, 'frank');
            // A broken proof from /_test/proof has the defect asked for.
            const bad = await post('/proof', { jwk, htm: 'GET', htu: `${info.issuer}/me`, access_token: u.body.access_token, typ: 'JWT', omit: ['ath'] });
            assert.equal(decode(bad.body.proof).header.typ, 'JWT');
            assert.equal(decode(bad.body.proof).claims.ath, undefined);
            // Revocation through /_test/revoke.
            assert.equal((await post('/revoke', { token: t.body.access_token })).status, 200);
            assert.deepEqual((await introspect(info, 'pdp-basic', t.body.access_token)).body, { active: false });
            // Errors are JSON.
            const e = await post('/token', { resource: 'http://127.0.0.1:1/nope' });
            assert.equal(e.status, 400);
            assert.equal(e.body.error, 'invalid_target');
        } finally {
            child.kill('SIGTERM');
            const [code] = child.exitCode === null ? await once(child, 'exit') : [child.exitCode];
            assert.equal(code, 0, stderr);
        }
    });
});
