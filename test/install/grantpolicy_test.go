package install

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestChartGrantPolicy installs the chart's grant policy (Helm grantPolicy) into a real API
// server and checks what it refuses: a new grant without an approval, or whose approval stands
// longer than the limit, and a change of an existing grant's approval settings that leaves them
// outside the rules; while a grant made before the policy may still be suspended (the kill switch),
// approved and changed in other ways, and brought within the rules.
func TestChartGrantPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := env.Namespace(t)
	grant := func(name, approval string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(`
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: `+name+`, namespace: `+ns+`}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
`+approval), u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	const approvers = "approvers: {groups: [finance-controllers]}"
	// Made before the policy: an approval that never lapses.
	before := grant("before", "  approval: {required: true, "+approvers+"}")
	if err := env.Client.Create(ctx, before); err != nil {
		t.Fatal(err)
	}

	objs := template(t, append(slices.Clone(valueSets["minimal"]), "grantPolicy.approvalRequired=true", "grantPolicy.approvalMaxValidFor=2160h",
		`grantPolicy.namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=`+ns))
	policy := byKind(objs, "ValidatingAdmissionPolicy")
	binding := byKind(objs, "ValidatingAdmissionPolicyBinding")
	if len(policy) != 1 || len(binding) != 1 {
		t.Fatalf("rendered %d policies and %d bindings, want one each", len(policy), len(binding))
	}
	for _, u := range []*unstructured.Unstructured{policy[0], binding[0]} {
		if err := env.Client.Create(ctx, u); err != nil {
			t.Fatalf("creating %s: %v", u.GetKind(), err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), u) })
	}

	const needApproval = "this cluster asks that every CredentialGrant require an approval (Helm grantPolicy.approvalRequired)"
	const review = "this cluster asks that approvals be reviewed at least every 2160h (Helm grantPolicy.approvalMaxValidFor): " +
		"set spec.approval.validFor to at most 2160h"
	refused := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it refused: %q", what, err, want)
		}
	}
	// The API server applies a new policy within a second or so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := env.Client.Create(ctx, grant("probe", ""), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), needApproval) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy is not in force after 30s: a grant without an approval: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}

	refused("a grant that needs no approval", env.Client.Create(ctx, grant("alone", "  approval: {required: false}")), needApproval)
	refused("a grant whose approval never lapses", env.Client.Create(ctx, grant("forever", "  approval: {required: true, "+approvers+"}")), review)
	refused("a grant whose approval stands for 180 days",
		env.Client.Create(ctx, grant("half-year", "  approval: {required: true, validFor: 4320h, "+approvers+"}")), review)
	if err := env.Client.Create(ctx, grant("quarterly", "  approval: {required: true, validFor: 2160h, "+approvers+"}")); err != nil {
		t.Errorf("a grant reviewed every 90 days was refused: %v", err)
	}

	// The grant made before the policy: the kill switch, an approval and other changes pass.
	patch := func(p string) error {
		t.Helper()
		return env.Client.Patch(ctx, before, client.RawPatch(types.MergePatchType, []byte(p)))
	}
	for _, c := range []struct{ what, patch string }{
		{"suspending it", `{"spec":{"suspended":true}}`},
		{"approving it", `{"metadata":{"annotations":{"approve.custody.dev/grant":"yes"}}}`},
		{"changing its subjects", `{"spec":{"subjects":[{"workflowName":"pay","steps":["post","verify"]}]}}`},
		{"resuming it", `{"spec":{"suspended":false}}`},
	} {
		if err := patch(c.patch); err != nil {
			t.Errorf("%s (made before the policy): %v", c.what, err)
		}
	}
	refused("changing its approvers, leaving its approval without a lapse",
		patch(`{"spec":{"approval":{"approvers":{"groups":["finance-controllers","auditors"]}}}}`), review)
	if err := patch(`{"spec":{"approval":{"validFor":"720h"}}}`); err != nil {
		t.Errorf("bringing it within the rules: %v", err)
	}
	refused("lengthening its review past the limit", patch(`{"spec":{"approval":{"validFor":"4320h"}}}`), review)
	refused("removing its review", patch(`{"spec":{"approval":{"validFor":null}}}`), review)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(before), before); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(before.Object, "spec", "approval", "validFor"); v != "720h" {
		t.Errorf("validFor %q after the refused changes, want 720h", v)
	}
}
