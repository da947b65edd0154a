// Which caller owns each MCP session (the same rules as the Go gateway): a
// session belongs to the user that opened it; one opened anonymously is
// claimed by its first authenticated caller. Bounded: the oldest is forgotten first.
import type { Message, RawId } from './jsonrpc.js';
import type { Caller } from './wire.js';

/** The list requests remembered per session (as the Go middleware). */
const LIST_RING_SIZE = 16;

/** The owner of a session: its key and, for an authenticated caller, its identity. */
export interface Owner {
    key: string;
    caller: Pick<Caller, 'issuer' | 'sub' | 'client_id'> | undefined;
}

const ANONYMOUS = '';

/** The user of an allowed decision: issuer and subject, or issuer and client for a token without a subject. */
export function ownerOf(c: Caller | undefined): Owner {
    if (!c) return { key: ANONYMOUS, caller: undefined };
    const key = c.sub ? `${c.issuer}\0${c.sub}` : `${c.issuer}\0\0${c.client_id ?? ''}`;
    const caller: Owner['caller'] = { issuer: c.issuer };
    if (c.sub) caller.sub = c.sub;
    if (c.client_id) caller.client_id = c.client_id;
    return { key, caller };
}

export class Sessions {
    readonly #max: number;
    readonly #owners = new Map<string, Owner>(); // insertion order: the oldest first
    /**
     * Each session's last list requests handed on, so that a list answer the
     * server replays on a GET stream (a client resuming with Last-Event-ID)
     * is filtered like the first time.
     */
    readonly #lists = new Map<string, Message[]>();

    constructor(max: number) {
        this.#max = max;
    }

    /** The authenticated owner of session id, for the decision to check; undefined when unknown or anonymous. */
    ownerCaller(id: string | undefined): Owner['caller'] {
        return id ? this.#owners.get(id)?.caller : undefined;
    }

    /**
     * Reports whether owner may use session id, binding it when the session
     * is new or still anonymous. The PDP already refused (and audited) a
     * request on an authenticated caller's session; this settles two callers
     * racing to claim an anonymous one.
     */
    check(id: string, owner: Owner): boolean {
        const o = this.#owners.get(id);
        if (!o) {
            this.#add(id, owner);
            return true;
        }
        if (o.key === owner.key) return true;
        if (o.key === ANONYMOUS) {
            this.#owners.set(id, owner);
            return true;
        }
        return false;
    }

    /** Records the owner of a session the server just opened. */
    bind(id: string, owner: Owner): void {
        if (!this.#owners.has(id)) this.#add(id, owner);
    }

    forget(id: string): void {
        this.#owners.delete(id);
        this.#lists.delete(id);
    }

    /** Notes a list request handed on in session id (a session whose owner is known). */
    rememberList(id: string, m: Message): void {
        if (!this.#owners.has(id)) return;
        let ring = this.#lists.get(id);
        if (!ring) {
            ring = [];
            this.#lists.set(id, ring);
        }
        ring.push(m);
        if (ring.length > LIST_RING_SIZE) ring.shift();
    }

    /** The list request of session sid with the JSON-RPC id (as written), if it is one of those remembered. */
    listRequest(sid: string, id: RawId): Message | undefined {
        return this.#lists.get(sid)?.find(m => m.rawId === id);
    }

    #add(id: string, owner: Owner): void {
        while (this.#owners.size >= this.#max) {
            const oldest = this.#owners.keys().next().value;
            if (oldest === undefined) break;
            this.#owners.delete(oldest);
            this.#lists.delete(oldest);
        }
        this.#owners.set(id, owner);
    }
}
