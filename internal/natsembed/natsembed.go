// Package natsembed starts and stops an in-process nats-server with JetStream.
//
// It backs the default `audit.nats.url: embedded` of mcp-pdp (one node, store
// under the PDP's data directory) and the tests of internal/auditsink, which
// also use it to build small clusters on loopback.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// URLFileName is the name of the file, inside the PDP's data directory, that
// holds the client URL of a running embedded server (see WriteURLFile).
const URLFileName = "nats.url"

// RandomPort asks for a free port chosen by the operating system.
const RandomPort = server.RANDOM_PORT

// Options configure an embedded server.
type Options struct {
	// StoreDir is the JetStream store directory (required).
	StoreDir string
	// Host to listen on for clients. Default "127.0.0.1".
	Host string
	// Port for clients: RandomPort (-1) for a free port, 0 for the NATS
	// default 4222, anything else as given.
	Port int
	// ServerName names the server; required to be unique inside a cluster.
	// Default "mcp-pdp-embedded".
	ServerName string

	// Cluster is optional: set ClusterName to run as a member of a cluster
	// (tests use it to build a 3-node JetStream cluster on loopback).
	ClusterName string
	// ClusterHost defaults to Host.
	ClusterHost string
	// ClusterPort for routes: RandomPort (-1) for a free one.
	ClusterPort int
	// Routes are the route URLs of the other members, e.g.
	// "nats-route://127.0.0.1:6222". The own URL may be included.
	Routes []string

	// JetStreamMaxMemory and JetStreamMaxStore limit JetStream resources
	// (0 = server default, a share of the machine).
	JetStreamMaxMemory int64
	JetStreamMaxStore  int64
	// SyncAlways makes the file store fsync every write before it acks. The
	// default (false) uses the server's periodic sync (2 minutes): an acked
	// message survives a process crash but not a power loss of a single node.
	SyncAlways bool

	// ReadyTimeout bounds the wait for the server to accept clients (and, in
	// a cluster, nothing more: use WaitJetStreamReady for that).
	// Default 10s; a deadline on ctx also applies.
	ReadyTimeout time.Duration

	// Logger receives the server's log lines, with a "server" attribute
	// (its name); nil discards them. The caller names the component (the
	// PDP's logger says component=nats). The server's notices (its
	// start-up banner, JetStream's settings, "Server is ready") are
	// logged at debug, its warnings and errors as such: at the default
	// info level the embedded server says something only when something
	// is wrong. Debug and trace lines of the server are never enabled.
	Logger *slog.Logger

	// Users, when set, are the only clients the server accepts (NKey
	// users with their permissions; see users.go). Nil: no
	// authentication (tests' servers).
	Users []*server.NkeyUser
}

// Server is a running embedded nats-server.
type Server struct {
	ns   *server.Server
	opts Options
}

// Start starts a server and waits until it accepts client connections.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.ServerName == "" {
		o.ServerName = "mcp-pdp-embedded"
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("natsembed: create store dir %q: %w", o.StoreDir, err)
	}
	sopts := &server.Options{
		ServerName:         o.ServerName,
		Host:               o.Host,
		Port:               o.Port,
		NoSigs:             true,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: o.JetStreamMaxMemory,
		JetStreamMaxStore:  o.JetStreamMaxStore,
		SyncAlways:         o.SyncAlways,
		// The embedded server must never take the process down.
		NoLog: o.Logger == nil,
		Nkeys: o.Users,
	}
	if o.ClusterName != "" {
		host := o.ClusterHost
		if host == "" {
			host = o.Host
		}
		sopts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: host, Port: o.ClusterPort}
		for _, r := range o.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsembed: route %q: %w", r, err)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server %q: %w", o.ServerName, err)
	}
	if o.Logger != nil {
		ns.SetLoggerV2(slogAdapter{l: o.Logger.With("server", o.ServerName)}, false, false, false)
	}
	ns.Start()

	wait := o.ReadyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < wait {
			wait = d
		}
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("natsembed: server %q not ready: %w", o.ServerName, err)
		}
		return nil, fmt.Errorf("natsembed: server %q not ready for connections within %s", o.ServerName, wait)
	}
	return &Server{ns: ns, opts: o}, nil
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// InProcessConn opens a client connection to the server inside this
// process, without a socket (nats.InProcessServer): the PDP's own audit
// client uses it, other processes (pdp audit) use ClientURL.
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// ClusterURL is the nats-route:// URL of the route listener ("" when not
// clustered).
func (s *Server) ClusterURL() string {
	a := s.ns.ClusterAddr()
	if a == nil {
		return ""
	}
	return fmt.Sprintf("nats-route://%s", a.String())
}

// Name is the server name.
func (s *Server) Name() string { return s.ns.Name() }

// NATSServer exposes the underlying server (tests, monitoring).
func (s *Server) NATSServer() *server.Server { return s.ns }

// Options returns the options the server was started with (defaults
// applied); the Port is the configured one, see ClientURL for the real one.
func (s *Server) Options() Options { return s.opts }

// WaitJetStreamReady polls until JetStream is enabled and, in a cluster,
// this server has a current view of the meta group (a meta leader exists).
func (s *Server) WaitJetStreamReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if s.ns.JetStreamEnabled() && s.ns.JetStreamIsCurrent() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsembed: server %q JetStream not ready: %w", s.Name(), ctx.Err())
		case <-t.C:
		}
	}
}

// Shutdown stops the server and waits until it has stopped. Safe to call
// more than once.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// WriteURLFile writes url to <dataDir>/nats.url (atomically, mode 0600) so
// that `pdp audit` in another process finds the embedded server of a
// running dev server.
func WriteURLFile(dataDir, url string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("natsembed: create data dir %q: %w", dataDir, err)
	}
	p := filepath.Join(dataDir, URLFileName)
	tmp, err := os.CreateTemp(dataDir, URLFileName+".tmp*")
	if err != nil {
		return fmt.Errorf("natsembed: write %s: %w", p, err)
	}
	_, werr := tmp.WriteString(url + "\n")
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("natsembed: write %s: %w", p, errors.Join(werr, cerr))
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("natsembed: write %s: %w", p, err)
	}
	return nil
}

// ReadURLFile reads the URL written by WriteURLFile.
func ReadURLFile(dataDir string) (string, error) {
	p := filepath.Join(dataDir, URLFileName)
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("natsembed: read %s (is a dev server with embedded NATS running with this data dir?): %w", p, err)
	}
	u := strings.TrimSpace(string(b))
	if u == "" {
		return "", fmt.Errorf("natsembed: %s is empty", p)
	}
	return u, nil
}

// RemoveURLFile removes <dataDir>/nats.url; a missing file is not an error.
func RemoveURLFile(dataDir string) error {
	err := os.Remove(filepath.Join(dataDir, URLFileName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("natsembed: remove url file: %w", err)
	}
	return nil
}

// slogAdapter turns nats-server log calls into slog records: notices at
// debug, warnings and errors at their level.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }

// Fatalf is logged as an error: the server reports fatal conditions through
// it and shuts itself down; it must not exit the PDP's process.
func (a slogAdapter) Fatalf(format string, v ...any) {
	a.l.Error(fmt.Sprintf(format, v...), "fatal", true)
}
func (a slogAdapter) Debugf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
