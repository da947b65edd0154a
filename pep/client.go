package pep

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of ClientOptions.
const (
	// DefaultTimeout bounds one decision over HTTP, connecting included.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxConnsPerHost bounds the connections to the PDP; as many
	// stay open between requests, so that concurrent decisions reuse them.
	DefaultMaxConnsPerHost = 64
	// maxAnswerBytes bounds an answer of the PDP (a filtered list of a
	// large catalog is the largest).
	maxAnswerBytes = 64 << 20
)

// ClientOptions configure a [Client].
type ClientOptions struct {
	// APIKey, when set, authenticates the PEP to the PDP
	// (X-PDP-API-Key).
	APIKey string
	// TLSConfig is used for an https PDP URL: a private CA's RootCAs,
	// and Certificates for mTLS authentication of the PEP.
	TLSConfig *tls.Config
	// Timeout bounds one decision (default DefaultTimeout); the caller's
	// context may end it sooner.
	Timeout time.Duration
	// MaxConnsPerHost bounds the connections to the PDP (default
	// DefaultMaxConnsPerHost).
	MaxConnsPerHost int
	// Transport replaces the Client's own (TLSConfig and
	// MaxConnsPerHost are then the Transport's business).
	Transport http.RoundTripper
}

// Client decides requests with a remote PDP over its HTTP API (POST
// /v1/decide), over kept-alive connections. It is safe for concurrent use
// and implements [Decider].
type Client struct {
	endpoint  string
	refundURL string
	apiKey    string
	timeout   time.Duration
	http      *http.Client
}

// NewClient returns a Client of the PDP at baseURL (e.g.
// "http://127.0.0.1:8181").
func NewClient(baseURL string, o ClientOptions) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pep: PDP URL %q is not an http(s) URL", baseURL)
	}
	t := o.Transport
	if t == nil {
		conns := cmp.Or(o.MaxConnsPerHost, DefaultMaxConnsPerHost)
		t = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: cmp.Or(o.Timeout, DefaultTimeout), KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     o.TLSConfig,
			ForceAttemptHTTP2:   true,
			MaxConnsPerHost:     conns,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	return &Client{
		endpoint:  strings.TrimSuffix(u.String(), "/") + "/v1/decide",
		refundURL: strings.TrimSuffix(u.String(), "/") + "/v1/refund",
		apiKey:    o.APIKey,
		timeout:   cmp.Or(o.Timeout, DefaultTimeout),
		http:      &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}, nil
}

// Decide asks the PDP to decide req. A refusal of the PDP (HTTP 4xx/5xx
// with an error body) is a *RequestError; any other failure (the PDP
// unreachable, slow, or answering something else) is an error too: the
// caller fails closed.
func (c *Client) Decide(ctx context.Context, req *Request) (*Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("pep: encoding the request: %w", err)
	}
	raw, err := c.post(ctx, c.endpoint, body)
	if err != nil {
		return nil, err
	}
	var out Response
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("pep: the PDP's answer is not a decision: %w", err)
	}
	if out.DecisionID == "" || out.Outcome == "" {
		return nil, errors.New("pep: the PDP's answer is not a decision (no decision_id or outcome)")
	}
	return &out, nil
}

// Refund gives back to its quota the call of an allowed decision that
// failed after all (the tool errored): token is the decision's
// Response.Refund, reason (optional, for the PDP's log) why. It reports
// whether a call was given back now: false when the same refund was
// applied before (a refund counts once, if asked again within a minute
// of the first). A window that has ended has nothing to give back
// (a *RequestError, 409 nothing_to_refund).
func (c *Client) Refund(ctx context.Context, token, reason string) (refunded bool, err error) {
	body, err := json.Marshal(struct {
		Refund string `json:"refund"`
		Reason string `json:"reason,omitempty"`
	}{token, reason})
	if err != nil {
		return false, fmt.Errorf("pep: encoding the refund: %w", err)
	}
	raw, err := c.post(ctx, c.refundURL, body)
	if err != nil {
		return false, err
	}
	var out struct {
		Refunded *bool `json:"refunded"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.Refunded == nil {
		return false, fmt.Errorf("pep: the PDP's answer to a refund is not one (%q)", raw)
	}
	return *out.Refunded, nil
}

// traceKey is the context key of the W3C trace context of the request
// being decided (WithTraceContext).
type traceKey struct{}

type traceContext struct{ parent, state string }

func withTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	return context.WithValue(ctx, traceKey{}, traceContext{traceparent, tracestate})
}

// WithTraceContext returns ctx carrying a W3C trace context (the
// traceparent and tracestate header values of the request being decided),
// which Client sends with /v1/decide so that the PDP's decision spans join
// that trace. Middleware does it for the requests it decides; call it when
// you call Client.Decide yourself.
func WithTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	return withTraceContext(ctx, traceparent, tracestate)
}

// post sends body to the PDP's url and returns the answer of a 200; any
// other status is a *RequestError.
func (c *Client) post(ctx context.Context, url string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("pep: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.apiKey != "" {
		hr.Header.Set("X-PDP-API-Key", c.apiKey)
	}
	if tc, ok := ctx.Value(traceKey{}).(traceContext); ok {
		hr.Header.Set("Traceparent", tc.parent)
		if tc.state != "" {
			hr.Header.Set("Tracestate", tc.state)
		}
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("pep: asking the PDP at %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pep: reading the PDP's answer: %w", err)
	}
	if len(raw) > maxAnswerBytes {
		return nil, fmt.Errorf("pep: the PDP's answer exceeds %d bytes", maxAnswerBytes)
	}
	if resp.StatusCode != http.StatusOK {
		re := &RequestError{Status: resp.StatusCode}
		if json.Unmarshal(raw, re) != nil || re.Code == "" {
			re.Code, re.Description = "pdp_error", fmt.Sprintf("the PDP answered HTTP %d", resp.StatusCode)
		}
		return nil, re
	}
	return raw, nil
}
