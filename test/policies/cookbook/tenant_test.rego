package cookbook.tenant_test

import data.cookbook.fixtures as f
import data.cookbook.tenant
import data.mcp.authz

resources := {f.resource: {"catalog": "demo", "tenant": "acme"}}

decide(req) := d if {
	reasons := tenant.deny with input as req with data.mcp.resources as resources
	names := tenant.hide with input as req with data.mcp.resources as resources
	d := authz.decision with input as req
		with data.mcp.resources as resources
		with data.mcp.authz.deny as reasons
		with data.mcp.authz.hide as names
}

of(t) := f.token("alice", "app", "user", ["qr:generate"], {"tenant": t})

test_own_tenant_is_served if {
	decide(f.call("generate_qr_url", {"gtin": "1"}, of("acme"))).allow
}

test_other_tenant_is_refused_and_sees_nothing if {
	d := decide(f.call("ping", {}, of("globex")))
	not d.allow
	d.reason == "the token is for another tenant"
	object.union_n(decide(f.list(["ping", "generate_qr_url"], of("globex"))).items) == {}
}

test_token_without_tenant_is_refused if {
	not decide(f.call("ping", {}, f.user([]))).allow
}

test_arguments_must_name_the_callers_tenant if {
	decide(f.call("ping", {"tenant_id": "acme"}, of("acme"))).allow
	d := decide(f.call("ping", {"tenant_id": "globex"}, of("acme")))
	not d.allow
	d.reason == "argument tenant_id names another tenant"
}

# On a server without a tenant of its own, arguments still must name the
# caller's tenant, and a token without one may name none.
test_tokens_without_tenant_may_not_name_one if {
	reasons := tenant.deny with input as f.call("ping", {"tenant_id": "acme"}, f.user([])) with data.mcp.resources as {}
	reasons == {"argument tenant_id names another tenant"}
}

test_anonymous_public_call if {
	decide(f.call("ping", {}, f.anonymous)).allow
}
