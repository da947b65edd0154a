# METADATA
# title: "Cookbook: per-plan quotas"
# description: |
#   A larger quota for callers on a paid plan. The plan is a token claim
#   ("plan"); the quota per plan and tool is data:
#     plans: {pro: {generate_qr_url: 1000}, team: {generate_qr_url: 5000}}
#   The catalog entry's quota keeps its window, "by" and time zone; only
#   its limit changes. A caller without a plan, or on a plan without an
#   entry for the tool, has the catalog's quota.
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.plans
#     limit_overrides := plans.limits
package cookbook.plans

import data.mcp.authz

limits := {"quota": object.union(q, {"limit": n})} if {
	input.operation == "call"
	q := authz.catalog_target_limits.quota
	n := data.plans[input.token.claims.plan][input.target.name]
}
