package natsembed

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStartPublishRestartKeepsStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store := filepath.Join(t.TempDir(), "js")
	s, err := Start(ctx, Options{StoreDir: store, Port: RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	if u.Hostname() != "127.0.0.1" || port <= 0 {
		t.Fatalf("ClientURL %q: want 127.0.0.1 and a real port", s.ClientURL())
	}
	publish := func(n int) {
		t.Helper()
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if _, err := js.Publish(ctx, "t.x", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(5)
	s.Shutdown()
	s.Shutdown() // idempotent

	s2, err := Start(ctx, Options{StoreDir: store, Port: port})
	if err != nil {
		t.Fatalf("restart on port %d: %v", port, err)
	}
	defer s2.Shutdown()
	if s2.ClientURL() != s.ClientURL() {
		t.Fatalf("restart URL %q, want %q", s2.ClientURL(), s.ClientURL())
	}
	publish(1)
	nc, err := nats.Connect(s2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State.Msgs; got != 6 {
		t.Fatalf("messages after restart = %d, want 6 (store kept)", got)
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opts Options
	}{
		{"no store dir", Options{Port: RandomPort}},
		{"bad route", Options{StoreDir: t.TempDir(), Port: RandomPort, ClusterName: "c", ClusterPort: RandomPort, Routes: []string{"://bad"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := Start(ctx, tt.opts); err == nil {
				s.Shutdown()
				t.Fatal("want an error")
			}
		})
	}
}

func TestURLFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ReadURLFile(dir); err == nil {
		t.Fatal("ReadURLFile on a missing file: want an error")
	}
	for _, u := range []string{"nats://127.0.0.1:4222", "nats://127.0.0.1:35001"} {
		if err := WriteURLFile(dir, u); err != nil {
			t.Fatal(err)
		}
		got, err := ReadURLFile(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got != u {
			t.Fatalf("ReadURLFile = %q, want %q", got, u)
		}
	}
	if err := RemoveURLFile(dir); err != nil {
		t.Fatal(err)
	}
	if err := RemoveURLFile(dir); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestClusterStopRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := StartCluster(ctx, ClusterOptions{BaseDir: t.TempDir(), Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Shutdown()
	nc, err := nats.Connect(cl.ClientURLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	cl.Stop(0)
	if cl.Server(0) != nil {
		t.Fatal("stopped member still listed")
	}
	if err := cl.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := cl.Restart(ctx, 0); err == nil {
		t.Fatal("restarting a running member: want an error")
	}
	if err := cl.Server(0).WaitJetStreamReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cl.Index(cl.Server(2).Name()); got != 2 {
		t.Fatalf("Index = %d", got)
	}
	if !strings.HasPrefix(cl.Server(1).ClusterURL(), "nats-route://127.0.0.1:") {
		t.Fatalf("ClusterURL %q", cl.Server(1).ClusterURL())
	}
}
