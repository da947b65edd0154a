package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcp-pdp/pdp/internal/config"
)

// tlsReloadInterval is how often, at most, the listener looks at its
// certificate, key and client CA files for changes (checked on handshakes).
const tlsReloadInterval = time.Second

// listenerTLS serves the listener's TLS configuration from files and
// reloads it when a file changes (certificate renewal, CA rotation). A
// reload that fails (e.g. a half-written pair) keeps the previous
// configuration and is retried at the next check.
type listenerTLS struct {
	certFile, keyFile, caFile string
	clientAuth                tls.ClientAuthType
	interval                  time.Duration
	log                       *slog.Logger

	cfg atomic.Pointer[tls.Config]

	mu      sync.Mutex // serializes checks and reloads
	checked time.Time
	stamps  [3]fileStamp // of the files the current cfg was loaded from
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// newListenerTLS loads the files once; an error here fails the start.
// With a client CA, PEPs may (API keys also configured) or must (only
// mTLS configured) present a certificate it signed.
func newListenerTLS(t config.TLS, m config.MTLS, apiKeys bool, log *slog.Logger) (*listenerTLS, error) {
	l := &listenerTLS{certFile: t.CertFile, keyFile: t.KeyFile, caFile: m.ClientCA, interval: tlsReloadInterval, log: log}
	switch {
	case m.ClientCA == "":
		l.clientAuth = tls.NoClientCert
	case apiKeys:
		l.clientAuth = tls.VerifyClientCertIfGiven
	default:
		l.clientAuth = tls.RequireAndVerifyClientCert
	}
	stamps := l.stat()
	cfg, err := l.load()
	if err != nil {
		return nil, err
	}
	l.cfg.Store(cfg)
	l.stamps = stamps
	l.checked = time.Now()
	return l, nil
}

// Config is the tls.Config of the listener.
func (l *listenerTLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.current(), nil },
	}
}

func (l *listenerTLS) current() *tls.Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.checked) < l.interval {
		return l.cfg.Load()
	}
	l.checked = now
	stamps := l.stat()
	if stamps == l.stamps {
		return l.cfg.Load()
	}
	cfg, err := l.load()
	if err != nil {
		l.log.Error("TLS files changed but do not load; serving the previous certificate", "err", err)
		return l.cfg.Load()
	}
	l.cfg.Store(cfg)
	l.stamps = stamps
	l.log.Info("TLS certificate reloaded", "cert_file", l.certFile, "client_ca", l.caFile)
	return cfg
}

func (l *listenerTLS) stat() [3]fileStamp {
	var s [3]fileStamp
	for i, f := range [...]string{l.certFile, l.keyFile, l.caFile} {
		if f == "" {
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			s[i] = fileStamp{fi.ModTime(), fi.Size()}
		}
	}
	return s
}

func (l *listenerTLS) load() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	if pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter) {
		l.log.Warn("the listener's TLS certificate has expired", "cert_file", l.certFile, "not_after", pair.Leaf.NotAfter)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{pair},
		ClientAuth:   l.clientAuth,
	}
	if l.caFile != "" {
		pem, err := os.ReadFile(l.caFile)
		if err != nil {
			return nil, fmt.Errorf("auth.mtls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bytes.TrimSpace(pem)) {
			return nil, errors.New("auth.mtls.client_ca: no PEM certificate found in " + l.caFile)
		}
		cfg.ClientCAs = pool
		// A resumed session would skip verification against a rotated
		// client CA: always do a full handshake. PEPs keep connections
		// alive, so this costs little.
		cfg.SessionTicketsDisabled = true
	}
	return cfg, nil
}
