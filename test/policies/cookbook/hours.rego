# METADATA
# title: "Cookbook: time windows"
# description: |
#   Tools that may only be called in office hours, from their catalog entry:
#     deploy: {access: step_up, scopes: [deploy], hours: {from: 8, to: 18, tz: Europe/Berlin, weekdays: true}}
#   from/to are hours of the day in tz (an IANA time zone, default UTC);
#   from > to spans midnight; weekdays: true also excludes weekends.
#   Outside the window a call is refused; the tool stays listed.
#
#   This rule reads the clock (time.now_ns), so the PDP does not cache the
#   decisions of a policy that uses it (docs/policy.md, "Decision cache").
#
#   Enable it in your policy:
#     package mcp.authz
#     import data.cookbook.hours
#     deny contains reason if some reason in hours.deny
package cookbook.hours

import data.mcp.authz
import data.mcp.lib

deny contains sprintf("%s may only be called %s", [input.target.name, describe(w)]) if {
	input.operation == "call"
	w := authz.target_entry.hours
	not open_now(w)
}

open_now(w) if {
	now := time.now_ns()
	lib.within_hours(now, w.from, w.to, tz(w))
	weekday_ok(w, now)
}

weekday_ok(w, _) if not w.weekdays

weekday_ok(w, now) if {
	w.weekdays
	lib.is_weekday(now, tz(w))
}

tz(w) := object.get(w, "tz", "UTC")

describe(w) := sprintf("from %02d:00 to %02d:00 %s%s", [w.from, w.to, tz(w), days]) if {
	days := {true: ", Monday to Friday", false: ""}[object.get(w, "weekdays", false)]
}
