// Package policies embeds the default Rego policy, its library and the demo
// catalog, so that `pdp serve --dev` runs with no files on disk.
package policies

import "embed"

// FS holds the default policy: authz.rego, lib/*.rego and data.yaml.
//
//go:embed authz.rego lib/*.rego data.yaml
var FS embed.FS
