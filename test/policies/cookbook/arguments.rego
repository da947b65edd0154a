# METADATA
# title: "Cookbook: conditions on tool arguments"
# description: |
#   Limits on call arguments, kept in the catalog entry of the tool:
#     transfer:   {access: step_up, scopes: [payments], max: {amount: 1000}}
#     send_email: {access: step_up, scopes: [mail], allowed_domains: {to: [example.com, "*.example.org"]}}
#   max: a numeric argument may not exceed the limit (a non-number is refused).
#   allowed_domains: an address argument (a string or a list of strings) must
#   be in one of the domains ("*.d" allows subdomains of d).
#   A missing argument is not checked here: the MCP server validates its
#   input schema.
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.arguments
#     deny contains reason if some reason in arguments.deny
package cookbook.arguments

import data.mcp.authz
import data.mcp.lib

args := input.target.arguments

deny contains sprintf("%s must be at most %v", [name, limit]) if {
	input.operation == "call"
	some name, limit in object.get(authz.target_entry, "max", {})
	is_number(args[name])
	args[name] > limit
}

deny contains sprintf("%s must be a number", [name]) if {
	input.operation == "call"
	some name, _ in object.get(authz.target_entry, "max", {})
	name in object.keys(args)
	not numeric(name)
}

numeric(name) if is_number(args[name])

deny contains sprintf("%s: %v is not in an allowed domain", [name, address]) if {
	input.operation == "call"
	some name, domains in object.get(authz.target_entry, "allowed_domains", {})
	some address in addresses(args[name])
	not lib.domain_allowed(address, domains)
}

addresses(x) := [x] if is_string(x)

else := x if is_array(x)

else := [x]
