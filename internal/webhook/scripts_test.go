package webhook

import "testing"

// TestShellScript: the script of a shell's -c is found after the shell's other options, and a
// command line that runs a script file, or no shell, has none.
func TestShellScript(t *testing.T) {
	for _, tc := range []struct {
		argv          []string
		shell, script string
	}{
		{[]string{"sh", "-c", "echo hi"}, "sh", "echo hi"},
		{[]string{"/bin/bash", "-euxc", "make $(params.target)"}, "bash", "make $(params.target)"},
		{[]string{"bash", "-euo", "pipefail", "-c", "run"}, "bash", "run"},
		{[]string{"bash", "-o", "pipefail", "--noprofile", "-c", "run"}, "bash", "run"},
		{[]string{"busybox", "sh", "-c", "run"}, "sh", "run"},
		{[]string{"sh", "deploy.sh", "-c", "not a script"}, "", ""},
		{[]string{"python3", "-c", "print(1)"}, "", ""},
		{[]string{"sh", "-c"}, "", ""},
		{[]string{"deploy", "--branch=$(params.branch)"}, "", ""},
	} {
		shell, script, ok := shellScript(tc.argv)
		if shell != tc.shell || script != tc.script || ok != (tc.shell != "") {
			t.Errorf("shellScript(%q) = %q, %q, %v; want %q, %q", tc.argv, shell, script, ok, tc.shell, tc.script)
		}
	}
}
