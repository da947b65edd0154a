# METADATA
# title: "Cookbook: revoking clients, subjects and tokens"
# description: |
#   The default policy already refuses revoked clients and subjects listed in
#   data (a data change, hot-reloaded: no restart):
#     mcp:
#       revoked:
#         clients:  {leaky-app: "key leaked 2026-03-01"}
#         subjects: {mallory: "left the company"}
#   This recipe adds two finer tools, in the same data section:
#     clients_before: {desktop-app: "2026-03-01T12:00:00Z"}  # tokens issued before this
#     tokens:         {"<jti>": "reported stolen"}             # single tokens by their jti
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.revocation
#     deny contains reason if some reason in revocation.deny
package cookbook.revocation

cutoff := data.mcp.revoked.clients_before[input.token.client_id]

deny contains sprintf("tokens of client %s issued before %s are revoked", [input.token.client_id, cutoff]) if {
	input.token.claims.iat * 1000000000 < time.parse_rfc3339_ns(cutoff)
}

deny contains sprintf("tokens of client %s must carry iat (tokens issued before %s are revoked)", [input.token.client_id, cutoff]) if {
	not has_iat
}

# A rule of its own: `not is_number(input.token.claims.iat)` would not fire
# when iat is missing. Negate rules, not calls on values that may be missing.
has_iat if is_number(input.token.claims.iat)

deny contains "this token is revoked" if data.mcp.revoked.tokens[input.token.claims.jti]
