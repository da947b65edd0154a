package api

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPEPLabelBound: the pep label takes the configured names first, then
// names as they come, up to MaxPEPLabels; every further name is "other",
// the open API's empty name "none".
func TestPEPLabelBound(t *testing.T) {
	names := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = prefix + strconv.Itoa(i)
		}
		return out
	}
	for _, c := range []struct {
		name  string
		known []string
		seen  []string // in order
		want  []string // the label of each of seen
	}{
		{"open API", nil, []string{""}, []string{LabelNoPEP}},
		{"configured names", []string{"gateway", "billing", ""}, []string{"billing", "gateway"}, []string{"billing", "gateway"}},
		{"names as they come", []string{"gateway"}, []string{"cert-a", "cert-b", "cert-a"}, []string{"cert-a", "cert-b", "cert-a"}},
		{
			"beyond the bound", nil,
			append(names("cert-", MaxPEPLabels), "late", "cert-0"),
			append(names("cert-", MaxPEPLabels), LabelOther, "cert-0"),
		},
		{
			"more configured names than the bound", names("key-", MaxPEPLabels+1),
			[]string{"key-0", "key-" + strconv.Itoa(MaxPEPLabels-1), "key-" + strconv.Itoa(MaxPEPLabels), "cert"},
			[]string{"key-0", "key-" + strconv.Itoa(MaxPEPLabels-1), LabelOther, LabelOther},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p pepLabels
			p.init(c.known)
			for i, name := range c.seen {
				if got := p.label(name); got != c.want[i] {
					t.Errorf("label(%q) = %q, want %q", name, got, c.want[i])
				}
			}
			if n := len(*p.names.Load()); n > MaxPEPLabels {
				t.Errorf("%d names kept, bound %d", n, MaxPEPLabels)
			}
		})
	}
}

// TestDecisionMetricsNoAllocation: once a label set is resolved, counting
// a decision allocates nothing, whatever the resource and PEP.
func TestDecisionMetricsNoAllocation(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), map[string]string{"https://a.example/mcp": "a"}, []string{"gateway"})
	for _, c := range []struct{ resource, pep string }{
		{"https://a.example/mcp", "gateway"},
		{"https://a.example/mcp", ""},
		{"https://unknown.example/mcp", "cert-subject"},
	} {
		m.decision("allow", 200, c.resource, c.pep)
		if n := testing.AllocsPerRun(100, func() {
			dm := m.decision("allow", 200, c.resource, c.pep)
			dm.count.Inc()
			dm.latency.Observe(0.001)
		}); n != 0 {
			t.Errorf("%+v: %v allocations per decision", c, n)
		}
	}
}

// BenchmarkDecisionMetrics is the metrics' share of a decision: the label
// lookups, the counter and the latency histogram.
func BenchmarkDecisionMetrics(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry(), map[string]string{"https://a.example/mcp": "a"}, []string{"gateway"})
	b.ReportAllocs()
	for b.Loop() {
		dm := m.decision("allow", 200, "https://a.example/mcp", "gateway")
		dm.count.Inc()
		dm.latency.Observe(0.0001)
	}
}
