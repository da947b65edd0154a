package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/devissuer"
	"github.com/mcp-pdp/pdp/internal/devissuer/devissuertest"
	"github.com/mcp-pdp/pdp/internal/natsembed"
	"github.com/mcp-pdp/pdp/internal/revoke"
	"github.com/mcp-pdp/pdp/internal/testkit"
	"github.com/mcp-pdp/pdp/internal/testkit/natstest"
)

// revokeKV binds the revocation bucket (created when missing) over url.
func revokeKV(t *testing.T, url string) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := auditsink.Connect(ctx, url, auditsink.ConnectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		kv, err := revoke.OpenBucket(ctx, js, revoke.DefaultBucket, true, 0)
		if err == nil {
			return kv
		}
		if ctx.Err() != nil {
			t.Fatalf("revocation bucket: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// decideAs posts a tools/call of generate_qr_url with tok to base and
// reports whether it was allowed and the reason.
func decideAs(t *testing.T, c *http.Client, base, tok string) (allowed bool, reason string, err error) {
	status, out, err := hPost(t, c, base+"/v1/decide", nil, hCallBody("Bearer "+tok, "generate_qr_url"))
	if err != nil {
		return false, "", err
	}
	if status != 200 {
		return false, "", fmt.Errorf("HTTP %d %v", status, out)
	}
	r, _ := out["reason"].(string)
	return out["allow"] == true, r, nil
}

// readyRevocations is the revocations part of base's /readyz.
func readyRevocations(t *testing.T, base string) map[string]any {
	t.Helper()
	status, out, err := hGet(t, base+"/readyz")
	if err != nil || status != 200 {
		t.Fatalf("/readyz: %d %v %v", status, out, err)
	}
	r, _ := out["revocations"].(map[string]any)
	return r
}

func hGet(t *testing.T, url string) (int, map[string]any, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// hStartStoppable is hStart with a function that stops the server before
// the test ends (idempotent; the test's end stops it too).
func hStartStoppable(t *testing.T, cfg *config.Config, log ...*slog.Logger) (string, func()) {
	t.Helper()
	var o Options
	if len(log) > 0 {
		o.Logger = log[0]
	}
	s, err := New(context.Background(), cfg, o)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return s.URL(), stop
}

// One PDP on an external NATS: a revocation written to the bucket denies
// the next decisions with its reason and its removal allows again, no
// reload; /readyz reports the watch. With NATS down, the PDP keeps the
// revocation and says so; restarted while NATS is still down, it still
// denies (the snapshot).
func TestRevocationWatchedAndSnapshotted(t *testing.T) {
	iss := devissuertest.New(t, "ES256")
	srv := natstest.Start(t)
	dataDir := t.TempDir()
	newCfg := func() *config.Config {
		cfg := hConfig(t, iss)
		cfg.DataDir = dataDir
		cfg.Audit = config.Audit{NATS: config.NATS{URL: srv.URL()}}
		cfg.ApplyDefaults()
		return cfg
	}
	base, stop := hStartStoppable(t, newCfg())
	kv := revokeKV(t, srv.URL())
	tok := iss.Mint(t, devissuer.MintOptions{Subject: "alice", ClientID: "agent-7", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	c := &http.Client{Timeout: 10 * time.Second}
	expect := func(what string, allow bool, reason string) {
		t.Helper()
		testkit.WaitFor(t, what, func() bool {
			a, r, err := decideAs(t, c, base, tok)
			return err == nil && a == allow && (reason == "" || r == reason)
		})
	}
	expect("allowed before", true, "")
	testkit.WaitFor(t, "the watch synced", func() bool { return readyRevocations(t, base)["synced"] == true })

	ctx := context.Background()
	if err := revoke.Put(ctx, kv, &revoke.Entry{Kind: revoke.KindClient, ID: "agent-7", Reason: "key leaked", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	expect("denied after the revocation", false, "client agent-7 is revoked: key leaked")
	if n := readyRevocations(t, base)["entries"]; n != float64(1) {
		t.Fatalf("/readyz revocations entries = %v", n)
	}
	if err := revoke.Remove(ctx, kv, revoke.KindClient, "agent-7"); err != nil {
		t.Fatal(err)
	}
	expect("allowed after the removal", true, "")

	if err := revoke.Put(ctx, kv, &revoke.Entry{Kind: revoke.KindSubject, ID: "alice", Reason: "offboarded", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	expect("denied: subject", false, "the token's subject is revoked: offboarded")
	testkit.WaitFor(t, "the snapshot written", func() bool {
		es, err := revoke.LoadSnapshot(filepath.Join(dataDir, DefaultRevocationSnapshot))
		return err == nil && len(es) == 1
	})

	srv.Stop()
	testkit.WaitFor(t, "/readyz says the watch is lost", func() bool {
		r := readyRevocations(t, base)
		return r["synced"] == false && r["detail"] != nil
	})
	expect("still denied with NATS down", false, "the token's subject is revoked: offboarded")

	stop()
	base, _ = hStartStoppable(t, newCfg()) // NATS still down
	expect("still denied after a restart without NATS", false, "the token's subject is revoked: offboarded")
	if r := readyRevocations(t, base); r["synced"] != false || r["entries"] != float64(1) {
		t.Fatalf("/readyz after the restart: %v", r)
	}
	srv.Restart()
	testkit.WaitFor(t, "the watch synced again", func() bool { return readyRevocations(t, base)["synced"] == true })
	kv = revokeKV(t, srv.URL())
	if err := revoke.Remove(ctx, kv, revoke.KindSubject, "alice"); err != nil {
		t.Fatal(err)
	}
	expect("allowed after the removal", true, "")
}

// Three PDP replicas on a 3-node NATS cluster (R3 stream and bucket) under
// load: 20 revocations, each timed from its write until every replica
// denies; a NATS node is killed halfway. Reports the p99 (of 20: the
// slowest) in the log; asserts that every replica denies every revoked
// client, and that the load's own client stays allowed throughout.
// hReplicas starts a 3-node NATS cluster and three PDPs on it (the audit
// stream and buckets replicated 3 times), with the policy directory pol
// ("" = the default policy) and each replica's logger from log (nil: none);
// it returns the cluster, the issuer and the replicas' base URLs.
func hReplicas(t *testing.T, ctx context.Context, pol string, log func(i int) *slog.Logger) (*natsembed.Cluster, *devissuertest.Server, []string) {
	t.Helper()
	cl, err := natsembed.StartCluster(ctx, natsembed.ClusterOptions{BaseDir: filepath.Join(t.TempDir(), "cluster"), Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Shutdown)
	iss := devissuertest.New(t, "ES256")
	var bases []string
	for i := range 3 {
		cfg := hConfig(t, iss)
		cfg.Policy.Path = pol
		cfg.Audit = config.Audit{NATS: config.NATS{URL: cl.ClientURLs()}, Replicas: 3}
		cfg.ApplyDefaults()
		var logs []*slog.Logger
		if log != nil {
			logs = append(logs, log(i))
		}
		base, _ := hStartStoppable(t, cfg, logs...)
		bases = append(bases, base)
	}
	return cl, iss, bases
}

func TestRevocationAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster and three PDPs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var logs syncBuffer // the replicas' revocation logs, shown when a revocation is slow
	cl, iss, bases := hReplicas(t, ctx, "", func(i int) *slog.Logger {
		return slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", i)
	})
	for _, b := range bases {
		testkit.WaitFor(t, "replica "+b+" synced", func() bool { return readyRevocations(t, b)["synced"] == true })
	}
	kv := revokeKV(t, cl.ClientURLs())
	c := &http.Client{Timeout: 10 * time.Second}

	// Load: a client that is never revoked, on every replica.
	steady := iss.Mint(t, devissuer.MintOptions{Subject: "bob", ClientID: "steady", Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var loadCalls, loadDenied atomic.Int64
	// About 1,000 decisions/s across the replicas (each audited into the R3
	// stream): a busy deployment, which this 2-core machine carries with
	// three NATS nodes and three PDPs; flat-out load would measure the
	// machine's saturation instead.
	for i := range 6 {
		wg.Go(func() {
			tick := time.NewTicker(6 * time.Millisecond)
			defer tick.Stop()
			for loadCtx.Err() == nil {
				a, _, err := decideAs(t, c, bases[i%3], steady)
				if err == nil {
					loadCalls.Add(1)
					if !a {
						loadDenied.Add(1)
					}
				}
				select {
				case <-tick.C:
				case <-loadCtx.Done():
				}
			}
		})
	}

	const n = 20
	var lags []time.Duration
	for i := range n {
		if i == n/2 {
			cl.Stop(1)
			t.Logf("stopped NATS node 2 after %d revocations", i)
		}
		client := fmt.Sprintf("agent-%02d", i)
		tok := iss.Mint(t, devissuer.MintOptions{Subject: "carol", ClientID: client, Audience: []string{hResource}, Scopes: []string{"qr:generate"}})
		for _, b := range bases {
			if a, _, err := decideAs(t, c, b, tok); err != nil || !a {
				t.Fatalf("%s on %s before its revocation: allowed=%v %v", client, b, a, err)
			}
		}
		start := time.Now()
		for {
			if err := revoke.Put(ctx, kv, &revoke.Entry{Kind: revoke.KindClient, ID: client, Reason: "compromised", Created: time.Now()}); err == nil {
				break
			} else if ctx.Err() != nil {
				t.Fatalf("revoke %s: %v", client, err)
			}
			time.Sleep(50 * time.Millisecond) // the bucket's leader moving after the kill
		}
		putTook := time.Since(start)
		var lag time.Duration
		var per []time.Duration
		for _, b := range bases {
			deadline := start.Add(30 * time.Second)
			for {
				a, r, err := decideAs(t, c, b, tok)
				if err == nil && !a {
					if r != "client "+client+" is revoked: compromised" {
						t.Fatalf("%s on %s: reason %q", client, b, r)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s still allowed on %s 30 s after its revocation; its /readyz revocations: %v", client, b, readyRevocations(t, b))
				}
				time.Sleep(time.Millisecond)
			}
			lag = max(lag, time.Since(start))
			per = append(per, time.Since(start))
		}
		t.Logf("%s: put %v, replicas %v", client, putTook, per)
		lags = append(lags, lag)
		time.Sleep(150 * time.Millisecond) // spread the revocations over the load

	}
	stopLoad()
	wg.Wait()
	if loadDenied.Load() != 0 || loadCalls.Load() == 0 {
		t.Fatalf("load: %d calls, %d denied (want none denied)", loadCalls.Load(), loadDenied.Load())
	}
	if slices.Max(lags) > time.Second {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "revocation") || strings.Contains(l, "nats") {
				t.Log(l)
			}
		}
	}
	slices.Sort(lags)
	t.Logf("revocation to every replica denying, over %d revocations (a NATS node killed at the %dth), %d load decisions: p50 %v, p99 %v (the slowest), fastest %v",
		n, n/2+1, loadCalls.Load(), lags[n/2], lags[n-1], lags[0])
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
