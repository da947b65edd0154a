package cookbook.revocation_test

import data.cookbook.fixtures as f
import data.cookbook.revocation
import data.mcp.authz

revoked := {
	"clients": {"leaky-app": "key leaked"},
	"subjects": {},
	"clients_before": {"desktop-app": "2026-03-01T12:00:00Z"},
	"tokens": {"tok-123": "reported stolen"},
}

decide(req) := d if {
	reasons := revocation.deny with input as req with data.mcp.revoked as revoked
	base := authz.deny with input as req with data.mcp.revoked as revoked
	all := reasons | base
	d := authz.decision with input as req with data.mcp.revoked as revoked with data.mcp.authz.deny as all
}

issued(client, iat, jti) := f.token("alice", client, "user", ["qr:generate"], {"iat": iat, "jti": jti})

before_cutoff := time.parse_rfc3339_ns("2026-03-01T11:59:59Z") / 1000000000

after_cutoff := time.parse_rfc3339_ns("2026-03-01T12:00:01Z") / 1000000000

test_token_issued_after_the_cutoff_is_served if {
	decide(f.call("generate_qr_url", {}, issued("desktop-app", after_cutoff, "t1"))).allow
}

test_token_issued_before_the_cutoff_is_refused if {
	d := decide(f.call("generate_qr_url", {}, issued("desktop-app", before_cutoff, "t1")))
	not d.allow
	d.reason == "tokens of client desktop-app issued before 2026-03-01T12:00:00Z are revoked"
}

test_token_without_iat_is_refused if {
	tok := f.token("alice", "desktop-app", "user", ["qr:generate"], {})
	not decide(f.call("generate_qr_url", {}, tok)).allow
}

test_revoked_token_id if {
	d := decide(f.call("generate_qr_url", {}, issued("other-app", after_cutoff, "tok-123")))
	not d.allow
	d.reason == "this token is revoked"
}

test_default_revocation_still_applies if {
	d := decide(f.call("generate_qr_url", {}, issued("leaky-app", after_cutoff, "t2")))
	d.reason == "client leaky-app is revoked"
}

test_other_clients_are_untouched if {
	count(revocation.deny) == 0 with input as f.call("ping", {}, issued("other-app", before_cutoff, "t3")) with data.mcp.revoked as revoked
}
