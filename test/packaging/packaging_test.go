// Package packaging_test checks the packaging (issue 17 §3) with the real
// tools: the binaries of `make release` (static, stripped, versioned, and a
// SHA256SUMS that `sha256sum -c` accepts), the image of `make image` (the
// Containerfile: FROM scratch, non-root, CA certificates; built with podman
// or buildah, its layer and configuration read back and, as root, its
// entrypoint run in a chroot as the image's user) and the systemd unit of
// deploy/systemd (systemd-analyze verify and security).
//
// TestRelease and TestImage build the PDP with CGO_ENABLED=0 and -trimpath,
// which shares no compiled package with the other builds of `make test`:
// from a cold build cache that is a full build (about 90 s on two cores).
// They run only with PDP_PACKAGING_TEST=1, which `make test` sets, for the
// host's target; `make release-test` builds all four targets
// (PDP_RELEASE_ALL=1). The other tests take milliseconds and always run.
// With PDP_REQUIRE_IMAGE_BUILDER=1 (CI) a missing podman or buildah fails
// TestImage instead of skipping it.
package packaging_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testVersion is the VERSION the tests build with; binaries must report it.
const testVersion = "v0.0.0-packaging-test"

// releaseTargets is what `make release` must build by default.
var releaseTargets = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"}

// mainPackage is the import path of the released program.
const mainPackage = "github.com/mcp-pdp/pdp/cmd/pdp"

// repoRoot is the repository's root, from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// requirePackaging skips the expensive tests unless PDP_PACKAGING_TEST=1.
func requirePackaging(t *testing.T) {
	t.Helper()
	if os.Getenv("PDP_PACKAGING_TEST") != "1" {
		t.Skip("builds the release binaries (~90 s from a cold cache): set PDP_PACKAGING_TEST=1, as make test does")
	}
}

// makeEnv is the environment for a make started by a test: without the
// MAKEFLAGS of an enclosing make (its jobserver is not ours).
func makeEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
}

// runMake runs make in the repository's root and returns its output; it
// fails the test when make fails.
func runMake(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryMake(t, "", args...)
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryMake runs make in the repository's root with stdin and returns its
// combined output and error; it logs how long make took.
func tryMake(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-C", repoRoot(t), "--no-print-directory"}, args...)...)
	cmd.Env = makeEnv()
	cmd.Stdin = strings.NewReader(stdin)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("make %s: %.1fs", strings.Join(args, " "), time.Since(start).Seconds())
	return string(out), err
}

// hostTarget is the release target this machine can run, or linux/amd64.
func hostTarget() (target string, runnable bool) {
	host := runtime.GOOS + "/" + runtime.GOARCH
	if slices.Contains(releaseTargets, host) {
		return host, true
	}
	return "linux/amd64", false
}

// TestReleaseTargetsDefault: make release builds linux and darwin, amd64
// and arm64, when RELEASE_TARGETS is not given.
func TestReleaseTargetsDefault(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	out, err := tryMake(t, "packaging-test-print:\n\t@echo $(RELEASE_TARGETS)\n", "-s", "-f", "Makefile", "-f", "-", "packaging-test-print")
	if err != nil {
		t.Fatalf("reading RELEASE_TARGETS: %v\n%s", err, out)
	}
	if got := strings.Fields(out); !slices.Equal(got, releaseTargets) {
		t.Errorf("RELEASE_TARGETS = %q, want %q", got, releaseTargets)
	}
}

// TestRelease runs make release into a temporary DIST and checks each
// binary and SHA256SUMS.
func TestRelease(t *testing.T) {
	requirePackaging(t)
	dist := t.TempDir()
	targets := releaseTargets
	args := []string{"release", "DIST=" + dist, "VERSION=" + testVersion}
	host, runnable := hostTarget()
	if os.Getenv("PDP_RELEASE_ALL") != "1" {
		targets = []string{host}
		args = append(args, "RELEASE_TARGETS="+host)
	}
	runMake(t, args...)

	var names []string
	for _, target := range targets {
		goos, goarch, _ := strings.Cut(target, "/")
		names = append(names, fmt.Sprintf("pdp-%s-%s-%s", testVersion, goos, goarch))
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := append(slices.Clone(names), "SHA256SUMS")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("dist holds %q, want %q", got, want)
	}

	checkSums(t, dist, names)
	for i, target := range targets {
		goos, goarch, _ := strings.Cut(target, "/")
		checkBinary(t, filepath.Join(dist, names[i]), goos, goarch)
	}
	if runnable {
		bin := filepath.Join(dist, names[slices.Index(targets, host)])
		for _, arg := range []string{"--version", "version"} {
			out, err := exec.Command(bin, arg).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", bin, arg, err, out)
			}
			if got, want := strings.TrimSpace(string(out)), "pdp "+testVersion; got != want {
				t.Errorf("%s %s printed %q, want %q", filepath.Base(bin), arg, got, want)
			}
		}
	}
}

// sumLine is one line of SHA256SUMS as sha256sum writes it (text mode).
var sumLine = regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)

// checkSums checks dist/SHA256SUMS: one line per name, each hash right,
// and sha256sum -c (where installed) accepts the file.
func checkSums(t *testing.T, dist string, names []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for line := range strings.Lines(string(data)) {
		m := sumLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			t.Fatalf("SHA256SUMS: line %q is not \"<sha256>  <name>\"", line)
		}
		listed = append(listed, m[2])
		bin, err := os.ReadFile(filepath.Join(dist, m[2]))
		if err != nil {
			t.Fatalf("SHA256SUMS names %s: %v", m[2], err)
		}
		if sum := sha256.Sum256(bin); hex.EncodeToString(sum[:]) != m[1] {
			t.Errorf("SHA256SUMS: %s has %x, the file says %s", m[2], sum, m[1])
		}
	}
	if !slices.Equal(listed, names) {
		t.Errorf("SHA256SUMS lists %q, want %q", listed, names)
	}
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Log("sha256sum not installed: SHA256SUMS checked by the test alone")
		return
	}
	cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = dist
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check --strict SHA256SUMS: %v\n%s", err, out)
	}
}

// checkBinary checks a release binary: built from cmd/pdp for goos/goarch
// with CGO_ENABLED=0 and -trimpath, holding testVersion, without symbol
// table (-s) or DWARF (-w); for linux a static ELF (no interpreter, no
// dynamic section, no libraries), for darwin a Mach-O that links only the
// system's libraries.
func checkBinary(t *testing.T, file, goos, goarch string) {
	t.Helper()
	name := filepath.Base(file)
	bi, err := buildinfo.ReadFile(file)
	if err != nil {
		t.Fatalf("%s: build info: %v", name, err)
	}
	if bi.Path != mainPackage {
		t.Errorf("%s: built from %s, want %s", name, bi.Path, mainPackage)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for key, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": goos, "GOARCH": goarch} {
		if settings[key] != want {
			t.Errorf("%s: build setting %s=%q, want %q", name, key, settings[key], want)
		}
	}
	// With -trimpath the build info leaves -ldflags out (golang/go#52372):
	// the version is looked for in the binary, -s and -w in its sections.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(testVersion)) {
		t.Errorf("%s: the version %s (-X main.version) is not in the binary", name, testVersion)
	}

	switch goos {
	case "linux":
		f, err := elf.Open(file)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer f.Close()
		machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != machine || f.Type != elf.ET_EXEC {
			t.Errorf("%s: ELF %v %v, want %v %v", name, f.Type, f.Machine, elf.ET_EXEC, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: has a %v program header: not static", name, p.Type)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s: needs the libraries %q: not static", name, libs)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s: has a symbol table: not stripped (-s)", name)
		}
		for _, s := range f.Sections {
			if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
				t.Errorf("%s: has the DWARF section %s (not -w)", name, s.Name)
			}
		}
	case "darwin":
		f, err := macho.Open(file)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer f.Close()
		cpu := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != cpu || f.Type != macho.TypeExec {
			t.Errorf("%s: Mach-O %v %v, want %v %v", name, f.Type, f.Cpu, macho.TypeExec, cpu)
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Every macOS program links libSystem (there are no static ones);
		// nothing beyond what the system provides.
		if !slices.Contains(libs, "/usr/lib/libSystem.B.dylib") {
			t.Errorf("%s: links %q, without /usr/lib/libSystem.B.dylib", name, libs)
		}
		for _, lib := range libs {
			if !strings.HasPrefix(lib, "/usr/lib/") && !strings.HasPrefix(lib, "/System/Library/") {
				t.Errorf("%s: links %s, not a system library", name, lib)
			}
		}
		// -s leaves only the dynamic imports in the symbol table.
		if f.Symtab != nil {
			for _, sym := range f.Symtab.Syms {
				if sym.Name == "_main.main" || sym.Name == "main.main" {
					t.Errorf("%s: its symbol table has %s: not stripped (-s)", name, sym.Name)
				}
			}
		}
		for _, s := range f.Sections {
			if strings.HasPrefix(s.Name, "__debug_") || strings.HasPrefix(s.Name, "__zdebug_") {
				t.Errorf("%s: has the DWARF section %s (not -w)", name, s.Name)
			}
		}
	default:
		t.Fatalf("%s: no check for %s", name, goos)
	}
}

// TestImageErrors: make image names what to install when the builder or
// the CA bundle is missing, before building anything.
func TestImageErrors(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"IMAGE_BUILDER="}, "neither podman nor buildah is installed; install one"},
		{[]string{"IMAGE_BUILDER=/bin/true", "CA_BUNDLE=/nonexistent/ca.crt"}, "no CA bundle at /nonexistent/ca.crt; install ca-certificates"},
	} {
		args := append([]string{"image", "IMAGE_CONTEXT=" + t.TempDir()}, c.args...)
		out, err := tryMake(t, "", args...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("make %s: err %v, output %q; want a failure saying %q", strings.Join(args, " "), err, out, c.want)
		}
	}
}

// imageBuilder is podman, else buildah, as make image chooses; the test is
// skipped without either unless PDP_REQUIRE_IMAGE_BUILDER=1.
func imageBuilder(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"podman", "buildah"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "neither podman nor buildah is installed (apt-get install buildah): the image build is not tested"
	if os.Getenv("PDP_REQUIRE_IMAGE_BUILDER") == "1" {
		t.Fatal(msg + ", and PDP_REQUIRE_IMAGE_BUILDER=1")
	}
	t.Skip(msg)
	return ""
}

// ociConfig is the part of an OCI image configuration the test reads.
type ociConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Config       struct {
		User         string              `json:"User"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Env          []string            `json:"Env"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		Volumes      map[string]struct{} `json:"Volumes"`
		WorkingDir   string              `json:"WorkingDir"`
		Labels       map[string]string   `json:"Labels"`
	} `json:"config"`
}

// ociDescriptor points at a blob of an OCI layout.
type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
}

// readBlob reads a blob of the OCI layout dir, checking its digest.
func readBlob(t *testing.T, dir string, d ociDescriptor) []byte {
	t.Helper()
	hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		t.Fatalf("blob digest %q is not sha256", d.Digest)
	}
	data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", hexDigest))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hexDigest {
		t.Fatalf("blob %s has the digest %x", d.Digest, sum)
	}
	return data
}

// readImage reads the one image of an OCI layout: its configuration and
// its layers' tar streams (uncompressed).
func readImage(t *testing.T, dir string) (ociConfig, [][]byte) {
	t.Helper()
	var index struct{ Manifests []ociDescriptor }
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests, want 1", err, len(index.Manifests))
	}
	var manifest struct {
		Config ociDescriptor
		Layers []ociDescriptor
	}
	if err := json.Unmarshal(readBlob(t, dir, index.Manifests[0]), &manifest); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var cfg ociConfig
	if err := json.Unmarshal(readBlob(t, dir, manifest.Config), &cfg); err != nil {
		t.Fatalf("image configuration: %v", err)
	}
	var layers [][]byte
	for _, l := range manifest.Layers {
		blob := readBlob(t, dir, l)
		switch {
		case strings.HasSuffix(l.MediaType, ".tar+gzip"), strings.HasSuffix(l.MediaType, ".tar.gzip"):
			zr, err := gzip.NewReader(bytes.NewReader(blob))
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			if blob, err = io.ReadAll(zr); err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
		case strings.HasSuffix(l.MediaType, ".tar"):
		default:
			t.Fatalf("layer %s: media type %s not read by this test", l.Digest, l.MediaType)
		}
		layers = append(layers, blob)
	}
	return cfg, layers
}

// imageFile is what the image must hold at a path (no other paths).
type imageFile struct {
	mode     fs.FileMode // type and permission bits
	uid, gid int
}

// wantFiles is the image's whole file system.
var wantFiles = map[string]imageFile{
	"etc":                               {fs.ModeDir | 0o755, 0, 0},
	"etc/ssl":                           {fs.ModeDir | 0o755, 0, 0},
	"etc/ssl/certs":                     {fs.ModeDir | 0o755, 0, 0},
	"etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0},
	"pdp":                               {0o755, 0, 0},
	"tmp":                               {fs.ModeDir | fs.ModeSticky | 0o777, 0, 0},
	"var":                               {fs.ModeDir | 0o755, 0, 0},
	"var/lib":                           {fs.ModeDir | 0o755, 0, 0},
	"var/lib/pdp":                       {fs.ModeDir | 0o700, 65532, 65532},
}

// TestImage builds the image with make image (podman or buildah, in a
// temporary vfs store), pushes it to an OCI layout and checks its
// configuration and files; as root it then runs the image's entrypoint and
// command in a chroot of its file system as its user, with a configuration
// at /etc/pdp/pdp.yaml as a container runtime would mount it, until
// /readyz answers, and stops it with SIGTERM.
func TestImage(t *testing.T) {
	requirePackaging(t)
	builder := imageBuilder(t)
	tmp := t.TempDir()
	storage := []string{"--root", filepath.Join(tmp, "storage"), "--runroot", filepath.Join(tmp, "run"), "--storage-driver", "vfs"}
	image := "localhost/mcp-pdp-packaging-test:" + testVersion
	runMake(t, "image", "VERSION="+testVersion, "IMAGE="+image, "IMAGE_BUILDER="+builder,
		"IMAGE_BUILDER_FLAGS="+strings.Join(storage, " "), "IMAGE_CONTEXT="+filepath.Join(tmp, "context"))

	layout := filepath.Join(tmp, "oci")
	start := time.Now()
	push := exec.Command(builder, append(storage, "push", image, "oci:"+layout)...)
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("%s push: %v\n%s", builder, err, out)
	}
	t.Logf("%s push to an OCI layout: %.1fs", filepath.Base(builder), time.Since(start).Seconds())
	cfg, layers := readImage(t, layout)

	c := cfg.Config
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("image for %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if c.User != "65532:65532" {
		t.Errorf("User %q, want 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/pdp"}) || !slices.Equal(c.Cmd, []string{"serve", "--config", "/etc/pdp/pdp.yaml"}) {
		t.Errorf("Entrypoint %q Cmd %q, want [/pdp] [serve --config /etc/pdp/pdp.yaml]", c.Entrypoint, c.Cmd)
	}
	if _, ok := c.ExposedPorts["8181/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("ExposedPorts %v, want 8181/tcp", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/var/lib/pdp"]; !ok || c.WorkingDir != "/var/lib/pdp" {
		t.Errorf("Volumes %v WorkingDir %q, want /var/lib/pdp for both", c.Volumes, c.WorkingDir)
	}
	if v := c.Labels["org.opencontainers.image.version"]; v != testVersion {
		t.Errorf("label org.opencontainers.image.version %q, want %q", v, testVersion)
	}
	if c.Labels["org.opencontainers.image.source"] == "" {
		t.Error("no label org.opencontainers.image.source")
	}

	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	asRoot := os.Geteuid() == 0
	got := map[string]imageFile{}
	for _, layer := range layers {
		tr := tar.NewReader(bytes.NewReader(layer))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("layer: %v", err)
			}
			name := path.Clean(strings.TrimPrefix(h.Name, "./"))
			if name == "." {
				continue
			}
			got[name] = imageFile{h.FileInfo().Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSticky), h.Uid, h.Gid}
			extract(t, rootfs, name, h, tr, asRoot)
		}
	}
	for name, want := range wantFiles {
		if g, ok := got[name]; !ok {
			t.Errorf("image lacks /%s", name)
		} else if g != want {
			t.Errorf("image /%s: %v %d:%d, want %v %d:%d", name, g.mode, g.uid, g.gid, want.mode, want.uid, want.gid)
		}
	}
	for name := range got {
		if _, ok := wantFiles[name]; !ok {
			t.Errorf("image holds /%s, which it should not", name)
		}
	}
	ca, err := os.ReadFile(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil || !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Errorf("image /etc/ssl/certs/ca-certificates.crt is no PEM bundle (%v)", err)
	}
	checkBinary(t, filepath.Join(rootfs, "pdp"), "linux", runtime.GOARCH)

	t.Run("run", func(t *testing.T) {
		if !asRoot || runtime.GOOS != "linux" {
			t.Skip("running the image's entrypoint in a chroot as its user needs root on linux")
		}
		runImage(t, rootfs, cfg)
	})
}

// extract writes one tar entry below rootfs, with its mode and, as root,
// its owner.
func extract(t *testing.T, rootfs, name string, h *tar.Header, r io.Reader, chown bool) {
	t.Helper()
	if !filepath.IsLocal(name) {
		t.Fatalf("layer entry %q leaves the root", h.Name)
	}
	dst := filepath.Join(rootfs, name)
	mode := h.FileInfo().Mode()
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
	case tar.TypeReg:
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, r); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("layer entry %q: type %c not expected in this image", h.Name, h.Typeflag)
	}
	if chown {
		if err := os.Lchown(dst, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid)); err != nil {
		t.Fatal(err)
	}
}

// runImage starts the image's entrypoint and command in a chroot of rootfs
// as the image's user, in its working directory, with its environment
// alone, waits for /readyz, checks that the PDP wrote its data directory as
// that user, and stops it with SIGTERM.
func runImage(t *testing.T, rootfs string, cfg ociConfig) {
	c := cfg.Config
	uidText, gidText, ok := strings.Cut(c.User, ":")
	if !ok {
		gidText = uidText
	}
	uid, err1 := strconv.ParseUint(uidText, 10, 32)
	gid, err2 := strconv.ParseUint(gidText, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("User %q: %v", c.User, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	// What `-v ./pdp.yaml:/etc/pdp/pdp.yaml:ro` puts there; the JWKS URI
	// refuses at once (nothing to reach from here).
	conf := fmt.Sprintf(`listen: %s
data_dir: /var/lib/pdp
resources:
  - uri: https://mcp.example.com/mcp
    issuer: https://auth.example.com
    jwks_uri: https://127.0.0.1:1/jwks.json
`, addr)
	if err := os.MkdirAll(filepath.Join(rootfs, "etc/pdp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/pdp/pdp.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	argv := append(slices.Clone(c.Entrypoint), c.Cmd...)
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Env: c.Env, Dir: c.WorkingDir}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     rootfs,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	var log bytes.Buffer // read only once the process is gone
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q in the image's chroot: %v", argv, err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	stop := func() string {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		return log.String()
	}
	t.Cleanup(func() { stop() })

	ready := false
	for deadline := time.Now().Add(30 * time.Second); !ready && time.Now().Before(deadline); {
		select {
		case <-done:
			t.Fatalf("%q exited before it was ready: %v\n%s", argv, waitErr, log.String())
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			continue
		}
		var body struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		ready = resp.StatusCode == http.StatusOK && body.Status == "ready"
	}
	if !ready {
		t.Fatalf("%q not ready within 30 s:\n%s", argv, stop())
	}
	t.Logf("the image's %q ready as %s after %.1fs", argv, c.User, time.Since(start).Seconds())

	for _, name := range []string{"audit-signing.key", "nats", "spool"} {
		fi, err := os.Stat(filepath.Join(rootfs, "var/lib/pdp", name))
		if err != nil {
			t.Errorf("the PDP did not write /var/lib/pdp/%s: %v", name, err)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); uint64(st.Uid) != uid {
			t.Errorf("/var/lib/pdp/%s is owned by %d, want the image's user %d", name, st.Uid, uid)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("after SIGTERM: %v\n%s", waitErr, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM:\n%s", stop())
	}
}

// unitPath is the systemd unit, from this package's directory.
const unitPath = "../../deploy/systemd/mcp-pdp.service"

// readUnit parses a unit file into section → key → values (in order).
func readUnit(t *testing.T, file string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			unit[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: %q is not key=value in a section (continuations not read here)", file, n, line)
			}
			unit[section][key] = append(unit[section][key], value)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

// sighupHandled reports whether the PDP's code asks for SIGHUP
// (signal.Notify or NotifyContext naming it).
func sighupHandled(t *testing.T) bool {
	t.Helper()
	notify := regexp.MustCompile(`signal\.Notify(Context)?\([^)]*SIGHUP`)
	found := false
	for _, dir := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(repoRoot(t), dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			src, err := os.ReadFile(p)
			if err == nil && notify.Match(src) {
				found = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// TestSystemdUnit checks deploy/systemd/mcp-pdp.service: its hardening
// settings are there, ExecReload exists exactly when the PDP handles
// SIGHUP, and systemd-analyze verifies it and rates its exposure at most
// 2.0 (of 10).
func TestSystemdUnit(t *testing.T) {
	unit := readUnit(t, unitPath)
	service := unit["Service"]
	for key, want := range map[string]string{
		"ExecStart":               "/usr/local/bin/pdp serve --config /etc/mcp-pdp/pdp.yaml",
		"DynamicUser":             "yes",
		"StateDirectory":          "mcp-pdp",
		"WorkingDirectory":        "/var/lib/mcp-pdp",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"MemoryDenyWriteExecute":  "yes",
		"LockPersonality":         "yes",
		"RestrictNamespaces":      "yes",
		"RestrictRealtime":        "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"UMask":                   "0077",
		"Restart":                 "on-failure",
	} {
		if got := service[key]; !slices.Equal(got, []string{want}) {
			t.Errorf("[Service] %s = %q, want %q", key, got, want)
		}
	}
	if !slices.Contains(service["SystemCallFilter"], "@system-service") {
		t.Errorf("[Service] SystemCallFilter = %q, want @system-service among them", service["SystemCallFilter"])
	}
	switch reload := service["ExecReload"]; {
	case sighupHandled(t) && reload == nil:
		t.Error("the PDP handles SIGHUP now: give the unit ExecReload=/bin/kill -HUP $MAINPID")
	case !sighupHandled(t) && reload != nil:
		t.Errorf("ExecReload = %q, but the PDP does not handle SIGHUP (it would stop)", reload)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (it comes with systemd): the unit is not verified")
	}
	// verify wants ExecStart's program to exist: this test binary stands in
	// for /usr/local/bin/pdp, the only change to the unit.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "\nExecStart=/usr/local/bin/pdp ", "\nExecStart="+self+" ", 1)
	file := filepath.Join(t.TempDir(), "mcp-pdp.service")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", file).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", file).CombinedOutput()
	if bytes.Contains(out, []byte("unrecognized option")) {
		t.Skipf("systemd-analyze security --offline is not in this systemd (250 or later): %s", bytes.TrimSpace(out))
	}
	m := regexp.MustCompile(`Overall exposure level for mcp-pdp\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level (%v):\n%s", err, out)
	}
	t.Logf("systemd-analyze security: exposure %s (0 best, 10 worst)", m[1])
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=20: exposure %s is over 2.0: %v", m[1], err)
	}
}
