// The client of the PDP's HTTP API: POST /v1/decide over a keep-alive agent,
// bounded in time and size. Any failure is an error; the caller fails closed.
import http from 'node:http';
import https from 'node:https';
import type { Decision, DecideRequest } from './wire.js';

/** Why the PDP gave no decision. */
export class DecideError extends Error {
    /** The PDP's HTTP status (0: no answer at all). */
    readonly status: number;
    /** The PDP's error code (`invalid_message`, `rate_limited`, ...), when it answered one. */
    readonly code: string | undefined;
    /** Seconds to wait, from the PDP's Retry-After. */
    readonly retryAfter: string | undefined;
    constructor(message: string, status = 0, code?: string, retryAfter?: string) {
        super(message);
        this.name = 'DecideError';
        this.status = status;
        this.code = code;
        this.retryAfter = retryAfter;
    }
}

export interface PdpClientOptions {
    pdpUrl: string;
    apiKey?: string | undefined;
    timeoutMs: number;
    agent?: http.Agent | undefined;
    /** Bound of the PDP's answer (a filtered list can be large). */
    maxAnswerBytes: number;
}

/** A client of one PDP. */
export class PdpClient {
    readonly #url: URL;
    readonly #o: PdpClientOptions;
    readonly #agent: http.Agent;
    readonly #request: typeof http.request;

    constructor(o: PdpClientOptions) {
        const base = new URL(o.pdpUrl);
        if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`pdpUrl ${o.pdpUrl} is not an http(s) URL`);
        this.#url = new URL('v1/decide', base.href.endsWith('/') ? base : new URL(base.href + '/'));
        this.#o = o;
        const tls = base.protocol === 'https:';
        this.#request = tls ? https.request : http.request;
        this.#agent = o.agent ?? (tls ? new https.Agent({ keepAlive: true, maxSockets: 256 }) : new http.Agent({ keepAlive: true, maxSockets: 256 }));
    }

    /** The PDP's base URL (for the metadata proxy). */
    get base(): URL {
        return new URL('..', this.#url);
    }

    /** The agent the client uses (for the metadata proxy). */
    get agent(): http.Agent {
        return this.#agent;
    }

    /** Asks the PDP to decide body. */
    decide(body: DecideRequest): Promise<Decision> {
        const payload = Buffer.from(JSON.stringify(body));
        const headers: Record<string, string | number> = {
            'Content-Type': 'application/json',
            'Content-Length': payload.length,
            Accept: 'application/json'
        };
        if (this.#o.apiKey) headers['X-PDP-API-Key'] = this.#o.apiKey;
        return new Promise<Decision>((resolve, reject) => {
            let settled = false;
            const settle = (err: Error | null, d?: Decision) => {
                if (settled) return;
                settled = true;
                clearTimeout(timer);
                if (err) reject(err);
                else resolve(d as Decision);
            };
            const req = this.#request(this.#url, { method: 'POST', agent: this.#agent, headers }, res => {
                const chunks: Buffer[] = [];
                let size = 0;
                res.on('data', (c: Buffer) => {
                    size += c.length;
                    if (size > this.#o.maxAnswerBytes) {
                        req.destroy();
                        settle(new DecideError(`the PDP's answer exceeds ${this.#o.maxAnswerBytes} bytes`));
                        return;
                    }
                    chunks.push(c);
                });
                res.on('error', err => settle(new DecideError(`reading the PDP's answer: ${err.message}`)));
                res.on('end', () => {
                    const text = Buffer.concat(chunks).toString('utf8');
                    const status = res.statusCode ?? 0;
                    let parsed: unknown;
                    try {
                        parsed = JSON.parse(text);
                    } catch {
                        settle(new DecideError(`the PDP answered HTTP ${status} with a body that is not JSON`, status));
                        return;
                    }
                    if (status !== 200) {
                        const e = (parsed ?? {}) as { error?: unknown; error_description?: unknown };
                        const ra = res.headers['retry-after'];
                        settle(
                            new DecideError(
                                `the PDP answered HTTP ${status}: ${String(e.error ?? '')}: ${String(e.error_description ?? '')}`,
                                status,
                                typeof e.error === 'string' ? e.error : undefined,
                                typeof ra === 'string' ? ra : undefined
                            )
                        );
                        return;
                    }
                    const d = parsed as Decision;
                    if (typeof d !== 'object' || d === null || typeof d.allow !== 'boolean' || typeof d.http_status !== 'number') {
                        settle(new DecideError('the PDP answered with something that is not a decision', status));
                        return;
                    }
                    settle(null, d);
                });
            });
            const timer = setTimeout(() => {
                req.destroy();
                settle(new DecideError(`the PDP did not answer within ${this.#o.timeoutMs} ms`));
            }, this.#o.timeoutMs);
            req.on('error', err => settle(new DecideError(`the PDP could not be reached: ${err.message}`)));
            req.end(payload);
        });
    }
}
