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
