package cookbook.hours_test

import data.cookbook.fixtures as f
import data.cookbook.hours
import data.mcp.authz

tools := {"deploy": {"access": "step_up", "scopes": ["deploy"], "hours": {"from": 8, "to": 18, "tz": "Europe/Berlin", "weekdays": true}}}

decide(req, now) := d if {
	reasons := hours.deny with input as req with data.mcp.catalogs.demo.tools as tools with time.now_ns as now
	d := authz.decision with input as req with data.mcp.catalogs.demo.tools as tools with data.mcp.authz.deny as reasons
}

deployer := f.user(["deploy"])

# Monday 2 March 2026: 09:30 UTC is 10:30 in Berlin; 17:30 UTC is 18:30.
monday_morning := time.parse_rfc3339_ns("2026-03-02T09:30:00Z")

monday_evening := time.parse_rfc3339_ns("2026-03-02T17:30:00Z")

saturday_morning := time.parse_rfc3339_ns("2026-03-07T09:30:00Z")

test_in_office_hours if {
	decide(f.call("deploy", {}, deployer), monday_morning).allow
}

test_after_hours if {
	d := decide(f.call("deploy", {}, deployer), monday_evening)
	not d.allow
	d.forbidden
	d.reason == "deploy may only be called from 08:00 to 18:00 Europe/Berlin, Monday to Friday"
}

test_weekend if {
	not decide(f.call("deploy", {}, deployer), saturday_morning).allow
}

test_tools_without_hours_are_untouched if {
	count(hours.deny) == 0 with input as f.call("ping", {}, f.anonymous) with time.now_ns as saturday_morning
}
