# METADATA
# title: "Cookbook: roles from any claim"
# description: |
#   The default catalog already checks "roles" against the token's `roles`
#   and `groups` claims. This recipe requires roles found elsewhere: a nested
#   claim (Keycloak's realm_access.roles) or a namespaced one (Auth0).
#   A catalog entry lists them as realm_roles; a caller needs one of them.
#
#   Enable it in your policy (docs/policy.md, "Cookbook"):
#     package mcp.authz
#     import data.cookbook.roles
#     deny contains reason if some reason in roles.deny
package cookbook.roles

import data.mcp.authz
import data.mcp.lib

# The caller's roles, from the claims your identity provider uses.
caller_roles := lib.claim_values_at(input.token.claims, ["realm_access", "roles"]) | lib.claim_values(input.token.claims, "https://example.com/roles")

deny contains sprintf("requires one of the roles: %s", [concat(", ", sort(needed))]) if {
	input.operation == "call"
	needed := object.get(authz.target_entry, "realm_roles", [])
	count(needed) > 0
	not lib.has_any(caller_roles, needed)
}
