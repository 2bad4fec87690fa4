package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/gitops"
)

// TestGitOpsHealth evaluates the Argo CD health checks of config/gitops/argocd (with the Lua
// interpreter Argo CD embeds) and kstatus (what Flux reads) on real Workflows and grants as they
// move through their lives on the cluster: both must give the documented answer, and agree.
func TestGitOpsHealth(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	const approver = "e2e-approver"
	objs := make([]client.Object, 0, 7)
	objs = append(objs,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "erp-api",
			Labels: map[string]string{custodyv1alpha1.LabelGrantable: "true"}}, StringData: map[string]string{"token": "e2e"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvers"}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"custody.dev"}, Resources: []string{"workflows", "credentialgrants"}, Verbs: []string{"get", "patch"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvers"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "approvers"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: approver}}})
	for _, m := range []string{`
metadata: {name: erp-payments}
spec:
  subjects: [{workflowName: gated, steps: [pay]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  approval: {required: true, approvers: {users: [e2e-approver]}}`, `
metadata: {name: missing-source}
spec:
  subjects: [{workflowName: gated, steps: [pay]}]
  credential: {secret: {name: not-there, keys: [token]}}`} {
		g := &custodyv1alpha1.CredentialGrant{}
		if err := yaml.UnmarshalStrict([]byte(m), g); err != nil {
			t.Fatal(err)
		}
		g.Namespace = ns
		objs = append(objs, g)
	}
	for _, name := range []string{"gated", "cancelled"} {
		wf := &custodyv1alpha1.Workflow{}
		if err := yaml.UnmarshalStrict([]byte(`
spec:
  steps:
  - {name: check, image: example.com/w:1}
  - name: pay
    image: example.com/w:1
    dependsOn: [check]
    approval: {approvers: {users: [e2e-approver]}}
    credentials: [erp-payments]`), wf); err != nil {
			t.Fatal(err)
		}
		wf.Namespace, wf.Name = ns, name
		objs = append(objs, wf)
	}
	for _, o := range objs {
		if err := cluster.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	health := func(kind, name, want string) {
		t.Helper()
		eventually(t, time.Minute, fmt.Sprintf("%s %s %s", kind, name, want), func() error {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(custodyv1alpha1.GroupVersion.WithKind(kind))
			if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
				return err
			}
			h, err := gitops.ArgoHealth(u)
			if err != nil {
				return err
			}
			s, err := gitops.Kstatus(u)
			if err != nil {
				return err
			}
			if h.Status != want || !gitops.Agree(h, s) {
				return fmt.Errorf("Argo CD %s (%s), kstatus %s", h.Status, h.Message, s)
			}
			return nil
		})
	}
	health("CredentialGrant", "missing-source", gitops.Degraded)
	health("CredentialGrant", "erp-payments", gitops.Suspended)
	health("Workflow", "gated", gitops.Suspended)
	health("Workflow", "cancelled", gitops.Suspended)

	if err := whenAdmitted(ctx, func() error {
		wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cancelled"}}
		return cluster.Client.Patch(ctx, wf, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"cancel":true}}`)))
	}); err != nil {
		t.Fatal(err)
	}
	health("Workflow", "cancelled", gitops.Degraded)

	// The approver approves the grant and the step (RBAC reaches the authorizer within moments).
	approve := func(o client.Object, key string) {
		patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"approved"}}}`, key))
		eventually(t, 30*time.Second, "approving "+o.GetName(), func() error {
			return cluster.As(approver).Patch(ctx, o, client.RawPatch("application/merge-patch+json", patch))
		})
	}
	approve(&custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "erp-payments"}},
		custodyv1alpha1.AnnotationApproveGrant)
	health("CredentialGrant", "erp-payments", gitops.Healthy)
	approve(&custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gated"}},
		custodyv1alpha1.AnnotationApprovePrefix+"pay")
	health("Workflow", "gated", gitops.Healthy)

	// The kill switch.
	setSuspended(ctx, t, ns, "erp-payments", true)
	health("CredentialGrant", "erp-payments", gitops.Suspended)
}
