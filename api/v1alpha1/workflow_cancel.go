package v1alpha1

import "strings"

// Cancellation says who cancelled the run and why, from the annotations admission keeps
// (AnnotationCancelledBy, AnnotationCancelReason): "The workflow was cancelled by alice: the
// release was called off". Either part is left out when it is not recorded (a run cancelled
// before the webhook was installed, or without a reason).
func (wf *Workflow) Cancellation() string {
	return "The workflow was " + wf.CancelledAs()
}

// CancelledAs is Cancellation without its subject: "cancelled by alice: the release was called
// off".
func (wf *Workflow) CancelledAs() string {
	msg := "cancelled"
	if by := wf.Annotations[AnnotationCancelledBy]; by != "" {
		msg += " by " + by
	}
	if reason := CancelReason(wf.Annotations[AnnotationCancelReason]); reason != "" {
		msg += ": " + reason
	}
	return msg
}

// CancelReason is a cancel reason as messages show it: on one line, and clipped to
// MaxCancelReasonLength (admission refuses longer ones; without it anything may be written).
func CancelReason(v string) string {
	return personsReason(v, MaxCancelReasonLength)
}

// personsReason is what a person wrote as a reason (a cancel's, a rejection's) as status, Events
// and audit lines show it: on one line, and clipped to n characters.
func personsReason(v string, n int) string {
	return clip(strings.Join(strings.Fields(v), " "), n)
}
