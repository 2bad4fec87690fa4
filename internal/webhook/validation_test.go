package webhook_test

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestDeepValidation: specs the CRD schema accepts but that cannot run are refused at admission,
// with a message that names the step and the field. Nothing is stored.
func TestDeepValidation(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	cases := []struct {
		name, manifest string
		want           []string
		only           bool // the only problem reported
	}{{
		name: "cycle in dependsOn",
		manifest: `
metadata: {name: cycle}
spec:
  steps:
  - {name: build, image: busybox, dependsOn: [deploy]}
  - {name: test, image: busybox, dependsOn: [build]}
  - {name: deploy, image: busybox, dependsOn: [test]}`,
		want: []string{"spec.steps.dependsOn", "dependsOn forms a cycle: build -> deploy -> test -> build"},
	}, {
		name: "result of a step that is not an ancestor, in args",
		manifest: `
metadata: {name: not-ancestor}
spec:
  steps:
  - {name: build, image: busybox, results: [{name: digest}]}
  - {name: scan, image: busybox}
  - {name: deploy, image: busybox, dependsOn: [scan], args: ["--image=app@$(steps.build.results.digest)"]}`,
		want: []string{"spec.steps[2].args[0]", `step "deploy" reads $(steps.build.results.digest)`,
			`"build" is not among the steps it depends on`, "add it to dependsOn"},
	}, {
		name: "result of a step that is not an ancestor, in when",
		manifest: `
metadata: {name: when-not-ancestor}
spec:
  steps:
  - {name: score, image: busybox, results: [{name: risk}]}
  - {name: disable-account, image: busybox, when: "int(steps.score.results.risk) > 80"}`,
		want: []string{"spec.steps[1].when", `step "disable-account" reads steps.score.results.risk`, "not among the steps it depends on"},
	}, {
		name: "result the step does not declare",
		manifest: `
metadata: {name: undeclared}
spec:
  steps:
  - {name: build, image: busybox, results: [{name: digest}]}
  - name: deploy
    image: busybox
    dependsOn: [build]
    env: [{name: TAG, value: "$(steps.build.results.tag)"}]`,
		want: []string{"spec.steps[1].env[0].value", `step "build" declares no result "tag"`},
	}, {
		name: "when does not compile",
		manifest: `
metadata: {name: bad-when}
spec:
  steps:
  - {name: check, image: busybox, results: [{name: amount}]}
  - {name: pay, image: busybox, dependsOn: [check], when: "steps.check.results.amount >"}`,
		want: []string{"spec.steps[1].when", `step "pay": when does not compile`},
	}, {
		name: "when is not boolean",
		manifest: `
metadata: {name: string-when}
spec:
  parameters: [{name: mode, value: live}]
  steps:
  - {name: pay, image: busybox, when: "params.mode + '-run'"}`,
		want: []string{"spec.steps[0].when", "must be a boolean expression, not string"},
	}, {
		name: "parameter that does not exist, in command",
		manifest: `
metadata: {name: no-param}
spec:
  parameters: [{name: invoice, value: "4711"}]
  steps:
  - {name: route, image: busybox, command: [route, "--invoice=$(params.invoice_id)"]}`,
		want: []string{"spec.steps[0].command[1]", `reads $(params.invoice_id)`, `declares no parameter "invoice_id"`},
	}, {
		name: "parameter that does not exist, in when",
		manifest: `
metadata: {name: no-param-when}
spec:
  steps:
  - {name: route, image: busybox, when: "params.region == 'eu'"}`,
		want: []string{"spec.steps[0].when", `declares no parameter "region"`},
	}, {
		name: "step that does not exist, in when",
		manifest: `
metadata: {name: no-step}
spec:
  steps:
  - {name: route, image: busybox, when: "steps.approve.phase == 'Succeeded'"}`,
		want: []string{"spec.steps[0].when", `the workflow has no step "approve"`},
	}, {
		name: "the workflow's outcome in a step's args",
		manifest: `
metadata: {name: phase-in-step}
spec:
  steps:
  - {name: notify, image: busybox, args: ["--outcome=$(workflow.phase)"]}`,
		want: []string{"spec.steps[0].args[0]", `step "notify" reads $(workflow.phase), which only finally steps can read`},
	}, {
		name: "a workflow field other than phase in a finally step's env",
		manifest: `
metadata: {name: name-in-finally}
spec:
  steps: [{name: a, image: busybox}]
  finally:
  - {name: notify, image: busybox, env: [{name: RUN, value: "$(workflow.name)"}]}`,
		want: []string{"spec.finally[0].env[0].value", `step "notify" reads $(workflow.name); a finally step can read workflow.phase only`},
	}, {
		name: "resource requests above their limits, and a negative limit",
		manifest: `
metadata: {name: requests-above-limits}
spec:
  steps:
  - {name: a, image: busybox}
  - name: build
    image: busybox
    resources: {requests: {cpu: "2", memory: 1Gi}, limits: {cpu: 500m, memory: -1Gi}}`,
		want: []string{`spec.steps[1].resources.requests[cpu]: Invalid value: "2": step "build": must not be more than its limit of 500m`,
			`spec.steps[1].resources.limits[memory]: Invalid value: "-1Gi": step "build": must not be negative`},
	}, {
		name: "node selector and tolerations the Job would refuse",
		manifest: `
metadata: {name: bad-placement}
spec:
  steps:
  - name: train
    image: busybox
    nodeSelector: {"gpu type": a100, pool: "gpu pool"}
    tolerations:
    - {key: nvidia.com/gpu, operator: Exists, value: "true", effect: NoSchedule}
    - {key: dedicated, operator: Equal, value: ml, effect: NoSchedule, tolerationSeconds: 60}
    - {key: dedicated, operator: Equal, value: ml, effect: NoRun}`,
		want: []string{`spec.steps[0].nodeSelector[gpu type]: Invalid value: "gpu type": step "train": label key name part must consist of`,
			`spec.steps[0].nodeSelector[pool]: Invalid value: "gpu pool": step "train": label value a valid label must be`,
			`spec.steps[0].tolerations[0].value: Invalid value: "true": step "train": must be empty when operator is Exists`,
			`spec.steps[0].tolerations[1].tolerationSeconds: Invalid value: "60": step "train": may only be set with effect NoExecute`,
			`spec.steps[0].tolerations[2].effect: Invalid value: "NoRun": step "train": must be NoSchedule, PreferNoSchedule, NoExecute or empty`},
	}, {
		name: "scratch directories of no size",
		manifest: `
metadata: {name: bad-scratch}
spec:
  steps:
  - name: build
    image: busybox
    scratch: [{path: /workspace, sizeLimit: "0"}, {path: /tmp, sizeLimit: 1Gi}, {path: /cache, sizeLimit: -1Mi}]
  stepDefaults:
    scratch: [{path: /home/nonroot, sizeLimit: "0"}]`,
		want: []string{`spec.steps[0].scratch[0].sizeLimit: Invalid value: "0": step "build": scratch directory /workspace: sizeLimit must be above zero, such as 512Mi`,
			`spec.steps[0].scratch[2].sizeLimit: Invalid value: "-1Mi": step "build": scratch directory /cache: sizeLimit must be above zero`,
			`spec.stepDefaults.scratch[0].sizeLimit: Invalid value: "0": step "stepDefaults": scratch directory /home/nonroot: sizeLimit must be above zero`},
	}, {
		name: "result of a forEach step as a whole",
		manifest: `
metadata: {name: foreach-whole}
spec:
  steps:
  - {name: deploy, image: busybox, forEach: [eu, us], results: [{name: url}]}
  - {name: verify, image: busybox, dependsOn: [deploy], args: ["$(steps.deploy.results.url)"]}`,
		want: []string{"spec.steps[1].args[0]", `step "deploy" runs once per item (forEach): read one item's step instead (deploy-eu, deploy-us)`},
	}, {
		name: "item of a forEach step that is not an ancestor",
		manifest: `
metadata: {name: foreach-not-ancestor}
spec:
  steps:
  - {name: deploy, image: busybox, forEach: [eu, us], results: [{name: url}]}
  - {name: verify, image: busybox, when: "steps['deploy-eu'].results.url != ''"}`,
		want: []string{"spec.steps[1].when", `"deploy-eu" is not among the steps it depends on`},
	}, {
		name: "forEach item named like another step",
		manifest: `
metadata: {name: foreach-clash}
spec:
  steps:
  - {name: deploy-eu, image: busybox}
  - {name: deploy, image: busybox, forEach: [us, eu]}`,
		want: []string{`spec.steps[1].forEach[1]: Invalid value: "eu": step "deploy" runs item "eu" as step "deploy-eu", which is already the name of a step`},
	}, {
		name: "item read by a step without forEach",
		manifest: `
metadata: {name: no-item}
spec:
  steps:
  - {name: deploy, image: busybox, env: [{name: REGION, value: "$(item)"}]}`,
		want: []string{`spec.steps[0].env[0].value`, `step "deploy" reads $(item), but only a forEach step has an item`},
	}, {
		name: "item read in when by a step without forEach",
		manifest: `
metadata: {name: no-item-when}
spec:
  steps:
  - {name: deploy, image: busybox, when: "item != 'eu'"}`,
		want: []string{`spec.steps[0].when`, `step "deploy" reads item, but only a forEach step has an item`},
	}, {
		name: "forEach items from a parameter the workflow does not declare",
		manifest: `
metadata: {name: foreach-undeclared}
spec:
  steps: [{name: deploy, image: busybox, forEach: ["$(params.regions)"]}]`,
		want: []string{`spec.steps[0].forEach[0]`, `step "deploy" runs once per item of parameter "regions", but the workflow declares no parameter "regions"`},
	}, {
		name: "forEach items from a parameter whose value has one that is not a DNS label",
		manifest: `
metadata: {name: foreach-bad-value}
spec:
  parameters: [{name: regions, value: "eu, US_EAST"}]
  steps: [{name: deploy, image: busybox, forEach: ["$(params.regions)"]}]`,
		want: []string{`spec.steps[0].forEach`, `step "deploy": forEach item "US_EAST" (from parameter regions) is not a DNS label`},
	}, {
		name: "forEach items from a parameter that lists none",
		manifest: `
metadata: {name: foreach-no-items}
spec:
  parameters: [{name: regions, value: " , "}]
  steps:
  - {name: deploy, image: busybox, forEach: ["$(params.regions)"], args: ["$(item)"]}
  - {name: verify, image: busybox, dependsOn: [deploy]}`,
		want: []string{`spec.steps[0].forEach`, `runs once per item of parameter regions, which lists none`},
		only: true,
	}, {
		name: "forEach item from a parameter named like another step",
		manifest: `
metadata: {name: foreach-param-taken}
spec:
  parameters: [{name: regions, value: "eu,check"}]
  steps:
  - {name: deploy-check, image: busybox}
  - {name: deploy, image: busybox, forEach: ["$(params.regions)"]}`,
		want: []string{`spec.steps[1].forEach: Invalid value: "check": step "deploy" runs item "check" as step "deploy-check", which is already the name of a step`},
	}, {
		name: "result of an item whose items come from a parameter",
		manifest: `
metadata: {name: foreach-param-result}
spec:
  parameters: [{name: regions, value: "eu,us"}]
  steps:
  - {name: deploy, image: busybox, forEach: ["$(params.regions)"], results: [{name: url}]}
  - {name: verify, image: busybox, dependsOn: [deploy], args: ["$(steps.deploy-eu.results.url)"]}`,
		want: []string{"spec.steps[1].args[0]", `the items of step "deploy" come from parameter "regions"`, "their results cannot be read"},
	}, {
		name: "step defaults reading a step's result",
		manifest: `
metadata: {name: defaults-read-result}
spec:
  stepDefaults: {env: [{name: DIGEST, value: "$(steps.build.results.digest)"}]}
  steps: [{name: build, image: busybox, results: [{name: digest}]}]`,
		want: []string{"spec.stepDefaults.env[0].value", "stepDefaults read $(steps.build.results.digest), which depends on the step"},
	}, {
		name: "step defaults asking for more than their limits",
		manifest: `
metadata: {name: defaults-requests}
spec:
  stepDefaults: {resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}}
  steps: [{name: build, image: busybox}]`,
		want: []string{"spec.stepDefaults.resources.requests[memory]", "must not be more than its limit of 1Gi"},
	}, {
		name: "retries.when reading another step",
		manifest: `
metadata: {name: retry-when-step}
spec:
  steps:
  - {name: build, image: busybox}
  - {name: deploy, image: busybox, dependsOn: [build], retries: {limit: 2, when: "steps.build.phase == 'Succeeded'"}}`,
		want: []string{"spec.steps[1].retries.when", `step "deploy": retries.when does not compile`, "undeclared reference to 'steps'"},
		only: true,
	}, {
		name: "retries.when reading a parameter that does not exist",
		manifest: `
metadata: {name: retry-when-param}
spec:
  steps:
  - {name: deploy, image: busybox, retries: {limit: 2, when: "exitCode != 2 && params.env != 'prod'"}}`,
		want: []string{"spec.steps[0].retries.when", `step "deploy" reads params.env, but the workflow declares no parameter "env"`},
	}, {
		name: "retries.when reading item outside a forEach step",
		manifest: `
metadata: {name: retry-when-item}
spec:
  steps:
  - {name: deploy, image: busybox, retries: {limit: 2, when: "item != 'eu'"}}`,
		want: []string{"spec.steps[0].retries.when", `step "deploy" reads item, but only a forEach step has an item`},
	}, {
		name: "step defaults' retries.when that is not boolean",
		manifest: `
metadata: {name: defaults-retry-when}
spec:
  stepDefaults: {retries: {limit: 1, when: "reason"}}
  steps: [{name: build, image: busybox}]`,
		want: []string{"spec.stepDefaults.retries.when", "stepDefaults: retries.when must be a boolean expression, not string"},
	}, {
		name: "step defaults' retries.when reading item",
		manifest: `
metadata: {name: defaults-retry-item}
spec:
  stepDefaults: {retries: {limit: 1, when: "item == 'eu'"}}
  steps: [{name: build, image: busybox, forEach: [eu]}]`,
		want: []string{"spec.stepDefaults.retries.when", "stepDefaults read item, which only a forEach step has"},
	}, {
		name: "more steps than a run may have, once items are counted",
		manifest: `
metadata: {name: foreach-too-many}
spec:
  steps:
  - {name: a, image: busybox, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: b, image: busybox, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: c, image: busybox, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: d, image: busybox, forEach: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15, i16]}
  - {name: e, image: busybox}`,
		want: []string{"spec.steps: Too many: 65: must have at most 64 items"},
	}, {
		name: "a run's result reading a result no step declares",
		manifest: `
metadata: {name: result-undeclared}
spec:
  steps: [{name: build, image: busybox, results: [{name: digest}]}]
  results: [{name: image, value: "app@$(steps.build.results.sha)"}]`,
		want: []string{"spec.results[0].value", `result "image" reads $(steps.build.results.sha), but step "build" declares no result "sha"`},
		only: true,
	}, {
		name: "a run's result reading a step that does not exist, and a parameter not declared",
		manifest: `
metadata: {name: result-no-step}
spec:
  steps: [{name: build, image: busybox, results: [{name: digest}]}]
  results:
  - {name: image, value: "$(steps.bild.results.digest)"}
  - {name: env, value: "$(params.env)"}`,
		want: []string{"spec.results[0].value", `result "image" reads $(steps.bild.results.digest), but the workflow has no step "bild"`,
			"spec.results[1].value", `result "env" reads $(params.env), but the workflow declares no parameter "env"`},
	}, {
		name: "a run's result reading a forEach step as a whole, item and workflow.phase",
		manifest: `
metadata: {name: result-foreach}
spec:
  steps: [{name: rollout, image: busybox, forEach: [eu, us], results: [{name: url}]}]
  results:
  - {name: url, value: "$(steps.rollout.results.url)"}
  - {name: item, value: "$(item)"}
  - {name: phase, value: "$(workflow.phase)"}`,
		want: []string{`result "url" reads $(steps.rollout.results.url), but step "rollout" runs once per item (forEach): ` +
			"read one item's step instead (rollout-eu, rollout-us)",
			`result "item" reads $(item), which only a forEach step's items have`,
			`result "phase" reads $(workflow.phase), which only finally steps can read: the run's phase is status.phase`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wf := mustWorkflow(t, ns, tc.manifest)
			err := as(alice).Create(ctx, wf)
			refused(t, tc.name, err, append([]string{"is invalid"}, tc.want...)...)
			if tc.only && err != nil && strings.Count(err.Error(), "Invalid value") != 1 {
				t.Errorf("%s: want one problem reported, got %v", tc.name, err)
			}
			if err != nil && !apierrors.IsInvalid(err) {
				t.Errorf("refused as %v, want Invalid", apierrors.ReasonForError(err))
			}
		})
	}

	// The same references written correctly pass.
	create(t, as(alice), mustWorkflow(t, ns, `
metadata: {name: fine}
spec:
  parameters: [{name: invoice, value: "4711"}]
  steps:
  - {name: build, image: busybox, results: [{name: digest}]}
  - name: scan
    image: busybox
    dependsOn: [build]
    results: [{name: risk}]
    resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "1", memory: 1Gi}}
    nodeSelector: {kubernetes.io/arch: arm64}
    tolerations:
    - {key: dedicated, operator: Equal, value: scanners, effect: NoSchedule}
    - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 30}
    scratch: [{path: /tmp, sizeLimit: 2Gi}, {path: /home/nonroot/.cache}]
  - name: deploy
    image: busybox
    dependsOn: [scan]
    when: "int(steps.scan.results.risk) < 50 && steps['build'].results.digest != '' && params.invoice != ''"
    args: ["--image=app@$(steps.build.results.digest)", "--invoice=$(params.invoice)"]
  - name: rollout
    image: busybox
    dependsOn: [deploy]
    forEach: [eu, us]
    when: "item != 'us' || params.invoice != ''"
    retries: {limit: 3, when: "disrupted || (exitCode != 2 && item == 'eu') || params.invoice == '4711'"}
    args: ["--region=$(item)", "--image=app@$(steps.build.results.digest)"]
    results: [{name: url}]
  - {name: verify, image: busybox, dependsOn: [rollout], args: ["$(steps.rollout-eu.results.url)", "$(steps.rollout-us.results.url)"]}
  - name: smoke
    image: busybox
    dependsOn: [verify]
    forEach: [canary, "$(params.invoice)"]
    onFailure: Continue
    args: ["--target=$(item)"]
  finally:
  - {name: notify, image: busybox, args: ["--outcome=$(workflow.phase)"], env: [{name: DIGEST, value: "$(steps.build.results.digest)"}],
     results: [{name: ticket}]}
  results:
  - {name: image, value: "app@$(steps.build.results.digest)", description: the image released}
  - {name: summary, value: "invoice $(params.invoice): $(steps.rollout-eu.results.url) ticket $(steps.notify.results.ticket)"}
  stepDefaults:
    env: [{name: INVOICE, value: "$(params.invoice)"}]
    scratch: [{path: /workspace, sizeLimit: 4Gi}]
    resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
    retries: {limit: 1, when: "reason != 'TimedOut' && params.invoice != ''"}
    timeout: 10m`))
}

// TestForEachItemsAreApprovedOneByOne: each item of a forEach step with an approval gate is
// approved on its own, and approving the forEach step as a whole is refused with the items named.
func TestForEachItemsAreApprovedOneByOne(t *testing.T) {
	ns := team(t)
	wf := mustWorkflow(t, ns, `
metadata: {name: rollout}
spec:
  steps:
  - name: deploy
    image: busybox
    forEach: [eu, us]
    approval: {approvers: {users: [bob]}}`)
	create(t, as(alice), wf)
	approve := func(step string) error {
		cur := &custodyv1alpha1.Workflow{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(wf), cur); err != nil {
			t.Fatal(err)
		}
		cur.Annotations[custodyv1alpha1.AnnotationApprovePrefix+step] = "yes"
		return as(bob).Update(ctxT(t), cur)
	}
	refused(t, "approving the forEach step as a whole", approve("deploy"),
		`approves step "deploy", which runs once per item (forEach): approve each item's step instead (deploy-eu, deploy-us)`)
	waitsForApproval(t, wf, "deploy-eu")
	if err := approve("deploy-eu"); err != nil {
		t.Fatalf("bob approving the item deploy-eu: %v", err)
	}
}

// TestKubectlAnnotateApproves is the documented way to approve: `kubectl annotate` as the
// approver, with any value; admission stamps it.
func TestKubectlAnnotateApproves(t *testing.T) {
	ns := team(t)
	wf := mustWorkflow(t, ns, paymentWorkflow)
	create(t, as(alice), wf)
	run := func(user string, args ...string) (string, error) {
		return env.Kubectl(t, append([]string{"-n", ns, "--as", user, "--as-group", approversGroup,
			"--as-group", "system:authenticated"}, args...)...)
	}
	out, err := run(alice, "annotate", "workflow", wf.Name, custodyv1alpha1.AnnotationApprovePrefix+"pay=approved")
	if err == nil || !strings.Contains(out, "who may not approve it") {
		t.Errorf("alice approving her own workflow with kubectl: err %v, output %s", err, out)
	}
	waitsForApproval(t, wf, "pay")
	if out, err := run(carol, "annotate", "workflow", wf.Name, custodyv1alpha1.AnnotationApprovePrefix+"pay=approved"); err != nil {
		t.Fatalf("carol approving with kubectl: %v\n%s", err, out)
	}
	out, err = run(carol, "get", "workflow", wf.Name, "-o", "jsonpath={.metadata.annotations.approve\\.custody\\.dev/pay}")
	if err != nil || !strings.Contains(out, `"approvedBy":"carol"`) {
		t.Errorf("stored approval: %s (%v), want carol's stamp", out, err)
	}
}

// TestReuseFromIsCheckedAtAdmission: a run may reuse only a run of the namespace that failed or
// was cancelled, with the same parameter values; the rest is refused at create, with the reason.
// A step that succeeded there but changed since is a warning.
func TestReuseFromIsCheckedAtAdmission(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	const spec = `
  parameters: [{name: version, value: "1.4"}]
  steps: [{name: build, image: busybox}, {name: deploy, image: busybox, dependsOn: [build]}]`
	src := mustWorkflow(t, ns, "metadata: {name: release}\nspec:"+spec)
	create(t, as(alice), src)
	rerun := func(name, reuseFrom, spec string) error {
		return as(alice).Create(ctx, mustWorkflow(t, ns, "metadata: {name: "+name+"}\nspec:\n  reuseFrom: "+reuseFrom+spec))
	}
	refused(t, "reusing a run that has not ended", rerun("early", "release", spec),
		"spec.reuseFrom", "workflow release has not ended; a run can reuse the steps of one that failed or was cancelled")
	src.Status.Phase = custodyv1alpha1.WorkflowFailed
	src.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "build", Phase: custodyv1alpha1.StepSucceeded},
		{Name: "deploy", Phase: custodyv1alpha1.StepFailed}}
	if err := env.Client.Status().Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	refused(t, "reusing a run with another parameter value", rerun("v15", "release", strings.Replace(spec, "1.4", "1.5", 1)),
		"spec.reuseFrom", `parameter "version" has another value in workflow release`)
	// Other steps are not refused: what is as it was is taken over, and a step that succeeded
	// there but changed is a warning, since it will run again.
	out := kubectlCreate(t, ns, alice, "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: other}\nspec:\n  reuseFrom: release"+
		strings.Replace(spec, "{name: build, image: busybox}", "{name: build, image: busybox, args: [--race]}", 1))
	if want := `Warning: step "build" succeeded in workflow release but will run again: it changed`; !strings.Contains(out, want) ||
		strings.Count(out, "Warning:") != 1 {
		t.Errorf("kubectl printed:\n%s\nwant one warning: %q", out, want)
	}
	refused(t, "reusing a run that does not exist", rerun("nope", "nope", spec), `spec.reuseFrom: Not found: "nope"`)
	if err := rerun("release-rest", "release", spec); err != nil {
		t.Errorf("reusing a failed run with the same steps and parameters: %v", err)
	}
}

// TestReuseOfATemplateRunWarnsOfWhatRunsAgain: a run of a template that reuses an earlier run is
// planned against the template as it is now: a fix to the step that failed is silent, a change to
// a step that succeeded is a warning that it will run again. Anyone who may run the template may
// rerun another's run of it (the platform team's pat, alice's backup).
func TestReuseOfATemplateRunWarnsOfWhatRunsAgain(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	tpl := mustTemplate(t, ns, `
metadata: {name: backup}
spec:
  steps: [{name: dump, image: busybox}, {name: upload, image: busybox, dependsOn: [dump]}]`)
	create(t, as(alice), tpl)
	src := mustWorkflow(t, ns, "metadata: {name: backup-1}\nspec: {workflowTemplateRef: {name: backup}}")
	create(t, as(alice), src)
	src.Status = custodyv1alpha1.WorkflowStatus{Phase: custodyv1alpha1.WorkflowFailed,
		Template: &custodyv1alpha1.ResolvedTemplate{Name: "backup", Spec: *tpl.Spec.DeepCopy()},
		Steps: []custodyv1alpha1.StepStatus{{Name: "dump", Phase: custodyv1alpha1.StepSucceeded},
			{Name: "upload", Phase: custodyv1alpha1.StepFailed}}}
	if err := env.Client.Status().Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	rerun := func(name string, change func(*custodyv1alpha1.WorkflowTemplateSpec)) string {
		t.Helper()
		eventually(t, "the template's change", func() error {
			cur := &custodyv1alpha1.WorkflowTemplate{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tpl), cur); err != nil {
				return err
			}
			cur.Spec = *tpl.Spec.DeepCopy()
			change(&cur.Spec)
			return env.Client.Update(ctx, cur)
		})
		return kubectlCreate(t, ns, pat, "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: "+name+
			"}\nspec: {workflowTemplateRef: {name: backup}, reuseFrom: backup-1}")
	}
	if out := rerun("backup-fixed", func(s *custodyv1alpha1.WorkflowTemplateSpec) { s.Steps[1].Image = "busybox:1.37" }); strings.Contains(out, "Warning:") {
		t.Errorf("a fix to the failed step: kubectl printed\n%s\nwant no warning", out)
	}
	out := rerun("backup-changed", func(s *custodyv1alpha1.WorkflowTemplateSpec) { s.Steps[0].Args = []string{"--all"} })
	if want := `Warning: step "dump" succeeded in workflow backup-1 but will run again: it changed`; !strings.Contains(out, want) {
		t.Errorf("a change to the step that succeeded: kubectl printed\n%s\nwant %q", out, want)
	}
}

// TestCredentialLiteralsAreRefused: a credential written into a Workflow (a parameter value, an
// env value) is refused at admission, naming the field and what it looks like, never the text.
func TestCredentialLiteralsAreRefused(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	token := "ghp_" + strings.Repeat("Qw3", 12)
	key := "AKIA" + strings.Repeat("K", 16)
	wf := mustWorkflow(t, ns, `
metadata: {name: with-token}
spec:
  parameters: [{name: token, value: "`+token+`"}, {name: env, value: prod}]
  steps: [{name: sync, image: busybox, env: [{name: AWS_ACCESS_KEY_ID, value: "`+key+`"}], args: ["$(params.env)"]}]`)
	err := as(alice).Create(ctx, wf)
	refused(t, "credential literals", err, "spec.parameters[0].value: Forbidden: looks like a GitHub token",
		"spec.steps[0].env[0].value: Forbidden: looks like an AWS access key ID", "CredentialGrant")
	if err != nil && (strings.Contains(err.Error(), token) || strings.Contains(err.Error(), key)) {
		t.Errorf("the refusal repeats the credential: %v", err)
	}
}
