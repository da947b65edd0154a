# METADATA
# title: "Cookbook: read-only mode for agents"
# description: |
#   Tokens from the client credentials grant (a machine or autonomous agent,
#   no user) may only use tools marked read_only in the catalog:
#     search_products: {access: public, read_only: true}
#     delete_product:  {access: step_up, scopes: [catalog:write]}
#   Other tools are hidden from agents' lists and their calls refused.
#   Tool annotations sent by the MCP server (readOnlyHint) are hints, not
#   trusted: the catalog decides.
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.agents
#     deny contains reason if some reason in agents.deny
#     hide contains name if some name in agents.hide
package cookbook.agents

import data.mcp.authz
import data.mcp.lib

read_only(entry) if entry.read_only == true

writable(entry) if not read_only(entry)

deny contains "agents (client credentials) may only use read-only tools" if {
	input.operation == "call"
	input.kind == "tool"
	lib.is_agent(input.token)
	writable(authz.target_entry)
}

hide contains item.name if {
	input.operation == "list"
	input.kind == "tool"
	lib.is_agent(input.token)
	some item in input.items
	writable(authz.entry_for(item.name))
}
