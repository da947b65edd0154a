package policysource

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// IgnoredDataFiles warns about the JSON and YAML files under the policy
// directory root that a bundle silently ignores: bundle data files must be
// named data.json, data.yaml or data.yml. A root that is not a directory
// has none.
func IgnoredDataFiles(root string) []decision.Problem {
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() {
		return nil
	}
	var out []decision.Problem
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		name := d.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if ext != ".json" && ext != ".yaml" && ext != ".yml" {
			return nil
		}
		switch name {
		case "data.json", "data.yaml", "data.yml", ".manifest", ".signatures.json":
			return nil
		}
		out = append(out, decision.Problem{
			File: p, Warning: true, Message: "ignored: only files named data.json, data.yaml or data.yml are policy data",
			Hint: "rename it to data.yaml; its directory decides where it is mounted (mcp/data.yaml is data.mcp)",
		})
		return nil
	})
	return out
}
