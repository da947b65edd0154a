package mcp.authz_test

import data.mcp.authz

resource := "http://127.0.0.1:8181/mcp"

anonymous := {"present": false, "valid": false, "scopes": [], "claims": {}}

token(scopes) := {
	"present": true, "valid": true, "sub": "alice", "client_id": "demo",
	"grant": "user", "scopes": scopes, "claims": {},
}

call(name, tok) := {
	"resource": resource, "method": "tools/call", "operation": "call", "kind": "tool",
	"target": {"kind": "tool", "name": name, "arguments": {}},
	"tool": {"kind": "tool", "name": name, "arguments": {}},
	"token": tok,
}

list(names, tok) := {
	"resource": resource, "method": "tools/list", "operation": "list", "kind": "tool",
	"token": tok, "items": [{"name": n} | some n in names], "names": names,
}

test_anonymous_may_call_public_tool if {
	d := authz.decision with input as call("lookup_product", anonymous)
	d.allow
	d.required_scopes == []
}

test_anonymous_step_up_tool_needs_scope if {
	d := authz.decision with input as call("generate_qr_url", anonymous)
	not d.allow
	d.visible
	d.required_scopes == ["qr:generate"]
	d.missing_scopes == ["qr:generate"]
	d.reason == "authorization required"
}

test_token_without_scope_is_told_the_missing_scope if {
	d := authz.decision with input as call("generate_qr_url", token(["other"]))
	not d.allow
	d.missing_scopes == ["qr:generate"]
}

test_token_with_scope_may_generate if {
	d := authz.decision with input as call("generate_qr_url", token(["qr:generate"]))
	d.allow
	d.missing_scopes == []
}

test_scope_hierarchy_from_catalog if {
	d := authz.decision with input as call("generate_qr_url", token(["qr:admin"]))
	d.allow
}

test_unknown_tool_is_hidden if {
	d := authz.decision with input as call("format_disk", token(["qr:generate"]))
	not d.allow
	not d.visible
}

test_revoked_client_is_denied if {
	d := authz.decision with input as call("generate_qr_url", token(["qr:generate"]))
		with data.mcp.revoked.clients as {"demo": "key leaked"}
	not d.allow
	d.visible
	d.reason == "client demo is revoked"
}

# Revocations from the bucket (pdp revoke) arrive as input.revoked.
test_bucket_revocations_are_denied_with_their_reason if {
	req := call("generate_qr_url", token(["qr:generate"]))
	cases := [
		[{"client": {"id": "demo", "reason": "key leaked"}}, "client demo is revoked: key leaked"],
		[{"client": {"id": "demo"}}, "client demo is revoked"],
		[{"subject": {"id": "alice", "reason": "left the company"}}, "the token's subject is revoked: left the company"],
		[{"token": {"id": "sha256:00112233445566778899aabbccddeeff"}}, "the token is revoked"],
	]
	every c in cases {
		d := authz.decision with input as object.union(req, {"revoked": c[0]})
		not d.allow
		d.visible
		d.reason == c[1]
	}
}

test_no_revocation_no_effect if {
	d := authz.decision with input as object.union(call("generate_qr_url", token(["qr:generate"])), {"revoked": {}})
	d.allow
}

test_lifecycle_methods_allowed if {
	every m in ["initialize", "server/discover", "ping", "notifications/initialized"] {
		d := authz.decision with input as {"resource": resource, "method": m, "operation": "lifecycle", "kind": "", "token": anonymous}
		d.allow
	}
}

# MCP 2026-07-28's one notification stream, and 2025-11-25's tasks: listed
# public in the default catalog's methods; a server-to-client request sent
# to the server is unknown.
test_other_methods_of_the_default_catalog if {
	every m in ["subscriptions/listen", "tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "completion/complete"] {
		d := authz.decision with input as {"resource": resource, "method": m, "operation": "other", "kind": "", "token": anonymous}
		d.allow
	}
	every m in ["sampling/createMessage", "roots/list", "elicitation/create"] {
		d := authz.decision with input as {"resource": resource, "method": m, "operation": "other", "kind": "", "token": anonymous}
		not d.allow
		not d.visible
	}
}

test_list_is_filtered_in_one_decision if {
	d := authz.decision with input as list(["ping", "generate_qr_url", "hidden_thing"], anonymous)
	d.allow
	object.union_n(d.items) == {
		"ping": {"access": "public"},
		"generate_qr_url": {"access": "step_up", "scopes": ["qr:generate"]},
	}
}

test_hidden_names_are_hidden_everywhere if {
	l := authz.decision with input as list(["ping", "generate_qr_url"], anonymous)
		with data.mcp.hidden as ["generate_qr_url"]
	object.keys(object.union_n(l.items)) == {"ping"}
	c := authz.decision with input as call("generate_qr_url", token(["qr:generate"]))
		with data.mcp.hidden as ["generate_qr_url"]
	not c.visible
	not c.allow
}

test_resource_without_catalog_uses_demo if {
	d := authz.decision with input as object.union(call("ping", anonymous), {"resource": "https://other.example/mcp"})
	d.allow
}

test_resource_with_own_catalog if {
	d := authz.decision with input as object.union(call("ping", anonymous), {"resource": "https://other.example/mcp"})
		with data.mcp.resources as {"https://other.example/mcp": {"catalog": "empty"}}
		with data.mcp.catalogs.empty as {"tools": {}}
	not d.allow
	not d.visible
}

test_token_wildcard_needs_catalog_listing if {
	not authz.decision.allow with input as call("generate_qr_url", token(["*"]))
	not authz.decision.allow with input as call("generate_qr_url", token(["qr:*"]))
	authz.decision.allow with input as call("generate_qr_url", token(["qr:*"]))
		with data.mcp.catalogs.demo.wildcard_scopes as ["qr:*"]
}

# The catalog index (data.pdp.catalog_index) is built by the PDP when it
# loads the policy; pdp test runs without it, so these tests give one.
index_of(groups, prefixes) := {
	"groups": [{"entry": e, "members": {n: true | some n in ns}, "names": {n | some n in ns}} |
		some [e, ns] in groups
	],
	"prefixes": prefixes,
	"names": {n | some [_, ns] in groups; some n in ns},
}

demo_index := index_of(
	[
		[{"access": "public"}, ["ping", "lookup_product"]],
		[{"access": "step_up", "scopes": ["qr:generate"]}, ["generate_qr_url"]],
		[{"access": "restricted", "scopes": ["qr:admin"]}, ["purge_codes"]],
	],
	["ui://"],
)

demo_tools := {
	"ping": {"access": "public"},
	"lookup_product": {"access": "public"},
	"generate_qr_url": {"access": "step_up", "scopes": ["qr:generate"]},
	"purge_codes": {"access": "restricted", "scopes": ["qr:admin"]},
	"ui://*": {"access": "public"},
}

# indexed_items: the visible items of a list decided with demo_index, from
# item_groups and items merged.
indexed_items(names, tok) := object.union(grouped, object.union_n(d.items)) if {
	d := authz.decision with input as list(names, tok)
		with data.mcp.catalogs.demo.tools as demo_tools
		with data.pdp.catalog_index.demo.tools as demo_index
	grouped := {n: g.entry |
		some g in d.item_groups
		some n in g.names
	}
}

test_list_with_catalog_index if {
	items := indexed_items(["ping", "generate_qr_url", "purge_codes", "ui://app", "nope"], anonymous)
	items == {
		"ping": {"access": "public"},
		"generate_qr_url": {"access": "step_up", "scopes": ["qr:generate"]},
		"ui://app": {"access": "public"},
	}
}

# Only unknown names go through the one-by-one fallback, whatever the
# order and however many known names are listed with them.
test_list_with_catalog_index_known_and_unknown if {
	items := indexed_items(["nope", "ui://a", "ping", "ui://b", "lookup_product"], anonymous)
	object.keys(items) == {"ui://a", "ui://b", "ping", "lookup_product"}
}

test_list_with_catalog_index_only_known if {
	items := indexed_items(["ping", "lookup_product"], anonymous)
	object.keys(items) == {"ping", "lookup_product"}
}

test_list_with_catalog_index_restricted_needs_scope if {
	items := indexed_items(["ping", "purge_codes"], token(["qr:admin"]))
	object.keys(items) == {"ping", "purge_codes"}
}

test_list_with_catalog_index_hides_hidden if {
	d := authz.decision with input as list(["ping", "lookup_product"], anonymous)
		with data.mcp.catalogs.demo.tools as demo_tools
		with data.pdp.catalog_index.demo.tools as demo_index
		with data.mcp.hidden as ["lookup_product"]
	d.item_groups == [{"entry": {"access": "public"}, "names": {"ping"}}, {"entry": {"access": "step_up", "scopes": ["qr:generate"]}, "names": set()}]
}

# "Acquirable" listing: step-up tools whose scopes the caller can never get
# are hidden (lists and calls); the default lists every step-up tool.
acq_resources := {resource: {"catalog": "demo", "listing": "acquirable", "acquirable_scopes": ["qr:generate"]}}

cc_token := object.union(token([]), {"grant": "client_credentials", "client_id": "agent-1"})

test_acquirable_default_lists_every_step_up_tool if {
	d := authz.decision with input as list(["generate_qr_url"], cc_token)
		with data.mcp.scope_ceilings as {"grants": {"client_credentials": []}}
	object.union_n(d.items) == {"generate_qr_url": {"access": "step_up", "scopes": ["qr:generate"]}}
}

test_acquirable_scope_not_grantable_hides if {
	d := authz.decision with input as list(["lookup_product", "generate_qr_url"], anonymous)
		with data.mcp.resources as {resource: {"catalog": "demo", "listing": "acquirable", "acquirable_scopes": ["other"]}}
	object.union_n(d.items) == {"lookup_product": {"access": "public"}}
	c := authz.decision with input as call("generate_qr_url", anonymous)
		with data.mcp.resources as {resource: {"catalog": "demo", "listing": "acquirable", "acquirable_scopes": ["other"]}}
	not c.allow
	not c.visible
}

test_acquirable_grant_ceiling if {
	# A client acting on its own can never be granted qr:generate: hidden for it...
	d := authz.decision with input as list(["lookup_product", "generate_qr_url"], cc_token)
		with data.mcp.resources as acq_resources
		with data.mcp.scope_ceilings as {"grants": {"client_credentials": ["catalog:read"]}}
	object.union_n(d.items) == {"lookup_product": {"access": "public"}}
	c := authz.decision with input as call("generate_qr_url", cc_token)
		with data.mcp.resources as acq_resources
		with data.mcp.scope_ceilings as {"grants": {"client_credentials": ["catalog:read"]}}
	not c.visible

	# ...listed (as a step-up) for a user, and for anonymous callers.
	u := authz.decision with input as list(["generate_qr_url"], token([]))
		with data.mcp.resources as acq_resources
		with data.mcp.scope_ceilings as {"grants": {"client_credentials": ["catalog:read"]}}
	object.union_n(u.items) == {"generate_qr_url": {"access": "step_up", "scopes": ["qr:generate"]}}
	a := authz.decision with input as call("generate_qr_url", anonymous)
		with data.mcp.resources as acq_resources
		with data.mcp.scope_ceilings as {"grants": {"client_credentials": ["catalog:read"]}}
	a.visible
	not a.allow
}

test_acquirable_client_ceiling if {
	c := authz.decision with input as call("generate_qr_url", token([]))
		with data.mcp.resources as acq_resources
		with data.mcp.scope_ceilings as {"clients": {"demo": ["qr:generate"]}}
	c.visible
	d := authz.decision with input as call("generate_qr_url", token([]))
		with data.mcp.resources as acq_resources
		with data.mcp.scope_ceilings as {"clients": {"demo": []}}
	not d.visible
}

# Tool annotations: the destructive rule is opt-in (a catalog's
# destructive_scope); with it, a destructive tool (an unannotated one too,
# as MCP's hint defaults say) also needs that scope; the catalog entry's
# annotations win over the server's.
annotated_call(name, tok, ann) := object.union(call(name, tok), {"target": object.union(call(name, tok).target, {"annotations": ann})})

with_destructive_scope := object.union(data.mcp.catalogs.demo, {"destructive_scope": "tools:destructive"})

test_destructive_rule_is_opt_in if {
	d := authz.decision with input as annotated_call("lookup_product", anonymous, {"destructiveHint": true})
	d.allow
}

test_destructive_tool_needs_the_scope if {
	# lookup_product is public; annotated destructive, it needs tools:destructive.
	d := authz.decision with input as annotated_call("lookup_product", token([]), {"destructiveHint": true})
		with data.mcp.catalogs.demo as with_destructive_scope
	not d.allow
	d.visible
	d.required_scopes == ["tools:destructive"]
	d.missing_scopes == ["tools:destructive"]

	ok := authz.decision with input as annotated_call("lookup_product", token(["tools:destructive"]), {"destructiveHint": true})
		with data.mcp.catalogs.demo as with_destructive_scope
	ok.allow

	# A step-up tool needs both scopes.
	s := authz.decision with input as annotated_call("generate_qr_url", token(["qr:generate"]), {})
		with data.mcp.catalogs.demo as with_destructive_scope
	not s.allow
	s.required_scopes == ["qr:generate", "tools:destructive"]
}

test_read_only_tools_are_not_destructive if {
	every ann in [{"readOnlyHint": true}, {"destructiveHint": false}] {
		d := authz.decision with input as annotated_call("lookup_product", anonymous, ann)
			with data.mcp.catalogs.demo as with_destructive_scope
		d.allow
	}
}

test_catalog_annotations_win if {
	cat := object.union(with_destructive_scope, {"tools": object.union(data.mcp.catalogs.demo.tools, {"lookup_product": {"access": "public", "annotations": {"readOnlyHint": true}}})})
	d := authz.decision with input as annotated_call("lookup_product", anonymous, {"destructiveHint": true})
		with data.mcp.catalogs.demo as cat
	d.allow
}

# Tool _meta: the default policy exposes it as tool_meta for rules of your
# own: what the server's last tools/list said (input.target._meta), the
# catalog entry's "_meta" winning key by key; {} when neither says anything.
meta_call(name, meta) := object.union(call(name, anonymous), {"target": object.union(call(name, anonymous).target, {"_meta": meta})})

test_tool_meta_from_the_server if {
	m := authz.tool_meta with input as meta_call("lookup_product", {"com.example/classification": "public", "com.example/owner": "shop"})
	m == {"com.example/classification": "public", "com.example/owner": "shop"}
}

test_catalog_meta_wins if {
	cat := object.union(data.mcp.catalogs.demo, {"tools": object.union(data.mcp.catalogs.demo.tools, {"lookup_product": {"access": "public", "_meta": {"com.example/classification": "internal"}}})})
	m := authz.tool_meta with input as meta_call("lookup_product", {"com.example/classification": "public", "com.example/owner": "shop"})
		with data.mcp.catalogs.demo as cat
	m == {"com.example/classification": "internal", "com.example/owner": "shop"}
}

test_tool_meta_empty_when_unknown if {
	authz.tool_meta == {} with input as call("lookup_product", anonymous)
}

# Limits: the target entry's rate and quota, else the catalog's
# default_limits, returned with the decision for the PDP to apply.
limited_catalogs := {"demo": {
	"unknown": {"access": "deny"},
	"default_limits": {"rate": {"limit": 100, "per": "1m", "by": "client"}},
	"tools": {
		"generate_qr_url": {
			"access": "step_up", "scopes": ["qr:generate"],
			"quota": {"limit": 100, "per": "day", "by": "sub"},
		},
		"lookup_product": {"access": "public", "rate": {"limit": 5, "per": "1s", "by": "sub+client"}},
		"ping": {"access": "public"},
	},
}}

test_limits_of_the_entry_over_the_catalog_default if {
	d := authz.decision with input as call("generate_qr_url", token(["qr:generate"]))
		with data.mcp.catalogs as limited_catalogs
	d.allow
	d.limits == {
		"quota": {"limit": 100, "per": "day", "by": "sub"},
		"rate": {"limit": 100, "per": "1m", "by": "client"},
	}
	p := authz.decision with input as call("lookup_product", anonymous)
		with data.mcp.catalogs as limited_catalogs
	p.limits == {"rate": {"limit": 5, "per": "1s", "by": "sub+client"}}
	q := authz.decision with input as call("ping", anonymous)
		with data.mcp.catalogs as limited_catalogs
	q.limits == {"rate": {"limit": 100, "per": "1m", "by": "client"}}
}

test_no_limits_without_any if {
	d := authz.decision with input as call("lookup_product", anonymous)
	d.limits == {}
}
