package workflow

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/metrics"
)

// template creates a WorkflowTemplate from YAML in ns.
func template(t *testing.T, ns, manifest string) *custodyv1alpha1.WorkflowTemplate {
	t.Helper()
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := yaml.UnmarshalStrict([]byte(manifest), tpl); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	tpl.Namespace = ns
	if err := env.Client.Create(ctxT(t), tpl); err != nil {
		t.Fatalf("creating template: %v", err)
	}
	return tpl
}

const releaseTemplate = `
metadata: {name: release}
spec:
  parameters:
  - {name: env, description: where to deploy, allowedValues: [staging, prod]}
  - {name: region, default: eu-west-1}
  - {name: zones, default: "a"}
  steps:
  - name: build
    image: example.com/build:1
    args: [build, "$(params.env)", "$(params.region)"]
    results: [{name: digest}]
  - name: deploy
    image: example.com/deploy:1
    dependsOn: [build]
    credentials: [deployer]
  - name: canary
    image: example.com/canary:1
    dependsOn: [deploy]
    forEach: ["$(params.zones)"]
    args: [probe, "$(params.region)$(item)"]
  imagePullSecrets: [{name: release-registry}]
  results: [{name: released, value: "$(steps.build.results.digest) to $(params.env) in $(params.region)"}]
`

// TestTemplate_runIsUnaffectedByLaterEdits: a run resolves its template once (parameters checked,
// defaults applied, generation recorded, label set) and keeps the steps it resolved when the
// template is edited mid-run; the next run gets the edit.
func TestTemplate_runIsUnaffectedByLaterEdits(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	tpl := template(t, ns, releaseTemplate)
	for _, name := range []string{"release-registry", "staging-registry", "mirror"} {
		pullSecret(t, ns, name, true)
	}
	wf := apply(t, ns, `
metadata: {name: release-1}
spec:
  workflowTemplateRef: {name: release}
  parameters: [{name: env, value: prod}]
`)
	build := jobOf(t, wf, "build", 1)
	if got := build.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"build", "prod", "eu-west-1"}) {
		t.Errorf("build args = %v, want the value and the default substituted", got)
	}
	if got := build.Spec.Template.Spec.ImagePullSecrets; len(got) != 1 || got[0].Name != "release-registry" {
		t.Errorf("build imagePullSecrets = %v, want the template's release-registry", got)
	}
	wf = get(t, wf)
	if rt := wf.Status.Template; rt == nil || rt.Name != "release" || rt.Generation != tpl.Generation || rt.UID != string(tpl.UID) {
		t.Fatalf("status.template = %+v, want release at generation %d", rt, tpl.Generation)
	}
	if got := wf.Labels[custodyv1alpha1.LabelTemplate]; got != "release" {
		t.Errorf("label %s = %q, want release", custodyv1alpha1.LabelTemplate, got)
	}

	// Edit the template while the run is on its first step: the run keeps what it resolved.
	eventually(t, "template update", func() error {
		cur := &custodyv1alpha1.WorkflowTemplate{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tpl), cur); err != nil {
			return err
		}
		cur.Spec.Steps[1].Image = "example.com/deploy:2"
		cur.Spec.Steps[1].Credentials = nil
		return env.Client.Update(ctxT(t), cur)
	})
	succeed(t, wf, "build", 1, `{"digest":"sha256:1"}`)
	// deploy waits for its grant (which does not exist): the resolved spec still requests it.
	eventually(t, "deploy to wait for its grant", func() error {
		st := stepOf(get(t, wf), "deploy")
		if st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.ReasonGrantNotFound {
			return errorf("deploy is %s (%s)", st.Phase, st.Reason)
		}
		return nil
	})
	// A grant selecting every run of the template by its label covers the run.
	configMapReader(t, ns)
	grant(t, ns, `
metadata: {name: deployer}
spec:
  subjects: [{workflowSelector: {matchLabels: {custody.dev/template: release}}, steps: [deploy]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}
  ttl: 10m`)
	wf = waitStep(t, wf, "deploy", custodyv1alpha1.StepRunning)
	if c := credentialOf(wf, "deploy"); c.Grant != "deployer" || c.Kind != custodyv1alpha1.CredentialKindKubernetesRole {
		t.Errorf("deploy holds %+v, want a credential of grant deployer", c)
	}
	if got := jobOf(t, wf, "deploy", 1).Spec.Template.Spec.Containers[0].Image; got != "example.com/deploy:1" {
		t.Errorf("deploy runs %s, want the image the run resolved, not the edit", got)
	}
	succeed(t, wf, "deploy", 1, "")
	// canary runs once per zone: the default (a) here.
	if got := succeed(t, wf, "canary-a", 1, "").Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"probe", "eu-west-1a"}) {
		t.Errorf("canary-a args = %v, want the region and the item", got)
	}
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	// The template's results, computed for this run.
	wantResults(t, wf, custodyv1alpha1.StepResult{Name: "released", Value: "sha256:1 to prod in eu-west-1"})
	eventually(t, "the finished run counted under its template", func() error {
		if n := testutil.ToFloat64(metrics.WorkflowsFinished.WithLabelValues(ns, "workflowtemplate/release", "Succeeded")); n != 1 {
			return errorf(`custody_workflows_finished_total{definition="workflowtemplate/release",phase="Succeeded"} = %v, want 1`, n)
		}
		return nil
	})
	if got := get(t, wf).Status.Template.Spec.Steps[1].Image; got != "example.com/deploy:1" {
		t.Errorf("the run's recorded deploy image = %s, want the one it resolved", got)
	}

	// The next run gets the edit.
	wf2 := apply(t, ns, `
metadata: {name: release-2}
spec:
  workflowTemplateRef: {name: release}
  parameters: [{name: env, value: staging}, {name: region, value: us-east-1}, {name: zones, value: "b, c"}]
  imagePullSecrets: [{name: staging-registry}, {name: mirror}]
`)
	succeed(t, wf2, "build", 1, `{"digest":"sha256:2"}`)
	deploy := jobOf(t, wf2, "deploy", 1)
	if got := deploy.Spec.Template.Spec.Containers[0].Image; got != "example.com/deploy:2" {
		t.Errorf("second run's deploy image = %s, want the edited one", got)
	}
	if got := deploy.Spec.Template.Spec.ImagePullSecrets; len(got) != 2 || got[0].Name != "staging-registry" || got[1].Name != "mirror" {
		t.Errorf("second run's imagePullSecrets = %v, want its own (staging-registry, mirror) instead of the template's", got)
	}
	if rt := get(t, wf2).Status.Template; rt.Generation != tpl.Generation+1 {
		t.Errorf("second run resolved generation %d, want %d", rt.Generation, tpl.Generation+1)
	}
	succeed(t, wf2, "deploy", 1, "")
	// The run's own zones: two canary steps side by side, each with its item.
	for _, zone := range []string{"b", "c"} {
		if got := jobOf(t, wf2, "canary-"+zone, 1).Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"probe", "us-east-1" + zone}) {
			t.Errorf("canary-%s args = %v", zone, got)
		}
	}
	succeed(t, wf2, "canary-b", 1, "")
	succeed(t, wf2, "canary-c", 1, "")
	wf2 = waitPhase(t, wf2, custodyv1alpha1.WorkflowSucceeded)
	wantResults(t, wf2, custodyv1alpha1.StepResult{Name: "released", Value: "sha256:2 to staging in us-east-1"})
	if names := summary(wf2); !strings.Contains(names, "canary-b") || strings.Contains(names, "canary-a") {
		t.Errorf("second run's steps: %s, want canary-b and canary-c only", names)
	}
}

// TestTemplate_invalidParametersFailTheRun: without admission (this test runs none), the
// controller refuses what admission would: the run fails with reason InvalidParameters, a message
// naming every problem, and no Job.
func TestTemplate_invalidParametersFailTheRun(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	template(t, ns, releaseTemplate)
	for _, tc := range []struct{ name, params, want string }{
		{"missing", `[{name: region, value: x}]`, `parameter "env" is required (where to deploy)`},
		{"not-allowed", `[{name: env, value: dev}]`, `parameter "env": "dev" is not one of the allowed values ["staging", "prod"]`},
		{"undeclared", `[{name: env, value: prod}, {name: colour, value: red}]`, `parameter "colour" is not declared by the template`},
		{"no-zones", `[{name: env, value: prod}, {name: zones, value: ","}]`, `step "canary" runs once per item of parameter zones, which lists none`},
		{"bad-zone", `[{name: env, value: prod}, {name: zones, value: "a,B"}]`, `step "canary": forEach item "B" (from parameter zones) is not a DNS label`},
	} {
		wf := apply(t, ns, "metadata: {name: bad-"+tc.name+"}\nspec:\n  workflowTemplateRef: {name: release}\n  parameters: "+tc.params+"\n")
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
		c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled)
		if c == nil || c.Reason != custodyv1alpha1.ReasonInvalidParameters || !strings.Contains(c.Message, tc.want) {
			t.Errorf("%s: Stalled = %+v, want reason InvalidParameters with %q", tc.name, c, tc.want)
		}
		if n := len(jobs(t, wf)); n != 0 {
			t.Errorf("%s: %d Jobs were created", tc.name, n)
		}
	}
}

// TestTemplate_runWaitsForAMissingTemplate: a run whose template does not exist yet waits
// (Reconciling, reason TemplateNotFound) and starts when the template is created.
func TestTemplate_runWaitsForAMissingTemplate(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: early}
spec:
  workflowTemplateRef: {name: later}
`)
	eventually(t, "the run to wait for its template", func() error {
		c := meta.FindStatusCondition(get(t, wf).Status.Conditions, custodyv1alpha1.ConditionReconciling)
		if c == nil || c.Reason != custodyv1alpha1.ReasonTemplateNotFound {
			return errorf("Reconciling = %+v", c)
		}
		return nil
	})
	template(t, ns, `
metadata: {name: later}
spec:
  steps: [{name: only, image: example.com/o:1}]
`)
	succeed(t, wf, "only", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
}

const withFinally = `
spec:
  steps:
  - {name: work, image: example.com/w:1}
  - {name: more, image: example.com/w:1, dependsOn: [work]}
  finally:
  - {name: cleanup, image: example.com/c:1, args: ["--outcome=$(workflow.phase)"]}
  - {name: notify-failure, image: example.com/n:1, when: "workflow.phase == 'Failed'", env: [{name: OUTCOME, value: "$(workflow.phase)"}]}
  - {name: notify-cancel, image: example.com/n:1, when: "workflow.phase == 'Cancelled'", dependsOn: [cleanup]}
`

// outcome checks that the cleanup step's Job was given the steps' outcome.
func outcome(t *testing.T, job *batchv1.Job, want string) {
	t.Helper()
	if got := job.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, []string{"--outcome=" + want}) {
		t.Errorf("%s args = %q, want --outcome=%s", job.Name, got, want)
	}
}

// TestFinally_afterSuccessFailureAndCancel: finally steps run once every step ended, whatever the
// outcome, and see the outcome in `when` and as $(workflow.phase) in args and env.
func TestFinally_afterSuccessFailureAndCancel(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	t.Run("success", func(t *testing.T) {
		wf := apply(t, ns, "metadata: {name: fin-ok}"+withFinally)
		succeed(t, wf, "work", 1, "")
		waitStep(t, wf, "more", custodyv1alpha1.StepRunning)
		if st := stepOf(get(t, wf), "cleanup"); st.Phase != custodyv1alpha1.StepPending || st.Reason != custodyv1alpha1.StepReasonWaitingForSteps {
			t.Errorf("cleanup is %s (%s) while a step runs, want Pending (WaitingForSteps)", st.Phase, st.Reason)
		}
		succeed(t, wf, "more", 1, "")
		wf = waitStep(t, wf, "cleanup", custodyv1alpha1.StepRunning)
		if wf.Status.Phase != custodyv1alpha1.WorkflowRunning {
			t.Errorf("workflow is %s while a finally step runs, want Running", wf.Status.Phase)
		}
		outcome(t, succeed(t, wf, "cleanup", 1, ""), "Succeeded")
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
		for _, name := range []string{"notify-failure", "notify-cancel"} {
			if st := stepOf(wf, name); st.Phase != custodyv1alpha1.StepSkipped || st.Reason != custodyv1alpha1.StepReasonWhenFalse {
				t.Errorf("%s is %s (%s), want Skipped (WhenFalse)", name, st.Phase, st.Reason)
			}
		}
		if wf.Status.Progress != "5/5" {
			t.Errorf("progress = %s, want 5/5", wf.Status.Progress)
		}
	})
	t.Run("failure", func(t *testing.T) {
		wf := apply(t, ns, "metadata: {name: fin-fail}"+withFinally)
		fail(t, wf, "work", 1)
		outcome(t, succeed(t, wf, "cleanup", 1, ""), "Failed")
		if got := succeed(t, wf, "notify-failure", 1, "").Spec.Template.Spec.Containers[0].Env; len(got) != 1 || got[0].Value != "Failed" {
			t.Errorf("notify-failure env = %v, want OUTCOME=Failed", got)
		}
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
		if st := stepOf(wf, "more"); st.Phase != custodyv1alpha1.StepSkipped {
			t.Errorf("more is %s, want Skipped after work failed", st.Phase)
		}
		if st := stepOf(wf, "notify-cancel"); st.Phase != custodyv1alpha1.StepSkipped {
			t.Errorf("notify-cancel is %s, want Skipped", st.Phase)
		}
		if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled); c == nil || !strings.Contains(c.Message, "work") {
			t.Errorf("Stalled = %+v, want it to name the failed step", c)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		wf := apply(t, ns, "metadata: {name: fin-cancel}"+withFinally)
		job := jobOf(t, wf, "work", 1)
		cancelRun(t, wf)
		wf = waitStep(t, wf, "cleanup", custodyv1alpha1.StepRunning)
		if wf.Status.Phase != custodyv1alpha1.WorkflowRunning {
			t.Errorf("workflow is %s while its finally steps run after cancel, want Running", wf.Status.Phase)
		}
		if st := stepOf(wf, "work"); st.Phase != custodyv1alpha1.StepCancelled {
			t.Errorf("work is %s, want Cancelled", st.Phase)
		}
		eventually(t, "the cancelled step's Job to be deleted", func() error {
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(job), &batchv1.Job{}); !isNotFound(err) {
				return errorf("Job still there (err %v)", err)
			}
			return nil
		})
		outcome(t, succeed(t, wf, "cleanup", 1, ""), "Cancelled")
		succeed(t, wf, "notify-cancel", 1, "")
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
		if st := stepOf(wf, "notify-failure"); st.Phase != custodyv1alpha1.StepSkipped {
			t.Errorf("notify-failure is %s, want Skipped", st.Phase)
		}
	})
	t.Run("cancel while finally steps run stops nothing", func(t *testing.T) {
		wf := apply(t, ns, "metadata: {name: fin-late-cancel}"+withFinally)
		succeed(t, wf, "work", 1, "")
		succeed(t, wf, "more", 1, "")
		job := jobOf(t, wf, "cleanup", 1)
		cancelRun(t, wf)
		eventually(t, "the controller to see the cancel", func() error {
			if g := get(t, wf); g.Status.ObservedGeneration != g.Generation {
				return errorf("observedGeneration %d < %d", g.Status.ObservedGeneration, g.Generation)
			}
			return nil
		})
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(job), &batchv1.Job{}); err != nil {
			t.Errorf("the finally step's Job after cancel: %v, want it running", err)
		}
		succeed(t, wf, "cleanup", 1, "")
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
		if st := stepOf(wf, "notify-cancel"); st.Phase != custodyv1alpha1.StepSkipped {
			t.Errorf("notify-cancel is %s: the steps had all succeeded before the cancel", st.Phase)
		}
	})
	t.Run("a failed finally step fails the run", func(t *testing.T) {
		wf := apply(t, ns, "metadata: {name: fin-breaks}"+withFinally)
		succeed(t, wf, "work", 1, "")
		succeed(t, wf, "more", 1, "")
		fail(t, wf, "cleanup", 1)
		wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
		if st := stepOf(wf, "notify-cancel"); st.Phase != custodyv1alpha1.StepSkipped || st.Reason != custodyv1alpha1.StepReasonDependencyNotSucceeded {
			t.Errorf("notify-cancel is %s (%s), want Skipped (DependencyNotSucceeded)", st.Phase, st.Reason)
		}
	})
}

// TestParallelism_neverExceeded plays the Job controller for a wide workflow with a flaky step
// and records, throughout, how many of its Jobs are active at once: never more than parallelism,
// and the limit is used.
func TestParallelism_neverExceeded(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	const limit = 2
	wf := apply(t, ns, `
metadata: {name: wide-limited}
spec:
  parallelism: 2
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1}
  - {name: flaky, image: example.com/w:1, retries: {limit: 2, backoff: {duration: 1s}}}
  - {name: c, image: example.com/w:1}
  - {name: d, image: example.com/w:1}
  - {name: e, image: example.com/w:1, dependsOn: [a]}
  finally:
  - {name: f, image: example.com/w:1}
`)
	active := func() []batchv1.Job {
		var out []batchv1.Job
		for _, j := range jobs(t, wf) {
			if !jobFinished(&j) && j.DeletionTimestamp.IsZero() {
				out = append(out, j)
			}
		}
		return out
	}
	var mu sync.Mutex
	peak := 0
	observe := func() []batchv1.Job {
		a := active()
		mu.Lock()
		peak = max(peak, len(a))
		mu.Unlock()
		return a
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // observe between the test's own steps too
		for ctx.Err() == nil {
			var list batchv1.JobList
			if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err == nil {
				n := 0
				for _, j := range list.Items {
					if !jobFinished(&j) && j.DeletionTimestamp.IsZero() {
						n++
					}
				}
				mu.Lock()
				peak = max(peak, n)
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	failures := 0
	deadline := time.Now().Add(2 * wait)
	for get(t, wf).Status.Phase != custodyv1alpha1.WorkflowSucceeded {
		if time.Now().After(deadline) {
			t.Fatalf("workflow did not finish: %s", summary(get(t, wf)))
		}
		running := observe()
		if len(running) == 0 {
			time.Sleep(poll)
			continue
		}
		j := running[0]
		step := j.Labels[custodyv1alpha1.LabelStep]
		attempt := int32(1)
		if j.Labels[custodyv1alpha1.LabelAttempt] != "1" {
			attempt = 2
		}
		if step == "flaky" && failures < 1 {
			failures++
			fail(t, wf, step, attempt)
		} else {
			succeed(t, wf, step, attempt, "")
		}
		// Wait until the controller saw the end, so the next observation is of its decision.
		eventually(t, "the controller to see "+j.Name+" end", func() error {
			for _, st := range get(t, wf).Status.Steps {
				if st.JobName == j.Name && st.Phase == custodyv1alpha1.StepRunning {
					return errorf("%s still Running", st.Name)
				}
			}
			return nil
		})
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if peak > limit {
		t.Errorf("%d Jobs were active at once, parallelism is %d", peak, limit)
	}
	if peak < limit {
		t.Errorf("at most %d Jobs were active at once: parallelism %d was not used", peak, limit)
	}
	wf = get(t, wf)
	if st := stepOf(wf, "flaky"); st.Attempt != 2 || st.Phase != custodyv1alpha1.StepSucceeded {
		t.Errorf("flaky: attempt %d, %s; want succeeded on attempt 2", st.Attempt, st.Phase)
	}
	if n := len(jobs(t, wf)); n != 8 {
		t.Errorf("%d Jobs in all, want 8 (7 steps, one retry)", n)
	}
}

// TestFinally_holdsItsGrant: a finally step is a step like any other for grants: it holds the
// credential granted to it while it runs (here after the workflow's step failed), and it is revoked
// when it ends.
func TestFinally_holdsItsGrant(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	configMapReader(t, ns)
	grant(t, ns, `
metadata: {name: report-reader}
spec:
  subjects: [{workflowName: fin-grant, steps: [report]}]
  credential: {kubernetesRole: {kind: Role, name: cm-reader}}
  ttl: 10m`)
	wf := apply(t, ns, `
metadata: {name: fin-grant}
spec:
  steps: [{name: work, image: example.com/w:1}]
  finally: [{name: report, image: example.com/r:1, credentials: [report-reader]}]
`)
	fail(t, wf, "work", 1)
	wf = waitStep(t, wf, "report", custodyv1alpha1.StepRunning)
	sa := stepOf(wf, "report").ServiceAccountName
	waitCan(t, ns, sa, true)
	succeed(t, wf, "report", 1, "")
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	waitCan(t, ns, sa, false)
	if c := credentialOf(wf, "report"); c.Grant != "report-reader" || c.RevokedAt == nil {
		t.Errorf("report's credential record = %+v, want issued under report-reader and revoked", c)
	}
}

// TestTemplate_reuseAfterTheTemplateWasFixed: the GitOps way to fix a failed run of a template is
// to fix the template and run again reusing the failed run; the new run resolves the fixed
// template and takes over the steps the fix did not touch.
func TestTemplate_reuseAfterTheTemplateWasFixed(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	tpl := template(t, ns, `
metadata: {name: backup}
spec:
  parameters: [{name: db}]
  steps:
  - {name: dump, image: example.com/dump:1, args: ["$(params.db)"], results: [{name: file}]}
  - {name: upload, image: example.com/upload:1, args: ["$(steps.dump.results.file)"], dependsOn: [dump]}
`)
	first := apply(t, ns, "metadata: {name: backup-1}\nspec:\n  workflowTemplateRef: {name: backup}\n  parameters: [{name: db, value: orders}]")
	succeed(t, first, "dump", 1, `{"file":"orders-1.sql"}`)
	fail(t, first, "upload", 1)
	waitPhase(t, first, custodyv1alpha1.WorkflowFailed)

	eventually(t, "the template's fix", func() error {
		cur := &custodyv1alpha1.WorkflowTemplate{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(tpl), cur); err != nil {
			return err
		}
		cur.Spec.Steps[1].Image = "example.com/upload:2"
		return env.Client.Update(ctxT(t), cur)
	})
	again := apply(t, ns, "metadata: {name: backup-1-again}\nspec:\n  workflowTemplateRef: {name: backup}\n"+
		"  parameters: [{name: db, value: orders}]\n  reuseFrom: backup-1")
	upload := succeed(t, again, "upload", 1, "")
	if c := upload.Spec.Template.Spec.Containers[0]; c.Image != "example.com/upload:2" || !slices.Equal(c.Args, []string{"orders-1.sql"}) {
		t.Errorf("upload runs %s %v, want the fixed image with the file the reused dump reported", c.Image, c.Args)
	}
	again = waitPhase(t, again, custodyv1alpha1.WorkflowSucceeded)
	if st := stepOf(again, "dump"); st.Reason != custodyv1alpha1.StepReasonReused || st.JobName != "" {
		t.Errorf("dump: %s (%s), job %q, want taken over from backup-1", st.Phase, st.Reason, st.JobName)
	}
}

// TestForEach_parallelism: a forEach step with parallelism 1 runs its items one after another, in
// the order listed, the waiting ones saying why; an item waiting for its retry keeps its slot, and
// a failed item keeps the rest from starting.
func TestForEach_parallelism(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: rolling}
spec:
  steps:
  - {name: build, image: example.com/b:1}
  - name: deploy
    image: example.com/d:1
    dependsOn: [build]
    forEach: [eu, us, ap]
    parallelism: 1
    retries: {limit: 1, backoff: {duration: 1s}}
    args: ["$(item)"]
  - {name: docs, image: example.com/o:1, dependsOn: [build]}
`)
	succeed(t, wf, "build", 1, "")
	const waiting = "Waiting for a free slot: forEach step deploy runs at most 1 of its items at once (parallelism)"
	started := func(want ...string) {
		t.Helper()
		eventually(t, fmt.Sprintf("deploy items %v started, the rest waiting", want), func() error {
			cur := get(t, wf)
			for _, item := range []string{"eu", "us", "ap"} {
				st := stepOf(cur, "deploy-"+item)
				switch {
				case slices.Contains(want, item) && st.Attempt == 0:
					return errorf("deploy-%s: %s (%s), want started", item, st.Phase, st.Reason)
				case !slices.Contains(want, item) && (st.Attempt != 0 || st.Message != waiting):
					return errorf("deploy-%s: %s (%s) %q, attempt %d, want waiting for its forEach step's slot",
						item, st.Phase, st.Reason, st.Message, st.Attempt)
				}
			}
			return nil
		})
	}
	started("eu")
	succeed(t, wf, "docs", 1, "") // other steps are not held by the items' limit
	// An item waiting to be retried keeps its slot: eu is tried again before us starts.
	fail(t, wf, "deploy-eu", 1)
	jobOf(t, wf, "deploy-eu", 2)
	started("eu")
	succeed(t, wf, "deploy-eu", 2, "")
	started("eu", "us")
	fail(t, wf, "deploy-us", 1)
	fail(t, wf, "deploy-us", 2)
	wf = waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
	if st := stepOf(wf, "deploy-ap"); st.Phase != custodyv1alpha1.StepSkipped || st.Attempt != 0 {
		t.Errorf("deploy-ap after deploy-us failed: %s (%s), attempt %d, want Skipped and never started", st.Phase, st.Reason, st.Attempt)
	}
	for _, j := range jobs(t, wf) {
		if j.Labels[custodyv1alpha1.LabelStep] == "deploy-ap" {
			t.Errorf("deploy-ap has Job %s", j.Name)
		}
	}
}
