/**
 * @mcp-pdp/pep: protect an MCP server built with the official TypeScript SDK
 * (`@modelcontextprotocol/sdk` 1.x or `@modelcontextprotocol/server` 2.x) with
 * mcp-pdp. See README.md.
 */
export { pdpAuth, getCaller, callerFromAuthInfo } from './middleware.js';
export type { PdpAuthOptions, PdpAuthMiddleware, Middleware } from './middleware.js';
export { metadataPath } from './metadata.js';
export { DecideError } from './pdp.js';
export type { AuthInfo, Caller, Actor, Decision, DecideRequest, HTTPRequest, JSONRPCErrorObject } from './wire.js';
