package auditsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectOptions are the ways to reach and authenticate to an existing
// NATS deployment (all optional).
type ConnectOptions struct {
	// Name of the connection as shown by the server (default "mcp-pdp").
	Name string
	// CredsFile is a NATS .creds file (user JWT + NKey seed).
	CredsFile string
	// NKeySeedFile is a file holding an NKey user seed.
	NKeySeedFile string
	// TLSCAFile verifies the server; TLSCertFile + TLSKeyFile present a
	// client certificate.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// RetryOnFailedConnect returns a connection that keeps trying in the
	// background when the servers are down at start (what the PDP wants:
	// events are spooled meanwhile). False fails fast (what the CLI wants).
	RetryOnFailedConnect bool
	// ReconnectWait between reconnect attempts (default 250ms).
	ReconnectWait time.Duration
	// Logger for connection state changes (nil = discard).
	Logger *slog.Logger
	// InProcess, when set, connects to a NATS server running in this
	// process without a socket (the embedded server); url is then only
	// used for logs.
	InProcess nats.InProcessConnProvider
}

// Connect connects to url, a comma-separated list of nats:// URLs. The
// connection reconnects forever and has no reconnect buffer: while it is
// disconnected, publishes fail at once and the sink spools instead of
// holding events in a client buffer that a crash would lose.
func Connect(ctx context.Context, url string, o ConnectOptions) (*nats.Conn, error) {
	if strings.TrimSpace(url) == "" {
		return nil, errors.New("auditsink: NATS url is empty")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("auditsink: connect: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := o.Name
	if name == "" {
		name = "mcp-pdp"
	}
	wait := o.ReconnectWait
	if wait <= 0 {
		wait = 250 * time.Millisecond
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(50*time.Millisecond, 250*time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(o.RetryOnFailedConnect),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				log.Debug("NATS connection closed") // our own Close: nothing is wrong
				return
			}
			log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(_ *nats.Conn) { log.Debug("NATS connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("NATS async error", "err", err)
		}),
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			opts = append(opts, nats.Timeout(d))
		}
	}
	if o.CredsFile != "" && o.NKeySeedFile != "" {
		return nil, errors.New("auditsink: set either a credentials file or an NKey seed file, not both")
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("auditsink: nkey seed file %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if o.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(o.TLSCAFile))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return nil, errors.New("auditsink: TLS client certificate needs both a cert file and a key file")
	}
	if o.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("auditsink: connect to NATS %s: %w", RedactURLs(url), err)
	}
	return nc, nil
}

// RedactURLs returns urls, a comma-separated list of URLs, with the
// credentials of each (user, password or token before the last '@') replaced
// by "***", for logs and error messages: "nats://u:p@h:4222" becomes
// "nats://***@h:4222". Text that is not a URL with credentials is kept.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if sch := strings.Index(p, "://"); sch >= 0 && sch < at {
				parts[i] = p[:sch+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
