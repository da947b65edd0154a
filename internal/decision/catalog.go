package decision

import (
	"io"

	"github.com/mcp-pdp/pdp/internal/catalog"
)

// The catalog format of the default policy (validation, file:line
// locations, the catalog index) is package catalog. Prepare calls it; the
// names below keep decision's API for callers that load policies.

// Problem is one thing wrong with a policy: a Rego compile error or a data
// (catalog) problem, with the file and line that hold it when known. It is
// catalog.Problem.
type Problem = catalog.Problem

// DataLocations maps data paths to the data file and line that define them
// (see Options.Locate). It is catalog.Locations.
type DataLocations = catalog.Locations

// LocateSource indexes the data files of a policy source (directory,
// bundle file or embedded FS), for the file:line of data problems.
func LocateSource(src Source) (*DataLocations, error) {
	if src.FS != nil {
		return catalog.LocateFS(src.FS, src.Path)
	}
	return catalog.LocatePath(src.Path)
}

// LocateTarball indexes the data files of a bundle archive (.tar.gz).
// Files are named by their path inside the bundle, as OPA names modules.
func LocateTarball(r io.Reader) (*DataLocations, error) { return catalog.LocateTarball(r) }

// Warnings are the data problems that did not refuse the policy.
func (p *Policy) Warnings() []Problem { return p.warnings }
