# METADATA
# title: "Cookbook: tenant isolation"
# description: |
#   Each MCP server (resource) belongs to one tenant, and a token carries its
#   tenant in a claim (here "tenant"; Entra ID calls it "tid"):
#     mcp:
#       resources:
#         "https://acme.mcp.example.com/mcp": {catalog: demo, tenant: acme}
#   A token for another tenant, or without a tenant, sees nothing and may do
#   nothing there. Calls that name a tenant in their arguments (tenant_id)
#   must name the caller's own. Anonymous callers are left to the catalog.
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.tenant
#     deny contains reason if some reason in tenant.deny
#     hide contains name if some name in tenant.hide
package cookbook.tenant

# The claim that holds the caller's tenant.
tenant_claim := "tenant"

# Call arguments that name a tenant.
tenant_arguments := {"tenant_id", "tenant"}

caller_tenant := input.token.claims[tenant_claim]

server_tenant := data.mcp.resources[input.resource].tenant

same_tenant if caller_tenant == server_tenant

foreign if {
	input.token.present
	server_tenant
	not same_tenant
}

deny contains "the token is for another tenant" if foreign

deny contains sprintf("argument %s names another tenant", [name]) if {
	input.operation == "call"
	input.token.present
	some name in tenant_arguments
	value := input.target.arguments[name]
	not callers_own(value)
}

callers_own(value) if value == caller_tenant

hide contains item.name if {
	input.operation == "list"
	foreign
	some item in input.items
}
