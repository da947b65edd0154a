// An OAuthClientProvider for the SDK client, in memory, with an auto-approving
// "user agent": redirectToAuthorization() fetches the authorization URL
// without following the redirect, checks `state`, and keeps the code for
// transport.finishAuth(code). This is what a real client does with a browser
// and a loopback redirect listener, minus the human.
import { randomBytes } from 'node:crypto';

export class TestOAuthProvider {
    /**
     * @param {object} o
     * @param {string} o.name              client_name used for dynamic registration
     * @param {string[]} [o.grantTypes]    grant_types to register (refresh tokens only with 'refresh_token')
     * @param {string} [o.scope]           clientMetadata.scope (the SDK's last fallback)
     */
    constructor({ name, grantTypes = ['authorization_code'], scope } = {}) {
        // Never contacted: the redirect is read from the Location header.
        this._redirectUrl = 'http://127.0.0.1:9/callback';
        this._clientMetadata = {
            client_name: name,
            redirect_uris: [this._redirectUrl],
            grant_types: grantTypes,
            response_types: ['code'],
            token_endpoint_auth_method: 'none',
            ...(scope ? { scope } : {})
        };
        this._tokens = undefined;
        this._clientInformation = undefined;
        this._codeVerifier = undefined;
        this._state = undefined;
        /** Every authorization URL the SDK sent us to, parsed. */
        this.authorizations = [];
        /** The code of the last approved authorization, for finishAuth. */
        this.pendingCode = undefined;
        /** Its RFC 9207 iss parameter (SDK 2.x checks it: finishAuth(code, iss)). */
        this.pendingIss = undefined;
        /** Every token set the SDK saved. */
        this.savedTokens = [];
    }

    get redirectUrl() {
        return this._redirectUrl;
    }
    get clientMetadata() {
        return this._clientMetadata;
    }
    state() {
        this._state = randomBytes(16).toString('base64url');
        return this._state;
    }
    clientInformation() {
        return this._clientInformation;
    }
    saveClientInformation(info) {
        this._clientInformation = info;
    }
    tokens() {
        return this._tokens;
    }
    saveTokens(tokens) {
        this._tokens = tokens;
        this.savedTokens.push(tokens);
    }
    saveCodeVerifier(v) {
        this._codeVerifier = v;
    }
    codeVerifier() {
        if (!this._codeVerifier) throw new Error('no code verifier saved');
        return this._codeVerifier;
    }
    invalidateCredentials(scope) {
        if (scope === 'all' || scope === 'client') this._clientInformation = undefined;
        if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
        if (scope === 'all' || scope === 'verifier') this._codeVerifier = undefined;
    }

    /** The "browser": open the URL; the authorization server approves at once. */
    async redirectToAuthorization(url) {
        const u = new URL(url);
        this.authorizations.push(u);
        const res = await fetch(u, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
        const location = res.headers.get('location');
        if (res.status !== 302 || !location) {
            throw new Error(`authorization endpoint answered ${res.status} ${await res.text()}`);
        }
        const back = new URL(location);
        if (!location.startsWith(this._redirectUrl)) throw new Error(`redirected to ${location}, not to our redirect_uri`);
        if (back.searchParams.get('state') !== this._state) throw new Error('state mismatch');
        const err = back.searchParams.get('error');
        if (err) throw new Error(`authorization failed: ${err}: ${back.searchParams.get('error_description')}`);
        this.pendingCode = back.searchParams.get('code');
        this.pendingIss = back.searchParams.get('iss') ?? undefined;
    }

    /** Take the pending code (once). */
    takeCode() {
        const c = this.pendingCode;
        this.pendingCode = undefined;
        if (!c) throw new Error('no authorization code pending: the SDK did not redirect');
        return c;
    }
}

/**
 * Decodes a JWT's claims without verifying (the PDP verifies; the test only looks).
 */
export function jwtClaims(token) {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}
