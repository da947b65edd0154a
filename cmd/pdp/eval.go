package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/decision"
	"github.com/mcp-pdp/pdp/internal/server"
	"github.com/mcp-pdp/pdp/pep"
)

// evalIssuer is the issuer of the stand-in resource when eval runs without
// a configuration; .invalid never resolves.
const evalIssuer = "https://pdp-eval.invalid"

// evalMinTimeout: a first JWKS fetch must not make eval answer "keys
// unavailable" because of the serving budget (limits.decision_timeout).
const evalMinTimeout = 10 * time.Second

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pdp eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: pdp eval --input request.json [--config pdp.yaml] [--claims claims.json] [--explain fails|notes|full]

Answers a /v1/decide request body exactly as the server configured by
--config would (token verification, policy, list filtering, step-up), and
prints the response. --explain adds the rules that produced the decision and
OPA's evaluation trace of the very input the PDP built.

Without --config the request's resource is served with no token issuer
(pass --claims to stand in for a token). The policy is --policy, else the
configuration's policy.path, else ./policies, else the embedded default
policy: the same default as pdp check and pdp test.
--claims takes the token's claims as JSON ({"sub": ..., "scope": ...}) and
skips signature and issuer checks; missing iss, aud and exp are filled in.

`)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration file (resources, policy); default: none")
	policyPath := fs.String("policy", "", "policy directory, bundle file or URL (overrides policy.path)")
	inputPath := fs.String("input", "", "the /v1/decide request body (JSON file, - for stdin); required")
	claimsPath := fs.String("claims", "", "token claims (JSON file) to decide with instead of the request's Authorization")
	explain := fs.String("explain", "", "explain the decision: fails, notes or full")
	failDeny := fs.Bool("fail", false, "exit with status 3 when the request is not allowed")
	showInput := fs.Bool("show-input", false, "also print the Rego input document the PDP built (input.* in the policy)")
	if code, ok := parseFlagsOnly(fs, args, stdout, stderr); !ok {
		return code
	}
	if *inputPath == "" {
		fmt.Fprintln(stderr, "pdp eval: --input is required")
		return 2
	}
	var mode decision.ExplainMode
	if *explain != "" {
		m, err := decision.ParseExplainMode(*explain)
		if err != nil {
			fmt.Fprintln(stderr, "pdp eval:", err)
			return 2
		}
		mode = m
	}
	res, err := evalRequest(ctx, evalOptions{
		configPath: *cfgPath, policyPath: *policyPath, inputPath: *inputPath, claimsPath: *claimsPath, explain: mode,
		stderr: stderr,
	})
	if err != nil {
		fmt.Fprintln(stderr, "pdp eval:", err)
		return 1
	}
	resp, ex := res.resp, res.explanation
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(resp); err != nil {
		fmt.Fprintln(stderr, "pdp eval:", err)
		return 1
	}
	if *showInput {
		if res.input == nil {
			fmt.Fprintln(stdout, "\nno input document: the request was answered before the policy")
		} else {
			fmt.Fprintln(stdout, "\ninput document:")
			if err := enc.Encode(res.input); err != nil {
				fmt.Fprintln(stderr, "pdp eval:", err)
				return 1
			}
		}
	}
	if ex != nil {
		fmt.Fprintln(stdout)
		if _, err := ex.WriteTo(stdout); err != nil {
			fmt.Fprintln(stderr, "pdp eval:", err)
			return 1
		}
	} else if mode != "" {
		fmt.Fprintln(stdout, "\nno policy evaluation took place for this request (it was answered before the policy, e.g. invalid params)")
	}
	if *failDeny && !resp.Allow {
		return 3
	}
	return 0
}

type evalOptions struct {
	configPath, policyPath, inputPath, claimsPath string
	explain                                       decision.ExplainMode
	stderr                                        io.Writer
}

type evalResult struct {
	resp        *pep.Response
	input       any // the Rego input document, nil when the policy was not evaluated
	explanation *decision.Explanation
}

// evalRequest wires the PDP as `pdp serve` does (newApp) without audit and
// without policy watching, and answers one request through the decision
// core. The active policy is a recording copy, so that the explanation is
// of the exact input the core built.
func evalRequest(ctx context.Context, o evalOptions) (*evalResult, error) {
	raw, err := readInput(o.inputPath)
	if err != nil {
		return nil, err
	}
	var req pep.Request
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("%s is not a /v1/decide request body: %w", o.inputPath, err)
	}
	var cfg *config.Config
	if o.configPath != "" {
		if cfg, err = config.Load(o.configPath); err != nil {
			return nil, err
		}
	} else {
		if req.Resource == "" {
			return nil, errors.New("the request has no resource")
		}
		if req.Authorization != "" && o.claimsPath == "" {
			return nil, errors.New("the request carries a token, but without --config there is no issuer to verify it: give --config, or --claims")
		}
		cfg = config.Default()
		cfg.Resources = []config.Resource{{URI: req.Resource, Issuer: evalIssuer, JWKSURI: evalIssuer + "/jwks"}}
	}
	err = cfg.Override(func(c *config.Config) {
		switch {
		case o.policyPath != "":
			c.Policy.Path = o.policyPath
		case c.Policy.Path == "":
			// The default location, as pdp check and pdp test: ./policies,
			// else the embedded policy.
			if d := defaultPolicyPaths(false); len(d) > 0 {
				c.Policy.Path = d[0]
			}
		}
		off := false
		c.Audit.Enabled = &off
		noPoll := config.Duration(0)
		c.Policy.PollInterval = &noPoll
		c.Limits.DecisionTimeout = config.Duration(max(c.Limits.DecisionTimeout.D(), evalMinTimeout))
	})
	if err != nil {
		return nil, err
	}

	// eval reports its own errors; the server's logs would only repeat them.
	log := slog.New(slog.DiscardHandler)
	srv, err := server.New(ctx, cfg, server.Options{NoListener: true, Logger: log})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	if o.claimsPath != "" {
		res := srv.Core().Resource(req.Resource)
		if res == nil {
			return nil, fmt.Errorf("resource %q is not configured in %s", req.Resource, o.configPath)
		}
		claims, err := readClaims(o.claimsPath, o.stderr)
		if err != nil {
			return nil, err
		}
		authz, v, err := server.ClaimsToken(claims, resourceConfig(cfg, res.URI))
		if err != nil {
			return nil, fmt.Errorf("claims: %w", err)
		}
		res.Verifier = v
		req.Authorization = authz
	}
	engine := srv.Engine()
	pol := engine.Policy()
	rec := pol.Recording()
	engine.Swap(rec)
	resp, err := srv.Core().Decide(ctx, &req, "pdp-eval")
	if err != nil {
		return nil, err
	}
	res := &evalResult{resp: resp}
	inputs := rec.RecordedInputs()
	if len(inputs) == 0 {
		return res, nil
	}
	if res.input, err = ast.JSON(inputs[0]); err != nil {
		return nil, fmt.Errorf("input document: %w", err)
	}
	if o.explain != "" {
		if res.explanation, err = pol.Explain(ctx, inputs[0], o.explain); err != nil {
			return nil, fmt.Errorf("explain: %w", err)
		}
	}
	return res, nil
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// readClaims reads a claims file, and notes an expiry in the past (the
// PDP refuses expired tokens).
func readClaims(path string, stderr io.Writer) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("claims %s: want a JSON object of token claims (%v)", path, err)
	}
	if exp, ok := claims["exp"].(float64); ok && time.Unix(int64(exp), 0).Before(time.Now()) {
		fmt.Fprintln(stderr, "pdp eval: note: claims.exp is in the past; the PDP refuses expired tokens (remove exp to skip the check)")
	}
	return claims, nil
}

// resourceConfig is the configuration of the resource with this URI.
func resourceConfig(cfg *config.Config, uri string) config.Resource {
	for _, r := range cfg.Resources {
		if r.URI == uri {
			return r
		}
	}
	return config.Resource{URI: uri}
}
