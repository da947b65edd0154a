package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterOptions configure a JetStream cluster of embedded servers on
// loopback. It exists for tests (a real R3 stream in one process); the
// production answer to "a cluster" is an external NATS cluster.
type ClusterOptions struct {
	// Name of the cluster. Default "mcp-pdp-test".
	Name string
	// Size is the number of servers. Default 3.
	Size int
	// BaseDir holds one store directory per server (<BaseDir>/<server name>).
	BaseDir string
	// Host to listen on. Default "127.0.0.1".
	Host string
	// JetStreamMaxStore per server (0 = server default).
	JetStreamMaxStore int64
	// Logger for the servers' logs (nil discards).
	Logger *slog.Logger
}

// Cluster is a set of embedded servers routed to each other.
type Cluster struct {
	mu      sync.Mutex
	servers []*Server // nil entries are stopped servers
	opts    []Options
}

// StartCluster starts Size servers with fixed, free loopback ports (so that
// a stopped server can be restarted at the same address) and waits until
// every server has JetStream ready with a meta leader.
func StartCluster(ctx context.Context, co ClusterOptions) (*Cluster, error) {
	if co.Name == "" {
		co.Name = "mcp-pdp-test"
	}
	if co.Size <= 0 {
		co.Size = 3
	}
	if co.Host == "" {
		co.Host = "127.0.0.1"
	}
	if co.BaseDir == "" {
		return nil, errors.New("natsembed: ClusterOptions.BaseDir is required")
	}
	ports, err := freePorts(co.Host, 2*co.Size)
	if err != nil {
		return nil, err
	}
	routes := make([]string, co.Size)
	for i := range co.Size {
		routes[i] = fmt.Sprintf("nats-route://%s", net.JoinHostPort(co.Host, fmt.Sprint(ports[co.Size+i])))
	}
	c := &Cluster{servers: make([]*Server, co.Size), opts: make([]Options, co.Size)}
	for i := range co.Size {
		name := fmt.Sprintf("%s-%d", co.Name, i+1)
		c.opts[i] = Options{
			StoreDir:          filepath.Join(co.BaseDir, name),
			Host:              co.Host,
			Port:              ports[i],
			ServerName:        name,
			ClusterName:       co.Name,
			ClusterPort:       ports[co.Size+i],
			Routes:            routes,
			JetStreamMaxStore: co.JetStreamMaxStore,
			Logger:            co.Logger,
		}
	}
	// Start all servers before waiting on any of them: JetStream needs a
	// quorum of the routed peers to elect a meta leader.
	for i := range co.Size {
		s, err := Start(ctx, c.opts[i])
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("natsembed: start cluster member %d: %w", i+1, err)
		}
		c.servers[i] = s
	}
	for _, s := range c.servers {
		if err := s.WaitJetStreamReady(ctx); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	// Each member being current is not enough to place a replicated
	// stream: the meta leader must also have heard from every peer, or it
	// refuses with "no suitable peers for placement, peer offline".
	if err := c.waitPeersOnline(ctx); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// waitPeersOnline waits until the JetStream meta leader reports every
// running member as a current, online peer.
func (c *Cluster) waitPeersOnline(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if c.peersOnline() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsembed: cluster peers not all online: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Cluster) peersOnline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	running := 0
	var leader *Server
	for _, s := range c.servers {
		if s == nil {
			continue
		}
		running++
		if s.ns.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil {
		return false
	}
	info, err := leader.ns.Jsz(&server.JSzOptions{})
	if err != nil || info.Meta == nil {
		return false
	}
	online := 0
	for _, p := range info.Meta.Replicas {
		if p.Current && !p.Offline {
			online++
		}
	}
	return online >= running-1 // the leader does not list itself
}

// Size is the number of members (running or stopped).
func (c *Cluster) Size() int { return len(c.opts) }

// Server returns member i (nil when stopped).
func (c *Cluster) Server(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Index returns the member index of the server named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// ClientURLs is a comma-separated list of all members' client URLs (also
// of stopped ones: their addresses are fixed), suitable for nats.Connect.
func (c *Cluster) ClientURLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://%s", net.JoinHostPort(o.Host, fmt.Sprint(o.Port)))
	}
	return strings.Join(urls, ",")
}

// Stop shuts member i down (its store stays on disk).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
	}
}

// Restart starts a stopped member i again with its store and addresses and
// waits until it is current and the meta leader sees every running member.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	c.mu.Lock()
	running := c.servers[i] != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("natsembed: cluster member %d is running", i+1)
	}
	s, err := Start(ctx, c.opts[i])
	if err != nil {
		return fmt.Errorf("natsembed: restart cluster member %d: %w", i+1, err)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	if err := s.WaitJetStreamReady(ctx); err != nil {
		return err
	}
	return c.waitPeersOnline(ctx)
}

// Shutdown stops every running member.
func (c *Cluster) Shutdown() {
	for i := range c.servers {
		c.Stop(i)
	}
}

// freePorts reserves n distinct free TCP ports on host by listening on port
// 0 and closing the listeners. Another process could take one before the
// server binds it; on loopback in tests that risk is accepted.
func freePorts(host string, n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("natsembed: reserve a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
