package devissuer

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
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
// the registration path MCP 2026-07-28 prefers): a client_id that is a URL
// names a JSON document, served by the client, that holds its metadata. The
// dev authorization server fetches it when it meets such a client_id.

// Defaults of CIMDOptions.
const (
	// DefaultCIMDTimeout bounds one document fetch, from the dial to the
	// last byte.
	DefaultCIMDTimeout = 5 * time.Second
	// DefaultCIMDMaxBytes bounds a document. The draft recommends 5 KB;
	// the dev server allows more, for clients with long lists of redirect
	// URIs or an inline logo.
	DefaultCIMDMaxBytes = 16 << 10
	// DefaultCIMDCacheTTL is how long a document without a max-age is
	// kept; a max-age is honoured up to maxCIMDCacheTTL, and no-store or
	// no-cache are not cached at all.
	DefaultCIMDCacheTTL = 5 * time.Minute
	// maxCIMDCacheTTL bounds the lifetime of a cached document.
	maxCIMDCacheTTL = time.Hour
	// maxCIMDURLLength bounds a client_id URL.
	maxCIMDURLLength = 2048
	// maxCIMDCached bounds the cached documents; the oldest goes first.
	maxCIMDCached = 1000
	// maxCIMDFetches bounds the fetches under way at once.
	maxCIMDFetches = 4
)

// CIMDOptions configure how the dev authorization server fetches Client
// ID Metadata Documents.
type CIMDOptions struct {
	// Disabled turns the feature off: URL client_ids are unknown clients,
	// and the metadata does not advertise
	// client_id_metadata_document_supported.
	Disabled bool
	// Timeout of one fetch (0 = DefaultCIMDTimeout).
	Timeout time.Duration
	// MaxBytes of a document (0 = DefaultCIMDMaxBytes).
	MaxBytes int64
	// TLS is the client configuration for https documents on hosts that
	// are not loopback (nil: the system roots). Loopback documents are
	// fetched without verifying the certificate: http is accepted there
	// anyway.
	TLS *tls.Config
}

// isCIMDClientID reports whether a client_id names a metadata document:
// it is a URL. Client ids the server issues never start with a scheme.
func isCIMDClientID(id string) bool {
	l := strings.ToLower(id)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://")
}

// checkCIMDURL validates a client identifier URL (draft §3): https, a
// path, no "." or ".." segment, no fragment, no user or password. For
// development, http is accepted for the loopback hosts localhost,
// 127.0.0.1 and [::1] too. The URL is not normalized: the document's
// client_id must equal it as a string.
func checkCIMDURL(raw string) (*url.URL, error) {
	if len(raw) > maxCIMDURLLength {
		return nil, fmt.Errorf("the client_id URL is longer than %d bytes", maxCIMDURLLength)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("the client_id is not a URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname())):
		return nil, errors.New("a client_id URL must be https (http only for localhost, 127.0.0.1 and [::1], in development)")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("the client_id URL has no host")
	case u.Path == "":
		return nil, errors.New("the client_id URL must have a path, e.g. https://app.example/client.json")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("the client_id URL must not have a fragment")
	case u.User != nil:
		return nil, errors.New("the client_id URL must not have a user or password")
	}
	for seg := range strings.SplitSeq(u.EscapedPath(), "/") {
		if s, _ := url.PathUnescape(seg); s == "." || s == ".." {
			return nil, errors.New("the client_id URL must not have . or .. path segments")
		}
	}
	return u, nil
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// specialUsePrefixes are the special-use ranges (RFC 6890 and its
// successors) not covered by netip's predicates.
var specialUsePrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may reach private IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ...)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: may reach private IPv4
}

// fetchableAddr reports whether the document fetcher may connect to ip:
// a public unicast address, or a loopback one when loopback is allowed
// (the authorization server itself runs on loopback: draft §8.6 allows
// that case).
func fetchableAddr(ip netip.Addr, loopback bool) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return loopback
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false // unspecified, multicast, link-local (169.254/16, cloud metadata), 10/8, 172.16/12, 192.168/16, fc00::/7
	}
	for _, p := range specialUsePrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// errSpecialUse is the dial error for an address the fetcher refuses.
var errSpecialUse = errors.New("the address is special-use (private, link-local, reserved, ...): not fetched")

// cimdFetcher fetches metadata documents: no proxy, no redirects, no
// special-use addresses (checked on the address actually dialed, after
// name resolution, so a name that resolves to one is refused too),
// bounded in time, size and concurrency.
type cimdFetcher struct {
	client   *http.Client
	maxBytes int64
	slots    chan struct{}
}

func newCIMDFetcher(o CIMDOptions, loopback bool) *cimdFetcher {
	timeout := cmp.Or(o.Timeout, DefaultCIMDTimeout)
	d := &net.Dialer{
		Timeout: timeout,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil || !fetchableAddr(ip, loopback) {
				return fmt.Errorf("%s: %w", host, errSpecialUse)
			}
			return nil
		},
	}
	base := o.TLS
	if base == nil {
		base = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr := &http.Transport{
		Proxy:       nil, // the address checked is the one connected to
		DialContext: d.DialContext,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			host, _, _ := net.SplitHostPort(addr)
			cfg := base.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName = host
			}
			if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok && ta.IP.IsLoopback() {
				// Loopback in development: http is accepted there, so a
				// self-signed certificate is too.
				cfg.InsecureSkipVerify = true
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableKeepAlives:      true,
	}
	return &cimdFetcher{
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // draft §5: never followed
			},
		},
		maxBytes: cmp.Or(o.MaxBytes, DefaultCIMDMaxBytes),
		slots:    make(chan struct{}, maxCIMDFetches),
	}
}

// cimdDocument is the part of a client metadata document the dev
// authorization server uses.
type cimdDocument struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
}

// fetch gets and validates the document of the client identifier URL id;
// ttl is how long it may be cached (0: not at all).
func (f *cimdFetcher) fetch(ctx context.Context, id string) (c *devClient, ttl time.Duration, err error) {
	if _, err := checkCIMDURL(id); err != nil {
		return nil, 0, err
	}
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("fetching the client metadata document: %w", ctx.Err())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching the client metadata document: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching the client metadata document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("the client metadata document answered HTTP %d, not 200", resp.StatusCode)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			msg += " (redirects are not followed)"
		}
		return nil, 0, errors.New(msg)
	}
	if resp.ContentLength > f.maxBytes {
		return nil, 0, fmt.Errorf("the client metadata document is larger than %d bytes", f.maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the client metadata document: %w", err)
	}
	if int64(len(body)) > f.maxBytes {
		return nil, 0, fmt.Errorf("the client metadata document is larger than %d bytes", f.maxBytes)
	}
	c, err = parseCIMD(id, body)
	if err != nil {
		return nil, 0, err
	}
	return c, cimdCacheTTL(resp.Header.Get("Cache-Control")), nil
}

// parseCIMD validates a document fetched from id: a JSON object whose
// client_id is id exactly (draft §4), with redirect URIs, for a public
// client (no client_secret, token_endpoint_auth_method "none" or absent:
// the dev server authenticates no client).
func parseCIMD(id string, body []byte) (*devClient, error) {
	var fields map[string]json.RawMessage
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &fields) != nil {
		return nil, errors.New("the client metadata document is not a JSON object")
	}
	var doc cimdDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("the client metadata document: %w", err)
	}
	if doc.ClientID != id {
		return nil, fmt.Errorf("the client metadata document's client_id %q is not its URL %q", truncate(doc.ClientID, 200), id)
	}
	if _, ok := fields["client_secret"]; ok {
		return nil, errors.New("a client metadata document must not hold a client_secret")
	}
	if _, ok := fields["client_secret_expires_at"]; ok {
		return nil, errors.New("a client metadata document must not hold client_secret_expires_at")
	}
	switch m := doc.TokenEndpointAuthMethod; m {
	case "", "none":
	case "private_key_jwt":
		return nil, errors.New("token_endpoint_auth_method private_key_jwt: the dev authorization server takes public clients only (none)")
	default:
		return nil, fmt.Errorf("token_endpoint_auth_method %q: a client metadata document cannot use a shared secret; the dev authorization server takes public clients only (none)", truncate(m, 50))
	}
	if err := checkRedirectURIs(doc.RedirectURIs); err != nil {
		return nil, err
	}
	if len(doc.GrantTypes) == 0 {
		doc.GrantTypes = []string{"authorization_code"}
	}
	return &devClient{ID: id, RedirectURIs: doc.RedirectURIs, GrantTypes: doc.GrantTypes, Name: truncate(doc.ClientName, 200), metadataDocument: true}, nil
}

// cimdCacheTTL is the lifetime of a document by its Cache-Control.
func cimdCacheTTL(cc string) time.Duration {
	ttl := DefaultCIMDCacheTTL
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return 0
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.Atoi(strings.Trim(d[len("max-age="):], `"`))
			if err != nil || n <= 0 {
				return 0
			}
			ttl = min(time.Duration(n)*time.Second, maxCIMDCacheTTL)
		}
	}
	return ttl
}

// unsafeRedirectSchemes can run script or read local files when a
// browser follows them: refused as redirect URIs, which the consent page
// links to.
var unsafeRedirectSchemes = []string{"javascript", "data", "vbscript", "file", "blob", "about"}

// checkRedirectURIs validates a client's redirect URIs: at least one,
// each absolute, without a fragment, and not a scheme a browser would run
// on the authorization server's page.
func checkRedirectURIs(uris []string) error {
	if len(uris) == 0 {
		return errors.New("redirect_uris is required")
	}
	for _, ru := range uris {
		u, err := url.Parse(ru)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(ru, "#") {
			return fmt.Errorf("redirect URI %q is not an absolute URI without a fragment", truncate(ru, 200))
		}
		if slices.Contains(unsafeRedirectSchemes, strings.ToLower(u.Scheme)) {
			return fmt.Errorf("redirect URI scheme %q is not accepted", u.Scheme)
		}
	}
	return nil
}

// truncate bounds client-supplied text quoted in messages and pages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
