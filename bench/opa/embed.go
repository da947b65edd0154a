// Package opabench holds the Rego policy that OPA's REST server runs in the
// load benchmark (make loadbench): the same decision work as mcp-pdp's
// /v1/decide, written natively for OPA. See policy.rego.
package opabench

import _ "embed"

// Policy is policy.rego.
//
//go:embed policy.rego
var Policy []byte

// Query is the REST path of the decision: POST it {"input": <the /v1/decide body>}.
const Query = "/v1/data/mcp/bench/decision"
