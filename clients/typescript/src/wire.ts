// The /v1/decide wire contract (docs/api.md; the Go types are pep/wire.go).

/** The verified identity behind an allowed request (pep.Caller). */
export interface Caller {
    /** The token's `sub`; absent for a client acting on its own. */
    sub?: string;
    /** The OAuth client the token was issued to (`client_id`, else `azp`). */
    client_id?: string;
    /** The scopes the token grants, in the token's order, without duplicates. */
    scopes: string[];
    /** The RFC 8693 delegation chain, the current actor first. */
    act?: Actor[];
    /** "user" or "client_credentials", when known. */
    grant?: string;
    /** The token's `iss`. */
    issuer: string;
}

/** One link of a caller's delegation chain (RFC 8693 `act`). */
export interface Actor {
    sub?: string;
    client_id?: string;
}

/** The JSON-RPC error object of a refusal. */
export interface JSONRPCErrorObject {
    code: number;
    message: string;
    /**
     * On a resource with structured denials (SEP-2643, draft),
     * `{authorization: <envelope>}`: send it as it is.
     */
    data?: Record<string, unknown>;
}

/** The body of POST /v1/decide. */
export interface DecideRequest {
    resource: string;
    authorization?: string;
    message?: unknown;
    result?: unknown;
    http_method?: 'GET' | 'DELETE' | 'POST';
    session_owner?: Pick<Caller, 'issuer' | 'sub' | 'client_id'>;
    /** The DPoP header of the MCP request (RFC 9449), as received; several DPoP headers joined with ", " (and so refused). */
    dpop?: string;
    /** The HTTP request that carried the message, as a DPoP proof names it: sent with a DPoP header. */
    http?: HTTPRequest;
    /** The Mcp-Method and Mcp-Name request headers (MCP 2026-07-28) as received; the PDP refuses a message they contradict (400, -32020). */
    mcp_method?: string;
    mcp_name?: string;
    /** Names an anonymous caller for rate limits and quotas (at most 256 bytes), e.g. the client's address; without it anonymous callers share one budget. */
    rate_key?: string;
}

/** The HTTP request of an MCP message, as a DPoP proof names it (htm, htu). */
export interface HTTPRequest {
    /** The HTTP method, e.g. "POST". */
    method: string;
    /** The absolute URL without query: the resource's scheme://host and the request's path. */
    url: string;
    /**
     * A random, unguessable id of the HTTP request: the decisions of one HTTP
     * request (a batch's messages, a list's request and response phases) share
     * it, so that they may all present its one DPoP proof.
     */
    id?: string;
}

/** The body of a decided POST /v1/decide (HTTP 200). */
export interface Decision {
    decision_id: string;
    allow: boolean;
    outcome: 'allow' | 'filtered' | 'challenge' | 'deny' | 'limited';
    http_status: number;
    www_authenticate?: string;
    /** A nonce the client must put in its next DPoP proof (RFC 9449 §8): sent as the DPoP-Nonce header of the answer (a use_dpop_nonce denial, or an allowed DPoP request, §8.2). */
    dpop_nonce?: string;
    /** For outcome 'limited' (a rate limit or quota): the seconds until the call may succeed, sent as the Retry-After header of the 429. */
    retry_after?: number;
    /** For an allowed call a quota counted: POST {"refund": ...} to the PDP's /v1/refund when the call failed after all, to give it back to the quota (once). */
    refund?: string;
    required_scopes: string[];
    missing_scopes: string[];
    /** For logs only: it may reveal policy internals; never sent to clients. */
    reason: string;
    jsonrpc_error?: JSONRPCErrorObject;
    tool_result?: Record<string, unknown>;
    result?: Record<string, unknown>;
    policy_revision?: string;
    caller?: Caller;
}

/**
 * What the MCP SDKs' Streamable HTTP transports read from `req.auth` and hand
 * to tool handlers (`extra.authInfo` in `@modelcontextprotocol/sdk` 1.x,
 * `ctx.http.authInfo` in `@modelcontextprotocol/server` 2.x). Structurally the
 * SDKs' `AuthInfo`.
 */
export interface AuthInfo {
    /** The access token, as the client presented it. */
    token: string;
    /** The OAuth client id ("" when the token names none). */
    clientId: string;
    /** The scopes the token grants. */
    scopes: string[];
    /** Not known to the PEP: /v1/decide does not return the token's expiry. */
    expiresAt?: number;
    /** The protected resource (the `resource` option). */
    resource?: URL;
    /** `caller` is the full verified caller; `decisionId` the PDP's decision id. */
    extra?: Record<string, unknown>;
}
