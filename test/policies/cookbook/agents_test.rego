package cookbook.agents_test

import data.cookbook.agents
import data.cookbook.fixtures as f
import data.mcp.authz

tools := {
	"search_products": {"access": "public", "read_only": true},
	"delete_product": {"access": "step_up", "scopes": ["catalog:write"]},
}

decide(req) := d if {
	reasons := agents.deny with input as req with data.mcp.catalogs.demo.tools as tools
	names := agents.hide with input as req with data.mcp.catalogs.demo.tools as tools
	d := authz.decision with input as req
		with data.mcp.catalogs.demo.tools as tools
		with data.mcp.authz.deny as reasons
		with data.mcp.authz.hide as names
}

test_agent_may_read if {
	decide(f.call("search_products", {"q": "tea"}, f.agent([]))).allow
}

test_agent_may_not_write_even_with_the_scope if {
	d := decide(f.call("delete_product", {"id": 7}, f.agent(["catalog:write"])))
	not d.allow
	d.forbidden
	d.reason == "agents (client credentials) may only use read-only tools"
}

test_agent_lists_only_read_only_tools if {
	d := decide(f.list(["search_products", "delete_product"], f.agent(["catalog:write"])))
	object.keys(object.union_n(d.items)) == {"search_products"}
}

test_users_are_untouched if {
	decide(f.call("delete_product", {"id": 7}, f.user(["catalog:write"]))).allow
	d := decide(f.list(["search_products", "delete_product"], f.user([])))
	object.keys(object.union_n(d.items)) == {"search_products", "delete_product"}
}
