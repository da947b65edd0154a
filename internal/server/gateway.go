package server

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mcp-pdp/pdp/internal/assertion"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/gateway"
	"github.com/mcp-pdp/pdp/internal/gateway/stdio"
	"github.com/mcp-pdp/pdp/internal/stepup"
	"github.com/mcp-pdp/pdp/pep"
)

// AssertionJWKSPath is where the gateway serves the keys of its identity
// assertions, for upstreams to verify them.
const AssertionJWKSPath = "/.well-known/mcp-pdp-assertion-jwks.json"

// defaultAssertionKeyFile is gateway.assertion_key_file's default, under
// the data directory.
const defaultAssertionKeyFile = "gateway/assertion-key.pem"

// upstreamAsserter signs the identity assertions for one upstream, each
// caller's once for half its lifetime (assertion.Cache): the decision id
// travels beside it (gateway.DecisionHeader).
type upstreamAsserter struct {
	c        *assertion.Cache
	audience string
}

// Assert vouches for the caller of an allowed request (anonymous when
// caller is nil).
func (a upstreamAsserter) Assert(caller *pep.Caller) (string, error) {
	c := assertion.Claims{Audience: a.audience}
	if caller != nil {
		// A client acting on its own behalf may carry no sub: the client
		// is then the subject.
		c.Subject = cmp.Or(caller.Subject, caller.ClientID)
		c.ClientID, c.Scopes, c.Grant = caller.ClientID, caller.Scopes, caller.Grant
		for _, act := range caller.Act {
			c.Act = append(c.Act, assertion.Actor{Subject: act.Subject, ClientID: act.ClientID})
		}
	}
	return a.c.Sign(c)
}

// assertionIssuer is the `iss` of the identity assertions: the origin of
// the first gateway resource's URI (the gateway's public address, e.g.
// https://mcp.example.com), else the gateway listener's URL.
func (s *Server) assertionIssuer() string {
	for _, r := range s.cfg.Resources {
		if r.Upstream == nil {
			continue
		}
		if u, err := url.Parse(r.URI); err == nil && u.Scheme != "" && u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
	}
	return s.gwBase
}

// gatewayResources counts the resources that name an upstream.
func (s *Server) gatewayResources() int {
	n := 0
	for _, r := range s.cfg.Resources {
		if r.Upstream != nil {
			n++
		}
	}
	return n
}

// listenGateway opens the gateway's listener (before dev set-up, which
// needs its address).
func (s *Server) listenGateway() error {
	g := s.cfg.Gateway
	ln := s.opts.GatewayListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", g.Listen); err != nil {
			return fmt.Errorf("gateway.listen %s: %w", g.Listen, err)
		}
	}
	s.gwLn = ln
	scheme := "http://"
	if g.TLS.Enabled() {
		scheme = "https://"
		t, err := newListenerTLS(g.TLS, config.MTLS{}, false, s.log.With("component", "gateway-tls"))
		if err != nil {
			return fmt.Errorf("gateway.tls: %w", err)
		}
		s.gwTLS = t
	}
	s.gwBase = scheme + ln.Addr().String()
	return nil
}

// wireGateway builds the gateway handler: every resource with an upstream
// at its URI's path, and its RFC 9728 metadata document (with CORS, for
// browser-based clients) at its well-known path.
func (s *Server) wireGateway() (http.Handler, error) {
	mux := http.NewServeMux()
	keyFile := cmp.Or(s.cfg.Gateway.AssertionKeyFile, filepath.Join(s.cfg.DataDir, defaultAssertionKeyFile))
	signer, err := assertion.NewSigner(assertion.Options{KeyFile: keyFile, Issuer: s.assertionIssuer()})
	if err != nil {
		return nil, fmt.Errorf("gateway.assertion_key_file: %w", err)
	}
	s.asserter = signer
	mux.Handle(AssertionJWKSPath, signer.Handler())
	for i, r := range s.cfg.Resources {
		up := r.Upstream
		if up == nil {
			continue
		}
		key := fmt.Sprintf("resources[%d].upstream", i)
		o := gateway.Options{
			Decider: s.core, Resource: r.URI, Tracer: s.tracing.Tracer(),
			ResponseTimeout: up.ResponseTimeout.D(), MaxResponseBytes: up.MaxResponseBytes,
			ConnectTimeout: up.ConnectTimeout.D(), IdleStreamTimeout: up.IdleStreamTimeout.D(),
			MaxBodyBytes: up.MaxRequestBytes, MaxConcurrent: up.MaxConcurrent,
			AllowedOrigins: s.cfg.Gateway.AllowedOrigins,
			Logger:         s.log.With("component", "gateway", "resource", r.URI),
		}
		target := strings.Join(up.Command, " ")
		if len(up.Command) > 0 {
			env := make([]string, 0, len(up.Env)+3)
			for _, k := range slices.Sorted(maps.Keys(up.Env)) {
				env = append(env, k+"="+up.Env[k])
			}
			// How to verify the assertions in each request's _meta; after
			// upstream.env, so that these win.
			env = append(env, assertion.EnvIssuer+"="+signer.Issuer(), assertion.EnvAudience+"="+r.URI,
				assertion.EnvJWKS+"="+string(signer.JWKS()))
			o.Asserter, o.AssertionMetaKey = upstreamAsserter{assertion.NewCache(signer, 0), r.URI}, assertion.MetaKey
			o.Stdio = &stdio.Options{
				Command: up.Command, Env: env, Dir: up.Dir,
				MaxProcesses: up.MaxProcesses, IdleTimeout: up.IdleTimeout.D(),
				Logger: o.Logger.With("component", "stdio-upstream"),
			}
		} else {
			u, err := url.Parse(up.URL)
			if err != nil {
				return nil, fmt.Errorf("%s.url: %w", key, err)
			}
			if up.ForwardToken {
				s.log.Warn("upstream.forward_token is on: clients' tokens reach the upstream (token passthrough; see docs/gateway.md)", "resource", r.URI)
			}
			o.Upstream, o.ForwardToken = u, up.ForwardToken
			o.Asserter, o.AssertionHeader = upstreamAsserter{assertion.NewCache(s.asserter, 0), u.String()}, assertion.Header
			target = u.Redacted()
		}
		g, err := gateway.New(o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		s.gateways = append(s.gateways, g)
		ru, err := url.Parse(r.URI)
		if err != nil {
			return nil, fmt.Errorf("resources[%d].uri: %w", i, err)
		}
		mux.Handle(cmp.Or(ru.EscapedPath(), "/"), g)
		mdPath, err := stepup.MetadataPath(r.URI)
		if err != nil {
			return nil, fmt.Errorf("resources[%d].uri: %w", i, err)
		}
		doc, err := json.Marshal(stepup.NewMetadata(r.URI, r.AuthorizationServers, r.ScopesSupported))
		if err != nil {
			return nil, err
		}
		mux.Handle(mdPath, metadataHandler(doc))
		s.log.Info("gateway resource", "uri", r.URI, "upstream", target, "metadata", mdPath)
	}
	return mux, nil
}

// metadataHandler serves a protected resource metadata document to any
// origin (a browser-based MCP client reads it before it has a token).
func metadataHandler(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Mcp-Protocol-Version")
		switch r.Method {
		case http.MethodOptions:
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet, http.MethodHead:
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "max-age=300")
			_, _ = w.Write(doc)
		default:
			h.Set("Allow", "GET, OPTIONS")
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
}
