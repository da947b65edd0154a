package server

import (
	"cmp"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"

	"github.com/mcp-pdp/pdp/internal/config"
)

// DefaultGCPercent is runtime.gc_percent's default. It trades memory for
// CPU: a higher GOGC spends less CPU on collection per decision and holds a
// larger heap; 200 takes part of that gain without letting a large heap (a
// big token cache) grow fourfold (see docs/performance.md).
const DefaultGCPercent = 200

// GCPlan is what `pdp serve` applies to the garbage collector. A nil value is
// left as the runtime has it: set from the environment, which wins.
type GCPlan struct {
	GCPercent   *int
	MemoryLimit *int64
	// Where each setting in effect comes from: the environment variable,
	// the configuration key, or (memory limit only) "none".
	GCPercentFrom, MemoryLimitFrom string
}

// PlanGC decides the collector settings from the GOGC and GOMEMLIMIT
// environment values ("" means unset, as the runtime reads them) and the
// runtime section of the configuration. Each variable, when set, wins over
// its key: the runtime has already applied it at start-up.
func PlanGC(gogc, gomemlimit string, rt config.Runtime) (GCPlan, error) {
	p := GCPlan{GCPercentFrom: "GOGC", MemoryLimitFrom: "GOMEMLIMIT"}
	if gogc == "" {
		v := cmp.Or(rt.GCPercent, DefaultGCPercent)
		p.GCPercent, p.GCPercentFrom = &v, "runtime.gc_percent"
	}
	if gomemlimit == "" {
		n, ok, err := rt.MemoryLimitBytes()
		switch {
		case err != nil:
			return GCPlan{}, fmt.Errorf("runtime.memory_limit: %w", err)
		case ok:
			p.MemoryLimit, p.MemoryLimitFrom = &n, "runtime.memory_limit"
		default:
			p.MemoryLimitFrom = "none"
		}
	}
	return p, nil
}

// ApplyGC applies the plan and logs the settings in effect, read back
// from the runtime, with where each comes from.
func ApplyGC(p GCPlan, log *slog.Logger) {
	if p.GCPercent != nil {
		debug.SetGCPercent(*p.GCPercent)
	}
	if p.MemoryLimit != nil {
		debug.SetMemoryLimit(*p.MemoryLimit)
	}
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	pct, limit := "unknown", "unknown"
	if s[0].Value.Kind() == metrics.KindUint64 {
		v := s[0].Value.Uint64()
		pct = strconv.FormatUint(v, 10)
		if v > math.MaxInt32 { // -1 read as an unsigned number
			pct = "off"
		}
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		v := s[1].Value.Uint64()
		limit = strconv.FormatUint(v, 10)
		if v >= math.MaxInt64 {
			limit = "none"
		}
	}
	log.Info("garbage collector settings", "gc_percent", pct, "gc_percent_from", p.GCPercentFrom,
		"memory_limit_bytes", limit, "memory_limit_from", p.MemoryLimitFrom)
}
