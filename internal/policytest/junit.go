package policytest

import (
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Output formats of Options.Format.
const (
	FormatPretty = "pretty"
	FormatJSON   = "json"
	FormatJUnit  = "junit"
)

// junitReporter writes the results as JUnit XML, the report format CI
// systems (GitLab, Jenkins, GitHub test reporters) read: one <testsuite>
// per Rego package, one <testcase> per test rule, with <failure>,
// <error>, <skipped> and the test's print output in <system-out>.
type junitReporter struct {
	out io.Writer
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *struct{}     `xml:"skipped"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// failedAt is "file:line: expression" of the last expression that failed
// in a test's trace (Run traces the tests for JUnit reports), or "".
func failedAt(trace []*topdown.Event) string {
	for i := len(trace) - 1; i >= 0; i-- {
		e := trace[i]
		if e.Op != topdown.FailOp || e.Location == nil || e.QueryID == 0 {
			continue
		}
		expr, ok := e.Node.(*ast.Expr)
		if !ok {
			continue
		}
		if _, every := expr.Terms.(*ast.Every); every {
			continue // the failing expression is inside its body
		}
		return fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, strings.TrimSpace(string(e.Location.Text)))
	}
	return ""
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// Report reads every result, then writes the document.
func (r junitReporter) Report(ch chan *tester.Result) error {
	doc := junitSuites{Name: "pdp test"}
	suites := map[string]*junitSuite{}
	times := map[string]time.Duration{}
	var total time.Duration
	for res := range ch {
		pkg := res.Package
		s := suites[pkg]
		if s == nil {
			s = &junitSuite{Name: pkg}
			suites[pkg] = s
		}
		c := junitCase{Name: res.Name, Classname: pkg, Time: seconds(res.Duration), SystemOut: string(res.Output)}
		if res.Location != nil {
			c.File, c.Line = res.Location.File, res.Location.Row
		}
		switch {
		case res.Skip:
			c.Skipped = &struct{}{}
			s.Skipped++
		case res.Error != nil:
			c.Error = &junitProblem{Message: res.Error.Error(), Text: res.Error.Error()}
			s.Errors++
		case res.Fail:
			msg := "the test rule is false or undefined"
			if at := failedAt(res.Trace); at != "" {
				msg = "failed at " + at
			}
			c.Failure = &junitProblem{Message: msg, Text: msg}
			s.Failures++
		}
		s.Tests++
		times[pkg] += res.Duration
		total += res.Duration
		s.Cases = append(s.Cases, c)
	}
	names := make([]string, 0, len(suites))
	for n := range suites {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := suites[n]
		s.Time = seconds(times[n])
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Skipped += s.Skipped
		doc.Suites = append(doc.Suites, *s)
	}
	doc.Time = seconds(total)
	if _, err := io.WriteString(r.out, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(r.out)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("junit report: %w", err)
	}
	_, err := io.WriteString(r.out, "\n")
	return err
}
