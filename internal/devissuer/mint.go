package devissuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// MintPath is where the dev authorization server serves POST mint
// requests (with AuthServerOptions.MintEndpoint), relative to the issuer
// URL: `pdp token --url` asks it for a token.
const MintPath = "/mint"

// maxMintTTL bounds the lifetime of a minted token.
const maxMintTTL = 366 * 24 * time.Hour

// MintRequest is the JSON body of POST {issuer}/mint. Every field is
// optional.
type MintRequest struct {
	// Subject is the token's sub (default: the server's dev subject).
	Subject string `json:"sub,omitempty"`
	// ClientID is the token's client_id (default "demo").
	ClientID string `json:"client_id,omitempty"`
	// Scope is space-delimited.
	Scope string `json:"scope,omitempty"`
	// Resource is the token's aud: one of the server's resources (default
	// the first).
	Resource string `json:"resource,omitempty"`
	// TTLSeconds is the lifetime (0 = the server's access token TTL; a
	// negative one mints an expired token, for tests).
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
	// JKT binds the token to a DPoP key: its cnf.jkt.
	JKT string `json:"jkt,omitempty"`
}

// MintResponse is the answer of POST {issuer}/mint.
type MintResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Resource    string `json:"resource"`
	Scope       string `json:"scope,omitempty"`
}

// mint serves POST {issuer}/mint: a token for the dev subject (or any
// other) and one of the server's resources, to a process on this machine.
// It answers requests from loopback addresses only, with a JSON body and
// without an Origin header: a web page in a browser cannot use it (no
// CORS, and browsers send Origin on every cross-origin POST).
func (a *AuthServer) mint(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		oauthError(w, http.StatusForbidden, "access_denied", "the mint endpoint answers this machine (loopback) only")
		return
	}
	if r.Header.Get("Origin") != "" {
		oauthError(w, http.StatusForbidden, "access_denied", "the mint endpoint does not answer browsers (a request with an Origin header)")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		oauthError(w, http.StatusUnsupportedMediaType, "invalid_request", "the body must be JSON (Content-Type: application/json)")
		return
	}
	var m MintRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a mint request: "+err.Error())
		return
	}
	resource := m.Resource
	switch {
	case resource == "" && len(a.o.Resources) == 0:
		oauthError(w, http.StatusBadRequest, "invalid_target", "resource is required: this server has no default")
		return
	case resource == "":
		resource = a.o.Resources[0]
	case len(a.o.Resources) > 0 && !slices.Contains(a.o.Resources, resource):
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": "invalid_target", "error_description": "this dev server issues tokens for " + strings.Join(a.o.Resources, ", ") + " only",
			"resources": a.o.Resources,
		})
		return
	}
	ttl := time.Duration(m.TTLSeconds) * time.Second
	if ttl == 0 {
		ttl = a.o.TTL
	}
	if ttl > maxMintTTL || ttl < -maxMintTTL {
		oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("ttl_seconds must be within ±%d", int64(maxMintTTL/time.Second)))
		return
	}
	sub := m.Subject
	if sub == "" {
		sub = a.o.Subject
	}
	client := m.ClientID
	if client == "" {
		client = "demo"
	}
	mo := MintOptions{Subject: sub, ClientID: client, Audience: []string{resource}, Scopes: strings.Fields(m.Scope), TTL: ttl}
	if m.JKT != "" {
		mo.Extra = map[string]any{"cnf": map[string]any{"jkt": m.JKT}}
	}
	tok, err := a.iss.Mint(mo)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "minting the token failed")
		return
	}
	a.log.Info("dev authorization server: token minted", "sub", sub, "client_id", client, "resource", resource, "scopes", strings.Join(mo.Scopes, " "))
	writeJSON(w, http.StatusOK, MintResponse{
		AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), Resource: resource,
		Scope: strings.Join(mo.Scopes, " "),
	})
}

// MintError is a refusal of the mint endpoint.
type MintError struct {
	Status      int      `json:"-"`
	Code        string   `json:"error"`
	Description string   `json:"error_description"`
	Resources   []string `json:"resources"`
}

func (e *MintError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Description)
}

// MintRemote asks the dev server at baseURL (its base URL, e.g.
// http://127.0.0.1:8181, whose issuer is baseURL/dev) for a token. A
// refusal is a *MintError.
func MintRemote(ctx context.Context, client *http.Client, baseURL string, m MintRequest) (*MintResponse, error) {
	if client == nil {
		client = http.DefaultClient
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("devissuer: encoding the mint request: %w", err)
	}
	endpoint := strings.TrimSuffix(baseURL, "/") + "/dev" + MintPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("devissuer: asking %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("devissuer: reading the answer of %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		me := &MintError{Status: resp.StatusCode}
		if json.Unmarshal(b, me) != nil || me.Code == "" {
			me.Code = "unexpected_answer"
			me.Description = fmt.Sprintf("%s is not the mint endpoint of a pdp serve --dev (is the URL right?)", endpoint)
		}
		return nil, me
	}
	var out MintResponse
	if err := json.Unmarshal(b, &out); err != nil || out.AccessToken == "" {
		return nil, errors.New("devissuer: " + endpoint + " answered 200 without a token")
	}
	return &out, nil
}
