// An OAuthClientProvider for the SDK clients (1.x and 2.x take the same
// shape), in memory, with an auto-approving "user agent": it opens the
// authorization URL without following the redirect and keeps the code for
// transport.finishAuth(code).
import { randomBytes } from 'node:crypto';

export class TestOAuthProvider {
    constructor(name) {
        this._redirectUrl = 'http://127.0.0.1:9/callback'; // never contacted
        this._clientMetadata = {
            client_name: name,
            redirect_uris: [this._redirectUrl],
            grant_types: ['authorization_code'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
        this._tokens = undefined;
        this._client = undefined;
        this._verifier = undefined;
        this._state = undefined;
        this.pendingCode = undefined;
        /** The scope of every authorization the SDK asked for. */
        this.authorizations = [];
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
        return this._client;
    }
    saveClientInformation(info) {
        this._client = info;
    }
    tokens() {
        return this._tokens;
    }
    saveTokens(t) {
        this._tokens = t;
    }
    saveCodeVerifier(v) {
        this._verifier = v;
    }
    codeVerifier() {
        if (!this._verifier) throw new Error('no code verifier saved');
        return this._verifier;
    }
    saveDiscoveryState(s) {
        this._discovery = s;
    }
    discoveryState() {
        return this._discovery;
    }
    invalidateCredentials(scope) {
        if (scope === 'all' || scope === 'client') this._client = undefined;
        if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
        if (scope === 'all' || scope === 'verifier') this._verifier = undefined;
        if (scope === 'all' || scope === 'discovery') this._discovery = undefined;
    }
    async redirectToAuthorization(url) {
        const u = new URL(url);
        this.authorizations.push(u.searchParams.get('scope'));
        const res = await fetch(u, { redirect: 'manual', signal: AbortSignal.timeout(5000) });
        const location = res.headers.get('location');
        if (res.status !== 302 || !location) throw new Error(`authorization endpoint answered ${res.status} ${await res.text()}`);
        const back = new URL(location);
        if (back.searchParams.get('state') !== this._state) throw new Error('state mismatch');
        this.pendingCode = back.searchParams.get('code');
    }
    takeCode() {
        const c = this.pendingCode;
        this.pendingCode = undefined;
        if (!c) throw new Error('no authorization code pending: the SDK did not redirect');
        return c;
    }
}
