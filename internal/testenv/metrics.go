package testenv

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// metricLiteral is how the manager's code names a metric: a string literal custody_...
var metricLiteral = regexp.MustCompile(`"(custody_[a-z_]+)"`)

// metricUse is a metric name in a query.
var metricUse = regexp.MustCompile(`custody_[a-z_]+`)

// UnknownMetrics returns the metric names a PromQL query uses (histogram series by their base
// name) that the manager's code (internal/, controllers/) does not define: a dashboard or alert
// that queries them would stay empty.
func UnknownMetrics(t testing.TB, query string) []string {
	t.Helper()
	defined := definedMetrics(t)
	var unknown []string
	for _, name := range metricUse.FindAllString(query, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !defined[base] {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

func definedMetrics(t testing.TB) map[string]bool {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, dir := range []string{"internal", "controllers"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path) //nolint:gosec // the repository's own sources
			for _, m := range metricLiteral.FindAllStringSubmatch(string(src), -1) {
				defined[m[1]] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return defined
}
