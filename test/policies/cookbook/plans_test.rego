package cookbook.plans_test

import data.mcp.authz

catalogs := {"demo": {"tools": {"generate_qr_url": {
	"access": "step_up", "scopes": ["qr:generate"],
	"quota": {"limit": 10, "per": "day", "by": "sub", "time_zone": "Europe/Berlin"},
}}}}

plans := {"pro": {"generate_qr_url": 1000}}

call(claims) := {
	"resource": "https://mcp.example.com/mcp", "method": "tools/call", "operation": "call", "kind": "tool",
	"target": {"kind": "tool", "name": "generate_qr_url", "arguments": {}},
	"token": {"present": true, "valid": true, "sub": "alice", "client_id": "app", "grant": "user", "scopes": ["qr:generate"], "claims": claims},
}

test_a_paid_plan_has_its_quota if {
	l := data.cookbook.plans.limits with input as call({"plan": "pro"})
		with data.mcp.default_catalog as "demo"
		with data.mcp.catalogs as catalogs
		with data.plans as plans
	d := authz.decision with input as call({"plan": "pro"})
		with data.mcp.default_catalog as "demo"
		with data.mcp.catalogs as catalogs
		with authz.limit_overrides as l
	d.allow
	d.limits.quota == {"limit": 1000, "per": "day", "by": "sub", "time_zone": "Europe/Berlin"}
}

test_no_plan_or_an_unknown_one_has_the_catalogs if {
	every claims in [{}, {"plan": "free"}] {
		not data.cookbook.plans.limits with input as call(claims)
			with data.mcp.default_catalog as "demo"
			with data.mcp.catalogs as catalogs
			with data.plans as plans
		d := authz.decision with input as call(claims)
			with data.mcp.default_catalog as "demo"
			with data.mcp.catalogs as catalogs
		d.limits.quota.limit == 10
	}
}
