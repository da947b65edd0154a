package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/api"
	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/testkit"
)

const hResource = "https://mcp.example.com/mcp"

// hConfig is a production-style configuration (no dev mode) for one
// resource whose tokens come from iss; audit off unless the test turns it on.
func hConfig(t *testing.T, iss *devissuertest.Server) *config.Config {
	t.Helper()
	off := false
	cfg := &config.Config{
		Listen:    "127.0.0.1:0",
		DataDir:   t.TempDir(),
		Resources: []config.Resource{{URI: hResource, Issuer: iss.URL, JWKSURI: iss.JWKSURI(), ScopesSupported: []string{"qr:generate"}}},
		Audit:     config.Audit{Enabled: &off},
		// Generous: a loaded CI machine must not turn an allow into a budget deny.
		Limits: config.Limits{DecisionTimeout: config.Duration(30 * time.Second)},
	}
	cfg.ApplyDefaults()
	return cfg
}

// hStart runs serve (the real listener, server timeouts, TLS) until the
// test ends and returns the base URL.
func hStart(t *testing.T, cfg *config.Config) string {
	t.Helper()
	base, _ := hStartStoppable(t, cfg)
	return base
}

func hKey(name, key string) config.APIKey {
	return config.APIKey{Name: name, SHA256: api.HashAPIKey(key)}
}

func hCallBody(authz, tool string) []byte {
	b, _ := json.Marshal(map[string]any{"resource": hResource, "authorization": authz,
		"message": map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": tool}}})
	return b
}

func hPost(t *testing.T, c *http.Client, url string, hdr map[string]string, body []byte) (int, map[string]any, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}

// TestServeNonLoopback: a non-loopback listener needs PEP authentication
// or an explicit insecure flag.
func TestServeNonLoopback(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	tests := []struct {
		name   string
		mod    func(*config.Config)
		refuse bool
	}{
		{"no authentication", func(*config.Config) {}, true},
		{"api keys", func(c *config.Config) { c.Auth.APIKeys = []config.APIKey{hKey("gw", "pdpk_x")} }, false},
		{"insecure", func(c *config.Config) { c.Insecure = true }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hConfig(t, iss)
			cfg.Listen = "0.0.0.0:0"
			tc.mod(cfg)
			if !tc.refuse {
				hStart(t, cfg)
				return
			}
			s, err := New(context.Background(), cfg, Options{})
			if err == nil {
				_ = s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "refusing a non-loopback address without PEP authentication") {
				t.Fatalf("server.New: %v", err)
			}
		})
	}
}

func hTLSClient(ca *testkit.CA, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert == nil {
			return &tls.Certificate{}, nil
		}
		return cert, nil // sent even when the server does not list its issuer
	}}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// TestServeTLSAndPEPAuth: the real listener with TLS from files, PEPs
// authenticated by client certificate (allowed subjects) or API key, the
// PEP name in the audit event in JetStream, and the certificate reloaded
// when its files change (a broken file keeps the previous certificate).
func TestServeTLSAndPEPAuth(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	ca, rogue := testkit.NewCA(t, "PEP and server CA"), testkit.NewCA(t, "rogue CA")
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
	c, k := ca.Issue(t, testkit.Leaf{CommonName: "pdp-1"})
	testkit.WriteAtomic(t, certFile, c)
	testkit.WriteAtomic(t, keyFile, k)
	testkit.WriteAtomic(t, caFile, ca.PEM())

	cfg := hConfig(t, iss)
	on := true
	cfg.Audit = config.Audit{Enabled: &on}
	cfg.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	cfg.Auth = config.Auth{APIKeys: []config.APIKey{hKey("gateway", "pdpk_gateway-key")}, MTLS: config.MTLS{ClientCA: caFile, AllowedSubjects: []string{"mcp-qr"}}}
	cfg.ApplyDefaults()
	base := hStart(t, cfg)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("base %s", base)
	}
	allowed, intruder, foreign := ca.KeyPair(t, testkit.Leaf{CommonName: "mcp-qr", Client: true}), ca.KeyPair(t, testkit.Leaf{CommonName: "intruder", Client: true}), rogue.KeyPair(t, testkit.Leaf{CommonName: "mcp-qr", Client: true})
	tok := "Bearer " + iss.Mint(t, devissuer.MintOptions{Subject: "alice", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	body := hCallBody(tok, "generate_qr_url")

	tests := []struct {
		name   string
		cert   *tls.Certificate
		hdr    map[string]string
		status int // 0: handshake refused
	}{
		{"allowed certificate", &allowed, nil, 200},
		{"API key, no certificate", nil, map[string]string{"Authorization": "Bearer pdpk_gateway-key"}, 200},
		{"disallowed subject", &intruder, nil, 401},
		{"no credentials", nil, nil, 401},
		{"wrong API key", nil, map[string]string{"X-PDP-API-Key": "pdpk_guess"}, 401},
		{"certificate from an unknown CA", &foreign, nil, 0},
	}
	var decisions []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out, err := hPost(t, hTLSClient(ca, tc.cert), base+"/v1/decide", tc.hdr, body)
			if tc.status == 0 {
				var ne net.Error
				if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
					t.Fatalf("HTTP %d %v err %v, want a refused handshake", status, out, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Fatalf("HTTP %d %v, want %d", status, out, tc.status)
			}
			if status == 200 {
				if out["allow"] != true {
					t.Fatalf("%v", out)
				}
				decisions = append(decisions, out["decision_id"].(string))
			}
		})
	}

	// HTTP/2 is offered and authenticates the same way.
	h2 := hTLSClient(ca, &allowed)
	h2.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	for _, tc := range []struct {
		hdr    map[string]string
		status int
	}{{nil, 200}, {map[string]string{"X-PDP-API-Key": "pdpk_guess"}, 200}} {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/decide", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.status {
			t.Fatalf("HTTP/2: %s %d", resp.Proto, resp.StatusCode)
		}
	}
	h2n := hTLSClient(ca, nil)
	h2n.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	if status, _, err := hPost(t, h2n, base+"/v1/decide", nil, body); err != nil || status != 401 {
		t.Fatalf("HTTP/2 without credentials: %d %v", status, err)
	}

	// Who asked is in the audit trail.
	js := hJetStream(t, cfg.DataDir)
	want := map[string]string{decisions[0]: "mcp-qr", decisions[1]: "gateway"}
	got := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = auditsink.Read(ctx, js, cfg.Audit.Stream, cfg.Audit.SubjectPrefix, auditsink.Filter{}, false, func(ev *auditsink.Event) error {
			got[ev.ID] = ev.PEP
			return nil
		})
		cancel()
		if len(got) < len(want) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for id, pep := range want {
		if got[id] != pep {
			t.Errorf("audit event %s: pep %q, want %q", id, got[id], pep)
		}
	}

	// Certificate rotation: new files are served on new connections.
	serverCN := func() string {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", strings.TrimPrefix(base, "https://"),
			&tls.Config{RootCAs: hTLSClient(ca, nil).Transport.(*http.Transport).TLSClientConfig.RootCAs, Certificates: []tls.Certificate{allowed}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := serverCN(); cn != "pdp-1" {
		t.Fatalf("serving %s", cn)
	}
	c2, k2 := ca.Issue(t, testkit.Leaf{CommonName: "pdp-2"})
	testkit.WriteAtomic(t, keyFile, k2)
	testkit.WriteAtomic(t, certFile, c2)
	testkit.WaitFor(t, "the renewed certificate", func() bool { return serverCN() == "pdp-2" })
	// A broken certificate file: the previous certificate stays in service.
	testkit.WriteAtomic(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"))
	time.Sleep(2 * tlsReloadInterval)
	if cn := serverCN(); cn != "pdp-2" {
		t.Fatalf("after a broken file: serving %s", cn)
	}
	if status, out, err := hPost(t, hTLSClient(ca, &allowed), base+"/v1/decide", nil, body); err != nil || status != 200 {
		t.Fatalf("after a broken file: %d %v %v", status, out, err)
	}
}

func hJetStream(t *testing.T, dataDir string) jetstream.JetStream {
	t.Helper()
	url, err := natsembed.ReadURLFile(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := auditsink.Connect(context.Background(), url, auditsink.ConnectOptions{NKeySeedFile: natsembed.SeedFile(dataDir, natsembed.RoleAdmin)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestServeSlowClients: slow-loris connections (headers or body dribbled
// byte by byte) do not keep others from being answered and are cut by the
// server's read timeouts.
func TestServeSlowClients(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	cfg := hConfig(t, iss)
	cfg.Limits.ReadTimeout = config.Duration(time.Second)
	cfg.Auth.APIKeys = []config.APIKey{hKey("gw", "pdpk_k")}
	base := hStart(t, cfg)
	addr := strings.TrimPrefix(base, "http://")

	const slowConns = 50
	type result struct {
		wrote int
		err   error
		reply string
	}
	results := make(chan result, 2*slowConns)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	dribble := func(prefix, rest string) {
		defer wg.Done()
		conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			results <- result{err: err}
			return
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, prefix); err != nil {
			results <- result{err: err}
			return
		}
		// Read what the server says (if anything) while dribbling.
		replies := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(bufio.NewReader(conn))
			replies <- string(b)
		}()
		wrote := 0
		for i := 0; i < len(rest); i++ {
			select {
			case <-stop:
				results <- result{wrote: wrote, err: errors.New("not cut")}
				return
			case reply := <-replies:
				results <- result{wrote: wrote, reply: reply}
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := conn.Write([]byte{rest[i]}); err != nil {
				break
			}
			wrote++
		}
		select {
		case reply := <-replies:
			results <- result{wrote: wrote, reply: reply}
		case <-stop:
			results <- result{wrote: wrote, err: errors.New("not cut")}
		}
	}
	body := string(hCallBody("", "lookup_product"))
	for range slowConns {
		wg.Add(2)
		// Slow headers: never finishes within the read timeout.
		go dribble("POST /v1/decide HTTP/1.1\r\nHost: x\r\n", strings.Repeat("X-Slow: y\r\n", 100))
		// Slow body after complete headers.
		go dribble(fmt.Sprintf("POST /v1/decide HTTP/1.1\r\nHost: x\r\nX-PDP-API-Key: pdpk_k\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)), body)
	}

	// Meanwhile, normal PEPs are answered.
	client := &http.Client{Timeout: 60 * time.Second}
	for i := range 20 {
		status, out, err := hPost(t, client, base+"/v1/decide", map[string]string{"X-PDP-API-Key": "pdpk_k"}, hCallBody("", "lookup_product"))
		if err != nil || status != 200 || out["allow"] != true {
			t.Fatalf("request %d during the slow-loris: %d %v %v", i, status, out, err)
		}
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		close(stop)
		<-done
	}
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("slow client: %v (wrote %d bytes)", r.err, r.wrote)
			continue
		}
		// Held open for a while (bytes were accepted), then cut before it
		// could finish; a slow body may get a 4xx first.
		if r.wrote < 3 || strings.HasPrefix(r.reply, "HTTP/1.1 200") {
			t.Errorf("slow client: wrote %d bytes, reply %q", r.wrote, r.reply)
		}
		if testing.Verbose() {
			t.Logf("slow client cut after %d bytes, reply %.40q", r.wrote, r.reply)
		}
	}
}

// TestServeLimits: body size and per-PEP rate limits through the real
// server, configured from the config file's keys.
func TestServeLimits(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	cfg := hConfig(t, iss)
	cfg.Auth.APIKeys = []config.APIKey{hKey("gw", "pdpk_k"), hKey("other", "pdpk_o")}
	cfg.Limits.RatePerPEP = 0.01 // the bucket does not refill during the test
	cfg.Limits.RateBurst = 2
	base := hStart(t, cfg)
	client := &http.Client{Timeout: 60 * time.Second}
	key := map[string]string{"X-PDP-API-Key": "pdpk_o"}

	status, out, err := hPost(t, client, base+"/v1/decide", key, bytes.Repeat([]byte("a"), 10<<20))
	if err != nil || status != 413 || out["error"] != "request_too_large" {
		t.Fatalf("10 MB body: %d %v %v", status, out, err)
	}
	status, out, err = hPost(t, client, base+"/v1/decide", key, []byte(strings.Repeat("[", 100_000)))
	if err != nil || status != 400 || out["error"] != "invalid_json" {
		t.Fatalf("deep nesting: %d %v %v", status, out, err)
	}
	gw := map[string]string{"Authorization": "Bearer pdpk_k"}
	for i, want := range []int{200, 200, 429} {
		if status, out, err := hPost(t, client, base+"/v1/decide", gw, hCallBody("", "ping")); err != nil || status != want {
			t.Fatalf("request %d: %d %v %v, want %d", i, status, out, err, want)
		}
	}
	if status, _, _ := hPost(t, client, base+"/v1/decide", nil, hCallBody("", "ping")); status != 401 {
		t.Fatalf("no key: %d", status)
	}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	for _, s := range []string{`pdp_pep_auth_failures_total{reason="missing_credentials"} 1`, "pdp_rate_limited_total 1"} {
		if !bytes.Contains(m, []byte(s)) {
			t.Errorf("metrics lack %q", s)
		}
	}
}
