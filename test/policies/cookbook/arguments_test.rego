package cookbook.arguments_test

import data.cookbook.arguments
import data.cookbook.fixtures as f
import data.mcp.authz

tools := {
	"transfer": {"access": "step_up", "scopes": ["payments"], "max": {"amount": 1000}},
	"send_email": {"access": "step_up", "scopes": ["mail"], "allowed_domains": {"to": ["example.com", "*.example.org"]}},
}

decide(req) := d if {
	reasons := arguments.deny with input as req with data.mcp.catalogs.demo.tools as tools
	d := authz.decision with input as req with data.mcp.catalogs.demo.tools as tools with data.mcp.authz.deny as reasons
}

payer := f.user(["payments"])

mailer := f.user(["mail"])

test_amount_within_limit if {
	decide(f.call("transfer", {"amount": 1000, "to": "DE89..."}, payer)).allow
}

test_amount_over_limit if {
	d := decide(f.call("transfer", {"amount": 1000.01}, payer))
	not d.allow
	d.forbidden
	d.reason == "amount must be at most 1000"
}

test_amount_not_a_number_is_refused if {
	d := decide(f.call("transfer", {"amount": "1e9"}, payer))
	not d.allow
	d.reason == "amount must be a number"
	not decide(f.call("transfer", {"amount": null}, payer)).allow
}

test_limit_does_not_replace_scopes if {
	d := decide(f.call("transfer", {"amount": 5}, f.user([])))
	not d.allow
	not d.forbidden # a challenge for the scope, not a final deny
	d.missing_scopes == ["payments"]
}

test_allowed_domain if {
	decide(f.call("send_email", {"to": "bob@example.com"}, mailer)).allow
	decide(f.call("send_email", {"to": ["a@example.com", "b@eu.example.org"]}, mailer)).allow
}

test_other_domain_is_refused if {
	d := decide(f.call("send_email", {"to": ["a@example.com", "x@evil.io"]}, mailer))
	not d.allow
	d.reason == "to: x@evil.io is not in an allowed domain"
}

test_lookalike_domain_is_refused if {
	not decide(f.call("send_email", {"to": "a@example.com.evil.io"}, mailer)).allow
	not decide(f.call("send_email", {"to": "a@example.org"}, mailer)).allow # only subdomains of example.org
}

test_non_address_is_refused if {
	not decide(f.call("send_email", {"to": 42}, mailer)).allow
}
