# METADATA
# title: mcp-pdp default policy
# description: |
#   The single entry point is data.mcp.authz.decision. The PDP calls it once
#   per request: for tools/call, prompts/get and resources/read it decides one
#   target; for list methods it decides every listed item in one evaluation.
#   Tool, prompt and resource requirements live in data (data.mcp.catalogs),
#   so protecting a new tool is a data change. See docs/policy.md.
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

# An unknown name is treated as the catalog's "unknown" entry: denied and
# hidden unless the catalog says otherwise.
unknown_entry := object.get(catalog, "unknown", {"access": "deny"})

# entry_for finds the catalog entry of a name: an exact key first, else the
# longest "prefix*" key that matches (useful for resource URIs), else unknown.
entry_for(name) := e if {
	e := section[name]
} else := e if {
	e := section[concat("", [longest_prefix(name), "*"])]
} else := unknown_entry

longest_prefix(name) := max({p |
	some k, _ in section
	endswith(k, "*")
	p := trim_suffix(k, "*")
	startswith(name, p)
})

# ---------------------------------------------------------------------------
# The caller.

granted := lib.expand(input.token.scopes, object.get(catalog, "scope_implies", {})) if input.token.present

else := set()

caller_roles := lib.claim_values(input.token.claims, "roles") | lib.claim_values(input.token.claims, "groups") if input.token.present

else := set()

# ---------------------------------------------------------------------------
# Access classes:
#   public     visible to all, callable anonymously ("scopes" optional extras)
#   step_up    visible to all, callable with a token holding "scopes" (and "roles")
#   restricted visible and callable only with a token holding "scopes" (and "roles")
#   deny       hidden and never callable

required(e) := [] if e.access == "public"

else := object.get(e, "scopes", [])

roles_ok(e) if not e.roles

roles_ok(e) if {
	some r in e.roles
	r in caller_roles
}

clients_ok(e) if not e.clients

clients_ok(e) if input.token.client_id in e.clients

entitled(e) if {
	input.token.present
	every s in required(e) {
		lib.satisfied(s, granted)
	}
	roles_ok(e)
	clients_ok(e)
}

visible(e) if e.access in {"public", "step_up"}

visible(e) if {
	e.access == "restricted"
	entitled(e)
}

allowed(e) if e.access == "public"

allowed(e) if {
	e.access in {"step_up", "restricted"}
	entitled(e)
}

# ---------------------------------------------------------------------------
# Extension points. Add rules to these sets from your own files in package
# mcp.authz (see docs/policy.md):
#   deny contains reason  -- refuses a single-target operation (tools/call, ...)
#   hide contains name    -- hides an item in lists and makes calls "unknown"

# Revoked clients and subjects (data.mcp.revoked) may do nothing but public work.
deny contains sprintf("client %q is revoked", [input.token.client_id]) if {
	input.token.present
	input.token.client_id in revoked_clients
}

deny contains sprintf("subject %q is revoked", [input.token.sub]) if {
	input.token.present
	input.token.sub in revoked_subjects
}

revoked_clients contains c if some c in data.mcp.revoked.clients

revoked_subjects contains s if some s in data.mcp.revoked.subjects

# Entries limited to some clients ("clients": [...]) are hidden from the others.
hide contains name if {
	some name in names
	e := entry_for(name)
	e.clients
	not clients_ok(e)
}

names := {input.target.name} if input.operation == "call"

else := {item.name | some item in input.items}

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
decision := single_decision(entry_for(input.target.name), input.target.name) if input.operation == "call"

# Any other method is looked up in the catalog's "methods" section.
decision := single_decision(object.get(catalog, ["methods", input.method], unknown_method), input.method) if input.operation == "other"

unknown_method := {"access": "deny"}

single_decision(e, name) := {
	"allow": single_allow(e, name),
	"visible": single_visible(e, name),
	"access": e.access,
	"required_scopes": sort(required(e)),
	"missing_scopes": lib.missing(required(e), granted),
	"reason": single_reason(e, name),
}

single_visible(e, name) := true if {
	visible(e)
	not name in hide
} else := false

single_allow(e, name) := true if {
	single_visible(e, name)
	allowed(e)
	count(deny) == 0
} else := false

single_reason(e, name) := "hidden from this caller" if not single_visible(e, name)

else := "authorization required" if {
	not input.token.present
	not allowed(e)
}

else := sprintf("missing scopes: %s", [concat(" ", lib.missing(required(e), granted))]) if {
	count(lib.missing(required(e), granted)) > 0
}

else := "missing role" if not roles_ok(e)

else := concat("; ", sort(deny)) if count(deny) > 0

else := sprintf("%s access", [e.access])

# A list: every item decided in this one evaluation. Only visible items are
# returned, each with what it needs; the PDP hides the others.
decision := {
	"allow": true,
	"visible": true,
	"reason": "list filtered",
	"required_scopes": [],
	"missing_scopes": [],
	"items": visible_items,
} if input.operation == "list"

visible_items[name] := {"access": e.access, "scopes": object.get(e, "scopes", [])} if {
	some item in input.items
	name := item.name
	not name in hide
	e := entry_for(name)
	visible(e)
}
