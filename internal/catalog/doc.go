// Package catalog is the data format of the default policy: the catalogs
// under data.mcp that say which tools, prompts and resources a caller may
// see and use (docs/policy.md).
//
// It does three things with a policy's data, none of which evaluates Rego:
//
//   - [Validate] checks data.mcp against the format, so that a typo in data
//     cannot silently open or close a tool, and returns [Problem]s that name
//     the data path and the fix;
//   - [Locations] maps data paths to the data file and line that define
//     them ([LocateFS], [LocatePath], [LocateTarball]), so that problems are
//     reported as file:line;
//   - [WithIndex] adds the catalog index (data.pdp.catalog_index) with which
//     the default policy decides a list once per group of equal entries
//     instead of once per item.
//
// The package imports nothing else of mcp-pdp; internal/decision calls it
// when it prepares a policy.
package catalog
