package assertion

import "time"

// Header is the HTTP request header that carries the assertion to the
// upstream. It is not Authorization (no token passthrough: the upstream must
// not be able to replay what it receives as a bearer token elsewhere) and it
// stays out of the Mcp-* namespace the MCP specification uses for its own
// headers. A gateway replaces any value a client sent in this header.
const Header = "X-MCP-PDP-Assertion"

// MetaKey is the `_meta` key, in the params of every request the gateway
// sends to a stdio upstream, that carries the assertion there (stdio has no
// headers). A gateway replaces any value a client sent under this key.
const MetaKey = "io.github.mcp-pdp/identity"

// The environment of a stdio upstream the gateway starts tells it how to
// verify the assertions it receives: the gateway's issuer URL, the
// audience (the resource's URI) and the JWKS itself (JSON), so that the
// process needs no network access to the gateway.
const (
	EnvIssuer   = "MCP_PDP_ASSERTION_ISSUER"
	EnvAudience = "MCP_PDP_ASSERTION_AUDIENCE"
	EnvJWKS     = "MCP_PDP_ASSERTION_JWKS"
)

// Typ is the JWS "typ" header of every assertion; [Verify] accepts no other.
const Typ = "mcp-pdp-assertion+jwt"

// DefaultTTL is the lifetime of an assertion when Options.TTL is 0.
const DefaultTTL = 60 * time.Second

// MaxTTL is the longest Options.TTL accepted: an assertion is short-lived.
const MaxTTL = time.Hour

// Leeway is the clock difference [Verify] tolerates on `exp` and `iat`.
const Leeway = 30 * time.Second

// MaxBytes bounds the size of an assertion. [Signer.Sign] refuses to produce
// a larger one (HTTP servers limit the size of request headers, Node.js to
// 16 KiB for all of them) and [Verify] refuses to read one.
const MaxBytes = 8 << 10

// MaxActDepth bounds the `act` chain (the same bound the gateway applies to
// incoming tokens).
const MaxActDepth = 8

// Actor is one link of an RFC 8693 `act` chain.
type Actor struct {
	Subject  string // `sub`
	ClientID string // `client_id`
}

// Claims is exactly what the upstream may learn about the caller. Strings
// must be valid UTF-8; they are carried byte for byte.
type Claims struct {
	// Subject is the end user (or the client, for client credentials) the
	// caller's token named; "" means an anonymous caller (see the package
	// documentation).
	Subject string
	// ClientID is the OAuth client the caller used; "" when unknown.
	ClientID string
	// Act is the RFC 8693 delegation chain, outermost (current actor) first;
	// at most MaxActDepth links.
	Act []Actor
	// Scopes are the granted scopes; none may be empty or contain white space
	// (unicode.IsSpace).
	Scopes []string
	// Grant is "user", "client_credentials" or "" (unknown), as the
	// gateway's token verification classified the token.
	Grant string
	// DecisionID is the id of the PDP decision that allowed the request
	// ("" for messages that are not decided, such as notifications).
	DecisionID string
	// Audience is the upstream the assertion is for (`aud`); required.
	Audience string

	// Issuer is the gateway's issuer URL (`iss`). Set by Verify; Sign
	// always writes its own Options.Issuer.
	Issuer string
	// ID is the unique id of the assertion (`jti`), for replay detection.
	// Set by Verify; Sign ignores it.
	ID string
	// IssuedAt and ExpiresAt are `iat` and `exp`. Set by Verify; Sign
	// ignores them.
	IssuedAt, ExpiresAt time.Time
}

// Anonymous reports whether the assertion is for a caller that presented no
// token (Subject is empty).
func (c *Claims) Anonymous() bool { return c.Subject == "" }
