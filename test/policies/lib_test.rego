package mcp.lib_test

import data.mcp.lib

implies := {
	"files:write": ["files:read"],
	"admin": ["files:write", "mcp:tools:*"],
}

test_expand_keeps_granted if {
	lib.expand(["a", "b"], implies) == {"a", "b"}
}

test_expand_is_transitive if {
	lib.expand(["admin"], implies) == {"admin", "files:write", "files:read", "mcp:tools:*"}
}

test_expand_leaf_scope if {
	lib.expand(["files:write"], implies) == {"files:write", "files:read"}
}

test_satisfied_direct if {
	lib.satisfied("files:read", {"files:read"})
}

test_satisfied_wildcard if {
	lib.satisfied("mcp:tools:weather", {"mcp:tools:*"})
}

test_wildcard_does_not_cross_prefix if {
	not lib.satisfied("mcp:prompts:x", {"mcp:tools:*"})
}

test_missing_is_sorted_and_exact if {
	lib.missing(["c", "a", "b"], {"b"}) == ["a", "c"]
}

test_missing_honours_hierarchy if {
	lib.missing(["files:read", "mcp:tools:deploy"], lib.expand(["admin"], implies)) == []
}

test_claim_values_array if {
	lib.claim_values({"groups": ["a", "b"]}, "groups") == {"a", "b"}
}

test_claim_values_string if {
	lib.claim_values({"roles": "a  b"}, "roles") == {"a", "b"}
}

test_claim_values_absent if {
	lib.claim_values({}, "roles") == set()
}

test_claim_values_ignores_other_types if {
	lib.claim_values({"roles": 7}, "roles") == set()
	lib.claim_values({"roles": ["a", 1]}, "roles") == {"a"}
}

test_claim_nested if {
	lib.claim({"realm_access": {"roles": ["admin"]}}, ["realm_access", "roles"]) == ["admin"]
}

test_claim_absent_is_undefined if {
	not lib.claim({"realm_access": {}}, ["realm_access", "roles"])
	not lib.claim({}, ["a", "b"])
}

test_claim_with_dots_in_its_name if {
	lib.claim({"https://example.com/roles": ["x"]}, ["https://example.com/roles"]) == ["x"]
}

test_claim_values_at if {
	lib.claim_values_at({"realm_access": {"roles": ["a", "b"]}}, ["realm_access", "roles"]) == {"a", "b"}
	lib.claim_values_at({}, ["realm_access", "roles"]) == set()
}

test_has_any_and_all if {
	lib.has_any({"a", "b"}, ["x", "b"])
	not lib.has_any({"a"}, ["x"])
	not lib.has_any({"a"}, [])
	lib.has_all({"a", "b", "c"}, ["a", "c"])
	lib.has_all({"a"}, [])
	not lib.has_all({"a"}, ["a", "b"])
}

test_is_agent if {
	lib.is_agent({"present": true, "grant": "client_credentials"})
	not lib.is_agent({"present": true, "grant": "user"})
	not lib.is_agent({"present": false, "scopes": []})
}

test_effective_scopes if {
	lib.effective_scopes({"scopes": ["admin"]}, implies) == {"admin", "files:write", "files:read", "mcp:tools:*"}
	lib.effective_scopes({"scopes": ["a"]}, {}) == {"a"}
}

test_email_domain if {
	lib.email_domain("Alice@Example.COM") == "example.com"
	lib.email_domain("odd@name@corp.example") == "corp.example"
	not lib.email_domain("no-at-sign")
	not lib.email_domain(42)
}

test_domain_allowed if {
	lib.domain_allowed("bob@example.com", ["example.com"])
	lib.domain_allowed("bob@eu.example.com", ["*.example.com"])
	not lib.domain_allowed("bob@example.com.evil.io", ["example.com", "*.example.com"])
	not lib.domain_allowed("bob@notexample.com", ["*.example.com"])
	not lib.domain_allowed("not an address", ["example.com"])
}

# 2026-03-02 is a Monday. 09:30 UTC is 10:30 in Berlin (CET).
monday_0930_utc := time.parse_rfc3339_ns("2026-03-02T09:30:00Z")

saturday_noon_utc := time.parse_rfc3339_ns("2026-03-07T12:00:00Z")

test_within_hours if {
	lib.within_hours(monday_0930_utc, 8, 18, "Europe/Berlin")
	not lib.within_hours(monday_0930_utc, 11, 18, "Europe/Berlin")
	lib.within_hours(monday_0930_utc, 9, 10, "UTC")
	not lib.within_hours(monday_0930_utc, 10, 9, "UTC") # 10:00 to 09:00 overnight excludes 09:30
	lib.within_hours(monday_0930_utc, 22, 10, "UTC") # overnight window
}

test_is_weekday if {
	lib.is_weekday(monday_0930_utc, "UTC")
	not lib.is_weekday(saturday_noon_utc, "UTC")
}
