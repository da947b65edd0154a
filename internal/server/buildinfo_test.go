package server

import (
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/core"
)

// TestBuildInfo: pdp_build_info is 1 with the version it is given (else
// "unknown" in a test binary, whose module version is "(devel)") and the
// Go version.
func TestBuildInfo(t *testing.T) {
	for _, c := range []struct{ version, want string }{
		{"v1.4.0", "v1.4.0"},
		{"", "unknown"},
	} {
		reg := prometheus.NewRegistry()
		registerBuildInfo(reg, c.version)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || mfs[0].GetName() != "pdp_build_info" || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gathered %v", mfs)
		}
		m := mfs[0].GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if m.GetGauge().GetValue() != 1 || labels["version"] != c.want || labels["goversion"] != runtime.Version() {
			t.Errorf("version %q: %v = %v, want version %q", c.version, labels, m.GetGauge().GetValue(), c.want)
		}
		if r, ok := labels["revision"]; ok && r == "" {
			t.Error("an empty revision label")
		}
	}
}

// TestResourceLabels: the resource label is the resource's key, derived
// from the URI when the key is empty.
func TestResourceLabels(t *testing.T) {
	got := resourceLabels([]*core.Resource{
		{URI: "https://shop.example/mcp", Key: "shop"},
		{URI: "https://billing.example/mcp"},
	})
	want := map[string]string{"https://shop.example/mcp": "shop", "https://billing.example/mcp": "billing_example_mcp"}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}
