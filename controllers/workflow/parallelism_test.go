package workflow

import (
	"testing"

	"k8s.io/utils/ptr"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestRunningItems: the items that hold a slot of a forEach step's parallelism, as seen by one of
// its items: running ones, and those waiting to be retried; of several waiting to be retried (a
// run an older controller let start more items than the limit), only those listed before it, so
// that they take turns instead of waiting for each other forever.
func TestRunningItems(t *testing.T) {
	const (
		running  = custodyv1alpha1.StepRunning
		retrying = custodyv1alpha1.StepRetrying
		pending  = custodyv1alpha1.StepPending
		done     = custodyv1alpha1.StepSucceeded
	)
	for _, c := range []struct {
		name   string
		phases [3]custodyv1alpha1.StepPhase // of deploy-eu, deploy-us, deploy-ap
		self   int
		want   int
	}{
		{"one running, the next waits", [3]custodyv1alpha1.StepPhase{running, pending, pending}, 1, 1},
		{"one waiting to be retried, the next waits", [3]custodyv1alpha1.StepPhase{retrying, pending, pending}, 1, 1},
		{"a later item waiting to be retried holds its slot too", [3]custodyv1alpha1.StepPhase{pending, pending, retrying}, 0, 1},
		{"the item's own retry is not counted", [3]custodyv1alpha1.StepPhase{retrying, done, pending}, 0, 0},
		{"of two waiting to be retried, the first goes", [3]custodyv1alpha1.StepPhase{retrying, retrying, pending}, 0, 0},
		{"of two waiting to be retried, the second waits for the first", [3]custodyv1alpha1.StepPhase{retrying, retrying, pending}, 1, 1},
		{"a running item holds the slot against a retry", [3]custodyv1alpha1.StepPhase{retrying, running, pending}, 0, 1},
		{"ended items hold nothing", [3]custodyv1alpha1.StepPhase{done, done, pending}, 2, 0},
	} {
		wf := &custodyv1alpha1.Workflow{Spec: custodyv1alpha1.WorkflowSpec{Steps: []custodyv1alpha1.Step{
			{Name: "build", Image: "example.com/b:1"},
			{Name: "deploy", Image: "example.com/d:1", ForEach: []string{"eu", "us", "ap"}, Parallelism: ptr.To[int32](1)}}}}
		wf.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "build", Phase: running}}
		for i, item := range []string{"eu", "us", "ap"} {
			wf.Status.Steps = append(wf.Status.Steps, custodyv1alpha1.StepStatus{Name: "deploy-" + item, Phase: c.phases[i]})
		}
		s := &scope{wf: wf}
		if got := s.runningItems("deploy", &wf.Status.Steps[1+c.self]); got != c.want {
			t.Errorf("%s: %d items hold a slot, want %d", c.name, got, c.want)
		}
	}
}
