package webhook

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/expr"
)

// cancelling says whether a Workflow write sets spec.cancel (creates the run cancelled, or
// cancels it), and whether the stored run was cancelled already.
func cancelling(cur, old *object) (now, before bool) {
	before = old != nil && old.workflow.Spec.Cancel
	return cur.workflow.Spec.Cancel && !before, before
}

// stampCancel writes who cancels a Workflow into custody.dev/cancelled-by in the request that
// sets spec.cancel, and gives a cancelled run's record back to a replace that leaves it out.
func stampCancel(req admission.Request, cur, old *object, set map[string]string) {
	if cur.workflow == nil {
		return
	}
	now, before := cancelling(cur, old)
	if now {
		set[custodyv1alpha1.AnnotationCancelledBy] = req.UserInfo.Username
		return
	}
	if !before {
		return
	}
	for _, k := range []string{custodyv1alpha1.AnnotationCancelledBy, custodyv1alpha1.AnnotationCancelReason} {
		if v, ok := old.meta.Annotations[k]; ok {
			if _, kept := cur.meta.Annotations[k]; !kept {
				set[k] = v
			}
		}
	}
}

// cancelRecord refuses a custody.dev/cancelled-by that admission did not write in the request
// that sets spec.cancel, a custody.dev/cancel-reason changed after the run was cancelled, and a
// reason that is too long or shaped like a credential (anyone who may read the Workflow reads it).
func cancelRecord(user string, cur, old *object) *refusal {
	now, before := cancelling(cur, old)
	var oldAnn map[string]string
	if old != nil {
		oldAnn = old.meta.Annotations
	}
	by, set := cur.meta.Annotations[custodyv1alpha1.AnnotationCancelledBy]
	was, wasSet := oldAnn[custodyv1alpha1.AnnotationCancelledBy]
	switch {
	case now && by != user:
		return forbidden(checkCreator, "%s: the annotation %s records who cancelled the run and is set by admission; it says %q "+
			"but the request comes from %q (is the mutating webhook installed?)", cur.forDenial, custodyv1alpha1.AnnotationCancelledBy, by, user)
	case !now && (by != was || set != wasSet):
		return forbidden(checkCreator, "%s: the annotation %s records who cancelled the run: admission sets it in the request "+
			"that sets spec.cancel, and it cannot be written or changed otherwise (it was %q; the request makes it %q)",
			cur.forDenial, custodyv1alpha1.AnnotationCancelledBy, was, by)
	}
	reason, reasonSet := cur.meta.Annotations[custodyv1alpha1.AnnotationCancelReason]
	if was, wasSet := oldAnn[custodyv1alpha1.AnnotationCancelReason]; reason == was && reasonSet == wasSet {
		return nil
	}
	if before {
		return forbidden(checkValidation, "%s: the annotation %s says why the run was cancelled and cannot be changed "+
			"once it was", cur.forDenial, custodyv1alpha1.AnnotationCancelReason)
	}
	if msg := CancelReasonProblem(reason); msg != "" {
		return forbidden(checkValidation, "%s: the annotation %s %s", cur.forDenial, custodyv1alpha1.AnnotationCancelReason, msg)
	}
	return nil
}

// CancelReasonProblem says what is wrong with a cancel reason (custody.dev/cancel-reason), or "":
// it is too long, or shaped like a credential (anyone who may read the Workflow reads it). The
// message never repeats the reason.
func CancelReasonProblem(reason string) string {
	return reasonProblem(reason, custodyv1alpha1.MaxCancelReasonLength)
}

// RejectReasonProblem says what is wrong with the reason of a rejection (reject.custody.dev/<step>),
// or "", as CancelReasonProblem does.
func RejectReasonProblem(reason string) string {
	return reasonProblem(reason, custodyv1alpha1.MaxRejectReasonLength)
}

// reasonProblem says what is wrong with a reason a person gives in an annotation of a Workflow (a
// cancel or a rejection), or "": longer than limit, or shaped like a credential. The message
// never repeats the reason.
func reasonProblem(reason string, limit int) string {
	if len(reason) > limit {
		return fmt.Sprintf("must be at most %d characters, not %d", limit, len(reason))
	}
	if what := expr.CredentialLike(reason); what != "" {
		return fmt.Sprintf("looks like it contains %s; anyone who may read the Workflow reads it: say why without it", what)
	}
	return ""
}
