package policytest_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/internal/policytest"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		ok         bool
		pass, fail int
		errText    string
	}{
		{"passing", map[string]string{"p.rego": "package p\n\nx := 1\n", "p_test.rego": "package p_test\n\ntest_x if data.p.x == 1\n"}, true, 1, 0, ""},
		{"failing", map[string]string{"p.rego": "package p\n\nx := 1\n", "p_test.rego": "package p_test\n\ntest_x if data.p.x == 2\ntest_y if true\n"}, false, 1, 1, ""},
		{"no tests", map[string]string{"p.rego": "package p\n\nx := 1\n"}, false, 0, 0, "no tests found"},
		{"compile error", map[string]string{"p.rego": "package p\n\nx := \n"}, false, 0, 0, "p.rego:4: rego_parse_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out strings.Builder
			sum, err := policytest.Run(context.Background(), policytest.Options{Paths: []string{dir}, Output: &out})
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err = %v, want %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sum.OK() != tc.ok || sum.Pass != tc.pass || sum.Fail != tc.fail {
				t.Fatalf("summary %+v, want ok=%v pass=%d fail=%d\n%s", sum, tc.ok, tc.pass, tc.fail, out.String())
			}
			if !tc.ok && !strings.Contains(out.String(), "FAIL") {
				t.Fatalf("report does not show the failure:\n%s", out.String())
			}
		})
	}
}

// TestFormats: the JSON report is OPA's array of results; the JUnit report
// is XML a CI system reads: a suite per package, a case per test, with its
// failure (file:line of the failed expression), error, skip and print
// output, and counts that add up.
func TestFormats(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"p.rego": "package p\n\nx := 1\n\nconflict := 1 if true\n\nconflict := 2 if true\n",
		"p_test.rego": "package p_test\n\ntest_pass if {\n\tprint(\"checking x\")\n\tdata.p.x == 1\n}\n\n" +
			"test_fail if {\n\tdata.p.x == 2\n}\n\ntest_error if {\n\tdata.p.conflict == 1\n}\n\ntodo_test_later if false\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var js strings.Builder
	if _, err := policytest.Run(context.Background(), policytest.Options{Paths: []string{dir}, Format: policytest.FormatJSON, Output: &js}); err != nil {
		t.Fatal(err)
	}
	var results []map[string]any
	if err := json.Unmarshal([]byte(js.String()), &results); err != nil || len(results) != 4 {
		t.Fatalf("JSON report: %v, %d results\n%s", err, len(results), js.String())
	}

	var x strings.Builder
	sum, err := policytest.Run(context.Background(), policytest.Options{Paths: []string{dir}, Format: policytest.FormatJUnit, Output: &x})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Pass != 1 || sum.Fail != 1 || sum.Error != 1 || sum.Skip != 1 {
		t.Fatalf("summary %+v", sum)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Skipped  int `xml:"skipped,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				File    string `xml:"file,attr"`
				Line    int    `xml:"line,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
				Error *struct {
					Message string `xml:"message,attr"`
				} `xml:"error"`
				Skipped   *struct{} `xml:"skipped"`
				SystemOut string    `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(x.String()), &doc); err != nil {
		t.Fatalf("JUnit report is not XML: %v\n%s", err, x.String())
	}
	if doc.Tests != 4 || doc.Failures != 1 || doc.Errors != 1 || doc.Skipped != 1 || len(doc.Suites) != 1 || doc.Suites[0].Name != "data.p_test" || doc.Suites[0].Tests != 4 {
		t.Fatalf("counts: %+v\n%s", doc, x.String())
	}
	seen := map[string]bool{}
	for _, c := range doc.Suites[0].Cases {
		seen[c.Name] = true
		if !strings.HasSuffix(c.File, "p_test.rego") || c.Line == 0 {
			t.Errorf("%s: file %q line %d", c.Name, c.File, c.Line)
		}
		switch c.Name {
		case "test_pass":
			if c.Failure != nil || c.Error != nil || !strings.Contains(c.SystemOut, "checking x") {
				t.Errorf("test_pass: %+v", c)
			}
		case "test_fail":
			if c.Failure == nil || !strings.Contains(c.Failure.Message, "p_test.rego:9") {
				t.Errorf("test_fail: %+v", c.Failure)
			}
		case "test_error":
			if c.Error == nil || !strings.Contains(c.Error.Message, "conflict") {
				t.Errorf("test_error: %+v", c.Error)
			}
		case "test_later":
			if c.Skipped == nil {
				t.Errorf("test_later not skipped")
			}
		}
	}
	if len(seen) != 4 {
		t.Fatalf("cases %v", seen)
	}
	if _, err := policytest.Run(context.Background(), policytest.Options{Paths: []string{dir}, Format: "xml"}); err == nil || !strings.Contains(err.Error(), "use pretty, json or junit") {
		t.Fatalf("an unknown format: %v", err)
	}
}
