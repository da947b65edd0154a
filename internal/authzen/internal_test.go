package authzen

import (
	"testing"

	"github.com/mcp-pdp/pdp/internal/core"
)

// The caller's Validation is the core's name for a caller the enforcement
// point verified.
func TestValidationPEP(t *testing.T) {
	if validationPEP != core.ValidationPEP {
		t.Fatalf("validationPEP %q, core.ValidationPEP %q", validationPEP, core.ValidationPEP)
	}
}
