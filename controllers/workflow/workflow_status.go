package workflow

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/text"
)

// computeStatus sets progress, conditions and observedGeneration from the facts the phases
// recorded. It is the only place conditions are written. Conditions follow the kstatus
// conventions: a Succeeded workflow is Ready and neither Reconciling nor Stalled (kstatus
// Current); a Failed or Cancelled one is Stalled (kstatus Failed); a running one is Reconciling
// (kstatus InProgress).
func computeStatus(s *scope, reconcileErr error) {
	wf := s.wf
	wf.Status.Progress = progress(wf.Status.Steps)
	gen := wf.Generation
	conds, absent := workflowConditions(wf, s), absentConditions(wf.Status.Phase)
	if pending := revocationPendingSteps(wf); len(pending) > 0 {
		// Not settled until everything the attempts held is revoked, whatever the phase.
		msg := pendingMessage(pending)
		conds = append(conds,
			metav1.Condition{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
				Reason: custodyv1alpha1.ReasonRevocationPending, Message: msg},
			metav1.Condition{Type: custodyv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue,
				Reason: custodyv1alpha1.ReasonRevocationPending, Message: msg})
		absent = slices.DeleteFunc(absent, func(t string) bool { return t == custodyv1alpha1.ConditionReconciling })
		// Not stalled either: kstatus reads Stalled before Reconciling, and this settles by itself.
		conds = slices.DeleteFunc(conds, func(c metav1.Condition) bool { return c.Type == custodyv1alpha1.ConditionStalled })
		absent = append(absent, custodyv1alpha1.ConditionStalled)
	}
	for _, c := range conds {
		c.ObservedGeneration = gen
		meta.SetStatusCondition(&wf.Status.Conditions, c)
	}
	for _, t := range absent {
		meta.RemoveStatusCondition(&wf.Status.Conditions, t)
	}
	if reconcileErr == nil {
		wf.Status.ObservedGeneration = gen
	}
}

// progress is "<ended>/<total>" steps.
func progress(steps []custodyv1alpha1.StepStatus) string {
	ended := 0
	for _, st := range steps {
		if st.Phase.Ended() {
			ended++
		}
	}
	return fmt.Sprintf("%d/%d", ended, len(steps))
}

// workflowConditions returns the conditions the workflow must have in its phase.
func workflowConditions(wf *custodyv1alpha1.Workflow, s *scope) []metav1.Condition {
	phase := wf.Status.Phase
	switch phase {
	case custodyv1alpha1.WorkflowSucceeded:
		msg := "Every step succeeded or was skipped"
		if names := s.toleratedSteps(); len(names) > 0 {
			msg += "; failed, allowed to (onFailure: Continue): " + strings.Join(names, ", ")
		}
		return []metav1.Condition{{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionTrue,
			Reason: custodyv1alpha1.ReasonSucceeded, Message: text.Truncate(msg, 1024)}}
	case custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled:
		reason, msg := failure(s)
		return []metav1.Condition{
			{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg},
			{Type: custodyv1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: reason, Message: msg},
		}
	}
	reason, msg := activity(wf.Status.Steps)
	if s.waiting != "" {
		reason, msg = custodyv1alpha1.ReasonTemplateNotFound, s.waiting
	}
	if s.groupWait != "" {
		reason, msg = custodyv1alpha1.ReasonWaitingForConcurrencyGroup, s.groupWait
	}
	if s.stopWait != "" {
		reason, msg = custodyv1alpha1.ReasonStopping, s.stopWait
	}
	if wf.Spec.Suspend {
		reason, msg = custodyv1alpha1.ReasonSuspended, "Suspended (spec.suspend): no step starts until it is resumed; "+
			strings.ToLower(msg[:1])+msg[1:]
	}
	return []metav1.Condition{
		{Type: custodyv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg},
		{Type: custodyv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: reason, Message: msg},
	}
}

// toleratedSteps names the steps that failed with onFailure: Continue.
func (s *scope) toleratedSteps() []string {
	var names []string
	for _, st := range s.wf.Status.Steps {
		if s.tolerated(st) {
			names = append(names, st.Name)
		}
	}
	return names
}

// absentConditions are the conditions a workflow in this phase must not have.
func absentConditions(phase custodyv1alpha1.WorkflowPhase) []string {
	switch phase {
	case custodyv1alpha1.WorkflowSucceeded:
		return []string{custodyv1alpha1.ConditionReconciling, custodyv1alpha1.ConditionStalled}
	case custodyv1alpha1.WorkflowFailed, custodyv1alpha1.WorkflowCancelled:
		return []string{custodyv1alpha1.ConditionReconciling}
	}
	return []string{custodyv1alpha1.ConditionStalled}
}

// failure says why a finished workflow did not succeed.
func failure(s *scope) (string, string) {
	wf, invalid, invalidReason := s.wf, s.invalid, s.invalidReason
	if invalid != nil {
		if invalidReason == "" {
			invalidReason = custodyv1alpha1.ReasonInvalidSpec
		}
		return invalidReason, text.Truncate(invalid.Error(), 1024)
	}
	if wf.Status.Phase == custodyv1alpha1.WorkflowCancelled {
		return custodyv1alpha1.ReasonCancelled, wf.Cancellation()
	}
	// Keep the reason recorded when the workflow ended (InvalidSpec, TimedOut, Failed).
	if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled); c != nil {
		return c.Reason, c.Message
	}
	for _, st := range wf.Status.Steps {
		if st.Phase == custodyv1alpha1.StepCancelled && st.Reason == custodyv1alpha1.ReasonTimedOut {
			return custodyv1alpha1.ReasonTimedOut, st.Message
		}
	}
	for _, st := range wf.Status.Steps {
		if st.Phase == custodyv1alpha1.StepFailed && !s.tolerated(st) {
			return custodyv1alpha1.ReasonFailed, fmt.Sprintf("Step %s failed: %s", st.Name, st.Message)
		}
	}
	return custodyv1alpha1.ReasonFailed, "The workflow failed"
}

// activity summarizes what a running workflow is doing.
func activity(steps []custodyv1alpha1.StepStatus) (string, string) {
	var running, waiting, retrying, needGrants, slots, held, refused, queued []string
	for _, st := range steps {
		if st.Phase == custodyv1alpha1.StepRunning && st.Reason == custodyv1alpha1.StepReasonJobSuspended {
			queued = append(queued, st.Name)
		}
		if slices.Contains(custodyv1alpha1.StepReasonsStuck, st.Reason) {
			refused = append(refused, fmt.Sprintf("%s (%s)", st.Name, st.Reason))
		}
		if st.Phase == custodyv1alpha1.StepPending && st.Reason == custodyv1alpha1.StepReasonWaitingForParallelism {
			slots = append(slots, st.Name)
		}
		if st.Phase == custodyv1alpha1.StepPending && st.Reason == custodyv1alpha1.ReasonSuspended {
			held = append(held, st.Name)
		}
		if st.Phase == custodyv1alpha1.StepPending && grantReasons[st.Reason] {
			needGrants = append(needGrants, fmt.Sprintf("%s (%s)", st.Name, st.Reason))
		}
		switch st.Phase {
		case custodyv1alpha1.StepRunning:
			running = append(running, st.Name)
		case custodyv1alpha1.StepWaitingForApproval:
			waiting = append(waiting, st.Name)
		case custodyv1alpha1.StepRetrying:
			retrying = append(retrying, st.Name)
		}
	}
	var parts []string
	if len(running) > 0 {
		parts = append(parts, "running: "+strings.Join(running, ", "))
	}
	if len(retrying) > 0 {
		parts = append(parts, "retrying: "+strings.Join(retrying, ", "))
	}
	if len(waiting) > 0 {
		parts = append(parts, "waiting for approval: "+strings.Join(waiting, ", "))
	}
	if len(needGrants) > 0 {
		parts = append(parts, "waiting for credentials: "+strings.Join(needGrants, ", "))
	}
	if len(slots) > 0 {
		parts = append(parts, "waiting for a free slot (parallelism): "+strings.Join(slots, ", "))
	}
	if len(held) > 0 {
		parts = append(parts, "held by the suspension: "+strings.Join(held, ", "))
	}
	if len(refused) > 0 {
		parts = append(parts, "cannot get going (see the step's message): "+strings.Join(refused, ", "))
	}
	if len(queued) > 0 {
		parts = append(parts, "Jobs suspended until a queue admits them: "+strings.Join(queued, ", "))
	}
	reason := custodyv1alpha1.ReasonProgressing
	if len(waiting) > 0 && len(running) == 0 && len(retrying) == 0 {
		reason = custodyv1alpha1.ReasonWaitingForApproval
	}
	if len(parts) == 0 {
		return reason, "Waiting for steps to become ready"
	}
	msg := strings.Join(parts, "; ")
	return reason, strings.ToUpper(msg[:1]) + msg[1:]
}

func equalStatus(a, b custodyv1alpha1.WorkflowStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// grantReasons are the reasons a step waits for a usable CredentialGrant (or imagePullSecret).
var grantReasons = map[string]bool{
	custodyv1alpha1.ReasonGrantNotFound: true, custodyv1alpha1.ReasonGrantNotCovered: true,
	custodyv1alpha1.ReasonGrantSuspended: true, custodyv1alpha1.ReasonGrantNotApproved: true, custodyv1alpha1.ReasonGrantExpired: true,
	credentials.ReasonKindNotSupported: true, ReasonIdentityNotConfigured: true,
	custodyv1alpha1.ReasonSourceNotFound: true, custodyv1alpha1.ReasonSourceNotGrantable: true,
	custodyv1alpha1.ReasonImagePullSecretNotUsable: true,
}
