# List performance of the default policy (the readable part is authz.rego).
#
# Why this file exists: one list decision answers for every listed item, and
# a list may hold thousands of names. Deciding them with one rule per item
# costs a rule evaluation per name; these rules decide each distinct catalog
# entry once instead and find the listed names with set built-ins. They keep
# two paths:
#   - with the catalog index the PDP builds when it loads the policy
#     (data.pdp.catalog_index, docs/policy.md "The catalog index"): each
#     group of names sharing an entry is decided once (item_groups);
#   - without it (pdp test, sections with more than 64 distinct entries):
#     each distinct listed entry is decided once (items).
# Names without an exact key ("prefix*" keys, the unknown entry) are decided
# one by one, and only when one of them could be visible.
#
# Both paths answer what authz.rego states for lists: a listed name is
# visible when visible(entry_for(name)) holds and hide does not contain it.
# test/policies/authz_test.rego checks both paths.
package mcp.authz

# listed_names are the listed names, as a set (input.items has them in
# order, with annotations; the PDP builds items only for policies that read
# it). A hand-written input may give an array.
listed_names := input.names

listed_name_set := listed_names if is_set(listed_names)

else := {n | some n in listed_names}

# The catalog index the PDP builds when it loads the policy
# (data.pdp.catalog_index, docs/policy.md): a section's exact names grouped
# by identical entry, and its "prefix*" keys. Undefined under pdp test and
# for sections with more than 64 distinct entries.
index := data.pdp.catalog_index[catalog_name][sections[input.kind]]

# prefix_keys are the "prefix*" keys of the section, without the star:
# from the catalog index when the PDP built one, else (pdp test) found by
# a scan of the section, once per evaluation and only when a name has no
# exact key.
prefix_keys := {p | some p in index.prefixes} if {
	index
} else := {trim_suffix(k, "*") |
	some k, _ in section
	endswith(k, "*")
}

# With the index, each group is decided once and its listed names are
# found with set built-ins.
default visible_item_groups := []

visible_item_groups := [{"entry": g.entry, "names": group_hits(g)} |
	some g in index.groups
	visible(g.entry)
] if {
	index
	count(hide) == 0
} else := [{"entry": g.entry, "names": group_hits(g) - hide} |
	some g in index.groups
	visible(g.entry)
] if {
	index
}

# group_hits: the listed names in a group. A set intersection walks the
# smaller side (object.filter would walk the whole group).
group_hits(g) := listed_name_set & g.names

# Without the index, each distinct listed entry is decided once.
visible_listed := {} if {
	index
} else := {name: e |
	some name, e in listed_entries
	visible_entries[e]
}

# The entries of the listed names that have an exact key.
listed_entries := object.filter(section, listed_names)

visible_entries := {e |
	some e in {e | some e in listed_entries}
	visible(e)
}

# Names without an exact key are decided one by one, and only when a
# "prefix*" key or a visible "unknown" entry can make one visible.
visible_fallback := {name: e |
	fallback_may_show
	listed_exact_count < count(listed_names)
	some name in listed_names
	not section[name]
	e := fallback_entry(name)
	visible(e)
}

# How many listed names have an exact key: with the index, from the
# smaller side of the listed names and the section's names; without it,
# by filtering the section.
listed_exact_count := count(listed_name_set & index.names) if index.names

else := count(listed_entries)

fallback_may_show if count(index.prefixes) > 0

fallback_may_show if {
	not index
	count(prefix_keys) > 0
}

fallback_may_show if visible(unknown_entry)

# visible_items: the visible names of both the paths above, without the
# hidden ones.
visible_items := [visible_listed, visible_fallback] if count(hide) == 0

else := [object.remove(visible_listed, hide), object.remove(visible_fallback, hide)]
