# METADATA
# title: mcp-pdp helper library
# description: |
#   Helpers shared by the default policy and by policy authors: scope
#   hierarchies and wildcards, missing scopes, claim access.
package mcp.lib

# expand returns the granted scopes plus every scope they imply, transitively.
# implies maps a scope to the scopes it implies, e.g.
#   {"files:write": ["files:read"], "admin": ["mcp:tools:*"]}
expand(granted, implies) := {s | some s in granted} | {t |
	# graph.reachable marks only nodes that have edges, so collect their targets.
	some n in graph.reachable(implies, granted)
	some t in implies[n]
}

# satisfied holds when the effective scope set grants scope s, directly or
# through a wildcard such as "mcp:tools:*" (a trailing * matches any suffix).
satisfied(s, effective) if s in effective

satisfied(s, effective) if {
	some w in effective
	endswith(w, "*")
	startswith(s, trim_suffix(w, "*"))
}

# missing returns, sorted, the scopes in required that effective does not grant.
missing(required, effective) := sort([s |
	some s in required
	not satisfied(s, effective)
])

# claim_values returns the values of a claim as a set, whether the token
# carries it as an array or as a space-delimited string; empty when absent.
claim_values(claims, name) := {v | some v in claims[name]} if is_array(claims[name])

else := {v | some v in split(claims[name], " "); v != ""} if is_string(claims[name])

else := set()
