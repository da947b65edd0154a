# METADATA
# title: mcp-pdp default policy
# description: |
#   The single entry point is data.mcp.authz.decision. The PDP calls it once
#   per request: for tools/call, prompts/get and resources/read it decides one
#   target; for list methods it decides every listed item in one evaluation.
#   Tool, prompt and resource requirements live in data (data.mcp.catalogs),
#   so protecting a new tool is a data change. See docs/policy.md.
#
#   A call is a handful of lookups, never an iteration over the catalog; a
#   list is decided once per group of identical entries, with the catalog
#   index the PDP builds when it loads the policy (docs/policy.md).
package mcp.authz

import data.mcp.lib

# ---------------------------------------------------------------------------
# Catalog selection: data.mcp.resources[<resource URI>].catalog names the
# catalog of a resource; resources without one use data.mcp.default_catalog.
# The hot path never materializes a catalog: it looks entries up by
# reference (data.mcp.catalogs[name].tools[tool]), a few map lookups.

catalog_name := n if {
	n := data.mcp.resources[input.resource].catalog
} else := data.mcp.default_catalog

catalog := data.mcp.catalogs[catalog_name]

sections := {
	"tool": "tools",
	"prompt": "prompts",
	"resource": "resources",
	"resource_template": "resource_templates",
}

section := s if {
	s := data.mcp.catalogs[catalog_name][sections[input.kind]]
} else := {}

# An unknown name gets the catalog's "unknown" entry: denied and hidden
# unless the catalog says otherwise.
unknown_entry := e if {
	e := data.mcp.catalogs[catalog_name].unknown
} else := {"access": "deny"}

# entry_for finds the catalog entry of a name: the exact key, else the
# longest "prefix*" key that matches (useful for resource URIs), else unknown.
entry_for(name) := e if {
	e := section[name]
} else := fallback_entry(name)

# fallback_entry is the entry of a name without an exact key.
fallback_entry(name) := e if {
	count(prefix_keys) > 0
	e := section[concat("", [longest_prefix(name), "*"])]
} else := unknown_entry

longest_prefix(name) := max({p |
	some p in prefix_keys
	startswith(name, p)
})

# prefix_keys are the "prefix*" keys of the section, without the star:
# from the catalog index when the PDP built one, else (pdp test) found by
# a scan of the section, once per evaluation and only when a name has no
# exact key.
prefix_keys := {p | some p in index.prefixes} if {
	index
} else := {trim_suffix(k, "*") |
	some k, _ in section
	endswith(k, "*")
}

# ---------------------------------------------------------------------------
# The caller.

# token_scopes: the token's scopes. A scope ending in "*" acts as a wildcard
# (lib.satisfied) only when the catalog lists it in wildcard_scopes: a token
# carrying "*" or "mcp:*" is not granted everything just because its
# authorization server wrote that string.
token_scopes := {s |
	some s in input.token.scopes
	not endswith(s, "*")
} | {s |
	some s in input.token.scopes
	endswith(s, "*")
	s in data.mcp.catalogs[catalog_name].wildcard_scopes
}

scope_implies := m if {
	m := data.mcp.catalogs[catalog_name].scope_implies
	count(m) > 0
} else := {}

# granted: the token's scopes plus every scope they imply (scope_implies).
# Implied scopes come from data, so wildcards among them are honoured.
# The expansion runs only when a token scope implies others.
granted := lib.expand(token_scopes, scope_implies) if {
	input.token.present
	some s in token_scopes
	scope_implies[s]
} else := token_scopes

# granted_prefixes are the granted wildcards without their star.
granted_prefixes := {trim_suffix(w, "*") |
	some w in granted
	endswith(w, "*")
}

# has_scope: granted directly or through a granted wildcard (lib.satisfied).
has_scope(s) if granted[s]

has_scope(s) if {
	some p in granted_prefixes
	startswith(s, p)
}

# caller_roles: the token's "roles" and "groups" claims (arrays or
# space-separated strings). Claims are read by name: the PDP then leaves
# the claims no rule reads out of the input (docs/policy.md, "Claims").
caller_roles := lib.values(roles_claim) | lib.values(groups_claim)

roles_claim := v if v := input.token.claims.roles

else := null

groups_claim := v if v := input.token.claims.groups

else := null

# ---------------------------------------------------------------------------
# Access classes of catalog entries:
#   public     visible to all, callable anonymously ("scopes" lists optional extras)
#   step_up    visible to all, callable with a token holding "scopes" (and "roles")
#   restricted visible and callable only with a token holding "scopes" (and "roles")
#   deny       hidden and never callable
# "clients" limits an entry to some client_ids: others do not see it.

required(e) := [] if e.access == "public"

else := s if s := e.scopes

else := []

open_classes := {"public": true, "step_up": true}

entitled(e) if {
	input.token.present
	not e.scopes
	roles_ok(e)
}

entitled(e) if {
	input.token.present
	every s in e.scopes {
		has_scope(s)
	}
	roles_ok(e)
}

roles_ok(e) if not e.roles

roles_ok(e) if {
	some r in e.roles
	caller_roles[r]
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

# The subject is only looked up, never copied into the reason: the PDP then
# shares one cached decision among the subjects the lookup does not find
# (docs/policy.md, "The decision cache"). Audit events name the subject.
deny contains "the token's subject is revoked" if {
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
target_entry := e if {
	input.operation == "call"
	e := section[input.target.name]
} else := fallback_entry(input.target.name) if {
	input.operation == "call"
} else := e if {
	e := data.mcp.catalogs[catalog_name].methods[input.method]
} else := {"access": "deny"}

target_name := input.target.name if input.operation == "call"

else := input.method

target_required := sort(required(target_entry))

# An allowed target misses nothing (allowed implies every scope is held).
target_missing := [] if target_allowed

else := lib.missing(target_required, granted)

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

else := concat("", [target_entry.access, " access"]) if target_allowed

else := "authorization required" if not input.token.present

else := concat("", ["missing scopes: ", concat(" ", target_missing)]) if count(target_missing) > 0

else := "missing role" if not roles_ok(target_entry)

else := concat("", [target_entry.access, " access"])

# A list: every item decided in this one evaluation. Only visible items are
# returned; the PDP hides the others. "item_groups" are groups of visible
# names that share a catalog entry ([{"entry", "names"}]); "items" are
# visible names with their entries, as objects (name -> entry) the PDP
# merges. With the catalog index no rule runs per item.
decision := {
	"allow": true,
	"visible": true,
	"reason": "list filtered",
	"required_scopes": [],
	"missing_scopes": [],
	"item_groups": visible_item_groups,
	"items": visible_items,
} if input.operation == "list"

# input.names are the listed names, as a set (input.items has them in
# order, with annotations; the PDP builds items only for policies that read
# it). A hand-written input may give an array.
list_names := input.names

# The catalog index the PDP builds when it loads the policy
# (data.pdp.catalog_index, docs/policy.md): a section's exact names grouped
# by identical entry, and its "prefix*" keys. Undefined under pdp test and
# for sections with more than 64 distinct entries.
index := data.pdp.catalog_index[catalog_name][sections[input.kind]]

# With the index, each group is decided once and its listed names are
# found with set built-ins.
visible_item_groups := [{"entry": g.entry, "names": group_hits(g)} |
	some g in index.groups
	visible(g.entry)
] if {
	index
	count(hide) == 0
} else := [{"entry": g.entry, "names": group_hits(g) - hide} |
	some g in index.groups
	visible(g.entry)
] if {
	index
} else := []

# group_hits: the listed names in a group. A set intersection walks the
# smaller side (object.filter would walk the whole group).
group_hits(g) := list_name_set & g.names

list_name_set := list_names if is_set(list_names)

else := {n | some n in list_names}

# Without the index, each distinct listed entry is decided once.
visible_listed := {} if {
	index
} else := {name: e |
	some name, e in listed_entries
	visible_entries[e]
}

# The entries of the listed names that have an exact key.
listed_entries := object.filter(section, list_names)

visible_entries := {e |
	some e in {e | some _, e in listed_entries}
	visible(e)
}

# Names without an exact key are decided one by one, and only when a
# "prefix*" key or a visible "unknown" entry can make one visible.
visible_fallback := {name: e |
	fallback_may_show
	listed_exact_count < count(list_names)
	some name in list_names
	not section[name]
	e := fallback_entry(name)
	visible(e)
}

# How many listed names have an exact key: with the index, from the
# smaller side of the listed names and the section's names; without it,
# by filtering the section.
listed_exact_count := count(list_name_set & index.names) if index.names

else := count(listed_entries)

fallback_may_show if count(index.prefixes) > 0

fallback_may_show if {
	not index
	count(prefix_keys) > 0
}

fallback_may_show if visible(unknown_entry)

visible_items := [visible_listed, visible_fallback] if count(hide) == 0

else := [object.remove(visible_listed, hide), object.remove(visible_fallback, hide)]
