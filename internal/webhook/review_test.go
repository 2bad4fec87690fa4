package webhook_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestApprovalValidFor: approval.validFor needs required: true; a grant's author may shorten it but
// only one of its approvers may lengthen or remove it (either would let an approval stand longer
// than the approvers agreed to); an approval that has not lapsed cannot be given again.
func TestApprovalValidFor(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	bad := mustGrant(t, ns, appDBGrant)
	bad.Name = "no-review"
	bad.Spec.Approval = &custodyv1alpha1.GrantApproval{ValidFor: &metav1.Duration{Duration: 24 * time.Hour}}
	refused(t, "validFor without required", as(alice).Create(ctx, bad), "validFor needs required: true")

	g := mustGrant(t, ns, appDBGrant)
	g.Spec.Approval.ValidFor = &metav1.Duration{Duration: 720 * time.Hour}
	create(t, as(alice), g)
	set := func(who, validFor string) error {
		return as(who).Patch(ctx, g.DeepCopy(), client.RawPatch("application/merge-patch+json",
			[]byte(`{"spec":{"approval":{"validFor":`+validFor+`}}}`)))
	}
	for _, v := range []string{`"8760h"`, `null`} {
		refused(t, "the author setting validFor "+v, set(alice, v),
			"spec.approval can only be removed, its approvers changed or its validFor lengthened by one of its current approvers",
			"created by alice, who may not approve it")
	}
	if err := set(alice, `"24h"`); err != nil {
		t.Errorf("the author shortening validFor: %v", err)
	}
	if err := set(bob, `"2160h"`); err != nil {
		t.Errorf("an approver lengthening validFor: %v", err)
	}
	if err := annotate(ctx, as(bob), g, custodyv1alpha1.AnnotationApproveGrant, "approved"); err != nil {
		t.Fatalf("bob approving: %v", err)
	}
	refused(t, "approving again before the approval lapsed", annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "approved"),
		"approval approve.custody.dev/grant was already given and cannot be changed")
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
		t.Fatal(err)
	}
	if v := g.Annotations[custodyv1alpha1.AnnotationApproveGrant]; !strings.Contains(v, `"approvedBy":"bob"`) {
		t.Errorf("approval %q, want bob's", v)
	}
}
