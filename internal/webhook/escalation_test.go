package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

// A finance workflow whose payment step needs an approval from bob or the finance-approvers group.
const paymentWorkflow = `
metadata: {name: invoice-4711}
spec:
  steps:
  - {name: check, image: busybox}
  - name: pay
    image: busybox
    dependsOn: [check]
    approval: {approvers: {users: [alice, bob], groups: [finance-approvers]}}
`

// A grant of the Secret alice may read, to the pay step, approved by bob or the group.
const appDBGrant = `
metadata: {name: app-db}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {secret: {name: app-db, keys: [password]}}
  approval: {required: true, approvers: {users: [bob], groups: [finance-approvers]}}
`

func approvalRecord(t *testing.T, v string) custodyv1alpha1.ApprovalRecord {
	t.Helper()
	var rec custodyv1alpha1.ApprovalRecord
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		t.Fatalf("approval %q is not admission's stamp: %v", v, err)
	}
	return rec
}

// TestEscalationRefused is the escalation suite: each case is a realistic attempt by someone with
// write access to Workflows or CredentialGrants in the namespace to get, or hand out, access they
// do not have. Every one is refused and says why.
func TestEscalationRefused(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)

	// Objects the attempts work on, made legitimately.
	wf := mustWorkflow(t, ns, paymentWorkflow)
	create(t, as(alice), wf)
	grant := mustGrant(t, ns, appDBGrant)
	create(t, as(alice), grant)
	approvedWF := mustWorkflow(t, ns, paymentWorkflow)
	approvedWF.Name = "invoice-4712"
	create(t, as(alice), approvedWF)
	waitsForApproval(t, approvedWF, "pay")
	if err := annotate(ctx, as(bob), approvedWF, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"); err != nil {
		t.Fatalf("bob approving: %v", err)
	}

	cases := []struct {
		name    string
		attempt func() error
		want    []string
	}{{
		name: "grant a Secret the author cannot read",
		attempt: func() error {
			return as(alice).Create(ctx, mustGrant(t, ns, `
metadata: {name: erp}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {secret: {name: erp-api, keys: [token]}}`))
		},
		want: []string{`alice may not get Secret "erp-api"`, "hands out only what its author could read"},
	}, {
		name: "grant a Role the author may not bind and does not hold",
		attempt: func() error {
			return as(mallory).Create(ctx, mustGrant(t, ns, `
metadata: {name: rbac}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {kubernetesRole: {kind: Role, name: rbac-manager}}`))
		},
		want: []string{`mallory may not bind Role "rbac-manager"`, "missing create rolebindings.rbac.authorization.k8s.io",
			"delete rolebindings.rbac.authorization.k8s.io"},
	}, {
		name: "grant cluster-admin in the namespace",
		attempt: func() error {
			return as(mallory).Create(ctx, mustGrant(t, ns, `
metadata: {name: admin}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {kubernetesRole: {kind: ClusterRole, name: cluster-admin}}`))
		},
		want: []string{`mallory may not bind ClusterRole "cluster-admin"`, "missing * *.*"},
	}, {
		name: "grant a Role that does not exist yet",
		attempt: func() error {
			return as(mallory).Create(ctx, mustGrant(t, ns, `
metadata: {name: future}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {kubernetesRole: {kind: Role, name: created-later}}`))
		},
		want: []string{`mallory may not bind Role "created-later"`, "it does not exist"},
	}, {
		name: "grant a Secret of another namespace",
		attempt: func() error {
			return as(mallory).Create(ctx, mustGrant(t, ns, `
metadata: {name: other-team}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {secret: {name: payments/erp-api, keys: [token]}}`))
		},
		want: []string{"spec.credential.secret.name", "must be a name in the grant's own namespace"},
	}, {
		name: "put DNS names into step SVIDs",
		attempt: func() error {
			return as(mallory).Create(ctx, mustGrant(t, ns, `
metadata: {name: impersonate-api}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {spiffe: {dnsNames: [payments.internal.example]}}`))
		},
		want: []string{"mallory may not add DNS names or federated trust domains", `"issue" on credentialgrants/spiffe`},
	}, {
		name: "approve one's own workflow while listed as an approver",
		attempt: func() error {
			return annotate(ctx, as(alice), wf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "approved")
		},
		want: []string{"was created by alice, who may not approve it", "four-eyes"},
	}, {
		name: "approve without being listed",
		attempt: func() error {
			return annotate(ctx, as(mallory), wf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "approved")
		},
		want: []string{`mallory may not approve step "pay"`, "users alice, bob and members of groups finance-approvers"},
	}, {
		name: "forge an approver stamp naming someone who may approve",
		attempt: func() error {
			return annotate(ctx, as(mallory), wf, custodyv1alpha1.AnnotationApprovePrefix+"pay",
				`{"approvedBy":"bob","approvedAt":"2026-11-29T09:00:00Z"}`)
		},
		want: []string{`mallory may not approve step "pay"`},
	}, {
		name: "approve a step that has no approval gate",
		attempt: func() error {
			return annotate(ctx, as(bob), wf, custodyv1alpha1.AnnotationApprovePrefix+"check", "approved")
		},
		want: []string{`approves step "check"`, "no step \"check\" that needs an approval"},
	}, {
		name: "approve a step before it waits for an approval, when what it will run is not settled",
		attempt: func() error {
			return annotate(ctx, as(bob), wf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "approved")
		},
		want: []string{`step "pay" does not wait for an approval yet`, "approve it when it is WaitingForApproval"},
	}, {
		name: "pre-approve a workflow in its manifest",
		attempt: func() error {
			w := mustWorkflow(t, ns, paymentWorkflow)
			w.Name = "pre-approved"
			w.Annotations = map[string]string{custodyv1alpha1.AnnotationApprovePrefix + "pay": `{"approvedBy":"bob"}`}
			return as(alice).Create(ctx, w)
		},
		want: []string{"cannot be approved or rejected as it is created", "approve.custody.dev/pay"},
	}, {
		name: "rewrite the creator so that one can approve one's own workflow",
		attempt: func() error {
			return annotate(ctx, as(alice), wf, custodyv1alpha1.AnnotationCreatedBy, "mallory")
		},
		want: []string{"custody.dev/created-by records who created the object and cannot be changed", `it was "alice"`},
	}, {
		name: "withdraw someone's approval to approve again as oneself",
		attempt: func() error {
			return unannotate(ctx, as(carol), approvedWF, custodyv1alpha1.AnnotationApprovePrefix+"pay")
		},
		want: []string{"approval approve.custody.dev/pay cannot be withdrawn"},
	}, {
		name: "overwrite someone's approval with one's own",
		attempt: func() error {
			return annotate(ctx, as(carol), approvedWF, custodyv1alpha1.AnnotationApprovePrefix+"pay", "approved")
		},
		want: []string{"approval approve.custody.dev/pay was already given and cannot be changed"},
	}, {
		name: "drop the approval requirement of one's own grant",
		attempt: func() error {
			g := grant.DeepCopy()
			return as(alice).Patch(ctx, g, client.RawPatch("application/merge-patch+json",
				[]byte(`{"spec":{"approval":{"required":false,"approvers":null}}}`)))
		},
		want: []string{"spec.approval can only be removed, its approvers changed or its validFor lengthened by one of its current approvers",
			"created by alice, who may not approve it"},
	}, {
		name: "add oneself to a grant's approvers, then approve",
		attempt: func() error {
			g := grant.DeepCopy()
			return as(mallory).Patch(ctx, g, client.RawPatch("application/merge-patch+json",
				[]byte(`{"spec":{"approval":{"approvers":{"users":["bob","mallory"]}}}}`)))
		},
		want: []string{"spec.approval can only be removed, its approvers changed or its validFor lengthened", "mallory may not approve"},
	}, {
		name: "approve a grant one created",
		attempt: func() error {
			return annotate(ctx, as(alice), grant, custodyv1alpha1.AnnotationApproveGrant, "yes")
		},
		want: []string{"was created by alice, who may not approve it"},
	}, {
		name: "run a workflow that requests a grant one may not use",
		attempt: func() error {
			return as(mallory).Create(ctx, mustWorkflow(t, ns, `
metadata: {name: invoice-4711-copy}
spec:
  steps:
  - {name: pay, image: evil.example/exfiltrate, credentials: [app-db]}`))
		},
		want: []string{"mallory may not use the CredentialGrants app-db", `"use" on it`},
	}}
	if len(cases) < 12 {
		t.Fatalf("the escalation suite has %d scenarios, want at least 12", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.attempt()
			t.Logf("refused: %v", err)
			refused(t, tc.name, err, tc.want...)
			if err != nil && !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
				t.Errorf("%s: refused with status %v, want Forbidden or Invalid", tc.name, apierrors.ReasonForError(err))
			}
		})
	}

	// Nothing the attempts touched changed.
	got := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), got); err != nil {
		t.Fatal(err)
	}
	if got.Annotations[custodyv1alpha1.AnnotationCreatedBy] != alice || len(got.Annotations) != 1 {
		t.Errorf("workflow annotations after the attempts: %v", got.Annotations)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(approvedWF), got); err != nil {
		t.Fatal(err)
	}
	if rec := approvalRecord(t, got.Annotations[custodyv1alpha1.AnnotationApprovePrefix+"pay"]); rec.ApprovedBy != bob {
		t.Errorf("approval after the attempts: %+v, want bob's", rec)
	}
	for _, name := range []string{"erp", "rbac", "admin", "future", "other-team", "impersonate-api"} {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &custodyv1alpha1.CredentialGrant{}); !apierrors.IsNotFound(err) {
			t.Errorf("refused grant %s exists: %v", name, err)
		}
	}
}

// TestAllowed are the matching legitimate requests: each passes, and what admission records says
// who did it.
func TestAllowed(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)

	t.Run("the creator is recorded, and a forged creator replaced", func(t *testing.T) {
		w := mustWorkflow(t, ns, paymentWorkflow)
		w.Annotations = map[string]string{custodyv1alpha1.AnnotationCreatedBy: bob}
		create(t, as(alice), w)
		if got := w.Annotations[custodyv1alpha1.AnnotationCreatedBy]; got != alice {
			t.Errorf("created-by = %q, want alice", got)
		}
		// Updating without the annotation (a replace from a manifest) keeps it.
		w.Annotations = map[string]string{"team": "finance"}
		if err := as(alice).Update(ctx, w); err != nil {
			t.Fatalf("update without the annotation: %v", err)
		}
		if got := w.Annotations[custodyv1alpha1.AnnotationCreatedBy]; got != alice {
			t.Errorf("created-by after a replace = %q, want alice", got)
		}
	})

	t.Run("a listed approver approves a step and admission stamps them", func(t *testing.T) {
		w := &custodyv1alpha1.Workflow{}
		w.Namespace, w.Name = ns, "invoice-4711"
		waitsForApproval(t, w, "pay")
		before := time.Now().Add(-time.Second)
		// bob types a stamp naming carol; admission replaces it with his own name.
		if err := annotate(ctx, as(bob), w, custodyv1alpha1.AnnotationApprovePrefix+"pay",
			`{"approvedBy":"carol","approvedAt":"2020-01-01T00:00:00Z"}`); err != nil {
			t.Fatalf("bob approving: %v", err)
		}
		rec := approvalRecord(t, w.Annotations[custodyv1alpha1.AnnotationApprovePrefix+"pay"])
		if rec.ApprovedBy != bob || rec.ApprovedAt.Time.Before(before.Truncate(time.Second)) {
			t.Errorf("stamp %+v, want bob now", rec)
		}
	})

	t.Run("an approver by group approves", func(t *testing.T) {
		w := mustWorkflow(t, ns, paymentWorkflow)
		w.Name = "invoice-4713"
		create(t, as(alice), w)
		waitsForApproval(t, w, "pay")
		if err := annotate(ctx, as(carol), w, custodyv1alpha1.AnnotationApprovePrefix+"pay", "ok"); err != nil {
			t.Fatalf("carol (finance-approvers) approving: %v", err)
		}
		if rec := approvalRecord(t, w.Annotations[custodyv1alpha1.AnnotationApprovePrefix+"pay"]); rec.ApprovedBy != carol {
			t.Errorf("stamp %+v, want carol", rec)
		}
	})

	t.Run("grants of what the author holds", func(t *testing.T) {
		// alice may read app-db.
		create(t, as(alice), mustGrant(t, ns, appDBGrant))
		// mallory may not bind configmap-reader but holds everything in it.
		create(t, as(mallory), mustGrant(t, ns, `
metadata: {name: configs}
spec:
  subjects: [{workflowName: invoice-4711, steps: [check]}]
  credential: {kubernetesRole: {kind: Role, name: configmap-reader}}
  ttl: 10m`))
		// pat holds none of deployer's rules but may bind it.
		create(t, as(pat), mustGrant(t, ns, `
metadata: {name: deploy}
spec:
  subjects: [{workflowSelector: {matchLabels: {app: shop}}, steps: [rollout]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}
  ttl: 10m`))
		// SVID lifetimes and audiences need no extra permission.
		create(t, as(mallory), mustGrant(t, ns, `
metadata: {name: short-svids}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {spiffe: {x509TTL: 2m, audiences: [erp]}}`))
	})

	t.Run("a workflow requests a grant its author may use", func(t *testing.T) {
		create(t, as(alice), mustWorkflow(t, ns, `
metadata: {name: nightly-report}
spec:
  steps:
  - {name: export, image: busybox, credentials: [app-db]}`))
	})

	t.Run("an approver approves a grant; the controller records it", func(t *testing.T) {
		g := &custodyv1alpha1.CredentialGrant{}
		g.Namespace, g.Name = ns, "app-db"
		if err := annotate(ctx, as(bob), g, custodyv1alpha1.AnnotationApproveGrant, "approved"); err != nil {
			t.Fatalf("bob approving the grant: %v", err)
		}
		waitGrant(t, g, func(g *custodyv1alpha1.CredentialGrant) error {
			if g.Status.Approval == nil || g.Status.Approval.ApprovedBy != bob || !meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionApproved) {
				return fmt.Errorf("approval %+v, conditions %+v", g.Status.Approval, g.Status.Conditions)
			}
			return nil
		})
	})

	t.Run("widening an approved grant's subjects clears its approval", func(t *testing.T) {
		g := &custodyv1alpha1.CredentialGrant{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-db"}, g); err != nil {
			t.Fatal(err)
		}
		// alice keeps the approval annotation in her update (a read-modify-write).
		g.Spec.Subjects = append(g.Spec.Subjects, custodyv1alpha1.GrantSubject{WorkflowName: "nightly-report", Steps: []string{"export"}})
		if err := as(alice).Update(ctx, g); err != nil {
			t.Fatalf("widening: %v", err)
		}
		if v, ok := g.Annotations[custodyv1alpha1.AnnotationApproveGrant]; ok {
			t.Errorf("approval %q survived widening the subjects", v)
		}
		waitGrant(t, g, func(g *custodyv1alpha1.CredentialGrant) error {
			c := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionApproved)
			if g.Status.Approval != nil || c == nil || c.Status != "False" {
				return fmt.Errorf("approval %+v, Approved %+v", g.Status.Approval, c)
			}
			return nil
		})
		// Approving again is bob's (or the group's), not alice's.
		refused(t, "alice re-approving", annotate(ctx, as(alice), g, custodyv1alpha1.AnnotationApproveGrant, "yes"), "who may not approve it")
		if err := annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "yes"); err != nil {
			t.Errorf("carol approving the widened grant: %v", err)
		}
	})

	t.Run("security suspends a grant without reading its Secret", func(t *testing.T) {
		g := &custodyv1alpha1.CredentialGrant{}
		g.Namespace, g.Name = ns, "app-db"
		if err := as(sam).Patch(ctx, g, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"suspended":true}}`))); err != nil {
			t.Errorf("sam suspending: %v", err)
		}
	})

	t.Run("an approver may change who approves", func(t *testing.T) {
		g := &custodyv1alpha1.CredentialGrant{}
		g.Namespace, g.Name = ns, "app-db"
		if err := as(bob).Patch(ctx, g, client.RawPatch("application/merge-patch+json",
			[]byte(`{"spec":{"approval":{"approvers":{"users":["bob","dave"]}}}}`))); err != nil {
			t.Errorf("bob changing the approvers: %v", err)
		}
	})
}

func waitGrant(t *testing.T, g *custodyv1alpha1.CredentialGrant, cond func(*custodyv1alpha1.CredentialGrant) error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := &custodyv1alpha1.CredentialGrant{}
		err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(g), got)
		if err == nil {
			err = cond(got)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant %s: %v", g.Name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunWarnsOfGrantsThatWouldKeepAStepWaiting: a run whose step requests a grant that does not
// exist, or that does not allow the step's image, is admitted (grants may come later, GitOps
// applies in any order) with a warning that kubectl prints, naming the step and why.
func TestRunWarnsOfGrantsThatWouldKeepAStepWaiting(t *testing.T) {
	ns := team(t)
	create(t, as(alice), mustGrant(t, ns, `
metadata: {name: app-db}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay], images: ["registry.example.com/pay@sha256:*"]}]
  credential: {secret: {name: app-db, keys: [password]}}`))
	apply := func(name, image string) string {
		t.Helper()
		return kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: `+name+`}
spec:
  steps:
  - {name: pay, image: "`+image+`", credentials: [app-db, ledger]}
`)
	}
	out := apply("invoice-4711", "busybox")
	for _, want := range []string{
		`Warning: step "pay" will wait until this changes: CredentialGrant app-db does not allow step pay of workflow invoice-4711 to run image "busybox"`,
		`Warning: step "pay" will wait until this changes: CredentialGrant ledger does not exist in namespace ` + ns,
		"workflow.custody.dev/invoice-4711 created",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl printed:\n%s\nwant a line with %q", out, want)
		}
	}
	// The pinned image: only the missing grant is worth a warning.
	out = apply("invoice-4712", "registry.example.com/pay@sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904")
	if strings.Count(out, "Warning:") != 2 || !strings.Contains(out, "CredentialGrant app-db does not list step pay of workflow invoice-4712") {
		t.Errorf("kubectl printed:\n%s\nwant warnings that app-db does not list this workflow and ledger does not exist", out)
	}
}

// TestRunWarnsOfAStepThatOutlivesItsGrant: a step whose timeout (its own or stepDefaults') is
// longer than an issuance of a grant it requests lives is admitted with a warning that says what
// happens after the grant's ttl: the step runs on without the credential, or is stopped.
func TestRunWarnsOfAStepThatOutlivesItsGrant(t *testing.T) {
	ns := team(t)
	create(t, as(alice), mustGrant(t, ns, `
metadata: {name: app-db}
spec:
  subjects: [{workflowName: nightly, steps: [a, b, c]}]
  credential: {secret: {name: app-db, keys: [password]}}
  ttl: 10m`))
	create(t, as(alice), mustGrant(t, ns, `
metadata: {name: ledger}
spec:
  subjects: [{workflowName: nightly, steps: [a, b, c]}]
  credential: {secret: {name: app-db, keys: [password]}}
  ttl: 5m
  onRevoke: StopStep`))
	out := kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: nightly}
spec:
  stepDefaults: {timeout: 1h}
  steps:
  - {name: a, image: busybox, credentials: [app-db]}
  - {name: b, image: busybox, credentials: [ledger], timeout: 5m}
  - {name: c, image: busybox, credentials: [ledger], timeout: 90m}
`)
	for _, want := range []string{
		`Warning: step "a" may run for 1h (its timeout), longer than an issuance of grant app-db lives (ttl 10m): ` +
			`after 10m it runs on without the credential`,
		`Warning: step "c" may run for 1h30m (its timeout), longer than an issuance of grant ledger lives (ttl 5m): ` +
			`after 5m it is stopped (the grant's onRevoke is StopStep)`,
		"workflow.custody.dev/nightly created",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl printed:\n%s\nwant a line with %q", out, want)
		}
	}
	if strings.Count(out, "Warning:") != 2 {
		t.Errorf("kubectl printed:\n%s\nwant two warnings: step b's timeout is within the grant's ttl", out)
	}
}

// TestRunWarnsOfImagePullSecretsThatWouldKeepStepsWaiting: a registry Secret a new run names but
// nobody opted in is a warning, not a refusal (it may be labelled next), and says what to do.
func TestRunWarnsOfImagePullSecretsThatWouldKeepStepsWaiting(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	regcred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: ns}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	if err := env.Client.Create(ctx, regcred); err != nil {
		t.Fatal(err)
	}
	run := func(name string) string {
		t.Helper()
		return kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: `+name+`}
spec:
  imagePullSecrets: [{name: regcred}]
  steps: [{name: build, image: registry.internal.example/build:1}]
`)
	}
	if out, want := run("build-1"), "Warning: every step will wait until this changes: imagePullSecret regcred is not labelled "+
		"custody.dev/image-pull=true"; !strings.Contains(out, want) {
		t.Errorf("kubectl printed:\n%s\nwant a line with %q", out, want)
	}
	regcred.Labels = map[string]string{custodyv1alpha1.LabelImagePull: "true"}
	if err := env.Client.Update(ctx, regcred); err != nil {
		t.Fatal(err)
	}
	if out := run("build-2"); strings.Contains(out, "Warning:") {
		t.Errorf("kubectl printed:\n%s\nwant no warning once the Secret is opted in", out)
	}
}

// kubectlCreate creates a manifest with the pinned kubectl as user and returns what kubectl printed
// (its warnings among it).
func kubectlCreate(t *testing.T, ns, user, manifest string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "object.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(t, "-n", ns, "--as", user, "create", "-f", path)
	if err != nil {
		t.Fatalf("kubectl create: %v\n%s", err, out)
	}
	return out
}

// TestRunWarnsOfAMissingPriorityClass: a run whose steps name a PriorityClass that does not
// exist (their own, or stepDefaults', of the run or of its template) is admitted with a warning
// naming the class and the steps, whose pods could not be created until it exists.
func TestRunWarnsOfAMissingPriorityClass(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	urgent := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "custody-test-urgent"}, Value: 1000}
	if err := env.Client.Create(ctx, urgent); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), urgent) })
	out := kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: train}
spec:
  stepDefaults: {priorityClassName: custody-test-batch}
  steps:
  - {name: fetch, image: busybox}
  - {name: train, image: busybox, dependsOn: [fetch]}
  - {name: publish, image: busybox, dependsOn: [train], priorityClassName: custody-test-urgent}
`)
	want := `Warning: PriorityClass "custody-test-batch" does not exist: the pods of steps "fetch", "train" cannot be created until it does`
	if !strings.Contains(out, want) || strings.Count(out, "Warning:") != 1 {
		t.Errorf("kubectl printed:\n%s\nwant only the warning %q", out, want)
	}
	create(t, as(alice), mustTemplate(t, ns, `metadata: {name: nightly-train}
spec:
  stepDefaults: {priorityClassName: custody-test-urgent}
  steps:
  - {name: fetch, image: busybox}
  - {name: train, image: busybox, dependsOn: [fetch], priorityClassName: custody-test-gpu}`))
	out = kubectlCreate(t, ns, alice, `apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: nightly-train-1}
spec: {workflowTemplateRef: {name: nightly-train}}
`)
	want = `Warning: PriorityClass "custody-test-gpu" does not exist: the pods of step "train" cannot be created until it does`
	if !strings.Contains(out, want) || strings.Count(out, "Warning:") != 1 {
		t.Errorf("kubectl printed for a run of a template:\n%s\nwant only the warning %q", out, want)
	}
}

// TestApprovalOnlyWhileTheStepWaits: an approver approves what a step will run, settled only once
// the steps it depends on ended; admission accepts the approval only while the step waits for it
// (WaitingForApproval in status), not before, and not after it ended.
func TestApprovalOnlyWhileTheStepWaits(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	setStep := func(wf *custodyv1alpha1.Workflow, phase custodyv1alpha1.StepPhase, reason string) {
		t.Helper()
		eventually(t, "status of "+wf.Name, func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
				return err
			}
			wf.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "pay", Phase: phase, Reason: reason}}
			return env.Client.Status().Update(ctx, wf)
		})
	}
	approve := func(wf *custodyv1alpha1.Workflow) error {
		return annotate(ctx, as(bob), wf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "approved")
	}
	wf := mustWorkflow(t, ns, paymentWorkflow)
	create(t, as(alice), wf)
	refused(t, "approval of a step not yet in status", approve(wf), `step "pay" does not wait for an approval yet (it has not been reached)`,
		"kubectl custody get "+wf.Name)
	setStep(wf, custodyv1alpha1.StepPending, custodyv1alpha1.StepReasonWaitingForDependencies)
	refused(t, "approval of a step waiting for its dependencies", approve(wf),
		`step "pay" does not wait for an approval yet (it is Pending, WaitingForDependencies)`)
	setStep(wf, custodyv1alpha1.StepWaitingForApproval, custodyv1alpha1.ReasonWaitingForApproval)
	if err := approve(wf); err != nil {
		t.Fatalf("bob approving the waiting step: %v", err)
	}
	if rec := approvalRecord(t, wf.Annotations[custodyv1alpha1.AnnotationApprovePrefix+"pay"]); rec.ApprovedBy != bob {
		t.Errorf("stamp %+v, want bob's", rec)
	}

	ended := mustWorkflow(t, ns, paymentWorkflow)
	ended.Name = "invoice-cancelled"
	create(t, as(alice), ended)
	setStep(ended, custodyv1alpha1.StepCancelled, custodyv1alpha1.ReasonCancelled)
	refused(t, "approval of a step that ended", approve(ended), `step "pay" already ended (Cancelled, Cancelled)`,
		"nothing to approve")
}

// TestRejection: an approver who will not approve a waiting step rejects it, saying why. Admission
// allows it from the same people and at the same time as an approval, stamps who and when around
// the reason, refuses a reason that holds a credential, and keeps a step from being both approved
// and rejected; the decision cannot be changed or withdrawn.
func TestRejection(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	const key = custodyv1alpha1.AnnotationRejectPrefix + "pay"
	reject := func(user string, wf *custodyv1alpha1.Workflow, reason string) error {
		return annotate(ctx, as(user), wf, key, reason)
	}
	wf := mustWorkflow(t, ns, paymentWorkflow)
	create(t, as(alice), wf)
	refused(t, "a rejection before the step waits", reject(bob, wf, "no"), `step "pay" does not wait for an approval yet`,
		"reject it when it is WaitingForApproval")
	refused(t, "a rejection of a step without an approval gate", annotate(ctx, as(bob), wf, custodyv1alpha1.AnnotationRejectPrefix+"check", "no"),
		`reject.custody.dev/check rejects step "check", but the workflow has no step "check" that needs an approval`)
	waitsForApproval(t, wf, "pay")
	refused(t, "the creator rejecting her own run", reject(alice, wf, "changed my mind"), "created by alice, who may not reject it",
		"kubectl custody cancel")
	refused(t, "someone who is not an approver rejecting", reject(mallory, wf, "no"), `mallory may not reject step "pay"`)
	token := "ghp_" + strings.Repeat("a1B2", 9)
	err := reject(bob, wf, "wrong account, use "+token)
	refused(t, "a reason holding a token", err, "the reason of the rejection reject.custody.dev/pay looks like it contains a GitHub token")
	if err != nil && strings.Contains(err.Error(), token) {
		t.Errorf("the refusal repeats the token: %v", err)
	}
	refused(t, "a reason of 300 characters", reject(bob, wf, strings.Repeat("x", 300)), "must be at most 256 characters, not 300")

	// The documented way: kubectl annotate as the approver, the value saying why.
	if out, err := env.Kubectl(t, "-n", ns, "--as", bob, "--as-group", approversGroup, "--as-group", "system:authenticated",
		"annotate", "workflow", wf.Name, key+"=the total does not match the purchase order"); err != nil {
		t.Fatalf("bob rejecting with kubectl: %v\n%s", err, out)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
		t.Fatal(err)
	}
	rec, stamped := custodyv1alpha1.ParseRejection(wf.Annotations[key])
	if !stamped || rec.RejectedBy != bob || rec.RejectedAt.IsZero() || rec.Reason != "the total does not match the purchase order" {
		t.Errorf("stored rejection %q, want bob's stamp around his reason", wf.Annotations[key])
	}
	refused(t, "an approval of a rejected step", annotate(ctx, as(carol), wf, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"),
		`step "pay" was rejected by bob`, "cannot be overruled")
	refused(t, "changing the rejection", reject(carol, wf, "another reason"), "rejection reject.custody.dev/pay was already given and cannot be changed")
	refused(t, "withdrawing the rejection", unannotate(ctx, as(bob), wf, key), "rejection reject.custody.dev/pay cannot be withdrawn")

	approved := mustWorkflow(t, ns, paymentWorkflow)
	approved.Name = "invoice-4712"
	create(t, as(alice), approved)
	waitsForApproval(t, approved, "pay")
	if err := annotate(ctx, as(carol), approved, custodyv1alpha1.AnnotationApprovePrefix+"pay", "yes"); err != nil {
		t.Fatalf("carol approving: %v", err)
	}
	// The controller has not started the step yet (status still says it waits): the approval stands.
	refused(t, "a rejection of an approved step", reject(bob, approved, "too late"), `step "pay" was approved by carol`,
		"kubectl custody cancel invoice-4712")

	born := mustWorkflow(t, ns, paymentWorkflow)
	born.Name = "invoice-4713"
	born.Annotations = map[string]string{key: "rejected in advance"}
	refused(t, "a run created rejected", as(alice).Create(ctx, born), "cannot be approved or rejected as it is created")

	grant := mustGrant(t, ns, appDBGrant)
	create(t, as(alice), grant)
	refused(t, "a rejection of a grant", annotate(ctx, as(bob), grant, custodyv1alpha1.AnnotationRejectPrefix+"grant", "no"),
		"a CredentialGrant is not rejected", "spec.suspended")
}

// TestGrantWarnsOfItsRole: a role grant whose author may hand out its role is admitted, with a
// warning kubectl prints when the role lets a step reach beyond its own work (updating
// Deployments runs pods as any ServiceAccount of the namespace), or does not exist yet; a narrow
// role gets none, in a namespace that protects step pods. In one that does not, a grant is warned
// of that.
func TestGrantWarnsOfItsRole(t *testing.T) {
	ns := team(t)
	protect := func(on bool) {
		t.Helper()
		n := &corev1.Namespace{}
		if err := env.Client.Get(ctxT(t), client.ObjectKey{Name: ns}, n); err != nil {
			t.Fatal(err)
		}
		n.Labels[custodyv1alpha1.LabelProtectStepPods] = strconv.FormatBool(on)
		if err := env.Client.Update(ctxT(t), n); err != nil {
			t.Fatal(err)
		}
	}
	protect(true)
	manifest := func(name, role string) string {
		return `apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: ` + name + `}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {kubernetesRole: {kind: Role, name: ` + role + `}}
`
	}
	out := kubectlCreate(t, ns, pat, manifest("deploy", "deployer"))
	want := "Warning: Role deployer lets a step that holds it run pods, which may run as any ServiceAccount of the namespace " +
		"and mount any of its Secrets: it reaches credentials and identities other than the ones granted"
	if !strings.Contains(out, want) || strings.Count(out, "Warning:") != 1 {
		t.Errorf("kubectl printed:\n%s\nwant only the warning %q", out, want)
	}
	if out := kubectlCreate(t, ns, mallory, manifest("configs", "configmap-reader")); strings.Contains(out, "Warning:") {
		t.Errorf("kubectl printed:\n%s\nwant no warning for a Role that reads ConfigMaps", out)
	}
	path := filepath.Join(t.TempDir(), "grant.yaml")
	if err := os.WriteFile(path, []byte(manifest("later", "created-later")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(t, "-n", ns, "--as", "ops-admin", "--as-group", "system:masters", "create", "-f", path)
	want = "Warning: Role created-later of CredentialGrant later does not exist in namespace " + ns +
		" (yet): the grant issues nothing, and the steps that request it wait, until it does"
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("kubectl printed:\n%s (%v)\nwant the warning %q", out, err, want)
	}

	protect(false)
	out = kubectlCreate(t, ns, mallory, manifest("more-configs", "configmap-reader"))
	want = "Warning: Namespace " + ns + " does not protect step pods (label custody.dev/protect-step-pods=true): while a step " +
		"holds what CredentialGrant more-configs hands out, whoever may exec into or create pods there, or get ServiceAccount " +
		"tokens (the built-in edit role may), can use it as the step"
	if !strings.Contains(out, want) || strings.Count(out, "Warning:") != 1 {
		t.Errorf("kubectl printed:\n%s\nwant only the warning %q", out, want)
	}
}

// TestBroadRolesNeedApproval: in a namespace labelled custody.dev/broad-roles-need-approval=true,
// a grant whose role reaches beyond the step is refused unless it requires an approval, and the
// requirement cannot be dropped later, not even by its approvers; a grant of a narrow role needs
// none.
func TestBroadRolesNeedApproval(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	namespace := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		t.Fatal(err)
	}
	namespace.Labels[custodyv1alpha1.LabelBroadRolesNeedApproval] = "true"
	if err := env.Client.Update(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	const deploy = `
metadata: {name: deploy}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}`
	refused(t, "a grant of a broad role without an approval", as(pat).Create(ctx, mustGrant(t, ns, deploy)),
		"CredentialGrant "+ns+"/deploy: Role deployer of CredentialGrant deploy lets a step that holds it run pods",
		"namespace "+ns+" asks that such grants require an approval (label custody.dev/broad-roles-need-approval=true)")
	g := mustGrant(t, ns, deploy+`
  approval: {required: true, approvers: {users: [bob]}}`)
	create(t, as(pat), g)
	create(t, as(mallory), mustGrant(t, ns, `
metadata: {name: configs}
spec:
  subjects: [{workflowName: invoice-4711, steps: [check]}]
  credential: {kubernetesRole: {kind: Role, name: configmap-reader}}`))

	cur := &custodyv1alpha1.CredentialGrant{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Approval = nil
	refused(t, "an approver dropping the approval of a broad role's grant", as(bob).Update(ctx, cur),
		"asks that such grants require an approval")
}

// TestApprovalCoversTheRole: admission stamps the approval of a role grant with the digest of the
// role's rules as the approver approved it, and the controller records the rules. A role that
// allows less keeps the approval, and nobody may replace it; once the role allows more, the
// approval no longer stands (RoleChanged, naming what was added), and an approver may approve the
// grant again, which stamps the rules as they are then.
func TestApprovalCoversTheRole(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	g := mustGrant(t, ns, `
metadata: {name: deploy}
spec:
  subjects: [{workflowName: invoice-4711, steps: [pay]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}
  approval: {required: true, approvers: {users: [bob, carol]}}`)
	create(t, as(pat), g)
	role := &rbacv1.Role{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "deployer"}, role); err != nil {
		t.Fatal(err)
	}
	approvedRules := func(rules []rbacv1.PolicyRule) func(*custodyv1alpha1.CredentialGrant) error {
		want := credentials.RulesDigest(rules)
		return func(g *custodyv1alpha1.CredentialGrant) error {
			stamped, _ := custodyv1alpha1.ParseGrantApproval(g.Annotations[custodyv1alpha1.AnnotationApproveGrant])
			switch {
			case stamped == nil || stamped.RoleRules != want:
				return fmt.Errorf("the approval stamped %+v, want the rules %s", stamped, want)
			case g.Status.Approval == nil || g.Status.Approval.RoleRules != want || !equality.Semantic.DeepEqual(g.Status.Approval.ApprovedRules, rules):
				return fmt.Errorf("the approval recorded %+v, want the rules %s: %v", g.Status.Approval, want, rules)
			case !meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionApproved):
				return fmt.Errorf("conditions %+v", g.Status.Conditions)
			}
			return nil
		}
	}
	if err := annotate(ctx, as(bob), g, custodyv1alpha1.AnnotationApproveGrant, "approved"); err != nil {
		t.Fatalf("bob approving: %v", err)
	}
	waitGrant(t, g, approvedRules(slices.Clone(role.Rules)))
	refused(t, "carol approving an approved grant", annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "yes"),
		"was already given and cannot be changed")

	// A role that allows less is still what the approval covers: nobody approves it again.
	role.Rules[0].Verbs = []string{"get", "patch"}
	if err := env.Client.Update(ctx, role); err != nil {
		t.Fatal(err)
	}
	refused(t, "carol approving a grant whose role was narrowed", annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "yes"),
		"was already given and cannot be changed")

	role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"},
		Verbs: []string{"patch"}})
	if err := env.Client.Update(ctx, role); err != nil {
		t.Fatal(err)
	}
	waitGrant(t, g, func(g *custodyv1alpha1.CredentialGrant) error {
		c := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionApproved)
		if c == nil || c.Reason != custodyv1alpha1.ReasonRoleChanged ||
			!strings.Contains(c.Message, "Role deployer of CredentialGrant deploy changed since bob approved the grant") ||
			!strings.Contains(c.Message, "it now also allows patch apps/deployments/scale, which the approval did not cover") {
			return fmt.Errorf("Approved %+v", c)
		}
		return nil
	})
	refused(t, "the grant's creator approving it again", annotate(ctx, as(pat), g, custodyv1alpha1.AnnotationApproveGrant, "yes"),
		"who may not approve it")
	if err := annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "looked at the new rules"); err != nil {
		t.Fatalf("carol approving the grant again after its role changed: %v", err)
	}
	waitGrant(t, g, approvedRules(role.Rules))
	if rec, _ := custodyv1alpha1.ParseGrantApproval(g.Annotations[custodyv1alpha1.AnnotationApproveGrant]); rec == nil || rec.ApprovedBy != carol {
		t.Errorf("the new approval %+v", rec)
	}
}
