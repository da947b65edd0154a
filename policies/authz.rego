# METADATA
# title: mcp-pdp default policy
# description: |
#   The single entry point is data.mcp.authz.decision. The PDP calls it once
#   per request: for tools/call, prompts/get and resources/read it decides one
#   target; for list methods it decides every listed item in one evaluation.
#   Tool, prompt and resource requirements live in data (data.mcp.catalogs),
#   so protecting a new tool is a data change. See docs/policy.md.
#
#   The rules are written for OPA's rule indexing and early exit: a call is a
#   handful of object lookups, never an iteration over the catalog.
package mcp.authz

import data.mcp.lib

# ---------------------------------------------------------------------------
# Catalog selection: data.mcp.resources[<resource URI>].catalog names the
# catalog of a resource; resources without one use data.mcp.default_catalog.

catalog := c if {
	c := data.mcp.catalogs[data.mcp.resources[input.resource].catalog]
} else := data.mcp.catalogs[data.mcp.default_catalog]

sections := {
	"tool": "tools",
	"prompt": "prompts",
	"resource": "resources",
	"resource_template": "resource_templates",
}

section := object.get(catalog, sections[input.kind], {})

# An unknown name gets the catalog's "unknown" entry: denied and hidden
# unless the catalog says otherwise.
unknown_entry := object.get(catalog, "unknown", {"access": "deny"})

# entry_for finds the catalog entry of a name: the exact key, else the
# longest "prefix*" key that matches (useful for resource URIs), else unknown.
entry_for(name) := e if {
	e := section[name]
} else := e if {
	e := section[concat("", [longest_prefix(name), "*"])]
} else := unknown_entry

longest_prefix(name) := max({p |
	some p in prefix_keys
	startswith(name, p)
})

# prefix_keys are the "prefix*" keys of the section, without the star:
# computed once per evaluation, so an unknown name costs a scan of the
# (usually empty) prefix keys, not of the whole catalog.
prefix_keys contains trim_suffix(k, "*") if {
	some k, _ in section
	endswith(k, "*")
}

# ---------------------------------------------------------------------------
# The caller.

# token_scopes: the token's scopes. A scope ending in "*" acts as a wildcard
# (lib.satisfied) only when the catalog lists it in wildcard_scopes: a token
# carrying "*" or "mcp:*" is not granted everything just because its
# authorization server wrote that string.
token_scopes contains s if {
	some s in input.token.scopes
	not endswith(s, "*")
}

token_scopes contains s if {
	some s in input.token.scopes
	endswith(s, "*")
	s in object.get(catalog, "wildcard_scopes", [])
}

# granted: the token's scopes plus every scope they imply (scope_implies).
# Implied scopes come from data, so wildcards among them are honoured.
granted := lib.expand(token_scopes, catalog.scope_implies) if {
	input.token.present
	count(catalog.scope_implies) > 0
} else := token_scopes

caller_roles := lib.claim_values(input.token.claims, "roles") | lib.claim_values(input.token.claims, "groups")

# ---------------------------------------------------------------------------
# Access classes of catalog entries:
#   public     visible to all, callable anonymously ("scopes" lists optional extras)
#   step_up    visible to all, callable with a token holding "scopes" (and "roles")
#   restricted visible and callable only with a token holding "scopes" (and "roles")
#   deny       hidden and never callable
# "clients" limits an entry to some client_ids: others do not see it.

required(e) := [] if e.access == "public"

else := object.get(e, "scopes", [])

open_classes := {"public": true, "step_up": true}

entitled(e) if {
	input.token.present
	every s in object.get(e, "scopes", []) {
		lib.satisfied(s, granted)
	}
	roles_ok(e)
}

roles_ok(e) if not e.roles

roles_ok(e) if {
	some r in e.roles
	r in caller_roles
}

clients_ok(e) if not e.clients

clients_ok(e) if input.token.client_id in e.clients

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

# ---------------------------------------------------------------------------
# Extension points. Add rules to these sets from your own files in package
# mcp.authz (see docs/policy.md):
#   deny contains reason  -- refuses a single-target operation (tools/call, ...)
#   hide contains name    -- hides an item in lists and makes calls "unknown"

# Revoked clients and subjects (data.mcp.revoked) are refused every operation
# they attempt with their token (lists stay filtered as for any caller).
deny contains concat("", ["client ", input.token.client_id, " is revoked"]) if {
	data.mcp.revoked.clients[input.token.client_id]
}

deny contains concat("", ["subject ", input.token.sub, " is revoked"]) if {
	data.mcp.revoked.subjects[input.token.sub]
}

# Names listed in data.mcp.hidden are hidden from everyone (e.g. during an incident).
hide contains name if some name in data.mcp.hidden

# ---------------------------------------------------------------------------
# The decision.

default decision := {
	"allow": false,
	"visible": false,
	"reason": "no policy rule produced a decision",
	"required_scopes": [],
	"missing_scopes": [],
}

# initialize, ping and notifications are part of the protocol's lifecycle.
decision := {
	"allow": true,
	"visible": true,
	"reason": "protocol lifecycle method",
	"required_scopes": [],
	"missing_scopes": [],
} if input.operation == "lifecycle"

# A single target: tools/call, prompts/get, resources/read, resources/subscribe.
decision := {
	"allow": target_allowed,
	"visible": target_visible,
	"access": target_entry.access,
	"required_scopes": target_required,
	"missing_scopes": target_missing,
	"reason": target_reason,
	"forbidden": target_forbidden,
} if input.operation in {"call", "other"}

# The entry deciding a single-target operation; other methods are looked up
# in the catalog's "methods" section.
target_entry := entry_for(input.target.name) if input.operation == "call"

else := object.get(catalog, ["methods", input.method], {"access": "deny"})

target_name := input.target.name if input.operation == "call"

else := input.method

target_required := sort(required(target_entry))

target_missing := lib.missing(target_required, granted)

target_visible if {
	visible(target_entry)
	not hide[target_name]
} else := false

target_allowed if {
	target_visible
	allowed(target_entry)
	count(deny) == 0
} else := false

# An explicit deny (revocation, argument limits, ...) is final: no step-up.
target_forbidden if {
	target_visible
	count(deny) > 0
} else := false

target_reason := "hidden from this caller" if not target_visible

else := concat("; ", sort(deny)) if count(deny) > 0

else := "authorization required" if {
	not input.token.present
	not allowed(target_entry)
}

else := concat("", ["missing scopes: ", concat(" ", target_missing)]) if count(target_missing) > 0

else := "missing role" if not roles_ok(target_entry)

else := concat("", [target_entry.access, " access"])

# A list: every item decided in this one evaluation. Only visible items are
# returned, each with its catalog entry (access and scopes); the PDP hides
# the others.
decision := {
	"allow": true,
	"visible": true,
	"reason": "list filtered",
	"required_scopes": [],
	"missing_scopes": [],
	"items": visible_items,
} if input.operation == "list"

visible_items[item.name] := e if {
	some item in input.items
	e := entry_for(item.name)
	visible(e)
	not hide[item.name]
}
