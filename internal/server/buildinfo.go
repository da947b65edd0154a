package server

import (
	"cmp"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcp-pdp/pdp/internal/config"
	"github.com/mcp-pdp/pdp/internal/core"
)

// modulePath is this module's path, looked up in the binary's build
// information.
const modulePath = "github.com/mcp-pdp/pdp"

// buildInfo is what pdp_build_info says of the running binary.
type buildInfo struct {
	version, goVersion, revision string
}

// readBuildInfo describes the binary: version is Options.Version (pdp's
// main.version), else the module's version as the Go toolchain stamped it
// (the PDP built into another program with pep/local), else "unknown";
// revision is the VCS revision the toolchain stamped (go build in a
// checkout; "-dirty" when the tree had changes), else empty.
func readBuildInfo(version string) buildInfo {
	b := buildInfo{version: version, goVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		b.version = cmp.Or(b.version, "unknown")
		return b
	}
	mod := &bi.Main
	if mod.Path != modulePath {
		mod = nil
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				mod = d
				break
			}
		}
	}
	if b.version == "" && mod != nil && mod.Version != "(devel)" {
		b.version = mod.Version
	}
	b.version = cmp.Or(b.version, "unknown")
	if mod == &bi.Main {
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.revision != "" && dirty {
			b.revision += "-dirty"
		}
	}
	return b
}

// registerBuildInfo exports pdp_build_info: 1, labelled with the version,
// the Go version and, when known, the VCS revision of the binary.
func registerBuildInfo(reg prometheus.Registerer, version string) {
	b := readBuildInfo(version)
	labels := prometheus.Labels{"version": b.version, "goversion": b.goVersion}
	if b.revision != "" {
		labels["revision"] = b.revision
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pdp_build_info", Help: "1, labelled with the version, Go version and (when known) VCS revision of the PDP binary.",
		ConstLabels: labels,
	})
	g.Set(1)
	reg.MustRegister(g)
}

// resourceLabels are the resource labels of the decision metrics: each
// configured resource's key, by URI.
func resourceLabels(resources []*core.Resource) map[string]string {
	labels := make(map[string]string, len(resources))
	for _, r := range resources {
		labels[r.URI] = cmp.Or(r.Key, config.ResourceKey(r.URI))
	}
	return labels
}
