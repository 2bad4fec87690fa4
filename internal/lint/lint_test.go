package lint

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func linter(t *testing.T) *Linter {
	t.Helper()
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func lintFiles(t *testing.T, l *Linter, paths ...string) Result {
	t.Helper()
	var docs []Document
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Split(p, f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d...)
	}
	return l.Lint(context.Background(), docs)
}

// TestSamplesAreClean: every sample passes, as the sandbox applies them; a run of a template is
// checked against the template in the same files.
func TestSamplesAreClean(t *testing.T) {
	paths, err := filepath.Glob("../../config/samples/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("samples: %v %v", paths, err)
	}
	res := lintFiles(t, linter(t), paths...)
	for _, p := range res.Problems {
		t.Errorf("%s", p)
	}
	if res.Checked < 10 {
		t.Errorf("checked %d objects, want every Custody object of the samples", res.Checked)
	}
	t.Logf("checked %d objects", res.Checked)
}

func lintString(t *testing.T, l *Linter, manifest string) Result {
	t.Helper()
	docs, err := Split("test.yaml", strings.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	return l.Lint(context.Background(), docs)
}

// TestProblems: what the API server's schema and CEL rules refuse, and what admission adds, is
// reported with the source, the object and the field, as kubectl apply would report it; other
// kinds are left alone.
func TestProblems(t *testing.T) {
	l := linter(t)
	cases := []struct {
		name, manifest string
		want           []string
	}{{
		name: "unknown field",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: typo}
spec:
  steps: [{name: build, imagee: example.com/b:1}]`,
		want: []string{`test.yaml: Workflow typo: unknown field "spec.steps[0].imagee"`},
	}, {
		name: "schema: a duration that is not one",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: slow}
spec:
  timeout: 10 minutes
  steps: [{name: build, image: example.com/b:1}]`,
		want: []string{`test.yaml: Workflow slow: spec.timeout: Invalid value: "10 minutes": spec.timeout in body should match`},
	}, {
		name: "CEL rule of the CRD",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: both}
spec:
  workflowTemplateRef: {name: release}
  steps: [{name: build, image: example.com/b:1}]`,
		want: []string{"Workflow both: spec: Invalid value", "set either steps or workflowTemplateRef, not both and not neither"},
	}, {
		name: "CEL rule on the object's name",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: a-cron-workflow-whose-name-is-far-too-long-for-its-runs}
spec:
  schedule: "@daily"
  workflowSpec: {steps: [{name: build, image: example.com/b:1}]}`,
		want: []string{"a CronWorkflow name must be at most 52 characters"},
	}, {
		name: "CEL rule reading an integer field",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: limited}
spec:
  steps: [{name: deploy, image: example.com/d:1, parallelism: 1}]`,
		want: []string{"Workflow limited: spec.steps[0]: Invalid value: parallelism limits how many items of a forEach step run at once; " +
			"this step has no forEach"},
	}, {
		name: "admission: a cycle",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: cycle}
spec:
  steps:
  - {name: a, image: example.com/b:1, dependsOn: [b]}
  - {name: b, image: example.com/b:1, dependsOn: [a]}`,
		want: []string{"Workflow cycle: spec.steps.dependsOn", "dependsOn forms a cycle"},
	}, {
		name: "admission: retries.when that does not compile",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: release}
spec:
  steps: [{name: build, image: example.com/b:1, retries: {limit: 2, when: "exitcode != 2"}}]`,
		want: []string{`WorkflowTemplate release: spec.steps[0].retries.when`, "undeclared reference to 'exitcode'"},
	}, {
		name: "admission: a schedule and a time zone that do not parse",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "every night"
  workflowSpec: {steps: [{name: build, image: example.com/b:1}]}
---
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: in-berlin}
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Berlinn
  workflowSpec: {steps: [{name: build, image: example.com/b:1}]}`,
		want: []string{`CronWorkflow nightly: spec.schedule: Invalid value: null: schedule "every night": expected exactly 5 fields`,
			`CronWorkflow in-berlin: spec.timeZone: Invalid value: null: timeZone "Europe/Berlinn": unknown time zone Europe/Berlinn`},
	}, {
		name: "admission: a token written into a CronWorkflow",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  workflowSpec:
    steps: [{name: sync, image: example.com/s:1, env: [{name: GITHUB_TOKEN, value: "` + "ghp_" + strings.Repeat("Zx7", 12) + `"}]}]`,
		want: []string{"CronWorkflow nightly: spec.workflowSpec.steps[0].env[0].value: Forbidden: looks like a GitHub token",
			"belongs in a Secret that a CredentialGrant hands to the steps"},
	}, {
		name: "admission: a run of a template in the same files, with a parameter it does not declare",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: backup}
spec:
  parameters: [{name: database}]
  steps: [{name: dump, image: example.com/d:1, args: ["$(params.database)"]}]
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {generateName: backup-}
spec:
  workflowTemplateRef: {name: backup}
  parameters: [{name: database, value: orders}, {name: retention, value: 7d}]`,
		want: []string{"test.yaml#2: Workflow backup-: spec.parameters", "WorkflowTemplate backup", `"retention"`},
	}, {
		name: "admission: a grant of a Role in another namespace's way",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: deployer}
spec:
  subjects: [{workflowName: deploy, steps: [apply]}]
  credential: {secret: {name: erp, keys: [token]}, kubernetesRole: {kind: Role, name: deployer}}
  ttl: 15m`,
		want: []string{"CredentialGrant deployer: spec.credential"},
	}, {
		name: "no name",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {labels: {app: x}}
spec:
  steps: [{name: build, image: example.com/b:1}]`,
		want: []string{"test.yaml: Workflow: metadata.name: Required value"},
	}, {
		name: "a kind Custody does not have",
		manifest: `
apiVersion: custody.dev/v1alpha1
kind: Pipeline
metadata: {name: p}`,
		want: []string{`test.yaml: Pipeline p: no kind "Pipeline" in version "v1alpha1" of custody.dev`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := lintString(t, l, tc.manifest)
			var got []string
			for _, p := range res.Problems {
				got = append(got, p.String())
			}
			all := strings.Join(got, "\n")
			if res.Errors() == 0 {
				t.Fatalf("no problem reported; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems:\n%s\nwant one saying %q", all, w)
				}
			}
			if strings.Contains(all, "ghp_") {
				t.Errorf("a problem repeats the credential:\n%s", all)
			}
		})
	}

	// What admission and the controller write, left in a manifest by kubectl get -o yaml: an
	// approval, who cancelled a run, whose CronWorkflow it is, and a reason holding a token are
	// refused on apply; the creator is replaced (a warning).
	res := lintString(t, l, `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata:
  name: exported
  annotations:
    approve.custody.dev/pay: '{"approvedBy":"bob","approvedAt":"2026-11-29T16:40:00Z"}'
    reject.custody.dev/pay: 'not today'
    custody.dev/created-by: alice
    custody.dev/cancelled-by: bob
    custody.dev/on-behalf-of: alice
    custody.dev/cancel-reason: "rotated ghp_a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2a1B2"
spec:
  cancel: true
  steps: [{name: pay, image: example.com/p:1, approval: {approvers: {users: [bob]}}}]`)
	all := fmt.Sprint(res.Problems)
	for _, w := range []string{
		"metadata.annotations[approve.custody.dev/pay]: Forbidden: an object cannot be approved as it is created",
		"metadata.annotations[reject.custody.dev/pay]: Forbidden: an object cannot be rejected as it is created",
		"metadata.annotations[custody.dev/cancelled-by]: Forbidden: admission records who set spec.cancel here",
		"metadata.annotations[custody.dev/on-behalf-of]: Forbidden: set on the runs of a CronWorkflow only (with the label custody.dev/cronworkflow)",
		"metadata.annotations[custody.dev/cancel-reason]: Forbidden: looks like it contains a GitHub token",
		"warning: metadata.annotations[custody.dev/created-by]: set by admission to whoever applies the manifest",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("problems %s\nwant one saying %q", all, w)
		}
	}
	if res.Errors() != 5 || strings.Contains(all, "ghp_") {
		t.Errorf("%d errors (want 5), or the token repeated: %s", res.Errors(), all)
	}
	// A CronWorkflow's run carries it with its label (admission checks both against the
	// CronWorkflow on apply).
	if res := lintString(t, l, `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata:
  name: nightly-29934630
  labels: {custody.dev/cronworkflow: nightly}
  annotations: {custody.dev/on-behalf-of: alice}
spec:
  steps: [{name: dump, image: example.com/pg:16}]`); res.Errors() != 0 {
		t.Errorf("a CronWorkflow's run: problems %v, want none", res.Problems)
	}

	// Integer fields read by CEL rules are decoded as the API server decodes them (whole numbers
	// as integers, not float64), so a rule does not fail on them.
	if res := lintString(t, l, `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: rolling}
spec:
  steps: [{name: deploy, image: example.com/d:1, forEach: [eu, us], parallelism: 1}]`); len(res.Problems) != 0 {
		t.Errorf("a forEach step with parallelism: problems %v, want none", res.Problems)
	}

	// A template whose step runs a shell script with an unconstrained parameter in it passes, with a
	// warning; a parameter with a pattern does not need one.
	script := func(param string) Result {
		return lintString(t, l, `
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: deploy}
spec:
  parameters: [`+param+`]
  steps: [{name: deploy, image: example.com/d:1, command: [sh, -c, "deploy --branch $(params.branch)"]}]`)
	}
	if res := script("{name: branch}"); res.Errors() != 0 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(),
		`test.yaml: WorkflowTemplate deploy: warning: spec.steps[0]: step "deploy" replaces $(params.branch) in the script it runs with "sh -c"`) {
		t.Errorf("a script with a parameter in it: problems %v, want one warning", res.Problems)
	}
	if res := script("{name: branch, pattern: '[a-z0-9-]+'}"); len(res.Problems) != 0 {
		t.Errorf("a script with a constrained parameter in it: problems %v, want none", res.Problems)
	}

	// One that passes it as an argument of its own is warned of too: a value may begin with "-".
	if res := lintString(t, l, `
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: checkout}
spec:
  parameters: [{name: branch}]
  steps: [{name: checkout, image: example.com/git:2, args: [checkout, "$(params.branch)"]}]`); res.Errors() != 0 ||
		len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), `test.yaml: WorkflowTemplate checkout: warning: `+
		`spec.steps[0]: step "checkout" passes $(params.branch) as an argument of its own`) {
		t.Errorf("an argument that is a parameter: problems %v, want one warning", res.Problems)
	}

	// Other kinds are skipped; what needs the cluster is a warning, not an error.
	res = lintString(t, l, `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
---
# only a comment
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: nightly-run}
spec:
  workflowTemplateRef: {name: nightly}
  reuseFrom: nightly-run-1`)
	if res.Checked != 1 || res.Errors() != 0 || len(res.Problems) != 2 ||
		!strings.Contains(res.Problems[0].String(), "test.yaml#2: Workflow nightly-run: warning: spec.parameters: not checked: "+
			"WorkflowTemplate nightly is not among the manifests") ||
		!strings.Contains(res.Problems[1].String(), "spec.reuseFrom: not checked") {
		t.Errorf("checked %d, problems %v; want the Workflow checked with two warnings", res.Checked, res.Problems)
	}
}

// TestLists: the items of a List (what kubectl get -o yaml prints) are checked one by one.
func TestLists(t *testing.T) {
	res := lintString(t, linter(t), `
apiVersion: v1
kind: List
items:
- apiVersion: custody.dev/v1alpha1
  kind: Workflow
  metadata: {name: ok}
  spec: {steps: [{name: a, image: example.com/a:1}]}
- apiVersion: custody.dev/v1alpha1
  kind: Workflow
  metadata: {name: loop}
  spec: {steps: [{name: a, image: example.com/a:1, dependsOn: [a]}]}`)
	if res.Checked != 2 || res.Errors() != 1 || !strings.HasPrefix(res.Problems[0].String(), "test.yaml[1]: Workflow loop: spec.steps[0]") {
		t.Errorf("checked %d, problems %v; want 2 checked and the second item's cycle", res.Checked, res.Problems)
	}
}

// TestUnreadableDocuments: a document that is not YAML (a Helm template) is skipped with a
// warning, unless it names Custody's API group: then it is a manifest apply would refuse.
func TestUnreadableDocuments(t *testing.T) {
	res := lintString(t, linter(t), `
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "chart.fullname" . }}
  labels: {{- toYaml .Values.labels | nindent 4 }}
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: broken
spec: {}`)
	if len(res.Problems) != 2 || !res.Problems[0].Warning || !strings.Contains(res.Problems[0].String(), "test.yaml#1: warning: skipped, not a manifest") ||
		res.Problems[1].Warning || res.Errors() != 1 || !strings.HasPrefix(res.Problems[1].String(), "test.yaml#2: ") {
		t.Errorf("problems %v; want a warning for the template and an error for the broken Workflow", res.Problems)
	}
}

// TestGrantsOfBroadRoles: a kubernetesRole grant whose Role (in its namespace) or ClusterRole is in
// the same manifests is warned of, as admission warns, when the role reaches beyond the step; a
// narrow role, or a Role of the same name in another namespace, is not.
func TestGrantsOfBroadRoles(t *testing.T) {
	res := lintString(t, linter(t), `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: shop}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [get, patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: payments}
rules: [{apiGroups: [apps], resources: [deployments/scale], verbs: [patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: secret-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: deploy, namespace: shop}
spec:
  subjects: [{workflowName: release, steps: [roll-out]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: scale, namespace: payments}
spec:
  subjects: [{workflowName: release, steps: [roll-out]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: audit, namespace: payments}
spec:
  subjects: [{workflowName: review, steps: [scan]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: secret-reader}}
`)
	got := make([]string, 0, len(res.Problems))
	for _, p := range res.Problems {
		if !p.Warning {
			t.Errorf("an error: %s", p)
		}
		got = append(got, p.String())
	}
	want := []string{
		"test.yaml#4: CredentialGrant deploy: warning: spec.credential.kubernetesRole: Role deployer lets a step that holds it run pods",
		"test.yaml#6: CredentialGrant audit: warning: spec.credential.kubernetesRole: ClusterRole secret-reader lets a step that " +
			"holds it read every Secret of the namespace",
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d warnings", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %s\nwant it to begin %q", i, got[i], want[i])
		}
	}
}

// TestBroadRolesNeedApprovalInTheManifests: a grant of a broad role without an approval in a
// Namespace of the manifests labelled custody.dev/broad-roles-need-approval=true is refused, as
// admission refuses it; with an approval it is only warned of.
func TestBroadRolesNeedApprovalInTheManifests(t *testing.T) {
	res := lintString(t, linter(t), `
apiVersion: v1
kind: Namespace
metadata: {name: payments, labels: {custody.dev/broad-roles-need-approval: "true", custody.dev/protect-step-pods: "true"}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: secret-reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: audit, namespace: payments}
spec:
  subjects: [{workflowName: review, steps: [scan]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: secret-reader}}
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: approved-audit, namespace: payments}
spec:
  subjects: [{workflowName: review, steps: [scan]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: secret-reader}}
  approval: {required: true, approvers: {groups: [security]}}
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: audit, namespace: shop}
spec:
  subjects: [{workflowName: review, steps: [scan]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: secret-reader}}
`)
	var errs, warnings []string
	for _, p := range res.Problems {
		if p.Warning {
			warnings = append(warnings, p.String())
		} else {
			errs = append(errs, p.String())
		}
	}
	want := "test.yaml#3: CredentialGrant audit: spec.approval: Forbidden: ClusterRole secret-reader of CredentialGrant audit lets a " +
		"step that holds it read every Secret of the namespace (the sources of other grants among them), and namespace payments asks"
	if len(errs) != 1 || !strings.HasPrefix(errs[0], want) {
		t.Errorf("errors:\n%s\nwant one beginning %q", strings.Join(errs, "\n"), want)
	}
	if len(warnings) != 3 {
		t.Errorf("warnings:\n%s\nwant the broad role of each of the three grants", strings.Join(warnings, "\n"))
	}
}

// TestGrantsInUnprotectedNamespaces: a grant in a Namespace of the manifests that does not protect
// step pods is warned of, as admission warns of it; not one in a Namespace that does, nor one in a
// namespace the manifests do not hold (lint cannot know its labels).
func TestGrantsInUnprotectedNamespaces(t *testing.T) {
	grant := func(ns string) string {
		return `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: erp, namespace: ` + ns + `}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`
	}
	res := lintString(t, linter(t), `
apiVersion: v1
kind: Namespace
metadata: {name: payments}
---
apiVersion: v1
kind: Namespace
metadata: {name: billing, labels: {custody.dev/protect-step-pods: "true"}}
---`+grant("payments")+"\n---"+grant("billing")+"\n---"+grant("elsewhere"))
	got := make([]string, 0, len(res.Problems))
	for _, p := range res.Problems {
		got = append(got, p.String())
	}
	want := "test.yaml#3: CredentialGrant erp: warning: Namespace payments does not protect step pods (label " +
		"custody.dev/protect-step-pods=true): while a step holds what CredentialGrant erp hands out"
	if len(got) != 1 || !strings.HasPrefix(got[0], want) || !res.Problems[0].Warning {
		t.Errorf("problems:\n%s\nwant one warning beginning %q", strings.Join(got, "\n"), want)
	}
}

// TestStepsThatOutliveTheirGrant: a step whose timeout (its own or stepDefaults') is longer than
// an issuance of a grant of the same manifests lives is warned of, as admission warns of a new run,
// in a Workflow, a CronWorkflow and a WorkflowTemplate; a grant in another namespace, or not among
// the manifests, is not known here.
func TestStepsThatOutliveTheirGrant(t *testing.T) {
	res := lintString(t, linter(t), `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: erp, namespace: payments}
spec:
  subjects:
  - {workflowName: pay, steps: [post]}
  - {workflowSelector: {matchLabels: {custody.dev/cronworkflow: nightly}}, steps: [post]}
  credential: {secret: {name: erp-api, keys: [token]}}
  onRevoke: StopStep
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: ledger, namespace: payments}
spec:
  subjects:
  - {workflowName: pay, steps: [post]}
  - {workflowSelector: {matchLabels: {custody.dev/template: pay}}, steps: [post]}
  credential: {secret: {name: ledger-api, keys: [token]}}
  ttl: 2h
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: pay, namespace: payments}
spec:
  stepDefaults: {timeout: 1h}
  steps:
  - {name: post, image: busybox, credentials: [erp, ledger, elsewhere]}
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: pay, namespace: billing}
spec:
  steps:
  - {name: post, image: busybox, credentials: [erp], timeout: 1h}
---
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly, namespace: payments}
spec:
  schedule: "0 2 * * *"
  workflowSpec:
    steps:
    - {name: post, image: busybox, credentials: [erp], timeout: 20m}
---
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: pay, namespace: payments}
spec:
  steps:
  - {name: post, image: busybox, credentials: [ledger], timeout: 3h}
`)
	got := make([]string, 0, len(res.Problems))
	for _, p := range res.Problems {
		got = append(got, p.String())
	}
	want := []string{
		`test.yaml#3: Workflow pay: warning: step "post" may run for 1h (its timeout), longer than an issuance of grant erp lives ` +
			`(ttl 15m): after 15m it is stopped (the grant's onRevoke is StopStep)`,
		`test.yaml#5: CronWorkflow nightly: warning: step "post" may run for 20m (its timeout), longer than an issuance of grant erp ` +
			`lives (ttl 15m): after 15m it is stopped (the grant's onRevoke is StopStep)`,
		// ledger sets no onRevoke, and lint does not know the platform's default.
		`test.yaml#6: WorkflowTemplate pay: warning: step "post" may run for 3h (its timeout), longer than an issuance of grant ledger ` +
			`lives (ttl 2h): after 2h it runs on without the credential, or is stopped if the platform's default onRevoke ` +
			`(--grant-on-revoke) is StopStep`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || res.Errors() != 0 {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestGrantsThatDoNotCoverTheirSteps: lint warns, as admission does, of steps that would wait for a
// grant among the manifests that does not cover them or expired: a Workflow's, and the runs' of a
// CronWorkflow (named after it and a time: a grant that names the CronWorkflow covers none) and of
// a WorkflowTemplate. A run of a template is labelled with it by admission, so a grant that
// selects the label covers it; a run with a generated name is not known yet.
func TestGrantsThatDoNotCoverTheirSteps(t *testing.T) {
	res := lintString(t, linter(t), `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: erp, namespace: payments}
spec:
  subjects: [{workflowName: nightly, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
---
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: backup, namespace: payments}
spec:
  subjects: [{workflowSelector: {matchLabels: {custody.dev/template: backup}}, steps: [dump]}]
  credential: {secret: {name: db, keys: [password]}}
  expiresAt: "2020-01-01T00:00:00Z"
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: pay, namespace: payments}
spec:
  steps:
  - {name: post, image: busybox, credentials: [erp]}
---
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly, namespace: payments}
spec:
  schedule: "0 2 * * *"
  workflowSpec:
    steps:
    - {name: post, image: busybox, credentials: [erp]}
---
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: backup, namespace: payments}
spec:
  steps:
  - {name: dump, image: busybox, credentials: [backup]}
  - {name: copy, image: busybox, dependsOn: [dump], credentials: [backup]}
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: backup-now, namespace: payments}
spec:
  workflowTemplateRef: {name: backup}
---
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {generateName: pay-, namespace: payments}
spec:
  steps:
  - {name: post, image: busybox, credentials: [erp]}
`)
	got := make([]string, 0, len(res.Problems))
	for _, p := range res.Problems {
		got = append(got, p.String())
	}
	want := []string{
		`test.yaml#3: Workflow pay: warning: step "post" will wait until this changes: CredentialGrant erp does not list step post ` +
			`of workflow pay among its subjects`,
		`test.yaml#4: CronWorkflow nightly: warning: step "post" of its runs will wait: CredentialGrant erp names workflow nightly, ` +
			`but a CronWorkflow's runs are named nightly-<minutes since the epoch>; to cover every run, select ` +
			`custody.dev/cronworkflow=nightly in its subjects (workflowSelector)`,
		`test.yaml#5: WorkflowTemplate backup: warning: step "copy" of its runs will wait: CredentialGrant backup selects its runs ` +
			`but does not list that step among its subjects' steps, or does not allow its image`,
		`test.yaml#6: Workflow backup-now: warning: step "dump" will wait until this changes: CredentialGrant backup expired at ` +
			`2020-01-01T00:00:00Z (spec.expiresAt)`,
		`test.yaml#6: Workflow backup-now: warning: step "copy" will wait until this changes: CredentialGrant backup does not list ` +
			`step copy of workflow backup-now among its subjects`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || res.Errors() != 0 {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
