package cookbook.classification_test

import data.cookbook.classification
import data.cookbook.fixtures as f
import data.mcp.authz

tools := {
	"lookup_product": {"access": "public"},
	"export_customers": {"access": "public", "_meta": {"com.example/classification": "restricted"}},
}

# A call as the PDP builds it after a tools/list whose item had this _meta.
listed_call(name, meta, tok) := object.union(f.call(name, {}, tok), {"target": object.union(f.call(name, {}, tok).target, {"_meta": meta})})

decide(req) := d if {
	reasons := classification.deny with input as req with data.mcp.catalogs.demo.tools as tools
	d := authz.decision with input as req with data.mcp.catalogs.demo.tools as tools with data.mcp.authz.deny as reasons
}

cleared(level) := f.token("alice", "app", "user", [], {"clearance": level})

test_server_classification if {
	req := listed_call("lookup_product", {"com.example/classification": "confidential"}, cleared("internal"))
	d := decide(req)
	not d.allow
	d.forbidden
	d.reason == "lookup_product is classified confidential; the token's clearance is internal"
	decide(listed_call("lookup_product", {"com.example/classification": "confidential"}, cleared("confidential"))).allow
}

test_catalog_classification_wins_over_the_server if {
	d := decide(listed_call("export_customers", {"com.example/classification": "public"}, cleared("confidential")))
	d.reason == "export_customers is classified restricted; the token's clearance is confidential"
	decide(listed_call("export_customers", {}, cleared("restricted"))).allow
}

test_unclassified_tools_are_internal if {
	d := decide(f.call("lookup_product", {}, f.anonymous))
	d.reason == "lookup_product is classified internal; the token's clearance is public"
	decide(f.call("lookup_product", {}, cleared("internal"))).allow
}

test_unknown_classification_is_restricted if {
	not decide(listed_call("lookup_product", {"com.example/classification": "top-secret"}, cleared("confidential"))).allow
}

test_unknown_clearance_is_public if {
	d := decide(listed_call("lookup_product", {"com.example/classification": "public"}, cleared("galactic")))
	d.allow
	not decide(f.call("lookup_product", {}, cleared("galactic"))).allow
}
