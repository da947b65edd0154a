# METADATA
# title: "Cookbook: data classification from the tool's _meta"
# description: |
#   Tools carry a classification in their _meta, either as the MCP server
#   lists them (tools/list: "_meta": {"com.example/classification": "confidential"})
#   or, winning over the server, in their catalog entry:
#     export_customers: {access: step_up, scopes: [crm:read], _meta: {"com.example/classification": "restricted"}}
#   A caller may call a tool only when its token's "clearance" claim is at
#   least the tool's classification (public < internal < confidential <
#   restricted). A tool without a classification counts as internal; an
#   unknown classification as restricted. The server's _meta is its word,
#   not a guarantee: classify what matters in the catalog.
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.classification
#     deny contains reason if some reason in classification.deny
package cookbook.classification

import data.mcp.authz

levels := {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}

# The _meta key that holds the classification.
classification_key := "com.example/classification"

default classification := "internal"

classification := authz.tool_meta[classification_key]

level := l if {
	l := levels[classification]
} else := levels.restricted

default clearance := "public"

clearance := input.token.claims.clearance if levels[input.token.claims.clearance]

deny contains sprintf("%s is classified %s; the token's clearance is %s", [input.target.name, classification, clearance]) if {
	input.operation == "call"
	input.kind == "tool"
	level > levels[clearance]
}
