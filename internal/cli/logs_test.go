package cli

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/jobspec"
)

// TestLogSources: which pods `logs` reads, in which order, and what it says where there is no log.
func TestLogSources(t *testing.T) {
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", UID: "uid-1"}}
	wf.Status.Steps = []custodyv1alpha1.StepStatus{
		{Name: "build", Attempt: 2}, // retried: both attempts are shown, oldest first
		{Name: "test", Attempt: 1},  // its pod waits for its image
		{Name: "lint"},              // never started: nothing to show
		{Name: "publish", Attempt: 1},
	}
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	pod := func(name, step string, attempt int32, uid string, created time.Duration, st corev1.ContainerState) corev1.Pod {
		return corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(created)),
				Labels: map[string]string{jobNameLabel: jobspec.Name("wf", uid, step, attempt)}},
			Spec:   corev1.PodSpec{NodeName: "node-1"},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: jobspec.ContainerName, State: st}}},
		}
	}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	pods := []corev1.Pod{
		pod("build-2", "build", 2, "uid-1", 3*time.Second, running),
		pod("build-1", "build", 1, "uid-1", time.Second, done),
		pod("test-1", "test", 1, "uid-1", 2*time.Second,
			corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}),
		// A pod of an earlier Workflow with the same name (another UID): never shown.
		pod("old-build-1", "build", 1, "uid-0", 0, done),
	}

	show := func(src []logSource) string {
		var b strings.Builder
		for _, s := range src {
			b.WriteString(s.prefix())
			if s.pod != nil {
				b.WriteString("pod/" + s.pod.Name + " ")
			}
			b.WriteString(s.note + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name    string
		step    string
		attempt int32
		want    string
		wantErr string
	}{
		{name: "every attempt of every started step, in status order", want: "[build#1] pod/build-1 \n[build#2] pod/build-2 \n" +
			"[test#1] pod/test-1 no log yet: the container is waiting (ImagePullBackOff)\n" +
			"[publish#1] no pod (job/" + jobspec.Name("wf", "uid-1", "publish", 1) + " has none: not created yet, or deleted)\n"},
		{name: "one step", step: "build", want: "[build#1] pod/build-1 \n[build#2] pod/build-2 \n"},
		{name: "one attempt", step: "build", attempt: 2, want: "[build#2] pod/build-2 \n"},
		{name: "a step that did not start", step: "lint", want: ""},
		{name: "no such step", step: "deploy", wantErr: `workflow wf has no step "deploy" (its steps: build, test, lint, publish)`},
		{name: "no such attempt", step: "test", attempt: 3, wantErr: "step test of workflow wf has made 1 attempts, not 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := logSources(wf, pods, tt.step, tt.attempt)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := show(src); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestCopyLines: every line is prefixed once, the last one ends with a newline, and a line longer
// than a bufio.Scanner token is not an error.
func TestCopyLines(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	var b strings.Builder
	w := &lineWriter{w: &b}
	if err := w.copyLines("[a#1] ", strings.NewReader("one\n\ntwo\n"+long)); err != nil {
		t.Fatal(err)
	}
	if want := "[a#1] one\n[a#1] \n[a#1] two\n[a#1] " + long + "\n"; b.String() != want {
		t.Errorf("got %.80q..., want %.80q...", b.String(), want)
	}
}

// TestPodLogOptions: the flags as the pods/log API takes them: the step container, whole seconds
// (at least one) for --since, no tail unless asked.
func TestPodLogOptions(t *testing.T) {
	l := &logReader{flags: logFlags{since: 500 * time.Millisecond, tail: -1, timestamps: true}}
	o := l.podLogOptions(true)
	if o.Container != jobspec.ContainerName || !o.Follow || !o.Timestamps || o.TailLines != nil || o.SinceSeconds == nil || *o.SinceSeconds != 1 {
		t.Errorf("options %+v", o)
	}
	l.flags = logFlags{tail: 5}
	if o = l.podLogOptions(false); o.Follow || o.SinceSeconds != nil || o.TailLines == nil || *o.TailLines != 5 {
		t.Errorf("options %+v", o)
	}
}
