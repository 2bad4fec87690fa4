package webhook

import "testing"

// TestInlineScript: the script of a shell's -c, or an interpreter's code, is found after the
// program's other options, and a command line that runs a script file, or no such program, has none.
func TestInlineScript(t *testing.T) {
	for _, tc := range []struct {
		argv          []string
		shell, script string
	}{
		{[]string{"sh", "-c", "echo hi"}, "sh -c", "echo hi"},
		{[]string{"/bin/bash", "-euxc", "make $(params.target)"}, "bash -c", "make $(params.target)"},
		{[]string{"bash", "-euo", "pipefail", "-c", "run"}, "bash -c", "run"},
		{[]string{"bash", "-o", "pipefail", "--noprofile", "-c", "run"}, "bash -c", "run"},
		{[]string{"busybox", "sh", "-c", "run"}, "sh -c", "run"},
		{[]string{"sh", "deploy.sh", "-c", "not a script"}, "", ""},
		{[]string{"/usr/bin/python3", "-u", "-c", "print(1)"}, "python3 -c", "print(1)"},
		{[]string{"node", "--eval", "run()"}, "node --eval", "run()"},
		{[]string{"perl", "-e", "print 1"}, "perl -e", "print 1"},
		{[]string{"python3", "main.py", "-c", "not code"}, "", ""},
		{[]string{"java", "-cp", "app.jar"}, "", ""},
		{[]string{"sh", "-c"}, "", ""},
		{[]string{"deploy", "--branch=$(params.branch)"}, "", ""},
	} {
		shell, script, ok := inlineScript(tc.argv)
		if shell != tc.shell || script != tc.script || ok != (tc.shell != "") {
			t.Errorf("inlineScript(%q) = %q, %q, %v; want %q, %q", tc.argv, shell, script, ok, tc.shell, tc.script)
		}
	}
}
