// Package policies embeds the default Rego policy, its library and the demo
// catalog, so that `pdp serve --dev` runs with no files on disk.
package policies

import "embed"

// FS holds the default policy: authz.rego (the readable rules),
// authz_lists.rego (how lists are decided fast), lib/*.rego and data.yaml.
//
//go:embed authz.rego authz_lists.rego lib/*.rego data.yaml
var FS embed.FS
