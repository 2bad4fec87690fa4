// Package install checks the kustomize install (config/default) against a real API server: every
// object it renders is accepted, and the RBAC it grants the controller is what the controller needs.
package install

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/custody-dev/custody/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

func render(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Track(t, filepath.Join(root, "config"))
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", "default")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, out)
	}
	return decodeAll(t, out)
}

// decodeAll parses a multi-document YAML stream.
func decodeAll(t *testing.T, out []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("decoding rendered YAML: %v", err)
			}
			break
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// TestDefaultInstallApplies server-side applies everything config/default renders, as a platform
// team would with `kubectl apply --server-side`, and checks the kinds a working install needs.
func TestDefaultInstallApplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs := render(t)
	kinds := map[string]int{}
	for _, u := range objs {
		kinds[u.GetKind()]++
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("install-test"), client.ForceOwnership); err != nil {
			t.Errorf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for kind, want := range map[string]int{
		"Namespace": 1, "CustomResourceDefinition": 4, "ServiceAccount": 1, "Deployment": 1,
		"Service": 2, "ClusterRole": 9, "ClusterRoleBinding": 2, "Role": 2, "RoleBinding": 2, "Secret": 1,
		"MutatingWebhookConfiguration": 1, "ValidatingWebhookConfiguration": 1, "PodDisruptionBudget": 1,
	} {
		if kinds[kind] != want {
			t.Errorf("config/default renders %d %s, want %d", kinds[kind], kind, want)
		}
	}
	for _, u := range objs {
		if u.GetNamespace() != "" && u.GetNamespace() != "custody-system" {
			t.Errorf("%s %s is in namespace %q, want custody-system", u.GetKind(), u.GetName(), u.GetNamespace())
		}
	}

	// The manager's ServiceAccount may do what the controller needs and no more (docs/security.md).
	const sa = "system:serviceaccount:custody-system:custody-controller-manager"
	cases := []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Group: "custody.dev", Resource: "workflows", Verb: "watch"}, true},
		{authorizationv1.ResourceAttributes{Group: "custody.dev", Resource: "workflows", Subresource: "status", Verb: "patch"}, true},
		{authorizationv1.ResourceAttributes{Group: "custody.dev", Resource: "credentialgrants", Verb: "list"}, true},
		{authorizationv1.ResourceAttributes{Group: "coordination.k8s.io", Resource: "leases", Namespace: "custody-system", Verb: "update"}, true},
		{authorizationv1.ResourceAttributes{Group: "coordination.k8s.io", Resource: "leases", Namespace: "default", Verb: "update"}, false},
		// Secrets: read (the cache selects only those labelled custody.dev/grantable) and per-attempt
		// copies written by patch; never update (docs/security.md).
		{authorizationv1.ResourceAttributes{Resource: "secrets", Namespace: "default", Verb: "get"}, true},
		{authorizationv1.ResourceAttributes{Resource: "secrets", Namespace: "default", Verb: "update"}, false},
		// ...except the webhook's serving certificate, in its own namespace.
		{authorizationv1.ResourceAttributes{Resource: "secrets", Namespace: "custody-system", Verb: "update"}, true},
		// Admission: ask the API server what the requesting user may do; read roles to compare rules;
		// keep the CA bundle of its own two webhook configurations and no other.
		{authorizationv1.ResourceAttributes{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Group: "rbac.authorization.k8s.io", Resource: "roles", Namespace: "default", Verb: "get"}, true},
		// ...and the PriorityClasses a new run names, to warn of one that does not exist; never list them.
		{authorizationv1.ResourceAttributes{Group: "scheduling.k8s.io", Resource: "priorityclasses", Verb: "get"}, true},
		{authorizationv1.ResourceAttributes{Group: "scheduling.k8s.io", Resource: "priorityclasses", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations",
			Name: "custody-validating-webhook-configuration", Verb: "update"}, true},
		{authorizationv1.ResourceAttributes{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations",
			Name: "another-policy-engine", Verb: "update"}, false},
		{authorizationv1.ResourceAttributes{Resource: "configmaps", Namespace: "default", Verb: "get"}, false},
		// kubernetesRole grants: bind roles to step ServiceAccounts, never edit roles.
		{authorizationv1.ResourceAttributes{Group: "rbac.authorization.k8s.io", Resource: "rolebindings", Namespace: "default", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Verb: "bind"}, true},
		{authorizationv1.ResourceAttributes{Group: "rbac.authorization.k8s.io", Resource: "roles", Namespace: "default", Verb: "escalate"}, false},
		{authorizationv1.ResourceAttributes{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Group: "custody.dev", Resource: "credentialgrants", Verb: "delete"}, false},
	}
	for _, tc := range cases {
		attrs := tc.attrs
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:custody-system"},
			ResourceAttributes: &attrs,
		}}
		// RBAC changes reach the authorizer's cache within moments; wait for the allowed ones.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := env.Client.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed == tc.want || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
			sar.Status = authorizationv1.SubjectAccessReviewStatus{}
		}
		if sar.Status.Allowed != tc.want {
			t.Errorf("controller may %s %s/%s (ns %q): %v, want %v", attrs.Verb, attrs.Resource, attrs.Subresource,
				attrs.Namespace, sar.Status.Allowed, tc.want)
		}
	}
}
