package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"gopkg.in/yaml.v3"
)

// Locations maps data paths to the data file and line that define them,
// so that data problems can be reported as file:line. Bundle data files are
// named data.json, data.yaml or data.yml; a file in directory a/b holds the
// document at data.a.b. A nil *Locations knows no location.
type Locations struct {
	m map[string]dataLoc
}

type dataLoc struct {
	file string
	line int
}

func locKey(segs []string) string { return strings.Join(segs, "\x00") }

// Lookup returns the file and line defining the data path segs, or of its
// nearest enclosing key (a missing key is reported where its parent is).
func (l *Locations) Lookup(segs []string) (file string, line int) {
	if l == nil {
		return "", 0
	}
	for n := len(segs); n >= 0; n-- {
		if loc, ok := l.m[locKey(segs[:n])]; ok {
			return loc.file, loc.line
		}
	}
	return "", 0
}

// LocateProblems fills in the file and line of data problems and orders
// them by file and line.
func (l *Locations) LocateProblems(ps []Problem) {
	for i := range ps {
		if ps[i].File == "" && ps[i].segs != nil {
			ps[i].File, ps[i].Line = l.Lookup(ps[i].segs)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}

// LocateFS indexes the data files of the policy directory root inside
// fsys (e.g. the policy embedded in the binary). Files are named by their
// path in fsys.
func LocateFS(fsys fs.FS, root string) (*Locations, error) {
	if root == "" {
		root = "."
	}
	return locate(bundle.NewFSLoaderWithRoot(fsys, root), func(rel string) string {
		return path.Join(root, rel)
	})
}

// LocatePath indexes the data files of a policy directory or bundle
// archive (.tar.gz) on disk. Files in a directory are named by their path
// on disk, files in an archive by their path inside it.
func LocatePath(root string) (*Locations, error) {
	if root == "" {
		root = "."
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("locate data files: %w", err)
	}
	if fi.IsDir() {
		return locate(bundle.NewDirectoryLoader(root), func(rel string) string {
			return filepath.Join(root, filepath.FromSlash(rel))
		})
	}
	f, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("locate data files: %w", err)
	}
	defer f.Close()
	return LocateTarball(f)
}

// LocateTarball indexes the data files of a bundle archive (.tar.gz).
// Files are named by their path inside the bundle, as OPA names modules.
func LocateTarball(r io.Reader) (*Locations, error) {
	return locate(bundle.NewTarballLoader(r), func(rel string) string { return rel })
}

func locate(dl bundle.DirectoryLoader, display func(rel string) string) (*Locations, error) {
	l := &Locations{m: map[string]dataLoc{}}
	for {
		d, err := dl.NextFile()
		if errors.Is(err, io.EOF) {
			return l, nil
		}
		if err != nil {
			return l, fmt.Errorf("read data files: %w", err)
		}
		rel := "/" + strings.TrimPrefix(filepath.ToSlash(d.Path()), "/")
		base := path.Base(rel)
		if base != "data.json" && base != "data.yaml" && base != "data.yml" {
			_ = d.Close()
			continue
		}
		var buf bytes.Buffer
		_, rerr := d.Read(&buf, 64<<20)
		_ = d.Close()
		if rerr != nil && !errors.Is(rerr, io.EOF) { // Read is io.CopyN: EOF when the file is shorter than the limit
			return l, fmt.Errorf("read %s: %w", rel, rerr)
		}
		var prefix []string
		if dir := strings.Trim(path.Dir(rel), "/"); dir != "" && dir != "." {
			prefix = strings.Split(dir, "/")
		}
		var doc yaml.Node
		if yaml.Unmarshal(buf.Bytes(), &doc) != nil {
			continue // the loader reports unreadable files
		}
		file := display(strings.TrimPrefix(rel, "/"))
		if _, seen := l.m[locKey(prefix)]; !seen {
			l.m[locKey(prefix)] = dataLoc{file, 1}
		}
		l.walk(&doc, prefix, file)
	}
}

func (l *Locations) walk(n *yaml.Node, segs []string, file string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			l.walk(c, segs, file)
		}
	case yaml.AliasNode:
		if n.Alias != nil {
			l.walk(n.Alias, segs, file)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			p := join(segs, k.Value)
			if _, seen := l.m[locKey(p)]; !seen {
				l.m[locKey(p)] = dataLoc{file, k.Line}
			}
			l.walk(val, p, file)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := join(segs, strconv.Itoa(i))
			if _, seen := l.m[locKey(p)]; !seen {
				l.m[locKey(p)] = dataLoc{file, c.Line}
			}
			l.walk(c, p, file)
		}
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxErrorLine parses a data file again to find the line of its syntax
// error, which OPA's message does not always carry.
func syntaxErrorLine(name string, raw []byte) (int, string, bool) {
	if strings.HasSuffix(name, ".json") {
		var x any
		err := json.Unmarshal(raw, &x)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off := min(int(se.Offset), len(raw))
			return 1 + bytes.Count(raw[:off], []byte("\n")), "invalid JSON: " + se.Error(), true
		}
		return 0, "", false
	}
	var n yaml.Node
	err := yaml.Unmarshal(raw, &n)
	if err == nil {
		return 0, "", false
	}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, "invalid YAML: " + m[2], true
	}
	return 0, "", false
}
