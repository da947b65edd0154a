package core

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mcp-pdp/pdp/internal/catalog"
	"github.com/mcp-pdp/pdp/pep"
)

// A call a quota counted can be given back when the PEP reports it
// failed after all (the tool errored): the allowed answer carries
// pep.Response.Refund, a token naming the counter (the LimitKey, the
// quota's Count and the time it was taken) and the decision; POST
// /v1/refund hands it back, and Service.Refund takes one call off that
// counter under the message id "refund-<decision id>", so that a refund
// asked twice within the counters' duplicate window is applied once. The
// token is not signed: only an authenticated PEP can present it, and a
// PEP is already trusted to enforce the decisions.

// refundPrefix versions the token's layout.
const refundPrefix = "r1."

// maxRefundToken bounds a token read back (a LimitKey of the longest
// URIs and ids, base64).
const maxRefundToken = 8 << 10

// refundClaims is the token's content.
type refundClaims struct {
	Decision string `json:"d"`
	Resource string `json:"r"`
	Method   string `json:"m"`
	Target   string `json:"t"`
	By       string `json:"b"`
	ID       string `json:"i,omitempty"`
	ID2      string `json:"j,omitempty"`
	Anon     bool   `json:"a,omitempty"`
	Limit    int    `json:"l"`
	Per      string `json:"p"`
	Zone     string `json:"z,omitempty"`
	At       int64  `json:"w"` // Unix ms of the take
}

func (d *pending) refundToken(decisionID string, q *catalog.Quota) string {
	k := d.limitKey(q.By)
	b, err := json.Marshal(refundClaims{
		Decision: decisionID, Resource: k.Resource, Method: k.Method, Target: k.Target, By: k.By, ID: k.ID, ID2: k.ID2, Anon: k.Anonymous,
		Limit: q.Limit, Per: q.Per, Zone: q.TimeZone, At: d.tookAt.UnixMilli(),
	})
	if err != nil {
		return "" // strings and numbers only: cannot happen
	}
	return refundPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Errors of Refund the PEP is told about: ErrAlreadyRefunded (the same
// refund again: nothing more given back) and ErrNothingToRefund (the
// counter has no call to give back: its window ended, or more refunds
// than calls).
var (
	ErrAlreadyRefunded = errors.New("already refunded")
	ErrNothingToRefund = errors.New("nothing to refund")
)

// Refund gives back the call of an allowed decision's refund token
// (pep.Response.Refund), for the PEP named pepName (reason, why the call
// failed, is logged): once, and only to
// the counter that counted it. refunded is false (with no error) when
// the same refund was applied before. A malformed token, one of a
// resource this PDP does not protect, and a counter with no call to give
// back (its window ended) are *pep.RequestError (400, 400, 409); counters
// out of reach are another error (503).
func (s *Service) Refund(ctx context.Context, token, pepName, reason string) (refunded bool, err error) {
	c, err := parseRefund(token)
	if err != nil {
		return false, badRequest("invalid_refund", "%v", err)
	}
	if _, ok := s.resources[c.Resource]; !ok {
		return false, badRequest("invalid_refund", "the refund names a resource this PDP does not protect")
	}
	if s.quotas == nil {
		return false, fmt.Errorf("refund: %w", errNoQuotas)
	}
	k := LimitKey{Resource: c.Resource, Method: c.Method, Target: c.Target, By: c.By, ID: c.ID, ID2: c.ID2, Anonymous: c.Anon}
	cnt := Count{Limit: c.Limit, Per: c.Per, TimeZone: c.Zone}
	err = s.quotas.Refund(ctx, cnt, k, time.UnixMilli(c.At), "refund-"+c.Decision)
	switch {
	case errors.Is(err, ErrAlreadyRefunded):
		return false, nil
	case errors.Is(err, ErrNothingToRefund):
		return false, &pep.RequestError{Status: http.StatusConflict, Code: "nothing_to_refund",
			Description: "the quota's window has no call to give back (it has ended, or its calls were refunded)"}
	case err != nil:
		return false, err
	}
	s.log.Info("quota refunded", "decision_id", c.Decision, "pep", pepName, "resource", c.Resource, "target", c.Target, "reason", reason)
	return true, nil
}

func parseRefund(token string) (*refundClaims, error) {
	if len(token) > maxRefundToken {
		return nil, fmt.Errorf("the refund token is longer than %d bytes", maxRefundToken)
	}
	raw, ok := strings.CutPrefix(token, refundPrefix)
	if !ok {
		return nil, errors.New("not a refund token of this PDP (r1.)")
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("the refund token is not base64url: %w", err)
	}
	var c refundClaims
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("the refund token does not decode: %w", err)
	}
	if c.Decision == "" || c.Resource == "" || c.Method == "" || c.At <= 0 {
		return nil, errors.New("the refund token lacks its decision, resource, method or time")
	}
	q := map[string]any{"limit": c.Limit, "per": c.Per, "by": c.By}
	if c.Zone != "" {
		q["time_zone"] = c.Zone
	}
	if _, err := catalog.ParseQuota(q); err != nil {
		return nil, fmt.Errorf("the refund token's quota: %w", err)
	}
	return &c, nil
}
