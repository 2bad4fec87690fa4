package webhook_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestApprovalValidFor: approval.validFor needs required: true; a grant's author may shorten it but
// only one of its approvers may lengthen or remove it (either would let an approval stand longer
// than the approvers agreed to); an approval cannot be given again before its review window, and
// the refusal says from when it can.
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
	// Once the controller recorded bob's approval, admission says from when it may be given again:
	// the last quarter of validFor, at most 14 days (336h of 2160h), before it lapses.
	var at time.Time
	eventually(t, "bob's approval recorded in status", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
			return err
		}
		if a := g.Status.Approval; a == nil || a.ApprovedBy != bob {
			return fmt.Errorf("status.approval %+v", a)
		}
		at = g.Status.Approval.ApprovedAt.UTC()
		return nil
	})
	refused(t, "approving again before its review window", annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "approved"),
		"its approval by bob stands until "+at.Add(2160*time.Hour).Format(time.RFC3339)+" (approval.validFor); an approver may "+
			"approve it again from "+at.Add(1824*time.Hour).Format(time.RFC3339))
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
		t.Fatal(err)
	}
	if v := g.Annotations[custodyv1alpha1.AnnotationApproveGrant]; !strings.Contains(v, `"approvedBy":"bob"`) {
		t.Errorf("approval %q, want bob's", v)
	}
}
