# METADATA
# title: mcp-pdp helper library
# description: |
#   Helpers shared by the default policy and by policy authors: scope
#   hierarchies and wildcards, missing scopes, claim access, agents,
#   argument checks and time windows. Import with `import data.mcp.lib`.
#   Documented in docs/policy.md ("The mcp.lib library").
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

# claim_values returns the values of a top-level claim as a set, whether
# the token carries it as an array or as a space-delimited string; empty
# when absent. For nested claims see claim_values_at.
claim_values(claims, name) := values(object.get(claims, name, null))

# ---------------------------------------------------------------------------
# Claims.

# values turns a claim value into a set of strings: an array as it is, a
# string split on spaces (OAuth "scope" style), anything else empty.
values(x) := {v | some v in x; is_string(v)} if is_array(x)

else := {v | some v in split(x, " "); v != ""} if is_string(x)

else := set()

# claim returns the claim at path, a list of keys into nested objects:
#   claim(input.token.claims, ["realm_access", "roles"])   (Keycloak)
# It is undefined when the claim is absent. Use a one-element path for
# top-level claims whose names contain dots ("https://example.com/roles").
claim(claims, path) := v if {
	v := object.get(claims, path, null)
	v != null
}

# claim_values_at is claim_values for a nested claim (see claim).
claim_values_at(claims, path) := values(object.get(claims, path, null))

# has_any holds when the set have holds at least one of want.
has_any(have, want) if {
	some w in want
	w in have
}

# has_all holds when the set have holds every one of want.
has_all(have, want) if {
	every w in want {
		w in have
	}
}

# ---------------------------------------------------------------------------
# Callers.

# is_agent holds for a token obtained without a user: the OAuth client
# credentials grant (a machine, an autonomous agent).
is_agent(token) if {
	token.present
	token.grant == "client_credentials"
}

# effective_scopes is what a token's scopes grant under a catalog's
# scope_implies hierarchy (use with satisfied and missing).
effective_scopes(token, implies) := expand(token.scopes, implies) if count(implies) > 0

else := {s | some s in token.scopes}

# ---------------------------------------------------------------------------
# Arguments.

# email_domain returns the lower-cased domain of an e-mail address; undefined
# for a string without "@".
email_domain(address) := lower(parts[count(parts) - 1]) if {
	is_string(address)
	parts := split(address, "@")
	count(parts) > 1
}

# domain_allowed holds when the address's domain is listed in domains, or
# is a subdomain of an entry written "*.example.com".
domain_allowed(address, domains) if email_domain(address) in {lower(d) | some d in domains}

domain_allowed(address, domains) if {
	some d in domains
	startswith(d, "*.")
	endswith(email_domain(address), lower(trim_prefix(d, "*")))
}

# ---------------------------------------------------------------------------
# Time. Rules that call these read the clock: the PDP then does not cache
# their decisions (see docs/policy.md, "Time windows").

# within_hours holds when the hour of now_ns in time zone tz (an IANA name
# such as "Europe/Berlin") is in [from, to); from > to spans midnight.
within_hours(now_ns, from, to, tz) if {
	from <= to
	[h, _, _] := time.clock([now_ns, tz])
	h >= from
	h < to
}

within_hours(now_ns, from, to, tz) if {
	from > to
	[h, _, _] := time.clock([now_ns, tz])
	h >= from
}

within_hours(now_ns, from, to, tz) if {
	from > to
	[h, _, _] := time.clock([now_ns, tz])
	h < to
}

# is_weekday holds from Monday to Friday in time zone tz.
is_weekday(now_ns, tz) if not time.weekday([now_ns, tz]) in {"Saturday", "Sunday"}
