package cookbook.roles_test

import data.cookbook.fixtures as f
import data.cookbook.roles
import data.mcp.authz

tools := {"deploy": {"access": "step_up", "scopes": ["deploy"], "realm_roles": ["sre", "admin"]}}

keycloak(realm_roles) := f.token("alice", "cli", "user", ["deploy"], {"realm_access": {"roles": realm_roles}})

decide(req) := d if {
	reasons := roles.deny with input as req with data.mcp.catalogs.demo.tools as tools
	d := authz.decision with input as req with data.mcp.catalogs.demo.tools as tools with data.mcp.authz.deny as reasons
}

test_nested_claim_role_allows if {
	d := decide(f.call("deploy", {}, keycloak(["user", "sre"])))
	d.allow
}

test_missing_role_is_a_final_deny if {
	d := decide(f.call("deploy", {}, keycloak(["user"])))
	not d.allow
	d.visible
	d.forbidden
	d.reason == "requires one of the roles: admin, sre"
}

test_namespaced_claim_role_allows if {
	tok := f.token("bob", "cli", "user", ["deploy"], {"https://example.com/roles": ["admin"]})
	decide(f.call("deploy", {}, tok)).allow
}

test_no_roles_claim_is_denied if {
	not decide(f.call("deploy", {}, f.user(["deploy"]))).allow
}

test_entries_without_realm_roles_are_untouched if {
	count(roles.deny) == 0 with input as f.call("ping", {}, f.user([]))
}
