# METADATA
# title: mcp-pdp default policy
# description: |
#   The single entry point is data.mcp.authz.decision. The PDP calls it once
#   per request: for tools/call, prompts/get and resources/read it decides one
#   target; for list methods it decides every listed item in one evaluation.
#   Tool, prompt and resource requirements live in data (data.mcp.catalogs),
#   so protecting a new tool is a data change. See docs/policy.md.
#
#   This file is the policy to read and to copy. A call is a handful of
#   lookups, never an iteration over the catalog. The rules that decide a
#   list without one rule per item are in authz_lists.rego.
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

default section := {}

section := data.mcp.catalogs[catalog_name][sections[input.kind]]

# An unknown name gets the catalog's "unknown" entry: denied and hidden
# unless the catalog says otherwise.
default unknown_entry := {"access": "deny"}

unknown_entry := data.mcp.catalogs[catalog_name].unknown

# entry_for finds the catalog entry of a name: the exact key, else the
# longest "prefix*" key that matches (useful for resource URIs), else unknown.
entry_for(name) := e if {
	e := section[name]
} else := fallback_entry(name)

# fallback_entry is the entry of a name without an exact key. prefix_keys
# are the section's "prefix*" keys without the star (authz_lists.rego).
fallback_entry(name) := e if {
	count(prefix_keys) > 0
	e := section[concat("", [longest_prefix(name), "*"])]
} else := unknown_entry

longest_prefix(name) := max({p |
	some p in prefix_keys
	startswith(name, p)
})

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

default scope_implies := {}

scope_implies := m if {
	m := data.mcp.catalogs[catalog_name].scope_implies
	count(m) > 0
}

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

default roles_claim := null

roles_claim := input.token.claims.roles

default groups_claim := null

groups_claim := input.token.claims.groups

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
	acquirable(e)
}

visible(e) if {
	e.access == "restricted"
	clients_ok(e)
	entitled(e)
}

# "Acquirable" listing, per resource (data.mcp.resources[<uri>].listing:
# acquirable; the default, all, lists every step-up tool): a step-up entry
# is shown, and callable, only when the caller could obtain every scope it
# needs: each is among the resource's acquirable_scopes (when given: what
# its authorization server can grant, usually its scopes_supported) and
# within the ceilings of the caller's grant and client
# (data.mcp.scope_ceilings.grants / .clients: e.g. client_credentials agents
# never get user-consent scopes). Entries the caller can never get are
# hidden like restricted ones.
default listing_acquirable := false

listing_acquirable if data.mcp.resources[input.resource].listing == "acquirable"

acquirable(_) if not listing_acquirable

acquirable(e) if {
	listing_acquirable
	every s in object.get(e, "scopes", []) {
		obtainable(s)
	}
}

obtainable(s) if {
	within(object.get(object.get(data.mcp.resources, input.resource, {}), "acquirable_scopes", null), s)
	within(ceiling("grants", caller_grant), s)
	within(ceiling("clients", caller_client), s)
}

# The token's grant and client ("" when absent, as for anonymous callers).
default caller_grant := ""

caller_grant := input.token.grant

default caller_client := ""

caller_client := input.token.client_id

# ceiling is the scope ceiling of a grant or client, null when none is set
# (or the caller is anonymous: no grant, no client).
default ceiling(_, _) := null

ceiling(kind, id) := c if {
	input.token.present
	c := data.mcp.scope_ceilings[kind][id]
}

within(list, _) if list == null

within(list, s) if s in list

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

# Revocations written with `pdp revoke` (a NATS key-value bucket every PDP
# watches) arrive in the input, only for a caller they apply to:
# input.revoked.client, .subject and .token, each {"id", "reason", ...}.
# They change without a policy reload.
deny contains concat("", ["client ", input.revoked.client.id, " is revoked", revocation_reason(input.revoked.client)]) if {
	input.revoked.client
}

deny contains concat("", ["the token's subject is revoked", revocation_reason(input.revoked.subject)]) if {
	input.revoked.subject
}

deny contains concat("", ["the token is revoked", revocation_reason(input.revoked.token)]) if {
	input.revoked.token
}

revocation_reason(r) := concat("", [": ", r.reason]) if r.reason != ""

else := ""

# Names listed in data.mcp.hidden are hidden from everyone (e.g. during an incident).
hide contains name if some name in data.mcp.hidden

# ---------------------------------------------------------------------------
# The decision.

# METADATA
# title: decision
# description: |
#   The PDP's query: one object per request (allow, visible, reason,
#   required_scopes, missing_scopes; for lists, the visible items).
#   Nothing matched: refused and hidden.
# entrypoint: true
# scope: document
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
	"limits": target_limits,
} if input.operation in {"call", "other"}

# A list: every item decided in this one evaluation. Only visible items are
# returned; the PDP hides the others. "item_groups" are groups of visible
# names that share a catalog entry ([{"entry", "names"}]); "items" are
# visible names with their entries, as objects (name -> entry) the PDP
# merges. See "Lists" below.
decision := {
	"allow": true,
	"visible": true,
	"reason": "list filtered",
	"required_scopes": [],
	"missing_scopes": [],
	"item_groups": visible_item_groups,
	"items": visible_items,
} if input.operation == "list"

# ---------------------------------------------------------------------------
# A single target.

# The entry deciding a single-target operation; other methods are looked up
# in the catalog's "methods" section.
default target_entry := {"access": "deny"}

target_entry := e if {
	input.operation == "call"
	e := section[input.target.name]
} else := fallback_entry(input.target.name) if {
	input.operation == "call"
} else := e if {
	e := data.mcp.catalogs[catalog_name].methods[input.method]
}

target_name := input.target.name if input.operation == "call"

else := input.method

# The rate and quota the PDP applies to an allowed call of the target:
# {"rate": ..., "quota": ...}, each only when set. They are the catalog's
# (catalog_target_limits), with limit_overrides over them.
target_limits := object.union(catalog_target_limits, limit_overrides)

# The target entry's rate and quota, else the catalog's default_limits.
catalog_target_limits := {k: l |
	some k in ["rate", "quota"]
	l := object.get(target_entry, k, object.get(catalog_default_limits, k, null))
	l != null
}

# limit_overrides is where rules of your own give a call other limits
# (e.g. a larger quota for a paid plan: the per-plan quotas recipe of the
# cookbook): {"quota": {...}} replaces the catalog's quota.
default limit_overrides := {}

default catalog_default_limits := {}

catalog_default_limits := object.get(catalog, "default_limits", {})

target_required := sort(array.concat(required(target_entry), destructive_scopes))

# Tool annotations (MCP: readOnlyHint, destructiveHint, idempotentHint,
# openWorldHint): the catalog entry's "annotations", over what the server's
# last tools/list said (input.target.annotations, {} when it said nothing).
tool_annotations := object.union(observed_annotations, object.get(target_entry, "annotations", {}))

# (A plain reference, not object.get on input: the decision caches key on
# what the policy reads, and a look into input as a whole reads everything.)
default observed_annotations := {}

observed_annotations := input.target.annotations

# The tool's _meta: the catalog entry's "_meta", over what the server's last
# tools/list said (input.target._meta, {} when it said nothing). The default
# policy does not read it; rules of your own can (docs/policy.md, cookbook).
tool_meta := object.union(observed_meta, object.get(target_entry, "_meta", {}))

default observed_meta := {}

observed_meta := input.target._meta

# Opt-in (a catalog's "destructive_scope"): calling a destructive tool also
# needs that scope. Destructive as MCP defines the hints' defaults: a tool
# is destructive unless it says readOnlyHint: true or destructiveHint: false
# (an unannotated tool is destructive).
destructive if {
	input.operation == "call"
	input.kind == "tool"
	not tool_annotations.readOnlyHint == true
	not tool_annotations.destructiveHint == false
}

destructive_scopes := [catalog.destructive_scope] if {
	is_string(catalog.destructive_scope) # first: without the opt-in, nothing more is evaluated
	destructive
} else := []

default destructive_ok := true

destructive_ok := false if {
	some s in destructive_scopes
	not has_scope(s)
}

# An allowed target misses nothing (allowed implies every scope is held).
target_missing := [] if target_allowed

else := lib.missing(target_required, granted)

default target_visible := false

target_visible if {
	visible(target_entry)
	not hide[target_name]
}

default target_allowed := false

target_allowed if {
	target_visible
	allowed(target_entry)
	count(deny) == 0
	destructive_ok
}

# An explicit deny (revocation, argument limits, ...) is final: no step-up.
default target_forbidden := false

target_forbidden if {
	target_visible
	count(deny) > 0
}

target_reason := "hidden from this caller" if not target_visible

else := concat("; ", sort(deny)) if count(deny) > 0

else := concat("", [target_entry.access, " access"]) if target_allowed

else := "authorization required" if not input.token.present

else := concat("", ["missing scopes: ", concat(" ", target_missing)]) if count(target_missing) > 0

else := "missing role" if not roles_ok(target_entry)

else := concat("", [target_entry.access, " access"])

# ---------------------------------------------------------------------------
# Lists. A listed name is visible exactly when a call would see it:
# visible(entry_for(name)) holds and hide does not contain the name. The
# list decision's visible_item_groups and visible_items compute that in
# authz_lists.rego, which decides each distinct catalog entry once instead
# of each item. A policy changes what lists show through visible(e), the
# catalog and hide, not through that file.
