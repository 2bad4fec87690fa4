package webhook_test

import (
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestCancelIsRecorded: whoever sets spec.cancel is recorded by admission, with the reason they
// give, and neither can be forged or rewritten afterwards.
func TestCancelIsRecorded(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	merge := func(user string, w *custodyv1alpha1.Workflow, patch string) error {
		return as(user).Patch(ctx, w, client.RawPatch("application/merge-patch+json", []byte(patch)))
	}
	byKey, reasonKey := custodyv1alpha1.AnnotationCancelledBy, custodyv1alpha1.AnnotationCancelReason

	forged := mustWorkflow(t, ns, paymentWorkflow)
	forged.Name = "forged-cancel"
	forged.Annotations = map[string]string{byKey: "carol"}
	refused(t, "creating a run that says who cancelled it", as(alice).Create(ctx, forged),
		"custody.dev/cancelled-by records who cancelled the run", "cannot be written or changed otherwise")

	w := mustWorkflow(t, ns, paymentWorkflow)
	w.Name = "cancel-me"
	create(t, as(alice), w)
	refused(t, "writing cancelled-by without cancelling", annotate(ctx, as(mallory), w, byKey, "carol"),
		"custody.dev/cancelled-by records who cancelled the run")
	refused(t, "a reason longer than 256 characters", merge(alice, w,
		`{"spec":{"cancel":true},"metadata":{"annotations":{"custody.dev/cancel-reason":"`+strings.Repeat("x", 257)+`"}}}`),
		"custody.dev/cancel-reason must be at most 256 characters, not 257")
	token := "ghp_" + strings.Repeat("a1B2", 9)
	err := merge(alice, w, `{"spec":{"cancel":true},"metadata":{"annotations":{"custody.dev/cancel-reason":"rotated `+token+`"}}}`)
	refused(t, "a reason holding a token", err, "custody.dev/cancel-reason looks like it contains a GitHub token")
	if err != nil && strings.Contains(err.Error(), token) {
		t.Errorf("the refusal repeats the token: %v", err)
	}

	// bob cancels and types carol's name: admission records bob.
	if err := merge(bob, w, `{"spec":{"cancel":true},"metadata":{"annotations":{"custody.dev/cancelled-by":"carol",`+
		`"custody.dev/cancel-reason":"the release was called off"}}}`); err != nil {
		t.Fatalf("bob cancelling: %v", err)
	}
	if by, why := w.Annotations[byKey], w.Annotations[reasonKey]; by != bob || why != "the release was called off" {
		t.Fatalf("cancelled-by %q, reason %q; want bob and his reason", by, why)
	}
	if got := w.Cancellation(); got != "The workflow was cancelled by bob: the release was called off" {
		t.Errorf("Cancellation() = %q", got)
	}
	refused(t, "changing the reason afterwards", annotate(ctx, as(alice), w, reasonKey, "alice's version"),
		"custody.dev/cancel-reason says why the run was cancelled and cannot be changed once it was")
	// Removing it, like leaving it out of a replace, gives it back.
	if err := unannotate(ctx, as(alice), w, byKey); err != nil || w.Annotations[byKey] != bob {
		t.Errorf("removing who cancelled: %v, cancelled-by %q afterwards, want bob", err, w.Annotations[byKey])
	}
	refused(t, "naming someone else", annotate(ctx, as(mallory), w, byKey, "mallory"), `it was "bob"`)

	// A replace from a manifest that never had them keeps both.
	w.Annotations = map[string]string{"team": "finance"}
	if err := as(alice).Update(ctx, w); err != nil {
		t.Fatalf("replace without the annotations: %v", err)
	}
	if by, why := w.Annotations[byKey], w.Annotations[reasonKey]; by != bob || why != "the release was called off" {
		t.Errorf("after a replace: cancelled-by %q, reason %q", by, why)
	}

	// A run created cancelled records its creator as the one who cancelled it.
	born := mustWorkflow(t, ns, paymentWorkflow)
	born.Name = "born-cancelled"
	born.Spec.Cancel = true
	create(t, as(alice), born)
	if by := born.Annotations[byKey]; by != alice {
		t.Errorf("created cancelled: cancelled-by %q, want alice", by)
	}
}
