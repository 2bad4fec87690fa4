package webhook_test

// These tests run Custody's admission webhooks in a manager against a real kube-apiserver (envtest)
// that has config/webhook's configurations installed, and make every request as an impersonated
// user with their own RBAC: the API server authenticates, authorizes and admits each one exactly
// as it would for a person with a kubeconfig.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/controllers/credentialgrant"
	"github.com/custody-dev/custody/internal/testenv"
	"github.com/custody-dev/custody/internal/webhook"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env, testenv.WithWebhooks())
}

var serveOnce sync.Once

// serve starts, once per test binary, a manager with the webhooks and the CredentialGrant
// controller (which records approvals in status), and waits until admission answers.
func serve(t *testing.T) {
	t.Helper()
	serveOnce.Do(func() {
		w := env.Webhook
		mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
			Scheme:  env.Scheme,
			Metrics: metricsserver.Options{BindAddress: "0"},
			WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
				Host: w.LocalServingHost, Port: w.LocalServingPort, CertDir: w.LocalServingCertDir}),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := webhook.Setup(mgr, webhook.Policy{}); err != nil {
			t.Fatal(err)
		}
		grants := &credentialgrant.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
			Recorder: mgr.GetEventRecorder(credentialgrant.ControllerName)}
		if err := grants.SetupWithManager(mgr); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "manager:", err)
			}
		}()
		env.BeforeStop(func() { cancel(); <-done })
		admission, cancelWait := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancelWait()
		if err := env.WaitForAdmission(admission); err != nil {
			t.Fatal(err)
		}
	})
}

// The people of the tests. Each gets RBAC in the test's namespace from team().
const (
	// alice writes workflows and grants for her team; she may read only the Secret app-db.
	alice = "alice"
	// bob approves finance steps and grants (listed by name and as a group member).
	bob = "bob"
	// carol is in the finance-approvers group.
	carol = "carol"
	// mallory has the namespace's edit rights (everything but RBAC) plus the grant editor role.
	mallory = "mallory"
	// sam is on the security team: may suspend grants, reads no Secret.
	sam = "sam"
	// pat is the platform engineer: may bind the deployer Role.
	pat = "pat"

	approversGroup = "finance-approvers"
)

// team makes a namespace with the people's RBAC and waits until the authorizer has it.
func team(t *testing.T) string {
	t.Helper()
	serve(t)
	ns := env.Namespace(t)
	ctx := ctxT(t)
	rules := func(r ...rbacv1.PolicyRule) []rbacv1.PolicyRule { return r }
	custody := rbacv1.PolicyRule{APIGroups: []string{"custody.dev"}, Resources: []string{"workflows", "credentialgrants", "workflowtemplates", "cronworkflows"},
		Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}
	use := rbacv1.PolicyRule{APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"}, Verbs: []string{"use"}}
	roles := map[string][]rbacv1.PolicyRule{
		"author": rules(custody, use,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{"app-db"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}),
		"approver": rules(rbacv1.PolicyRule{APIGroups: []string{"custody.dev"}, Resources: []string{"workflows", "credentialgrants"},
			Verbs: []string{"get", "list", "watch", "update", "patch"}}),
		"security": rules(rbacv1.PolicyRule{APIGroups: []string{"custody.dev"}, Resources: []string{"credentialgrants"},
			Verbs: []string{"get", "list", "watch", "update", "patch"}}),
		"platform": rules(custody, use,
			rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles"}, Verbs: []string{"bind"},
				ResourceNames: []string{"deployer"}}),
		// The roles grants hand out.
		"deployer": rules(rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"},
			Verbs: []string{"get", "update", "patch"}}),
		"configmap-reader": rules(rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}),
		"rbac-manager": rules(rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings"},
			Verbs: []string{"create", "delete"}}),
	}
	for name, r := range roles {
		create(t, env.Client, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: r})
	}
	bind := func(user, kind, role string) {
		create(t, env.Client, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		})
	}
	bind(alice, "Role", "author")
	bind(bob, "Role", "approver")
	bind(carol, "Role", "approver")
	bind(sam, "Role", "security")
	bind(pat, "Role", "platform")
	// Namespace edit: the rules the built-in edit role aggregates (envtest runs no aggregation).
	bind(mallory, "ClusterRole", "system:aggregate-to-edit")
	bind(mallory, "ClusterRole", "system:aggregate-to-view")
	create(t, env.Client, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grant-editor"}, Rules: rules(custody)})
	bind(mallory, "Role", "grant-editor")

	// RBAC reaches the authorizer's cache within moments.
	for _, u := range []string{alice, bob, carol, sam, pat, mallory} {
		waitAllowed(t, u, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "custody.dev", Resource: "credentialgrants"})
	}
	waitAllowed(t, mallory, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets"})
	waitAllowed(t, pat, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "bind", Group: rbacv1.GroupName, Resource: "roles", Name: "deployer"})
	_ = ctx
	return ns
}

func waitAllowed(t *testing.T, user string, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := attrs
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: &a}}
		if err := env.Client.Create(ctxT(t), sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RBAC for %s never allowed %+v", user, attrs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// as is a client acting as user; carol and bob are members of the approvers group.
func as(user string) client.Client {
	switch user {
	case bob, carol:
		return env.As(user, approversGroup)
	}
	return env.As(user)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, c client.Client, o client.Object) {
	t.Helper()
	if err := c.Create(ctxT(t), o); err != nil {
		t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
}

func mustWorkflow(t *testing.T, ns, manifest string) *custodyv1alpha1.Workflow {
	t.Helper()
	wf := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(manifest), wf); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	wf.Namespace = ns
	return wf
}

func mustGrant(t *testing.T, ns, manifest string) *custodyv1alpha1.CredentialGrant {
	t.Helper()
	g := &custodyv1alpha1.CredentialGrant{}
	if err := yaml.UnmarshalStrict([]byte(manifest), g); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	g.Namespace = ns
	return g
}

// refused asserts err is a refusal whose message contains every part.
func refused(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want refused with %q", what, parts)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: refused with\n  %v\nwhich does not say %q", what, err, p)
		}
	}
}

// annotate sets one annotation with a JSON merge patch, as `kubectl annotate` does.
func annotate(ctx context.Context, c client.Client, o client.Object, key, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
	return c.Patch(ctx, o, client.RawPatch("application/merge-patch+json", []byte(patch)))
}

// unannotate removes one annotation with a JSON merge patch (`kubectl annotate key-`).
func unannotate(ctx context.Context, c client.Client, o client.Object, key string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, key)
	return c.Patch(ctx, o, client.RawPatch("application/merge-patch+json", []byte(patch)))
}

// waitsForApproval records in wf's status, as the controller does once a step's dependencies
// ended, that each of steps waits for an approval: admission accepts an approval only then.
func waitsForApproval(t *testing.T, wf *custodyv1alpha1.Workflow, steps ...string) {
	t.Helper()
	ctx := ctxT(t)
	eventually(t, "status saying "+strings.Join(steps, ", ")+" of "+wf.Name+" wait for an approval", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		for _, step := range steps {
			wf.Status.Steps = append(wf.Status.Steps, custodyv1alpha1.StepStatus{Name: step,
				Phase: custodyv1alpha1.StepWaitingForApproval, Reason: custodyv1alpha1.ReasonWaitingForApproval})
		}
		return env.Client.Status().Update(ctx, wf)
	})
}
