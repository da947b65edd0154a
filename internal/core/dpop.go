package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/mcp-pdp/pdp/internal/dpop"
	"github.com/mcp-pdp/pdp/internal/token"
	"github.com/mcp-pdp/pdp/pep"
)

// errDPoPUnavailable wraps a replay cache failure: the proof could not be
// checked, the request is refused as unavailable (503).
var errDPoPUnavailable = errors.New("DPoP proof check unavailable")

// Descriptions of the binding refusals (401 invalid_token).
const (
	descBoundAsBearer  = "the token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof"
	descUnboundAsDPoP  = "the token is not bound to a key: present it with the Bearer scheme"
	descDPoPRequired   = "this resource accepts only DPoP-bound tokens"
	descNoHTTPForProof = "the enforcement point sent no http method and url to check the DPoP proof against"
)

// checkDPoP enforces the resource's DPoP rules on a verified token (RFC
// 9449 §7): a token bound to a key (cnf.jkt) needs the DPoP scheme and a
// valid proof of that key for this request; the DPoP scheme needs a bound
// token; a resource that requires DPoP takes bound tokens only. A refusal
// is a *token.Error (401): code invalid_token for the binding rules,
// invalid_dpop_proof or use_dpop_nonce for the proof (with d.dpopNonce set
// for the latter); a replay cache failure wraps errDPoPUnavailable.
func (d *pending) checkDPoP(ctx context.Context, req *pep.Request, scheme, raw string) error {
	v := d.res.DPoP
	if v == nil {
		return nil // DPoP off
	}
	bound := d.claims.JKT != ""
	switch {
	case bound && scheme != token.SchemeDPoP:
		d.dpopUsed = true // the client has a DPoP key: tell it the algorithms
		return &token.Error{Code: token.CodeInvalidToken, Description: descBoundAsBearer}
	case !bound && scheme == token.SchemeDPoP:
		return &token.Error{Code: token.CodeInvalidToken, Description: descUnboundAsDPoP}
	case !bound && d.res.DPoPRequired:
		return &token.Error{Code: token.CodeInvalidToken, Description: descDPoPRequired}
	case !bound:
		return nil
	}
	c := dpop.Check{Proof: req.DPoP, AccessToken: raw, JKT: d.claims.JKT}
	if h := req.HTTP; h != nil {
		c.Method, c.URL, c.Request = h.Method, h.URL, h.ID
	} else if req.DPoP != "" {
		return &token.Error{Code: dpop.CodeInvalidProof, Description: descNoHTTPForProof}
	}
	_, err := v.Verify(ctx, c)
	var pe *dpop.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		d.dpopNonce = pe.Nonce
		return &token.Error{Code: pe.Code, Description: pe.Description}
	default:
		return fmt.Errorf("%w: %w", errDPoPUnavailable, err)
	}
}
