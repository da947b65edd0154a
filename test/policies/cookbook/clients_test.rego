package cookbook.clients_test

import data.cookbook.clients
import data.cookbook.fixtures as f
import data.mcp.authz

resources := {f.resource: {"catalog": "demo", "clients": ["desktop-app"]}}

decide(req) := d if {
	reasons := clients.deny with input as req with data.mcp.resources as resources
	names := clients.hide with input as req with data.mcp.resources as resources
	d := authz.decision with input as req
		with data.mcp.resources as resources
		with data.mcp.authz.deny as reasons
		with data.mcp.authz.hide as names
}

other := f.token("mallory", "unknown-app", "user", ["qr:generate"], {})

test_listed_client_is_served if {
	decide(f.call("generate_qr_url", {}, f.user(["qr:generate"]))).allow
	d := decide(f.list(["ping", "generate_qr_url"], f.user([])))
	object.keys(object.union_n(d.items)) == {"ping", "generate_qr_url"}
}

test_other_client_is_refused if {
	d := decide(f.call("ping", {}, other))
	not d.allow
	d.reason == "client unknown-app may not use this server"
}

test_other_client_sees_nothing if {
	d := decide(f.list(["ping", "generate_qr_url"], other))
	object.union_n(d.items) == {}
}

test_anonymous_callers_can_still_discover if {
	d := decide(f.list(["ping", "generate_qr_url"], f.anonymous))
	object.keys(object.union_n(d.items)) == {"ping", "generate_qr_url"}
	c := decide(f.call("generate_qr_url", {}, f.anonymous))
	not c.forbidden
	c.reason == "authorization required"
}

test_token_without_client_id_is_refused if {
	tok := object.remove(f.user(["qr:generate"]), ["client_id"])
	d := decide(f.call("generate_qr_url", {}, tok))
	not d.allow
	d.reason == "client (none) may not use this server"
}

test_resources_without_a_list_are_open if {
	count(clients.deny) == 0 with input as f.call("ping", {}, other)
}
