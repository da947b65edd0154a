# METADATA
# title: "Cookbook: per-client allow-lists"
# description: |
#   Catalog entries can already name the clients that may see a tool
#   ("clients": [...]). This recipe closes a whole MCP server to all clients
#   but the ones listed for its resource:
#     mcp:
#       resources:
#         "https://mcp.example.com/mcp": {catalog: demo, clients: [desktop-app, ci-runner]}
#   Callers with a token from another client see an empty list and are
#   refused. Anonymous callers are left to the catalog, so that MCP clients
#   can still discover that they must sign in.
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.clients
#     deny contains reason if some reason in clients.deny
#     hide contains name if some name in clients.hide
package cookbook.clients

allowed := data.mcp.resources[input.resource].clients

# listed is a rule of its own: `not input.token.client_id in allowed` would
# not fire for a token without client_id (a call on a missing value is
# undefined, and so is its negation). Negate rules, not calls.
listed if input.token.client_id in allowed

outsider if {
	input.token.present
	allowed
	not listed
}

deny contains sprintf("client %s may not use this server", [object.get(input.token, "client_id", "(none)")]) if outsider

hide contains item.name if {
	input.operation == "list"
	outsider
	some item in input.items
}
