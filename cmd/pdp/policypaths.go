package main

import "os"

// The default policy location, the same for pdp check, eval, test, fmt
// and bundle build: the directory "policies" in the current directory,
// with "test/policies" next to it for test and fmt, where they exist. With
// no ./policies, check and eval take the embedded default policy (what
// `pdp serve --dev` runs), and test and fmt have nothing to work on.
const (
	defaultPolicyDir = "policies"
	defaultTestDir   = "test/policies"
)

// defaultPolicyPaths is the default location's directories that exist:
// ./policies, and ./test/policies when withTests. Empty: there is none
// (check and eval then use the embedded policy).
func defaultPolicyPaths(withTests bool) []string {
	var paths []string
	for _, p := range []string{defaultPolicyDir, defaultTestDir} {
		if p == defaultTestDir && !withTests {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			paths = append(paths, p)
		}
	}
	return paths
}
