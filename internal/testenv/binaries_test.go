package testenv

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPinnedBinaries runs every binary that hack/tools.sh lists and checks that it reports the
// version pinned there, so tests never run against a stale or unversioned build (clients refuse
// servers that report v0.0.0).
func TestPinnedBinaries(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(root, "hack", "tools.sh"), "--list").Output()
	if err != nil {
		t.Fatalf("hack/tools.sh --list: %v", err)
	}
	versionArgs := map[string][]string{
		"kubectl":       {"version", "--client"},
		"helm":          {"version", "--short"},
		"golangci-lint": {"version"},
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			t.Fatalf("unexpected line from hack/tools.sh --list: %q", line)
		}
		version := strings.TrimPrefix(fields[1], "v")
		for _, name := range fields[2:] {
			seen++
			path, err := Binary(name)
			if err != nil {
				t.Error(err)
				continue
			}
			args, ok := versionArgs[name]
			if !ok {
				args = []string{"--version"}
			}
			got, err := exec.Command(path, args...).CombinedOutput()
			if err != nil {
				t.Errorf("%s %v: %v\n%s", name, args, err, got)
				continue
			}
			if !strings.Contains(string(got), version) {
				t.Errorf("%s reports %q, want version %s", name, strings.TrimSpace(string(got)), version)
			}
		}
	}
	if seen < 11 {
		t.Errorf("hack/tools.sh lists %d binaries, want the 11 the project pins", seen)
	}
}
