# METADATA
# title: mcp-pdp load benchmark - the OPA REST equivalent
# description: |
#   What mcp-pdp does for POST /v1/decide, written as one Rego policy for
#   OPA's REST server, so that the load benchmark (make loadbench) compares
#   the same work: the input is the same JSON body mcp-pdp receives
#   ({resource, authorization, message, result?}, sent as {"input": body}),
#   the bearer token is verified with io.jwt.decode_verify against the same
#   JWKS (data.benchcfg.jwks, a JWKS JSON string), and the catalog is the
#   same document (data.mcp, the catalog format of policies/data.yaml) with
#   the same access classes, scope implications, wildcard scopes, roles,
#   clients, revocations and hidden names as policies/authz.rego.
#   tools/list answers the filtered result with every kept tool annotated
#   with its securitySchemes, as mcp-pdp does; challenges carry the
#   WWW-Authenticate value and the in-band tool result.
#
#   Not reproduced (not exercised by the benchmark): "prefix*" catalog keys,
#   methods other than tools/call and tools/list, per-resource catalogs.
#   Query: POST /v1/data/mcp/bench/decision
package mcp.bench

cfg := data.benchcfg

catalog := data.mcp.catalogs[data.mcp.default_catalog]

tools := object.get(catalog, "tools", {})

unknown_entry := object.get(catalog, "unknown", {"access": "deny"})

entry_for(name) := e if {
	e := tools[name]
} else := unknown_entry

method := input.message.method

# ---------------------------------------------------------------------------
# The token.

token_present if input.authorization != ""

bearer := t if {
	parts := split(input.authorization, " ")
	count(parts) == 2
	lower(parts[0]) == "bearer"
	t := parts[1]
}

verified := [valid, payload] if {
	[valid, _, payload] := io.jwt.decode_verify(bearer, {"cert": cfg.jwks, "iss": cfg.issuer, "aud": input.resource})
}

token_valid if verified[0]

claims := verified[1] if token_valid

else := {}

token_scopes := [s | some s in split(claims.scope, " "); s != ""] if {
	token_valid
	is_string(claims.scope)
} else := []

implies := object.get(catalog, "scope_implies", {})

granted := {s | some s in token_scopes} | {t |
	some n in graph.reachable(implies, token_scopes)
	some t in implies[n]
} if {
	token_valid
	some s in token_scopes
	implies[s]
} else := {s | some s in token_scopes}

satisfied(s) if s in granted

satisfied(s) if {
	some w in granted
	endswith(w, "*")
	startswith(s, trim_suffix(w, "*"))
}

claim_values(name) := {v | some v in claims[name]} if is_array(claims[name])

else := {v | some v in split(claims[name], " "); v != ""} if is_string(claims[name])

else := set()

caller_roles := claim_values("roles") | claim_values("groups")

# ---------------------------------------------------------------------------
# Access classes (as policies/authz.rego).

required(e) := [] if e.access == "public"

else := object.get(e, "scopes", [])

entitled(e) if {
	token_valid
	every s in object.get(e, "scopes", []) {
		satisfied(s)
	}
	roles_ok(e)
}

roles_ok(e) if not e.roles

roles_ok(e) if {
	some r in e.roles
	r in caller_roles
}

clients_ok(e) if not e.clients

clients_ok(e) if claims.client_id in e.clients

open_classes := {"public": true, "step_up": true}

visible(e) if {
	open_classes[e.access]
	clients_ok(e)
}

visible(e) if {
	e.access == "restricted"
	clients_ok(e)
	entitled(e)
}

allowed(e) if e.access == "public"

allowed(e) if {
	e.access != "public"
	entitled(e)
}

hidden contains name if some name in data.mcp.hidden

deny contains concat("", ["client ", claims.client_id, " is revoked"]) if data.mcp.revoked.clients[claims.client_id]

deny contains "the token's subject is revoked" if data.mcp.revoked.subjects[claims.sub]

# ---------------------------------------------------------------------------
# tools/call

target := input.message.params.name

target_entry := entry_for(target)

target_required := sort(required(target_entry))

# As in policies/authz.rego: an allowed target misses nothing.
target_missing := [] if target_allowed

else := [s | some s in target_required; not satisfied(s)]

target_visible if {
	visible(target_entry)
	not hidden[target]
}

target_allowed if {
	target_visible
	allowed(target_entry)
	count(deny) == 0
}

# kind: how the answer is built (mcp-pdp internal/core finish + internal/stepup).
kind := "invalid_token" if {
	token_present
	not token_valid
} else := "allowed" if {
	target_allowed
} else := "hidden" if {
	not target_visible
} else := "no_token" if {
	not token_present
} else := "insufficient_scope" if {
	count(target_missing) > 0
} else := "forbidden"

status := {"allowed": 200, "hidden": 200, "forbidden": 200, "no_token": 401, "invalid_token": 401, "insufficient_scope": 403}

default www_authenticate := ""

default tool_result := null

scope_param := "" if count(target_required) == 0

else := concat("", [", scope=\"", concat(" ", target_required), "\""])

www_authenticate := concat("", ["Bearer resource_metadata=\"", cfg.resource_metadata, "\"", scope_param]) if kind == "no_token"

www_authenticate := concat("", ["Bearer error=\"invalid_token\", error_description=\"token verification failed\", resource_metadata=\"", cfg.resource_metadata, "\"", scope_param]) if kind == "invalid_token"

www_authenticate := concat("", ["Bearer error=\"insufficient_scope\"", scope_param, ", resource_metadata=\"", cfg.resource_metadata, "\", error_description=\"", reason, "\""]) if kind == "insufficient_scope"

challenge_text := {
	"no_token": "Authorization required to call ",
	"invalid_token": "The access token was rejected: ",
	"insufficient_scope": "Additional permission required to call ",
}

tool_result := {
	"isError": true,
	"content": [{"type": "text", "text": concat("", [challenge_text[kind], target, " (scopes needed: ", concat(" ", target_required), ")"])}],
	"_meta": {"mcp/www_authenticate": [www_authenticate]},
} if www_authenticate != ""

reason := "hidden from this caller" if not target_visible

else := "authorization required" if {
	not token_present
	not allowed(target_entry)
}

else := concat("", ["missing scopes: ", concat(" ", target_missing)]) if count(target_missing) > 0

else := concat("; ", sort(deny)) if count(deny) > 0

else := concat("", [target_entry.access, " access"])

call_decision := object.filter(
	{
		"allow": kind == "allowed",
		"outcome": outcome[kind],
		"http_status": status[kind],
		"required_scopes": answer_required,
		"missing_scopes": answer_missing,
		"reason": reason,
		"www_authenticate": www_authenticate,
		"tool_result": tool_result,
		"jsonrpc_error": {"code": -32602, "message": concat("", ["Unknown tool: ", target])},
	},
	call_fields[kind],
)

# What a hidden target needs is not revealed; a rejected token is told what
# the operation needs.
answer_required := [] if kind == "hidden"

else := [] if {
	kind == "invalid_token"
	not target_visible
} else := target_required

answer_missing := [] if kind == "hidden"

else := answer_required if kind == "invalid_token"

else := target_missing

call_fields := {
	"allowed": {"allow", "outcome", "http_status", "required_scopes", "missing_scopes", "reason"},
	"forbidden": {"allow", "outcome", "http_status", "required_scopes", "missing_scopes", "reason"},
	"hidden": {"allow", "outcome", "http_status", "required_scopes", "missing_scopes", "reason", "jsonrpc_error"},
	"no_token": {"allow", "outcome", "http_status", "required_scopes", "missing_scopes", "reason", "www_authenticate", "tool_result"},
	"invalid_token": {"allow", "outcome", "http_status", "required_scopes", "missing_scopes", "reason", "www_authenticate", "tool_result"},
	"insufficient_scope": {"allow", "outcome", "http_status", "required_scopes", "missing_scopes", "reason", "www_authenticate", "tool_result"},
}

outcome := {"allowed": "allow", "hidden": "deny", "forbidden": "deny", "no_token": "challenge", "invalid_token": "challenge", "insufficient_scope": "challenge"}

# ---------------------------------------------------------------------------
# tools/list: one evaluation filters the whole list and annotates kept tools.

schemes(e) := [{"type": "noauth"}] if {
	e.access == "public"
	count(object.get(e, "scopes", [])) == 0
} else := [{"type": "noauth"}, {"type": "oauth2", "scopes": e.scopes}] if {
	e.access == "public"
} else := [{"type": "oauth2", "scopes": object.get(e, "scopes", [])}]

visible_tools := [annotated |
	some t in input.result.tools
	e := entry_for(t.name)
	visible(e)
	not hidden[t.name]
	s := schemes(e)
	annotated := object.union(t, {"securitySchemes": s, "_meta": object.union(object.get(t, "_meta", {}), {"securitySchemes": s})})
]

list_decision := {
	"allow": true,
	"outcome": "filtered",
	"http_status": 200,
	"required_scopes": [],
	"missing_scopes": [],
	"reason": "list filtered",
	"result": object.union(input.result, {"tools": visible_tools}),
}

# ---------------------------------------------------------------------------
# The decision.

default decision := {"allow": false, "outcome": "deny", "http_status": 200, "reason": "unsupported method"}

decision := call_decision if method == "tools/call"

decision := list_decision if method == "tools/list"
