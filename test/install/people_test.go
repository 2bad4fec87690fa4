package install

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestPeopleRolesGiveNoWayIntoAStep: none of the ClusterRoles Custody ships for people (bound in
// a workflow namespace) lets them into a running step: no exec, attach or
// ephemeral container in its pod, no pod of their own to mount its ServiceAccount or Secret copy
// with, no token or impersonation of its ServiceAccount, no read of Secrets (docs/security.md,
// "The trust boundary of a workflow namespace"). Each role's own first rule is allowed, which
// shows the binding took effect, so a denial is the role's and not a missing binding.
func TestPeopleRolesGiveNoWayIntoAStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := env.Namespace(t)
	intoAStep := []authorizationv1.ResourceAttributes{
		{Resource: "pods", Subresource: "exec", Verb: "create"},
		{Resource: "pods", Subresource: "exec", Verb: "get"},
		{Resource: "pods", Subresource: "attach", Verb: "create"},
		{Resource: "pods", Subresource: "ephemeralcontainers", Verb: "update"},
		{Resource: "pods", Subresource: "ephemeralcontainers", Verb: "patch"},
		{Resource: "pods", Subresource: "portforward", Verb: "create"},
		{Resource: "pods", Subresource: "proxy", Verb: "create"},
		{Resource: "pods", Subresource: "proxy", Verb: "get"},
		{Resource: "pods", Verb: "create"},
		{Group: "batch", Resource: "jobs", Verb: "create"},
		{Group: "apps", Resource: "deployments", Verb: "create"},
		{Resource: "serviceaccounts", Subresource: "token", Verb: "create"},
		{Resource: "serviceaccounts", Verb: "impersonate"},
		{Resource: "secrets", Verb: "get"},
		{Resource: "secrets", Verb: "list"},
	}
	people := 0
	for _, u := range render(t) {
		if u.GetKind() != "ClusterRole" {
			continue
		}
		role := &rbacv1.ClusterRole{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, role); err != nil {
			t.Fatal(err)
		}
		// The manager's own roles are checked in TestDefaultInstallApplies.
		if !peopleRole(role) {
			continue
		}
		people++
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("install-test"), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
		user := "person-" + role.Name
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		if err := env.Client.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
		first := role.Rules[0]
		own := authorizationv1.ResourceAttributes{Group: first.APIGroups[0], Resource: first.Resources[0], Verb: first.Verbs[0]}
		if !allowed(ctx, t, user, ns, own, true) {
			t.Errorf("%s: its own rule (%s %s) is denied: the binding did not take effect", role.Name, own.Verb, own.Resource)
			continue
		}
		for _, a := range intoAStep {
			if allowed(ctx, t, user, ns, a, false) {
				t.Errorf("%s lets a person %s %s/%s in a workflow namespace: a way into a running step's credentials",
					role.Name, a.Verb, a.Resource, a.Subresource)
			}
		}
	}
	if people != 6 {
		t.Errorf("config/default has %d roles for people, want 6 (workflow editor and viewer, credentialgrant editor, viewer and user, spiffe issuer)", people)
	}
}

// peopleRole says whether a ClusterRole of config/default is one of those Custody ships for
// people: every one but the manager's own (its permissions, and reading its metrics).
func peopleRole(r *rbacv1.ClusterRole) bool {
	switch r.Name {
	case "custody-manager", "custody-metrics-auth", "custody-metrics-reader":
		return false
	}
	return true
}

// allowed asks the API server whether user may do a in ns. RBAC changes reach the authorizer's
// cache within moments: it asks again until the answer is want or a few seconds passed.
func allowed(ctx context.Context, t *testing.T, user, ns string, a authorizationv1.ResourceAttributes, want bool) bool {
	t.Helper()
	a.Namespace = ns
	deadline := time.Now().Add(5 * time.Second)
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &a}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed == want || time.Now().After(deadline) {
			return sar.Status.Allowed
		}
		time.Sleep(200 * time.Millisecond)
	}
}
