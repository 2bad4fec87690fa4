package workflow

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/metrics"
)

// TestWorkflowReconciler_metrics checks that a run shows up in the metrics an operator graphs:
// attempts started, attempts ended by result and reason, durations, and workflows by phase. Other
// tests run in parallel on the same registry, so it asserts on increases.
func TestWorkflowReconciler_metrics(t *testing.T) {
	ns := setup(t)
	attempts := testutil.ToFloat64(metrics.StepAttempts)
	failed := testutil.ToFloat64(metrics.StepAttemptsEnded.WithLabelValues("failed", custodyv1alpha1.StepReasonJobFailed))
	succeeded := testutil.ToFloat64(metrics.StepAttemptsEnded.WithLabelValues("succeeded", custodyv1alpha1.StepReasonSucceeded))

	wf := apply(t, ns, `
metadata: {name: measured}
spec:
  steps: [{name: call, image: example.com/c:1, retries: {limit: 1, backoff: {duration: 1s}}}]
`)
	fail(t, wf, "call", 1)
	succeed(t, wf, "call", 2, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	broken := apply(t, ns, `
metadata: {name: broken, labels: {custody.dev/cronworkflow: nightly}}
spec:
  steps: [{name: call, image: example.com/c:1}]
`)
	fail(t, broken, "call", 1)
	waitPhase(t, broken, custodyv1alpha1.WorkflowFailed)

	eventually(t, "metrics", func() error {
		if d := testutil.ToFloat64(metrics.StepAttempts) - attempts; d < 2 {
			return errorf("custody_step_attempts_total rose by %v, want at least 2", d)
		}
		if d := testutil.ToFloat64(metrics.StepAttemptsEnded.WithLabelValues("failed", custodyv1alpha1.StepReasonJobFailed)) - failed; d < 1 {
			return errorf("failed attempts rose by %v", d)
		}
		if d := testutil.ToFloat64(metrics.StepAttemptsEnded.WithLabelValues("succeeded", custodyv1alpha1.StepReasonSucceeded)) - succeeded; d < 1 {
			return errorf("succeeded attempts rose by %v", d)
		}
		// Each run counted once, when it ended, by what it ran (this namespace has only these two).
		for _, c := range []struct{ definition, phase string }{{"inline", "Succeeded"}, {"cronworkflow/nightly", "Failed"}} {
			if n := testutil.ToFloat64(metrics.WorkflowsFinished.WithLabelValues(ns, c.definition, c.phase)); n != 1 {
				return errorf("custody_workflows_finished_total{definition=%q,phase=%q} = %v, want 1", c.definition, c.phase, n)
			}
		}
		if n := histogramCount(t, "custody_workflow_duration_seconds", ns); n != 2 {
			return errorf("custody_workflow_duration_seconds has %d observations in this namespace, want 2 (one per run)", n)
		}
		return nil
	})
	if n := testutil.ToFloat64(metrics.WorkflowsFinished.WithLabelValues(ns, "inline", "Failed")); n != 0 {
		t.Errorf(`custody_workflows_finished_total{definition="inline",phase="Failed"} = %v, want 0`, n)
	}
	if n := testutil.CollectAndCount(metrics.StepDuration); n == 0 {
		t.Error("custody_step_attempt_duration_seconds has no series")
	}
	// The workflows gauge reads the API; this workflow is Succeeded.
	if n := gauge(t, "custody_workflows", "phase", string(custodyv1alpha1.WorkflowSucceeded)); n < 1 {
		t.Errorf(`custody_workflows{phase="Succeeded"} = %v, want at least this workflow`, n)
	}
}

// gauge is the value of the series of a gauge family with the given label (-1 if there is none).
func gauge(t *testing.T, family, label, value string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// histogramCount is the number of observations of a histogram family in series whose namespace
// label is ns.
func histogramCount(t *testing.T, family, ns string) uint64 {
	t.Helper()
	n, _ := histogram(t, family, ns)
	return n
}

// histogram is the number and sum of the observations of a histogram family in series whose
// namespace label is ns and that have the label pairs given (name, value, ...).
func histogram(t *testing.T, family, ns string, pairs ...string) (n uint64, sum float64) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"namespace": ns}
	for i := 0; i+1 < len(pairs); i += 2 {
		want[pairs[i]] = pairs[i+1]
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
					matched++
				}
			}
			if matched == len(want) {
				n += m.GetHistogram().GetSampleCount()
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return n, sum
}
