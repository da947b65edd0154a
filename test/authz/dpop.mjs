// DPoP proofs (RFC 9449 §4.2) for tests: well-formed ones, and deliberately
// broken ones a verifier must reject.
//
//   const key = await generateKey();              // ES256, extractable
//   const p = await proof({ key, htm: 'POST', htu: 'http://127.0.0.1:8080/mcp', accessToken });
//   await proof({ key, htm: 'POST', htu, accessToken, iat: now - 3600 });          // stale
//   await proof({ key, htm: 'POST', htu, accessToken, omit: ['ath'] });             // missing ath
//   await proof({ key, htm: 'POST', htu, accessToken, signWith: other.privateKey }); // wrong key
//   await proof({ key, htm: 'POST', htu, accessToken, alg: 'none' });               // unsigned
//   await proof({ key, htm: 'POST', htu, accessToken, typ: 'JWT' });                // wrong typ
//   await proof({ key, htm: 'POST', htu, accessToken, privateJwkInHeader: true });  // jwk carries d
//
// The well-formed case (an access token, nothing broken, an htu without query or
// fragment) is made by oauth4webapi itself: its DPoP handle signs the proof of a
// protectedResourceRequest whose fetch is captured, never sent; nonce/iat/jti go
// through its modifyAssertion hook. Everything else is assembled here and signed
// with jose's CompactSign (or WebCrypto when the header's alg deliberately lies).
import { randomBytes } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { CompactSign, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

const b64u = v => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An extractable key pair for DPoP (extractable so privateJwkInHeader can export it). */
export function generateKey(alg = 'ES256') {
    return generateKeyPair(alg, { extractable: true, ...(alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {}) });
}

/** The JWS alg a key signs with, from its WebCrypto algorithm. */
export function keyAlg(key) {
    const a = key.algorithm;
    switch (a.name) {
        case 'ECDSA':
            return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[a.namedCurve];
        case 'Ed25519':
            return 'Ed25519';
        case 'RSASSA-PKCS1-v1_5':
            return `RS${a.hash.name.slice(4)}`;
        case 'RSA-PSS':
            return `PS${a.hash.name.slice(4)}`;
        default:
            throw new TypeError(`unsupported key algorithm ${a.name}`);
    }
}

/** The public JWK of a key pair (kty and key members only, as a DPoP header carries it). */
export async function publicJwk(key) {
    const { kty, crv, x, y, n, e } = await exportJWK(key.publicKey);
    return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined));
}

/** The RFC 7638 SHA-256 JWK thumbprint of a key pair's public key: cnf.jkt. */
export async function thumbprint(key) {
    return calculateJwkThumbprint(await publicJwk(key), 'sha256');
}

/** The ath claim for an access token: base64url(SHA-256(token)). */
export async function ath(accessToken) {
    return Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(accessToken))).toString('base64url');
}

const webCryptoParams = alg => {
    if (alg.startsWith('ES')) return { name: 'ECDSA', hash: `SHA-${alg.slice(2)}` };
    if (alg.startsWith('PS')) return { name: 'RSA-PSS', saltLength: Number(alg.slice(2)) / 8 };
    if (alg.startsWith('RS')) return { name: 'RSASSA-PKCS1-v1_5' };
    return { name: 'Ed25519' };
};

/**
 * A DPoP proof JWT.
 *
 * @param {object} o
 * @param {CryptoKeyPair} o.key   the proof's key pair: header jwk = its public key, signed by its private key
 * @param {string} o.htm          the HTTP method claim
 * @param {string} o.htu          the HTTP URI claim, written as given
 * @param {string} [o.accessToken]  adds ath = base64url(SHA-256(accessToken))
 * @param {string} [o.nonce]      the server-provided nonce claim
 * @param {number} [o.iat]        seconds since the epoch (default now): stale or future on purpose
 * @param {string} [o.jti]        default 16 random bytes, base64url (reuse one to test replay)
 * @param {string} [o.alg]        header alg; 'none' makes an unsigned proof (empty signature); any
 *                                other value than the key's own is written but the key's own signs
 * @param {string|null} [o.typ]   header typ (default 'dpop+jwt'; null omits it)
 * @param {object} [o.extraHeader]  merged into the header; a member set to undefined or null is removed
 * @param {object} [o.extraClaims]  merged into the claims; a member set to undefined or null is removed
 * @param {string[]} [o.omit]     claim or header names to leave out: 'ath', 'iat', 'jti', 'htm', 'htu', 'jwk', 'typ'
 * @param {CryptoKey} [o.signWith]  sign with this private key instead of key's (signature does not fit the jwk)
 * @param {boolean} [o.privateJwkInHeader]  the header jwk includes the private key members (d, ...)
 * @returns {Promise<string>} the compact JWS
 */
export async function proof({ key, htm, htu, accessToken, nonce, iat, jti, alg, typ, extraHeader, extraClaims, omit = [], signWith, privateJwkInHeader } = {}) {
    if (!key?.privateKey || !key?.publicKey) throw new TypeError('proof: key must be a CryptoKeyPair');
    if (typeof htm !== 'string' || typeof htu !== 'string') throw new TypeError('proof: htm and htu are required');
    const realAlg = keyAlg(key.privateKey);
    const broken =
        alg !== undefined || typ !== undefined || extraHeader || extraClaims || omit.length || signWith || privateJwkInHeader;
    const u = URL.parse(htu);
    const plainHtu = u && !u.search && !u.hash && htu === `${u.origin}${u.pathname}`;

    if (!broken && accessToken !== undefined && plainHtu) {
        // oauth4webapi's own proof, captured on its way out.
        let captured;
        const handle = oauth.DPoP({}, key, {
            [oauth.modifyAssertion]: (header, payload) => {
                if (nonce !== undefined) payload.nonce = nonce;
                if (iat !== undefined) payload.iat = iat;
                if (jti !== undefined) payload.jti = jti;
            }
        });
        await oauth.protectedResourceRequest(accessToken, htm, u, new Headers(), null, {
            DPoP: handle,
            [oauth.allowInsecureRequests]: true,
            [oauth.customFetch]: async (url, init) => {
                captured = new Headers(init.headers).get('dpop');
                return new Response(null, { status: 204 });
            }
        });
        if (!captured) throw new Error('oauth4webapi made no DPoP proof');
        return captured;
    }

    const header = {
        typ: typ === undefined ? 'dpop+jwt' : typ,
        alg: alg ?? realAlg,
        jwk: privateJwkInHeader ? await exportJWK(key.privateKey) : await publicJwk(key),
        ...extraHeader
    };
    const claims = {
        jti: jti ?? randomBytes(16).toString('base64url'),
        htm,
        htu,
        iat: iat ?? Math.floor(Date.now() / 1000),
        ...(accessToken !== undefined ? { ath: await ath(accessToken) } : {}),
        ...(nonce !== undefined ? { nonce } : {}),
        ...extraClaims
    };
    for (const name of omit) {
        delete header[name];
        delete claims[name];
    }
    for (const o of [header, claims]) for (const [k, v] of Object.entries(o)) if (v === undefined || v === null) delete o[k];

    if (header.alg === 'none') return `${b64u(header)}.${b64u(claims)}.`;
    const signer = signWith ?? key.privateKey;
    const signerAlg = keyAlg(signer);
    const payload = new TextEncoder().encode(JSON.stringify(claims));
    if (header.alg === signerAlg) return new CompactSign(payload).setProtectedHeader(header).sign(signer);
    // The header names another alg than the one that signs: jose refuses, so sign by hand.
    const input = `${b64u(header)}.${Buffer.from(payload).toString('base64url')}`;
    const sig = await crypto.subtle.sign(webCryptoParams(signerAlg), signer, new TextEncoder().encode(input));
    return `${input}.${Buffer.from(sig).toString('base64url')}`;
}

/** Decodes a compact JWS's header and claims without verifying (for assertions). */
export function decode(jws) {
    const [h, p] = jws.split('.');
    return { header: JSON.parse(Buffer.from(h, 'base64url')), claims: JSON.parse(Buffer.from(p, 'base64url')) };
}
