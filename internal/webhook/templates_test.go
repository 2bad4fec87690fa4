package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

func mustTemplate(t *testing.T, ns, manifest string) *custodyv1alpha1.WorkflowTemplate {
	t.Helper()
	o := &custodyv1alpha1.WorkflowTemplate{}
	if err := yaml.UnmarshalStrict([]byte(manifest), o); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	o.Namespace = ns
	return o
}

func mustCron(t *testing.T, ns, manifest string) *custodyv1alpha1.CronWorkflow {
	t.Helper()
	o := &custodyv1alpha1.CronWorkflow{}
	if err := yaml.UnmarshalStrict([]byte(manifest), o); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	o.Namespace = ns
	return o
}

// payTemplate requests the app-db grant, which alice may use and mallory may not.
const payTemplate = `
metadata: {name: pay-invoice}
spec:
  parameters:
  - {name: invoice, description: the invoice number}
  - {name: currency, default: EUR, allowedValues: [EUR, USD]}
  steps:
  - {name: check, image: busybox, args: ["$(params.invoice)"]}
  - {name: pay, image: busybox, dependsOn: [check], credentials: [app-db]}
  finally:
  - {name: notify, image: busybox, when: "workflow.phase == 'Failed'"}
`

// TestTemplatesAndCronWorkflows: admission checks runs against their template, deep-validates
// templates and CronWorkflows, and applies the `use` check to every way of requesting a grant.
func TestTemplatesAndCronWorkflows(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	create(t, as(alice), mustTemplate(t, ns, payTemplate))

	cases := []struct {
		name string
		who  string
		obj  client.Object
		want []string
	}{{
		name: "run of a template that does not exist",
		who:  alice,
		obj:  mustWorkflow(t, ns, "metadata: {name: r1}\nspec: {workflowTemplateRef: {name: nope}}"),
		want: []string{"spec.workflowTemplateRef.name", `Not found: "nope"`},
	}, {
		name: "run without a required parameter",
		who:  alice,
		obj:  mustWorkflow(t, ns, "metadata: {name: r2}\nspec: {workflowTemplateRef: {name: pay-invoice}}"),
		want: []string{"spec.parameters", `parameter "invoice" is required (the invoice number)`},
	}, {
		name: "run with a value outside the allowed ones",
		who:  alice,
		obj: mustWorkflow(t, ns, `metadata: {name: r3}
spec: {workflowTemplateRef: {name: pay-invoice}, parameters: [{name: invoice, value: "4711"}, {name: currency, value: GBP}]}`),
		want: []string{`parameter "currency": "GBP" is not one of the allowed values ["EUR", "USD"]`},
	}, {
		name: "run of a template whose grant the author may not use",
		who:  mallory,
		obj: mustWorkflow(t, ns, `metadata: {name: r4}
spec: {workflowTemplateRef: {name: pay-invoice}, parameters: [{name: invoice, value: "4711"}]}`),
		want: []string{"mallory may not use the CredentialGrants app-db"},
	}, {
		name: "template requesting a grant the author may not use",
		who:  mallory,
		obj: mustTemplate(t, ns, `metadata: {name: t1}
spec: {steps: [{name: s, image: busybox, credentials: [app-db]}]}`),
		want: []string{"WorkflowTemplate", "mallory may not use the CredentialGrants app-db"},
	}, {
		name: "template with a cycle",
		who:  alice,
		obj: mustTemplate(t, ns, `metadata: {name: t2}
spec: {steps: [{name: a, image: busybox, dependsOn: [b]}, {name: b, image: busybox, dependsOn: [a]}]}`),
		want: []string{"spec.steps.dependsOn", "dependsOn forms a cycle"},
	}, {
		name: "template step reading an undeclared parameter",
		who:  alice,
		obj: mustTemplate(t, ns, `metadata: {name: t3}
spec: {steps: [{name: a, image: busybox, args: ["$(params.region)"]}]}`),
		want: []string{"spec.steps[0].args[0]", `declares no parameter "region"`},
	}, {
		name: "a step (not finally) reading workflow.phase",
		who:  alice,
		obj: mustTemplate(t, ns, `metadata: {name: t4}
spec: {steps: [{name: a, image: busybox, when: "workflow.phase == 'Failed'"}]}`),
		want: []string{"spec.steps[0].when", "only finally steps can read"},
	}, {
		name: "CronWorkflow with a schedule that does not parse",
		who:  alice,
		obj: mustCron(t, ns, `metadata: {name: c1}
spec: {schedule: "*/5 * * *", workflowSpec: {steps: [{name: a, image: busybox}]}}`),
		want: []string{"spec.schedule", "expected exactly 5 fields"},
	}, {
		name: "CronWorkflow with an unknown time zone",
		who:  alice,
		obj: mustCron(t, ns, `metadata: {name: c2}
spec: {schedule: "0 9 * * *", timeZone: Mars/Olympus, workflowSpec: {steps: [{name: a, image: busybox}]}}`),
		want: []string{"spec.timeZone", "unknown time zone Mars/Olympus"},
	}, {
		name: "CronWorkflow requesting a grant the author may not use",
		who:  mallory,
		obj: mustCron(t, ns, `metadata: {name: c3}
spec: {schedule: "@daily", workflowSpec: {steps: [{name: a, image: busybox, credentials: [app-db]}]}}`),
		want: []string{"CronWorkflow", "mallory may not use the CredentialGrants app-db"},
	}, {
		name: "CronWorkflow of a template with a parameter it does not declare",
		who:  alice,
		obj: mustCron(t, ns, `metadata: {name: c4}
spec: {schedule: "@daily", workflowSpec: {workflowTemplateRef: {name: pay-invoice}, parameters: [{name: invoice, value: "1"}, {name: x, value: "1"}]}}`),
		want: []string{"spec.workflowSpec.parameters", `parameter "x" is not declared`},
	}, {
		name: "inline workflow posing as a run of a template",
		who:  alice,
		obj: mustWorkflow(t, ns, `metadata: {name: r5, labels: {custody.dev/template: pay-invoice}}
spec: {steps: [{name: a, image: busybox}]}`),
		want: []string{"custody.dev/template", "may not carry it"},
	}}
	for _, tc := range cases {
		refused(t, tc.name, as(tc.who).Create(ctx, tc.obj), tc.want...)
	}

	// Allowed: alice runs her template; the label comes from admission even if the manifest
	// names another template.
	run := mustWorkflow(t, ns, `metadata: {name: pay-4711, labels: {custody.dev/template: other}}
spec: {workflowTemplateRef: {name: pay-invoice}, parameters: [{name: invoice, value: "4711"}]}`)
	create(t, as(alice), run)
	if got := run.Labels[custodyv1alpha1.LabelTemplate]; got != "pay-invoice" {
		t.Errorf("label %s = %q, want pay-invoice", custodyv1alpha1.LabelTemplate, got)
	}
	if got := run.Annotations[custodyv1alpha1.AnnotationCreatedBy]; got != alice {
		t.Errorf("created-by = %q", got)
	}
	// A CronWorkflow applied before its template (GitOps order) is allowed. Admission records who
	// wrote its spec (a forged record is replaced), keeps it on other changes, and records the new
	// writer when the spec changes: the controller checks that identity's `use` before each run.
	nightly := mustCron(t, ns, `metadata: {name: nightly, annotations: {custody.dev/authorized-by: '{"user":"admin"}'}}
spec: {schedule: "0 2 * * *", timeZone: Europe/Berlin, workflowSpec: {workflowTemplateRef: {name: later}}}`)
	create(t, as(alice), nightly)
	author := func() custodyv1alpha1.Author {
		t.Helper()
		cur := &custodyv1alpha1.CronWorkflow{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(nightly), cur); err != nil {
			t.Fatal(err)
		}
		a, ok := custodyv1alpha1.ParseAuthor(cur.Annotations[custodyv1alpha1.AnnotationAuthorizedBy])
		if !ok {
			t.Fatalf("no author recorded: %v", cur.Annotations)
		}
		return a
	}
	if a := author(); a.User != alice {
		t.Errorf("authorized-by = %+v, want alice (the forged admin replaced)", a)
	}
	refused(t, "rewriting authorized-by", annotate(ctx, as(alice), nightly, custodyv1alpha1.AnnotationAuthorizedBy, `{"user":"admin"}`),
		"custody.dev/authorized-by", "set by admission")
	if err := as(pat).Patch(ctx, nightly, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"schedule":"0 3 * * *"}}`))); err != nil {
		t.Fatalf("pat changing the schedule: %v", err)
	}
	if a := author(); a.User != pat {
		t.Errorf("authorized-by after pat's spec change = %+v, want pat", a)
	}
	if err := annotate(ctx, as(alice), nightly, "team", "finance"); err != nil {
		t.Errorf("alice annotating: %v", err)
	}
	if a := author(); a.User != pat {
		t.Errorf("authorized-by after a metadata change = %+v, want pat still", a)
	}

	// Pausing a schedule is not a new spec: mallory (on call; she may not use app-db) suspends and
	// resumes alice's CronWorkflow, which stays alice's, so its runs keep their grant. Changing
	// what it runs is still hers to do, or someone's with the right.
	backup := mustCron(t, ns, `metadata: {name: backup}
spec: {schedule: "@daily", workflowSpec: {steps: [{name: a, image: busybox, credentials: [app-db]}]}}`)
	create(t, as(alice), backup)
	for _, suspend := range []string{"true", "false"} {
		if err := as(mallory).Patch(ctx, backup, client.RawPatch("application/merge-patch+json",
			[]byte(`{"spec":{"suspend":`+suspend+`}}`))); err != nil {
			t.Fatalf("mallory setting suspend to %s: %v", suspend, err)
		}
		a, _ := custodyv1alpha1.ParseAuthor(backup.Annotations[custodyv1alpha1.AnnotationAuthorizedBy])
		if a.User != alice {
			t.Errorf("authorized-by after mallory set suspend to %s = %+v, want alice still", suspend, a)
		}
	}
	refused(t, "mallory changing the schedule", as(mallory).Patch(ctx, backup, client.RawPatch("application/merge-patch+json",
		[]byte(`{"spec":{"schedule":"@hourly","suspend":true}}`))), "mallory may not use the CredentialGrants app-db")

	// A run a CronWorkflow of alice's created on her behalf (pat plays the controller): alice, a
	// listed approver, may not approve its steps, nor take the annotation that says so off the run.
	payments := mustCron(t, ns, `metadata: {name: payments}
spec: {schedule: "0 6 * * *", suspend: true}`)
	payments.Spec.WorkflowSpec = mustWorkflow(t, ns, paymentWorkflow).Spec
	create(t, as(alice), payments)
	onBehalf := mustWorkflow(t, ns, paymentWorkflow)
	onBehalf.Name = "invoice-cron"
	onBehalf.Labels = map[string]string{custodyv1alpha1.LabelCronWorkflow: "payments"}
	onBehalf.Annotations = map[string]string{custodyv1alpha1.AnnotationOnBehalfOf: alice}
	create(t, as(pat), onBehalf)
	refused(t, "approval by the CronWorkflow's author", annotate(ctx, as(alice), onBehalf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"),
		"runs on behalf of alice", "four-eyes")
	refused(t, "removing on-behalf-of", as(alice).Patch(ctx, onBehalf.DeepCopy(), client.RawPatch("application/merge-patch+json",
		[]byte(`{"metadata":{"annotations":{"custody.dev/on-behalf-of":null}}}`))),
		"custody.dev/on-behalf-of", "cannot be changed")
	waitsForApproval(t, onBehalf, "pay")
	if err := annotate(ctx, as(bob), onBehalf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"); err != nil {
		t.Errorf("bob approving: %v", err)
	}

	// pat, a listed approver, rewrites alice's CronWorkflow (any change of what it runs makes him
	// its author): he may not then approve its runs either, which run what he wrote.
	rewritten := mustCron(t, ns, `metadata: {name: rewritten}
spec: {schedule: "0 6 * * *", suspend: true}`)
	rewritten.Spec.WorkflowSpec = mustWorkflow(t, ns, paymentWorkflow).Spec
	rewritten.Spec.WorkflowSpec.Steps[1].Approval.Approvers.Users = []string{pat, bob}
	create(t, as(alice), rewritten)
	if err := as(pat).Patch(ctx, rewritten, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"schedule":"0 7 * * *"}}`))); err != nil {
		t.Fatalf("pat changing the schedule: %v", err)
	}
	cronRun := mustWorkflow(t, ns, paymentWorkflow)
	cronRun.Name, cronRun.Spec = "invoice-rewritten", rewritten.Spec.WorkflowSpec
	cronRun.Labels = map[string]string{custodyv1alpha1.LabelCronWorkflow: "rewritten"}
	cronRun.Annotations = map[string]string{custodyv1alpha1.AnnotationOnBehalfOf: alice}
	create(t, as(mallory), cronRun) // mallory plays the controller
	refused(t, "approval by the CronWorkflow's spec author", annotate(ctx, as(pat), cronRun, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"),
		"runs what CronWorkflow rewritten's spec says, last written by pat", "four-eyes")
	waitsForApproval(t, cronRun, "pay")
	if err := annotate(ctx, as(bob), cronRun, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"); err != nil {
		t.Errorf("bob approving the rewritten CronWorkflow's run: %v", err)
	}
}

// TestTemplateItemsFromParameters: a template's forEach steps may take their items from a
// parameter; the template is checked with the parameter's default, and each run (or CronWorkflow)
// with its own values, before anything runs.
func TestTemplateItemsFromParameters(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	create(t, as(alice), mustTemplate(t, ns, `metadata: {name: rollout}
spec:
  parameters: [{name: regions, default: "eu"}, {name: version}]
  steps:
  - {name: deploy, image: busybox, forEach: ["$(params.regions)"], args: ["--region=$(item)", "$(params.version)"]}
  - {name: deploy-check, image: busybox, dependsOn: [deploy]}
  - {name: verify, image: busybox, dependsOn: [deploy-check], args: ["--regions=$(params.regions)"]}`))
	for _, tc := range []struct {
		name string
		obj  client.Object
		want []string
	}{{
		name: "template taking items from a parameter it does not declare",
		obj: mustTemplate(t, ns, `metadata: {name: t1}
spec: {steps: [{name: deploy, image: busybox, forEach: ["$(params.regions)"]}]}`),
		want: []string{"spec.steps[0].forEach[0]", `declares no parameter "regions"`},
	}, {
		name: "template whose default lists an item that cannot be one",
		obj: mustTemplate(t, ns, `metadata: {name: t2}
spec: {parameters: [{name: regions, default: "eu,eu"}], steps: [{name: deploy, image: busybox, forEach: ["$(params.regions)"]}]}`),
		want: []string{"spec.steps[0].forEach", `with the parameters' defaults, step "deploy": forEach item "eu" (from parameter regions) is listed twice`},
	}, {
		name: "template reading the result of such an item",
		obj: mustTemplate(t, ns, `metadata: {name: t3}
spec:
  parameters: [{name: regions}]
  steps:
  - {name: deploy, image: busybox, forEach: ["$(params.regions)"], results: [{name: url}]}
  - {name: verify, image: busybox, dependsOn: [deploy], args: ["$(steps.deploy-eu.results.url)"]}`),
		want: []string{"spec.steps[1].args[0]", `the items of step "deploy" come from parameter "regions"`},
	}, {
		name: "run whose value lists an item that is not a DNS label",
		obj: mustWorkflow(t, ns, `metadata: {name: r1}
spec: {workflowTemplateRef: {name: rollout}, parameters: [{name: version, value: "1"}, {name: regions, value: "eu,Asia Pacific"}]}`),
		want: []string{"spec.parameters", `WorkflowTemplate rollout: step "deploy": forEach item "Asia Pacific" (from parameter regions) is not a DNS label`},
	}, {
		name: "run whose value lists more items than a step may run",
		obj: mustWorkflow(t, ns, `metadata: {name: r2}
spec: {workflowTemplateRef: {name: rollout}, parameters: [{name: version, value: "1"}, {name: regions, value: "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"}]}`),
		want: []string{"spec.parameters", `step "deploy" runs 17 items; at most 16`},
	}, {
		name: "run whose item's step would have the name of another step",
		obj: mustWorkflow(t, ns, `metadata: {name: r3}
spec: {workflowTemplateRef: {name: rollout}, parameters: [{name: version, value: "1"}, {name: regions, value: "eu,check"}]}`),
		want: []string{"spec.parameters", `step "deploy" runs item "check" as step "deploy-check", which is already the name of a step`},
	}, {
		name: "CronWorkflow whose runs would list no item",
		obj: mustCron(t, ns, `metadata: {name: c1}
spec: {schedule: "@daily", workflowSpec: {workflowTemplateRef: {name: rollout}, parameters: [{name: version, value: "1"}, {name: regions, value: ""}]}}`),
		want: []string{"spec.workflowSpec.parameters", "parameter regions, which lists none"},
	}} {
		refused(t, tc.name, as(alice).Create(ctx, tc.obj), tc.want...)
	}
	run := mustWorkflow(t, ns, `metadata: {name: rollout-1}
spec: {workflowTemplateRef: {name: rollout}, parameters: [{name: version, value: "1"}, {name: regions, value: "eu, us-east"}]}`)
	create(t, as(alice), run)
}

// TestCronRunLabelIsTheControllers: grants may select a CronWorkflow's runs by the label
// custody.dev/cronworkflow, so a Workflow may carry it only with that CronWorkflow's spec and
// author; anything else (other steps under the label, the label added later, the four-eyes
// annotation forged or left out) is refused.
func TestCronRunLabelIsTheControllers(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	nightly := mustCron(t, ns, `metadata: {name: nightly}
spec: {schedule: "0 2 * * *", suspend: true}`)
	nightly.Spec.WorkflowSpec = mustWorkflow(t, ns, paymentWorkflow).Spec
	create(t, as(alice), nightly)
	run := func(name string, labels, annotations map[string]string, spec string) *custodyv1alpha1.Workflow {
		wf := mustWorkflow(t, ns, spec)
		wf.Name, wf.Labels, wf.Annotations = name, labels, annotations
		return wf
	}
	label := map[string]string{custodyv1alpha1.LabelCronWorkflow: "nightly"}
	onBehalf := map[string]string{custodyv1alpha1.AnnotationOnBehalfOf: alice}
	other := `metadata: {name: x}
spec:
  steps: [{name: pay, image: registry.example.com/anything:1}]`
	for _, tc := range []struct {
		name string
		wf   *custodyv1alpha1.Workflow
		want []string
	}{
		{"other steps under the label", run("forged", label, onBehalf, other),
			[]string{"marks the runs of CronWorkflow nightly", "only the controller creates its runs"}},
		{"a CronWorkflow that does not exist", run("nobody", map[string]string{custodyv1alpha1.LabelCronWorkflow: "weekly"}, nil, other),
			[]string{`names CronWorkflow "weekly", which does not exist`}},
		{"the four-eyes annotation left out", run("no-author", label, nil, paymentWorkflow),
			[]string{"must carry the annotation custody.dev/on-behalf-of naming its author \"alice\""}},
		{"the four-eyes annotation without the label", run("stray", nil, onBehalf, paymentWorkflow),
			[]string{"is set on the runs of a CronWorkflow only"}},
	} {
		refused(t, tc.name, as(alice).Create(ctx, tc.wf), tc.want...)
	}
	// The label added to a Workflow afterwards is checked the same way.
	plain := run("plain", nil, nil, other)
	create(t, as(alice), plain)
	refused(t, "the label added later", as(alice).Patch(ctx, plain.DeepCopy(), client.RawPatch("application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"custody.dev/cronworkflow":"nightly"}}}`))), "only the controller creates its runs")
	// What the controller creates passes.
	create(t, as(pat), run("nightly-29650000", label, onBehalf, paymentWorkflow))
	// The CronWorkflow counts a Workflow it controls (owner reference) as one of its runs: only the
	// controller may write that, here the admin the manager runs as.
	owned := func(name string) *custodyv1alpha1.Workflow {
		wf := run(name, label, onBehalf, paymentWorkflow)
		wf.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(nightly,
			custodyv1alpha1.GroupVersion.WithKind("CronWorkflow"))}
		return wf
	}
	refused(t, "a run owned by the CronWorkflow, created by alice", as(alice).Create(ctx, owned("nightly-29650001")),
		"only the controller creates the runs of CronWorkflow nightly")
	plain = run("plain-2", nil, nil, other)
	create(t, as(alice), plain)
	plain.OwnerReferences = owned("x").OwnerReferences
	refused(t, "the owner reference added later", as(alice).Update(ctx, plain), "only the controller creates the runs")
	create(t, env.Client, owned("nightly-29650002"))
}

// TestDefinitionsWarnOfGrantsThatDoNotCoverTheirRuns: a CronWorkflow's runs are named after it and
// a scheduled time, and a template's runs are named by whoever runs them, so a grant that names
// the definition as a workflow covers none of them (or one), and their steps would wait for it.
// Admission says so as the definition is created, with what would cover every run; it says the
// same of grants that do not exist and of steps that outlive a grant's ttl.
func TestDefinitionsWarnOfGrantsThatDoNotCoverTheirRuns(t *testing.T) {
	ns := team(t)
	create(t, as(alice), mustGrant(t, ns, `
metadata: {name: nightly-db}
spec:
  subjects: [{workflowName: nightly, steps: [pay]}]
  credential: {secret: {name: app-db, keys: [password]}}`))
	create(t, as(alice), mustGrant(t, ns, `
metadata: {name: reports}
spec:
  subjects: [{workflowSelector: {matchLabels: {custody.dev/cronworkflow: nightly}}, steps: [pay, report]}]
  credential: {secret: {name: app-db, keys: [password]}}`))
	out := kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "0 2 * * *"
  workflowSpec:
    steps:
    - {name: pay, image: busybox, credentials: [nightly-db, reports]}
    - {name: report, image: busybox, credentials: [reports], timeout: 1h}
    - {name: archive, image: busybox, credentials: [archive-bucket]}
`)
	wantWarnings(t, out, "cronworkflow.custody.dev/nightly created",
		`Warning: step "pay" of its runs will wait: CredentialGrant nightly-db names workflow nightly, but a CronWorkflow's runs `+
			`are named nightly-<minutes since the epoch>; to cover every run, select custody.dev/cronworkflow=nightly in its `+
			`subjects (workflowSelector)`,
		`Warning: step "archive" of its runs will wait until this changes: CredentialGrant archive-bucket does not exist in `+
			`namespace `+ns,
		`Warning: step "report" may run for 1h (its timeout), longer than an issuance of grant reports lives (ttl 15m): `+
			`after 15m it runs on without the credential`)

	out = kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: payments}
spec:
  stepDefaults: {timeout: 10m}
  steps:
  - {name: pay, image: busybox, credentials: [nightly-db]}
  - {name: report, image: busybox, credentials: [reports]}
`)
	wantWarnings(t, out, "workflowtemplate.custody.dev/payments created",
		`Warning: step "pay" of its runs will wait: CredentialGrant nightly-db covers only a run named nightly; to cover every `+
			`run, select custody.dev/template=payments in its subjects (workflowSelector)`,
		`Warning: step "report" of its runs will wait: CredentialGrant reports does not select its runs; to cover every run, `+
			`select custody.dev/template=payments in its subjects (workflowSelector)`)

	// A CronWorkflow of the template: its runs carry both labels, and its steps are the template's.
	out = kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly-payments}
spec:
  schedule: "0 3 * * *"
  workflowSpec: {workflowTemplateRef: {name: payments}}
`)
	wantWarnings(t, out, "cronworkflow.custody.dev/nightly-payments created",
		`Warning: step "pay" of its runs will wait: CredentialGrant nightly-db does not select its runs; to cover every run, `+
			`select custody.dev/cronworkflow=nightly-payments in its subjects (workflowSelector)`,
		`Warning: step "report" of its runs will wait: CredentialGrant reports does not select its runs; to cover every run, `+
			`select custody.dev/cronworkflow=nightly-payments in its subjects (workflowSelector)`)
}

// wantWarnings fails the test unless kubectl printed exactly these warnings, and the line that
// says the object was created.
func wantWarnings(t *testing.T, out, created string, warnings ...string) {
	t.Helper()
	for _, want := range append([]string{created}, warnings...) {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("kubectl printed:\n%s\nwant a line %q", out, want)
		}
	}
	if got := strings.Count(out, "Warning:"); got != len(warnings) {
		t.Errorf("kubectl printed:\n%s\n%d warnings, want %d", out, got, len(warnings))
	}
}

// TestGrantWarnsOfCronWorkflowsItWouldNotCover: whoever writes a grant that a CronWorkflow's steps
// request learns, as it is applied, when it would not cover the CronWorkflow's runs (named after
// it and a time), and not once it selects them.
func TestGrantWarnsOfCronWorkflowsItWouldNotCover(t *testing.T) {
	ns := team(t)
	kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "0 2 * * *"
  workflowSpec:
    steps: [{name: pay, image: busybox, credentials: [ledger]}, {name: other, image: busybox}]
`)
	apply := func(subjects string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "grant.yaml")
		if err := os.WriteFile(path, []byte(`apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: ledger}
spec:
  subjects: [`+subjects+`]
  credential: {secret: {name: app-db, keys: [password]}}
`), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := env.Kubectl(t, "-n", ns, "--as", alice, "apply", "-f", path)
		if err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		return out
	}
	unprotected := `Warning: Namespace ` + ns + ` does not protect step pods (label custody.dev/protect-step-pods=true): while a ` +
		`step holds what CredentialGrant ledger hands out, whoever may exec into or create pods there, or get ServiceAccount ` +
		`tokens (the built-in edit role may), can use it as the step`
	wantWarnings(t, apply("{workflowName: nightly, steps: [pay]}"), "credentialgrant.custody.dev/ledger created", unprotected,
		`Warning: CronWorkflow nightly: step "pay" of its runs will wait: CredentialGrant ledger names workflow nightly, but a `+
			`CronWorkflow's runs are named nightly-<minutes since the epoch>; to cover every run, select `+
			`custody.dev/cronworkflow=nightly in its subjects (workflowSelector)`)
	wantWarnings(t, apply("{workflowSelector: {matchLabels: {custody.dev/cronworkflow: nightly}}, steps: [pay]}"),
		"credentialgrant.custody.dev/ledger configured", unprotected)
}
