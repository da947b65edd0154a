package server

import (
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/config"
)

func TestPlanGC(t *testing.T) {
	tests := []struct {
		name              string
		gogc, gomemlimit  string
		rt                config.Runtime
		wantPct           int // -2: left to the environment
		wantLimit         int64
		pctFrom, limitFrm string
		wantErr           string
	}{
		{name: "defaults", wantPct: DefaultGCPercent, wantLimit: -1,
			pctFrom: "runtime.gc_percent", limitFrm: "none"},
		{name: "config", rt: config.Runtime{GCPercent: 400, MemoryLimit: "512MiB"}, wantPct: 400, wantLimit: 512 << 20,
			pctFrom: "runtime.gc_percent", limitFrm: "runtime.memory_limit"},
		{name: "config off with a limit", rt: config.Runtime{GCPercent: -1, MemoryLimit: "1GiB"}, wantPct: -1, wantLimit: 1 << 30,
			pctFrom: "runtime.gc_percent", limitFrm: "runtime.memory_limit"},
		{name: "GOGC wins", gogc: "100", rt: config.Runtime{GCPercent: 400}, wantPct: -2, wantLimit: -1,
			pctFrom: "GOGC", limitFrm: "none"},
		{name: "GOGC=off wins", gogc: "off", rt: config.Runtime{GCPercent: 400, MemoryLimit: "1GiB"}, wantPct: -2, wantLimit: 1 << 30,
			pctFrom: "GOGC", limitFrm: "runtime.memory_limit"},
		{name: "GOMEMLIMIT wins", gomemlimit: "2GiB", rt: config.Runtime{GCPercent: 300, MemoryLimit: "1GiB"}, wantPct: 300, wantLimit: -2,
			pctFrom: "runtime.gc_percent", limitFrm: "GOMEMLIMIT"},
		{name: "both variables win", gogc: "50", gomemlimit: "100MiB", rt: config.Runtime{GCPercent: 300, MemoryLimit: "1GiB"}, wantPct: -2, wantLimit: -2,
			pctFrom: "GOGC", limitFrm: "GOMEMLIMIT"},
		{name: "bad limit in config", rt: config.Runtime{MemoryLimit: "1GB"}, wantErr: "runtime.memory_limit"},
		{name: "bad limit ignored under GOMEMLIMIT", gomemlimit: "1GiB", rt: config.Runtime{MemoryLimit: "1GB"}, wantPct: DefaultGCPercent, wantLimit: -2,
			pctFrom: "runtime.gc_percent", limitFrm: "GOMEMLIMIT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanGC(tc.gogc, tc.gomemlimit, tc.rt)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantPct == -2 && p.GCPercent != nil:
				t.Errorf("gc percent %d applied over GOGC", *p.GCPercent)
			case tc.wantPct != -2 && (p.GCPercent == nil || *p.GCPercent != tc.wantPct):
				t.Errorf("gc percent %v, want %d", p.GCPercent, tc.wantPct)
			}
			switch {
			case tc.wantLimit == -2 && p.MemoryLimit != nil:
				t.Errorf("memory limit %d applied over GOMEMLIMIT", *p.MemoryLimit)
			case tc.wantLimit == -1 && p.MemoryLimit != nil:
				t.Errorf("memory limit %d applied, want none", *p.MemoryLimit)
			case tc.wantLimit >= 0 && (p.MemoryLimit == nil || *p.MemoryLimit != tc.wantLimit):
				t.Errorf("memory limit %v, want %d", p.MemoryLimit, tc.wantLimit)
			}
			if p.GCPercentFrom != tc.pctFrom || p.MemoryLimitFrom != tc.limitFrm {
				t.Errorf("from %q, %q; want %q, %q", p.GCPercentFrom, p.MemoryLimitFrom, tc.pctFrom, tc.limitFrm)
			}
		})
	}
}
