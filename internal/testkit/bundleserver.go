package testkit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BundlePath is where a BundleServer serves its bundle.
const BundlePath = "/bundles/mcp-pdp.tar.gz"

// BundleServer serves one policy bundle at BundlePath with a strong ETag,
// answering If-None-Match with 304, until the test ends. Set switches it to
// a new bundle or to a failure mode.
type BundleServer struct {
	*httptest.Server
	// Requests counts every request; NotModified the 304 answers.
	Requests, NotModified atomic.Int64

	mu   sync.Mutex
	body []byte
	mode string
}

// Modes of a BundleServer.
const (
	BundleOK      = "ok"      // the bundle, with an ETag
	BundleNoETag  = "noetag"  // the bundle, without an ETag
	Bundle500     = "500"     // an internal server error
	BundleGarbage = "garbage" // 200 with a body that is not a bundle
	BundleSlow    = "slow"    // no answer until the client gives up
)

// NewBundleServer serves body.
func NewBundleServer(tb testing.TB, body []byte) *BundleServer {
	tb.Helper()
	s := &BundleServer{body: body, mode: BundleOK}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// BundleURL is the URL of the bundle.
func (s *BundleServer) BundleURL() string { return s.URL + BundlePath }

// Set switches the mode and, when body is not nil, the bundle.
func (s *BundleServer) Set(mode string, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
	if body != nil {
		s.body = body
	}
}

func (s *BundleServer) serve(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	if r.URL.Path != BundlePath {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	body, mode := s.body, s.mode
	s.mu.Unlock()
	switch mode {
	case BundleSlow:
		<-r.Context().Done()
		return
	case Bundle500:
		http.Error(w, "database on fire", http.StatusInternalServerError)
		return
	case BundleGarbage:
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write([]byte("<html>this is not a bundle</html>"))
		return
	}
	if mode != BundleNoETag {
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		w.Header().Set("ETag", etag)
		if strings.Contains(r.Header.Get("If-None-Match"), etag) {
			s.NotModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(body)
}
