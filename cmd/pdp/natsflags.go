package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mcp-pdp/pdp/internal/auditsink"
	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/natsembed"
)

// natsFlags are the flags of the commands that talk to the audit's NATS
// (pdp audit, pdp revoke): where it is, how to authenticate, which
// stream.
type natsFlags struct {
	url     string // "" = read <dataDir>/nats.url
	dataDir string
	conn    auditsink.ConnectOptions
	stream  string
	prefix  string
}

// register defines the flags on fs; name is the client's name in NATS.
func (n *natsFlags) register(fs *flag.FlagSet, name string) {
	n.conn.Name = name
	fs.StringVar(&n.url, "nats", "", "NATS URL(s), comma-separated (default: read <data-dir>/nats.url)")
	fs.StringVar(&n.dataDir, "data-dir", config.DefaultDataDir, "data directory of a running dev server (its embedded NATS, users and keys)")
	fs.StringVar(&n.conn.CredsFile, "creds", "", "NATS credentials file")
	fs.StringVar(&n.conn.NKeySeedFile, "nkey", "", "NATS NKey seed file")
	fs.StringVar(&n.conn.TLSCAFile, "tls-ca", "", "CA certificate file to verify the NATS servers")
	fs.StringVar(&n.conn.TLSCertFile, "tls-cert", "", "client certificate file")
	fs.StringVar(&n.conn.TLSKeyFile, "tls-key", "", "client key file")
	fs.StringVar(&n.stream, "stream", auditsink.DefaultStream, "JetStream stream")
	fs.StringVar(&n.prefix, "prefix", auditsink.DefaultSubjectPrefix, "subject prefix")
}

// connect connects as role of the embedded NATS of a dev server (unless
// credentials were given): natsembed.RoleReader to read, RoleAdmin to
// write revocations. The first connection must succeed within 10 s.
func (n *natsFlags) connect(ctx context.Context, role string, opts ...func(*auditsink.ConnectOptions)) (*nats.Conn, jetstream.JetStream, error) {
	url := n.url
	if url == "" {
		var err error
		if url, err = natsembed.ReadURLFile(n.dataDir); err != nil {
			return nil, nil, fmt.Errorf("%w (pass --nats nats://host:4222 for an external NATS)", err)
		}
	}
	conn := n.conn
	for _, o := range opts {
		o(&conn)
	}
	withEmbeddedUser(&conn, n.dataDir, role)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := auditsink.Connect(cctx, url, conn)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
