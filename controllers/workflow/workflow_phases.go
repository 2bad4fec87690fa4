package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/dag"
	"github.com/custody-dev/custody/internal/expr"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/text"
)

// Defaults of a step's retry backoff.
const (
	defaultBackoff       = 10 * time.Second
	defaultBackoffFactor = 2
	defaultBackoffMax    = 5 * time.Minute

	// resultsGrace is how long after a Job completed the controller waits for its pod to appear in
	// the cache before it gives up on reading the step's results.
	resultsGrace = time.Minute

	// jobNameLabel is set by the Job controller on the pods of a Job.
	jobNameLabel = "batch.kubernetes.io/job-name"
)

func isFinished(p custodyv1alpha1.WorkflowPhase) bool {
	return p == custodyv1alpha1.WorkflowSucceeded || p == custodyv1alpha1.WorkflowFailed || p == custodyv1alpha1.WorkflowCancelled
}

// reconcileFinished handles a Workflow that already ended: it makes sure nothing it held is left,
// and deletes it once ttlAfterFinished has passed.
func (r *Reconciler) reconcileFinished(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	if !isFinished(wf.Status.Phase) {
		return false, nil
	}
	if err := r.listAttempts(ctx, s); err != nil {
		return true, err
	}
	if _, err := r.releaseServiceAccounts(ctx, s); err != nil {
		return true, err
	}
	if _, err := r.releaseRoleBindings(ctx, s); err != nil {
		return true, err
	}
	if _, err := r.stopUnrecordedJobs(ctx, s); err != nil {
		return true, err
	}
	if r.Identity.Enabled() || credentialsHeld(wf) || hasRevocationFinalizer(wf) {
		s.graph = nil
		if _, err := r.reconcileCredentials(ctx, s); err != nil {
			return true, err
		}
		if _, err := r.reconcileIdentities(ctx, s); err != nil {
			return true, err
		}
		if identityHeld(wf) || credentialsHeld(wf) {
			return true, nil // the TTL waits for revocation
		}
	}
	ttl, whose, ok := r.ttlAfterFinished(wf)
	if !ok || wf.Status.CompletionTime == nil {
		return true, nil
	}
	expiry := wf.Status.CompletionTime.Add(ttl)
	if s.now.Before(expiry) {
		s.requeueAt(expiry)
		return true, nil
	}
	err := r.Delete(ctx, wf, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &wf.UID})
	if client.IgnoreNotFound(err) != nil {
		return true, fmt.Errorf("deleting %s after its ttlAfterFinished: %w", klog.KObj(wf), err)
	}
	s.event(corev1.EventTypeNormal, "TTLExpired", "Delete", "Deleted the workflow %s after %s of %s", wf.Status.Phase, whose, ttl)
	s.deleted = true
	return true, nil
}

// ttlAfterFinished says how long a finished Workflow is kept: its own ttlAfterFinished, or the
// controller's default (--default-ttl-after-finished), and which; false keeps it.
func (r *Reconciler) ttlAfterFinished(wf *custodyv1alpha1.Workflow) (time.Duration, string, bool) {
	if t := wf.Spec.TTLAfterFinished; t != nil {
		return t.Duration, "its ttlAfterFinished", true
	}
	if r.DefaultTTLAfterFinished > 0 {
		return r.DefaultTTLAfterFinished, "the controller's default ttlAfterFinished (--default-ttl-after-finished)", true
	}
	return 0, "", false
}

// reconcileSpec checks what admission cannot (cycles, `when` expressions), and sets up the status
// of every step and finally step. A spec that cannot run fails the Workflow with reason
// InvalidSpec.
func (r *Reconciler) reconcileSpec(_ context.Context, s *scope) (bool, error) {
	wf := s.wf
	def, _ := wf.Definition()
	s.def = def
	var errs []error
	if err := wf.CheckItems(); err != nil {
		// forEach items that cannot run (from a parameter), or more steps than status can list:
		// the run fails with no step listed.
		errs = append(errs, err)
		def.Steps, def.Finally = nil, nil
	}
	g, err := dag.New(nodesOf(def.Steps))
	if err != nil {
		errs = append(errs, err)
	}
	fg, err := dag.New(nodesOf(def.Finally))
	if err != nil {
		errs = append(errs, fmt.Errorf("finally: %w", err))
	}
	s.graph, s.finallyGraph = g, fg
	s.finally = map[string]bool{}
	for _, st := range def.Finally {
		if specStepIn(def.Steps, st.Name) != nil {
			errs = append(errs, fmt.Errorf("finally step %q has the name of a step", st.Name))
		}
		s.finally[st.Name] = true
	}
	s.slots = -1
	if def.Parallelism != nil {
		s.slots = int(*def.Parallelism)
	}
	s.whens, s.retryWhens = map[string]*expr.When{}, map[string]*expr.RetryWhen{}
	for _, st := range def.AllSteps() {
		if st.When != "" {
			w, err := expr.CompileWhen(st.When)
			if err != nil {
				errs = append(errs, fmt.Errorf("step %q: when %w", st.Name, err))
			}
			s.whens[st.Name] = w
		}
		if st.Retries != nil && st.Retries.When != "" {
			w, err := expr.CompileRetryWhen(st.Retries.When)
			if err != nil {
				errs = append(errs, fmt.Errorf("step %q: retries.when %w", st.Name, err))
			}
			s.retryWhens[st.Name] = w
		}
	}

	// One status entry per step, in spec order, then the finally steps.
	existing := map[string]custodyv1alpha1.StepStatus{}
	for _, st := range wf.Status.Steps {
		existing[st.Name] = st
	}
	all := def.AllSteps()
	steps := make([]custodyv1alpha1.StepStatus, 0, len(all))
	for _, st := range all {
		cur, ok := existing[st.Name]
		if !ok {
			reason := custodyv1alpha1.StepReasonWaitingForDependencies
			if s.finally[st.Name] {
				reason = custodyv1alpha1.StepReasonWaitingForSteps
			}
			cur = custodyv1alpha1.StepStatus{Name: st.Name, Phase: custodyv1alpha1.StepPending, Reason: reason}
		}
		steps = append(steps, cur)
	}
	wf.Status.Steps = steps
	if wf.Status.Phase == "" {
		wf.Status.Phase = custodyv1alpha1.WorkflowPending
	}
	if wf.Status.StartTime == nil {
		wf.Status.StartTime = &metav1.Time{Time: s.now}
	}

	if len(errs) == 0 {
		s.stopReason = stopReason(s)
		return false, nil
	}
	s.failBeforeStart(custodyv1alpha1.ReasonInvalidSpec, "The workflow's spec cannot run", errors.Join(errs...))
	return true, nil
}

// failBeforeStart fails a run that cannot start: its steps are Skipped with the reason and
// message, the run Failed with the reason and err (in its conditions and a Warning Event).
func (s *scope) failBeforeStart(reason, stepMessage string, err error) {
	wf := s.wf
	s.invalid, s.invalidReason = err, reason
	s.graph, s.finallyGraph = nil, nil
	for i := range wf.Status.Steps {
		st := &wf.Status.Steps[i]
		if !st.Phase.Ended() {
			s.setStep(st, custodyv1alpha1.StepSkipped, reason, stepMessage)
		}
	}
	wf.Status.Phase = custodyv1alpha1.WorkflowFailed
	wf.Status.CompletionTime = &metav1.Time{Time: s.now}
	s.event(corev1.EventTypeWarning, reason, "Validate", "%s", text.Truncate(err.Error(), 1024))
}

// reconcileReuse takes over the succeeded steps of the run spec.reuseFrom names that PlanReuse
// allows, once, before any step starts: they become Succeeded (reason Reused) with that run's
// results, and start no Job, no ServiceAccount, no identity and no credentials. The Reused Event
// names them and every step that succeeded there but runs again, with why. A run that cannot
// reuse it (ReuseProblem) fails with reason InvalidReuse. status.reused records that it was done.
func (r *Reconciler) reconcileReuse(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	if wf.Spec.ReuseFrom == "" || wf.Status.Reused != nil {
		return false, nil
	}
	src := &custodyv1alpha1.Workflow{}
	problem := ""
	if err := r.Get(ctx, client.ObjectKey{Namespace: wf.Namespace, Name: wf.Spec.ReuseFrom}, src); apierrors.IsNotFound(err) {
		problem = fmt.Sprintf("workflow %s does not exist", wf.Spec.ReuseFrom)
	} else if err != nil {
		return false, err
	} else {
		problem = custodyv1alpha1.ReuseProblem(wf, src)
	}
	if problem != "" {
		s.failBeforeStart(custodyv1alpha1.ReasonInvalidReuse, "The run cannot reuse workflow "+wf.Spec.ReuseFrom,
			errors.New("reuseFrom: "+problem))
		return true, nil
	}
	plan, ok := custodyv1alpha1.PlanReuse(wf, src)
	if !ok { // ReuseProblem accepted src, so it resolved its template; wf was resolved before this phase
		return false, fmt.Errorf("planning the reuse of workflow %s: a template is not resolved", src.Name)
	}
	done := map[string]custodyv1alpha1.StepStatus{}
	for _, st := range src.Status.Steps {
		done[st.Name] = st
	}
	var reused []string
	for _, name := range plan.Reused {
		st := s.status(name)
		if st == nil || st.Phase != custodyv1alpha1.StepPending {
			continue
		}
		old := done[name]
		st.Results = slices.Clone(old.Results)
		msg := fmt.Sprintf("Succeeded in workflow %s; not run again", src.Name)
		if old.Attempt > 0 {
			msg = fmt.Sprintf("Succeeded in workflow %s (attempt %d); not run again", src.Name, old.Attempt)
		}
		s.setStep(st, custodyv1alpha1.StepSucceeded, custodyv1alpha1.StepReasonReused, msg)
		reused = append(reused, name)
	}
	wf.Status.Reused = &custodyv1alpha1.ReusedRun{Name: src.Name, UID: string(src.UID),
		Steps: int32(min(len(reused), custodyv1alpha1.MaxSteps))} //nolint:gosec // bounded
	var msg string
	switch len(reused) {
	case 0:
		msg = fmt.Sprintf("No step succeeded in workflow %s: every step runs", src.Name)
		if len(plan.Again) > 0 {
			msg = fmt.Sprintf("No step of workflow %s is reused: every step runs", src.Name)
		}
	case 1:
		msg = fmt.Sprintf("Reused step %s, which succeeded in workflow %s", reused[0], src.Name)
	default:
		msg = fmt.Sprintf("Reused %d steps that succeeded in workflow %s: %s", len(reused), src.Name, strings.Join(reused, ", "))
	}
	if len(plan.Again) > 0 {
		again := make([]string, 0, len(plan.Again))
		for _, a := range plan.Again {
			again = append(again, a.Step+" ("+a.Why+")")
		}
		msg += "; succeeded there but run again: " + strings.Join(again, "; ")
	}
	s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonReused, "Reuse", "%s", text.Truncate(msg, 1024))
	return false, nil
}

func nodesOf(steps []custodyv1alpha1.Step) []dag.Node {
	nodes := make([]dag.Node, 0, len(steps))
	for _, st := range steps {
		nodes = append(nodes, dag.Node{Name: st.Name, DependsOn: st.DependsOn})
	}
	return nodes
}

// listAttempts reads the workflow's Jobs, the latest pod of each, and the attempt
// ServiceAccounts (from the cache) into the scope.
func (r *Reconciler) listAttempts(ctx context.Context, s *scope) error {
	wf := s.wf
	var jobs batchv1.JobList
	if err := r.List(ctx, &jobs, client.InNamespace(wf.Namespace), client.MatchingFields{workflowIndex: wf.Name}); err != nil {
		return fmt.Errorf("listing Jobs of %s: %w", klog.KObj(wf), err)
	}
	s.jobs = map[string]*batchv1.Job{}
	for i := range jobs.Items {
		if metav1.IsControlledBy(&jobs.Items[i], wf) {
			s.jobs[jobs.Items[i].Name] = &jobs.Items[i]
		}
	}
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(wf.Namespace), client.MatchingFields{workflowIndex: wf.Name}); err != nil {
		return fmt.Errorf("listing pods of %s: %w", klog.KObj(wf), err)
	}
	if err := r.listServiceAccounts(ctx, s); err != nil {
		return err
	}
	s.pods = map[string]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		job := p.Labels[jobNameLabel]
		if !podOfAttempt(p, job, s.jobs[job]) {
			continue
		}
		if prev, ok := s.pods[job]; !ok || prev.CreationTimestamp.Before(&p.CreationTimestamp) {
			s.pods[job] = p
		}
	}
	return nil
}

// podOfAttempt says whether a pod is the pod of the attempt whose Job and ServiceAccount are named
// name: it runs as that ServiceAccount and, while the Job exists (job is nil when it does not), the
// Job controls it. Labels and owner references can be written by whoever may update a pod (an
// existing pod relabelled as a step's would otherwise pass for the step's pod: its termination
// message for the step's results, its node for the step's, its running for a stopped attempt's pod
// the run must wait for); a pod's ServiceAccount cannot be changed, and who may create a pod as an
// attempt's is admission's to say.
func podOfAttempt(pod *corev1.Pod, name string, job *batchv1.Job) bool {
	return name != "" && pod.Spec.ServiceAccountName == name && (job == nil || metav1.IsControlledBy(pod, job))
}

// observeAttempts reads the Jobs and pods of running attempts and ends the attempts whose Job
// ended: succeeded (with its results) or failed (then retried or failed for good).
func (r *Reconciler) observeAttempts(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	if err := r.listAttempts(ctx, s); err != nil {
		return false, err
	}
	for i := range wf.Status.Steps {
		st := &wf.Status.Steps[i]
		if st.Phase != custodyv1alpha1.StepRunning {
			continue
		}
		job, err := r.attemptJob(ctx, s, st.JobName)
		if err != nil {
			return false, err
		}
		if job == nil && s.stopReason != "" {
			continue // reconcileStop deleted it, or will: the step is cancelled, not failed
		}
		if job == nil {
			r.endAttempt(s, st, nil, nil, false, custodyv1alpha1.StepReasonJobDeleted,
				fmt.Sprintf("Job %s was deleted before it ended", st.JobName))
			continue
		}
		pod := s.pods[job.Name]
		if pod != nil {
			st.PodName, st.NodeName = pod.Name, pod.Spec.NodeName
		}
		revoked := revokedToStop(st)
		switch {
		case pod != nil && podAltered(pod):
			if err := r.endAlteredAttempt(ctx, s, st, job, pod); err != nil {
				return false, err
			}
		case jobCondition(job, batchv1.JobComplete):
			if err := r.completeAttempt(ctx, s, st, job, pod); err != nil {
				return false, err
			}
		case jobCondition(job, batchv1.JobFailed):
			reason, msg := jobFailure(job, pod, st.PodName)
			r.endAttempt(s, st, job, pod, false, reason, msg)
		case revoked != nil:
			if err := r.endRevokedAttempt(ctx, s, st, job, pod, revoked); err != nil {
				return false, err
			}
		case pod != nil:
			if err := r.podProblems(ctx, s, st, job, pod); err != nil {
				return false, err
			}
		case ptr.Deref(job.Spec.Suspend, false):
			s.jobSuspended(st, job)
		default:
			if err := r.podNotCreated(ctx, s, st, job); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}

// podAltered says whether a step pod was given an ephemeral container (kubectl debug): its
// attempt ends (endAlteredAttempt) and its identity is never registered, or is revoked at once.
func podAltered(pod *corev1.Pod) bool {
	return len(pod.Spec.EphemeralContainers) > 0
}

// endAlteredAttempt ends an attempt whose pod was given an ephemeral container (kubectl debug):
// whoever added it can read the attempt's credential files from it and act with what the step
// holds, which is a person using the step's non-human identity. The Job is deleted, so the pod
// stops; the attempt fails (a retry, if the step has one, is a new attempt with a new identity),
// and ending it revokes its credentials and SPIFFE identity as for any attempt. Even an attempt
// whose Job completed fails: what the step wrote may not be the step's.
func (r *Reconciler) endAlteredAttempt(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, job *batchv1.Job,
	pod *corev1.Pod) error {
	if !jobFinished(job) {
		if err := r.stopJob(ctx, job); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(pod.Spec.EphemeralContainers))
	for _, c := range pod.Spec.EphemeralContainers {
		names = append(names, fmt.Sprintf("%s (image %s)", c.Name, c.Image))
	}
	by := ""
	for _, f := range pod.ManagedFields {
		if f.Subresource == "ephemeralcontainers" && f.Manager != "" {
			by = " by " + f.Manager
		}
	}
	msg := fmt.Sprintf("ephemeral container %s was added to pod %s%s: from it a person could use the attempt's credentials, "+
		"so the attempt was stopped and its credentials revoked", strings.Join(names, ", "), pod.Name, by)
	r.endAttempt(s, st, job, pod, false, custodyv1alpha1.StepReasonEphemeralContainerAdded, text.Truncate(msg, 400))
	return nil
}

// revokedToStop returns a credential of the current attempt that was revoked before the attempt
// ended under a grant whose onRevoke is StopStep, if there is one.
func revokedToStop(st *custodyv1alpha1.StepStatus) *custodyv1alpha1.IssuedCredential {
	for i := range st.Credentials {
		c := &st.Credentials[i]
		if c.Attempt == st.Attempt && c.RevokedAt != nil && c.OnRevoke.StopsStep() &&
			c.RevocationReason != revokedAttemptEnded && c.RevocationReason != revokedDeleted {
			return c
		}
	}
	return nil
}

// endRevokedAttempt stops an attempt that lost a credential under a grant whose onRevoke is
// StopStep: a step that already read a Secret's value, or holds an SVID, would otherwise go on
// using it. The Job is deleted, so the pod stops; the attempt fails (a retry, if the step has
// one, is a new attempt, which waits for the grant like any other), and ending it revokes the
// rest of what it held, and its identity, as for any attempt.
func (r *Reconciler) endRevokedAttempt(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, job *batchv1.Job,
	pod *corev1.Pod, c *custodyv1alpha1.IssuedCredential) error {
	if err := r.stopJob(ctx, job); err != nil {
		return err
	}
	msg := fmt.Sprintf("its %s credential of grant %s was revoked (%s: %s) and the grant's onRevoke is StopStep, "+
		"so the attempt was stopped", c.Kind, c.Grant, c.RevocationReason, r.revokedBecause(ctx, s, c))
	r.endAttempt(s, st, job, pod, false, custodyv1alpha1.ReasonCredentialRevoked, msg)
	return nil
}

// revokedBecause says in words why a credential was revoked before its attempt ended, for the
// step's message: a GrantWithdrawn revocation is told apart by what the grant is now.
func (r *Reconciler) revokedBecause(ctx context.Context, s *scope, c *custodyv1alpha1.IssuedCredential) string {
	switch c.RevocationReason {
	case revokedExpired:
		return "the grant's ttl passed"
	case revokedGrantExpired:
		return "the grant's expiresAt passed"
	case revokedSourceWithdrawn:
		return "its source Secret was deleted or no longer grantable"
	case revokedRoleChanged:
		return "the role allows more than the approval covered"
	case revokedApprovalRequired:
		return "the role reaches beyond the step and the grant is not approved"
	case revokedGrantChanged:
		g := &custodyv1alpha1.CredentialGrant{}
		err := r.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: c.Grant}, g)
		switch {
		case apierrors.IsNotFound(err):
			return "the grant was deleted"
		case err == nil && g.Spec.Suspended:
			return "the grant was suspended"
		case err == nil:
			return "the grant no longer covers the step"
		}
	}
	return "revoked before the attempt ended"
}

// jobSuspended says in a running step's status that its Job is suspended, as a job queue (Kueue)
// keeps it until it admits it, with the queue the Job names, if any. Nothing is looked up: the
// pod that comes once the Job is resumed wakes the workflow.
func (s *scope) jobSuspended(st *custodyv1alpha1.StepStatus, job *batchv1.Job) {
	msg := fmt.Sprintf("Attempt %d's Job %s is suspended: it runs once resumed, as a job queue such as Kueue does when it "+
		"admits it", st.Attempt, job.Name)
	if q := job.Labels[kueueQueueLabel]; q != "" {
		msg += fmt.Sprintf(" (LocalQueue %s)", q)
	}
	if st.Reason == custodyv1alpha1.StepReasonJobSuspended && st.Message == msg {
		return
	}
	s.setStep(st, custodyv1alpha1.StepRunning, custodyv1alpha1.StepReasonJobSuspended, text.Truncate(msg, 512))
	s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.StepReasonJobSuspended, "Observe", "Step %s: %s", st.Name, st.Message)
}

// kueueQueueLabel is the label by which Kueue puts a Job in a LocalQueue.
const kueueQueueLabel = "kueue.x-k8s.io/queue-name"

// podNotCreated says in a running step's status why its Job has no pod yet, when the Job
// controller could not create it for a while (a ResourceQuota that wants resource requests, a
// LimitRange, an admission policy): it reports that as FailedCreate Events on the Job, which
// the controller reads (not cached, so only for such a Job) and repeats on the step. The Job
// controller keeps trying, and the step's timeout, if any, still bounds the attempt.
func (r *Reconciler) podNotCreated(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, job *batchv1.Job) error {
	if since := s.now.Sub(job.CreationTimestamp.Time); since < r.PodCreationGrace {
		s.requeueAt(job.CreationTimestamp.Add(r.PodCreationGrace))
		return nil
	}
	latest, err := r.latestEvent(ctx, job, jobKind, client.MatchingFields{"reason": "FailedCreate"}, nil)
	if err != nil {
		return err
	}
	s.requeueAt(s.now.Add(r.PodCreationGrace))
	if latest == nil {
		return nil
	}
	msg := text.Truncate(fmt.Sprintf("Attempt %d's Job %s cannot create its pod (the Job controller keeps trying): %s",
		st.Attempt, job.Name, latest.Message), 512)
	if st.Reason != custodyv1alpha1.StepReasonPodNotCreated || st.Message != msg {
		s.setStep(st, custodyv1alpha1.StepRunning, custodyv1alpha1.StepReasonPodNotCreated, msg)
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonPodNotCreated, "Observe", "Step %s: %s", st.Name, msg)
	}
	return nil
}

// jobKind is the kind of the Jobs step attempts run as.
const jobKind = "Job"

// podProblems says in a running step's status when its pod is stuck on something that will not
// resolve by itself (the scheduler finds no node, the image cannot be pulled, a ConfigMap is
// missing: read from the cached pod; a volume cannot be mounted, the pod's sandbox cannot be made:
// podNotStarting), and says Started again once it is not. The step's timeout, if any, still
// bounds the attempt.
func (r *Reconciler) podProblems(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, job *batchv1.Job,
	pod *corev1.Pod) error {
	reason, key, detail := podProblem(pod)
	if reason == "" {
		var err error
		if reason, key, detail, err = r.podNotStarting(ctx, s, st, pod); err != nil {
			return err
		}
	}
	switch {
	case reason == "" && (slices.Contains(custodyv1alpha1.StepReasonsStuck, st.Reason) || st.Reason == custodyv1alpha1.StepReasonJobSuspended):
		s.setStep(st, custodyv1alpha1.StepRunning, custodyv1alpha1.StepReasonStarted,
			fmt.Sprintf("Attempt %d runs as Job %s", st.Attempt, job.Name))
	case reason == "":
	case st.Reason == reason && strings.Contains(st.Message, "("+key+")"):
		// Already said; the scheduler's and kubelet's messages change with every retry.
	default:
		msg := fmt.Sprintf("Attempt %d's pod %s is stuck (%s): %s", st.Attempt, pod.Name, key, detail)
		s.setStep(st, custodyv1alpha1.StepRunning, reason, text.Truncate(msg, 512))
		s.stepEvent(st.Name, corev1.EventTypeWarning, reason, "Observe", "Step %s: %s", st.Name, st.Message)
	}
	return nil
}

// podStartProblems are the kubelet's Warning Events of a pod on a node whose containers it cannot
// start, by a cause only the node or the namespace can end: a volume it cannot mount (the SPIFFE
// CSI driver not on the node; a Secret copy gone), or a sandbox it cannot make (a runtime without
// user namespaces, with --step-user-namespaces).
var podStartProblems = []string{"FailedMount", "FailedAttachVolume", "FailedMapVolume", "FailedCreatePodSandBox"}

// podNotStarting looks, once a step's pod has been on its node for PodStartGrace with its
// container still being created, for the kubelet's Warning Events that say why (podStartProblems),
// and returns the first of them as a stuck step's reason, key and detail. The Events are read
// from the API server (they are not cached), only for such a pod, and not again once said: the
// pod's status changes when it starts. An image being pulled says nothing of the kind, and is not
// reported.
func (r *Reconciler) podNotStarting(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, pod *corev1.Pod) (
	reason, key, detail string, err error) {
	since, creating := podCreatingSince(pod)
	if !creating {
		return "", "", "", nil
	}
	if st.Reason == custodyv1alpha1.StepReasonContainerCannotStart {
		for _, k := range podStartProblems {
			if strings.Contains(st.Message, "("+k+")") {
				return st.Reason, k, "", nil // already said
			}
		}
	}
	if wait := since.Add(r.PodStartGrace); s.now.Before(wait) {
		s.requeueAt(wait)
		return "", "", "", nil
	}
	s.requeueAt(s.now.Add(r.PodStartGrace))
	latest, err := r.latestEvent(ctx, pod, "Pod", client.MatchingFields{"type": corev1.EventTypeWarning},
		func(e *corev1.Event) bool { return slices.Contains(podStartProblems, e.Reason) })
	if err != nil || latest == nil {
		return "", "", "", err
	}
	return custodyv1alpha1.StepReasonContainerCannotStart, latest.Reason, latest.Message, nil
}

// podCreatingSince says whether a pod is on a node with its step container not yet created (no
// status, or waiting as ContainerCreating), and since when it is on the node.
func podCreatingSince(pod *corev1.Pod) (time.Time, bool) {
	if pod.Spec.NodeName == "" || pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "" {
		return time.Time{}, false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == jobspec.ContainerName && (cs.State.Waiting == nil || cs.State.Waiting.Reason != "ContainerCreating") {
			return time.Time{}, false
		}
	}
	since := pod.CreationTimestamp.Time
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			since = c.LastTransitionTime.Time
		}
	}
	return since, true
}

// containerProblems are the kubelet's reasons for a waiting container that only a change of the
// image, the registry or the namespace can end, by the key the step's message shows. The two
// image pull reasons alternate while the kubelet backs off, so they share one.
var containerProblems = map[string]string{
	"ErrImagePull": "ImagePull", "ImagePullBackOff": "ImagePull", "InvalidImageName": "InvalidImageName",
	"ErrImageNeverPull": "ErrImageNeverPull", "CreateContainerConfigError": "CreateContainerConfigError",
	"CreateContainerError": "CreateContainerError", "RunContainerError": "RunContainerError",
}

// podProblem returns the step reason, a stable key and the detail of what keeps a step pod from
// running, or "" when nothing does (yet).
func podProblem(pod *corev1.Pod) (reason, key, detail string) {
	if pod.Spec.NodeName == "" {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return custodyv1alpha1.StepReasonUnschedulable, c.Reason, c.Message
			}
		}
		return "", "", ""
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; cs.Name == jobspec.ContainerName && w != nil {
			if key, ok := containerProblems[w.Reason]; ok {
				return custodyv1alpha1.StepReasonContainerCannotStart, key, w.Reason + ": " + w.Message
			}
		}
	}
	return "", "", ""
}

// latestEvent reads from the API server (Events are not cached) the core Events of obj, of kind
// kind, that match fields and keep (nil: all), and returns the one that happened last, or nil.
func (r *Reconciler) latestEvent(ctx context.Context, obj client.Object, kind string, fields client.MatchingFields,
	keep func(*corev1.Event) bool) (*corev1.Event, error) {
	fields["involvedObject.kind"], fields["involvedObject.name"], fields["involvedObject.uid"] = kind, obj.GetName(), string(obj.GetUID())
	var list corev1.EventList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(obj.GetNamespace()), fields); err != nil {
		return nil, fmt.Errorf("reading the Events of %s %s: %w", kind, klog.KObj(obj), err)
	}
	var latest *corev1.Event
	for i := range list.Items {
		if e := &list.Items[i]; (keep == nil || keep(e)) && (latest == nil || eventTime(e).After(eventTime(latest))) {
			latest = e
		}
	}
	return latest, nil
}

// eventTime is when an Event last happened, whichever of its times its recorder set.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// attemptJob returns the Job of a running attempt, confirming with the API server before it
// concludes that the Job is gone (the cache may not have seen a Job created moments ago).
func (r *Reconciler) attemptJob(ctx context.Context, s *scope, name string) (*batchv1.Job, error) {
	if job, ok := s.jobs[name]; ok {
		return job, nil
	}
	live := &batchv1.Job{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: s.wf.Namespace, Name: name}, live)
	if apierrors.IsNotFound(err) || (err == nil && !metav1.IsControlledBy(live, s.wf)) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Job %s: %w", name, err)
	}
	s.jobs[name] = live
	return live, nil
}

// completeAttempt ends an attempt whose Job completed: it succeeded, unless its results cannot be
// read, are invalid, look like credentials or hold the value of a Secret it was granted.
func (r *Reconciler) completeAttempt(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus, job *batchv1.Job,
	pod *corev1.Pod) error {
	step := s.specStep(st.Name)
	declared := make([]string, 0, len(step.Results))
	for _, res := range step.Results {
		declared = append(declared, res.Name)
	}
	if len(declared) == 0 {
		st.Results = nil
		r.endAttempt(s, st, job, pod, true, custodyv1alpha1.StepReasonSucceeded, "")
		return nil
	}
	msg, found := terminationMessage(pod)
	if !found {
		completed := job.CreationTimestamp.Time
		if job.Status.CompletionTime != nil {
			completed = job.Status.CompletionTime.Time
		}
		if s.now.Sub(completed) < resultsGrace {
			s.requeueAt(s.now.Add(2 * time.Second))
			return nil
		}
		r.endAttempt(s, st, job, pod, false, custodyv1alpha1.StepReasonResultsInvalid,
			"The step's pod is gone, so its results cannot be read")
		return nil
	}
	results, err := expr.ParseResults(msg, declared)
	if err == nil {
		err = custodyv1alpha1.CheckResultPatterns(step.Results, results)
	}
	if err != nil {
		r.endAttempt(s, st, job, pod, false, custodyv1alpha1.StepReasonResultsInvalid, "Results: "+err.Error())
		return nil
	}
	secrets, err := r.grantedSecretValues(ctx, s, st)
	if err != nil {
		return err
	}
	if result, secret := expr.LeakedSecret(results, secrets); result != "" {
		r.endAttempt(s, st, job, pod, false, custodyv1alpha1.StepReasonResultsInvalid, fmt.Sprintf("Results: result %s holds "+
			"the value of %s, which the attempt was granted; results are stored in the Workflow's status for anyone who can "+
			"read it, so a credential must stay in the step", result, secret))
		return nil
	}
	st.Results = make([]custodyv1alpha1.StepResult, 0, len(results))
	for _, name := range expr.SortedKeys(results) {
		st.Results = append(st.Results, custodyv1alpha1.StepResult{Name: name, Value: results[name]})
	}
	r.endAttempt(s, st, job, pod, true, custodyv1alpha1.StepReasonSucceeded, "")
	return nil
}

// endAttempt records the end of the current attempt and decides what follows: success, a retry
// after the backoff, or failure of the step. pod is the attempt's pod, if it is known.
func (r *Reconciler) endAttempt(s *scope, st *custodyv1alpha1.StepStatus, job *batchv1.Job, pod *corev1.Pod, ok bool,
	reason, msg string) {
	result := "succeeded"
	switch {
	case !ok && reason == custodyv1alpha1.ReasonTimedOut:
		result = "timed_out"
	case !ok:
		result = "failed"
	}
	s.afterSave(func() {
		metrics.StepAttemptsEnded.WithLabelValues(result, reason).Inc()
		if job != nil {
			metrics.StepDuration.WithLabelValues(result).Observe(s.now.Sub(job.CreationTimestamp.Time).Seconds())
		}
	})
	if ok {
		s.setStep(st, custodyv1alpha1.StepSucceeded, reason, fmt.Sprintf("Attempt %d succeeded", st.Attempt))
		s.stepEvent(st.Name, corev1.EventTypeNormal, reason, "Observe", "Step %s: attempt %d succeeded", st.Name, st.Attempt)
		return
	}
	st.LastFailureReason = reason
	step := s.specStep(st.Name)
	limit := int32(0)
	if step.Retries != nil {
		limit = step.Retries.Limit
	}
	retry, why := st.Attempt <= limit, ""
	if retry {
		retry, why = s.retryWanted(st, job, pod, reason)
	}
	if retry {
		next := s.now.Add(backoff(step.Retries, string(s.wf.UID)+"/"+st.Name, st.Attempt))
		st.NextAttemptTime = &metav1.Time{Time: next}
		s.setStep(st, custodyv1alpha1.StepRetrying, custodyv1alpha1.StepReasonRetrying,
			fmt.Sprintf("Attempt %d failed (%s: %s); attempt %d starts at %s", st.Attempt, reason, msg, st.Attempt+1,
				next.UTC().Format(time.RFC3339)))
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonRetrying, "Observe",
			"Step %s: attempt %d failed (%s): %s; retrying in %s", st.Name, st.Attempt, reason, msg, next.Sub(s.now))
		s.requeueAt(next)
		return
	}
	final := reason
	if limit > 0 && why == "" {
		final = custodyv1alpha1.ReasonRetriesExhausted
	}
	s.setStep(st, custodyv1alpha1.StepFailed, final, fmt.Sprintf("Attempt %d of %d failed (%s): %s%s", st.Attempt, limit+1, reason, msg, why))
	s.stepEvent(st.Name, corev1.EventTypeWarning, final, "Observe", "Step %s failed on attempt %d (%s): %s%s", st.Name, st.Attempt,
		reason, msg, why)
}

// retryWanted asks the step's retries.when, if it has one, whether the attempt that failed for
// reason is tried again; when not, why says so, to be added to the step's message. An expression
// that cannot be evaluated retries nothing: a step that might not be safe to repeat is not
// repeated on a guess.
func (s *scope) retryWanted(st *custodyv1alpha1.StepStatus, job *batchv1.Job, pod *corev1.Pod, reason string) (retry bool,
	why string) {
	w := s.retryWhens[st.Name]
	if w == nil {
		return true, ""
	}
	env := expr.RetryEnv{Attempt: st.Attempt, Reason: reason, ExitCode: expr.NoExitCode,
		Params: custodyv1alpha1.ParameterValues(s.def.Parameters, s.wf.Spec.Parameters)}
	_, env.Disrupted = disruption(pod)
	if job != nil {
		env.Duration = s.now.Sub(job.CreationTimestamp.Time)
	}
	if t := stepContainerState(pod); t != nil {
		env.ExitCode = t.ExitCode
		if !t.StartedAt.IsZero() && !t.FinishedAt.Before(&t.StartedAt) {
			env.Duration = t.FinishedAt.Sub(t.StartedAt.Time)
		}
	}
	_, env.Item = s.wf.ForEachOf(st.Name)
	retry, err := w.Eval(env)
	switch {
	case err != nil:
		return false, text.Truncate("; not retried: retries.when could not be evaluated: "+err.Error(), 512)
	case !retry:
		return false, "; not retried: retries.when is false"
	}
	return true, ""
}

// disruption says whether the pod was evicted, preempted, or deleted with its node, and how:
// the DisruptionTarget condition Kubernetes sets on such pods, and its reason.
func disruption(pod *corev1.Pod) (string, bool) {
	if pod == nil {
		return "", false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return c.Reason, true
		}
	}
	return "", false
}

// deletedPod says whether an attempt's pod was deleted before its step container ended, by
// anything but an eviction (which marks the pod disrupted): marked for deletion with no exit of
// the step container before that, or gone from the cache after status recorded it (seen). It
// returns the pod's name.
func deletedPod(pod *corev1.Pod, seen string) (string, bool) {
	if _, ok := disruption(pod); ok {
		return "", false
	}
	if pod == nil {
		return seen, seen != ""
	}
	if pod.DeletionTimestamp == nil {
		return "", false
	}
	if t := stepContainerState(pod); t != nil && t.FinishedAt.Before(pod.DeletionTimestamp) {
		return "", false
	}
	return pod.Name, true
}

// stoppingPods returns the pods of ended attempts, of the steps selected, that may still run: the
// step container has not exited and the pod is neither Succeeded nor Failed. That is a pod of an
// attempt the run stopped (its Job deleted, with the pod going in the background) or whose Job a
// person deleted; a Job that failed by itself has waited for its pod (Kubernetes 1.31 and later).
// A pod orphaned from its Job (deleted with --cascade=orphan) is not waited for, nor one still shown
// running s.podStopMargin past its deletion's grace period (its deletionTimestamp): a kubelet that
// is up has killed the container by then, and one that is unreachable may never say so. Sorted by
// name.
func (s *scope) stoppingPods(selected func(step string) bool) []*corev1.Pod {
	var out []*corev1.Pod
	for job, pod := range s.pods {
		step := pod.Labels[custodyv1alpha1.LabelStep]
		st := s.status(step)
		if st == nil || !selected(step) || st.Phase == custodyv1alpha1.StepRunning && st.JobName == job || !s.mayRun(pod) {
			continue
		}
		out = append(out, pod)
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// mayRun says whether a pod of the run's Jobs may still be running its step: it is not terminal,
// its step container has not exited, it is controlled by a Job, and it is not shown running
// s.podStopMargin past its deletion (then the reconcile is requeued for that moment).
func (s *scope) mayRun(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || stepContainerState(pod) != nil ||
		metav1.GetControllerOf(pod) == nil {
		return false
	}
	if pod.DeletionTimestamp != nil {
		due := pod.DeletionTimestamp.Add(s.podStopMargin)
		if !s.now.Before(due) {
			return false
		}
		s.requeueAt(due)
	}
	return true
}

// stoppingMessage says which pods the run waits for, and of which steps.
func stoppingMessage(pods []*corev1.Pod) string {
	names := make([]string, 0, len(pods))
	for _, p := range pods {
		names = append(names, fmt.Sprintf("%s (step %s)", p.Name, p.Labels[custodyv1alpha1.LabelStep]))
	}
	return text.Truncate("Waiting for the pods of stopped attempts to stop: "+strings.Join(names, ", "), 1024)
}

// backoff returns the wait before attempt n+1: duration * factor^(n-1), at most max, shortened by
// up to jitter percent by a fraction drawn from seed (the run's UID and the step) and n, the
// same in every reconcile of the attempt.
func backoff(p *custodyv1alpha1.RetryPolicy, seed string, n int32) time.Duration {
	base, factor, maxWait, jitter := defaultBackoff, float64(defaultBackoffFactor), defaultBackoffMax, int32(0)
	if p != nil && p.Backoff != nil {
		if p.Backoff.Duration != nil {
			base = p.Backoff.Duration.Duration
		}
		if p.Backoff.Factor != nil {
			factor = float64(*p.Backoff.Factor)
		}
		if p.Backoff.Max != nil {
			maxWait = p.Backoff.Max.Duration
		}
		if p.Backoff.Jitter != nil {
			jitter = *p.Backoff.Jitter
		}
	}
	wait := min(float64(base)*math.Pow(factor, float64(max(n-1, 0))), float64(maxWait))
	if jitter > 0 {
		sum := sha256.Sum256([]byte(seed + "/" + strconv.Itoa(int(n))))
		frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) // uniform in [0, 1)
		wait *= 1 - float64(jitter)/100*frac
	}
	return time.Duration(wait)
}

// reconcileStop stops the run's steps when spec.cancel is set or the workflow timeout passed:
// their running Jobs are deleted and every unfinished step becomes Cancelled. Finally steps are
// not stopped: they run next, and the workflow ends when they have (reconcileOutcome).
func (r *Reconciler) reconcileStop(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	reason := s.stopReason
	if reason == "" {
		if t := s.def.Timeout; t != nil && wf.Status.StartTime != nil {
			s.requeueAt(wf.Status.StartTime.Add(t.Duration))
		}
		return false, nil
	}
	// Every Job of the workflow's steps that has not ended is stopped, including one whose
	// creation was not yet recorded in status.
	for _, job := range s.jobs {
		if s.finally[job.Labels[custodyv1alpha1.LabelStep]] {
			continue
		}
		if jobCondition(job, batchv1.JobComplete) || jobCondition(job, batchv1.JobFailed) {
			continue
		}
		if err := r.stopJob(ctx, job); err != nil {
			return false, err
		}
	}
	for i := range wf.Status.Steps {
		st := &wf.Status.Steps[i]
		if st.Phase.Ended() || s.finally[st.Name] {
			continue
		}
		if st.Phase == custodyv1alpha1.StepRunning {
			s.afterSave(func() { metrics.StepAttemptsEnded.WithLabelValues("cancelled", reason).Inc() })
		}
		msg := wf.Cancellation()
		if reason == custodyv1alpha1.ReasonTimedOut {
			msg = fmt.Sprintf("The workflow's timeout of %s passed", s.def.Timeout.Duration)
		}
		s.setStep(st, custodyv1alpha1.StepCancelled, reason, msg)
		s.stepEvent(st.Name, corev1.EventTypeWarning, reason, "Stop", "Step %s: %s", st.Name, msg)
	}
	return false, nil
}

// stopReason says whether the run must stop now: Cancelled (spec.cancel) or TimedOut (the
// workflow's timeout passed since it started).
func stopReason(s *scope) string {
	wf := s.wf
	switch {
	case wf.Spec.Cancel:
		return custodyv1alpha1.ReasonCancelled
	case s.def.Timeout != nil && wf.Status.StartTime != nil &&
		!s.now.Before(wf.Status.StartTime.Add(s.def.Timeout.Duration)):
		return custodyv1alpha1.ReasonTimedOut
	}
	return ""
}

// reconcileSteps starts what may start: retries whose backoff passed, steps whose dependencies
// ended (after their `when` and approval) and, once every step ended and their pods stopped, the
// finally steps; it blocks steps that will never run. At most spec.parallelism steps run at once.
func (r *Reconciler) reconcileSteps(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	if s.graph == nil || isFinished(wf.Status.Phase) {
		return false, nil
	}
	if wf.Status.ObservedGeneration != wf.Generation {
		// The spec changed since the last reconcile (or this is the first): a suspension, or the
		// end of one (which the Ready condition, or a held step, says was in force).
		ready := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReady)
		held := slices.ContainsFunc(wf.Status.Steps, func(st custodyv1alpha1.StepStatus) bool {
			return st.Reason == custodyv1alpha1.ReasonSuspended
		})
		switch was := held || (ready != nil && ready.Reason == custodyv1alpha1.ReasonSuspended); {
		case wf.Spec.Suspend && !was:
			s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonSuspended, "Suspend",
				"Workflow suspended: no step starts until spec.suspend is false; running steps go on")
		case !wf.Spec.Suspend && was:
			s.event(corev1.EventTypeNormal, custodyv1alpha1.ReasonResumed, "Resume", "Workflow resumed")
		}
	}
	if s.slots >= 0 {
		for _, st := range wf.Status.Steps {
			if st.Phase == custodyv1alpha1.StepRunning {
				s.slots--
			}
		}
		s.slots = max(s.slots, 0)
	}
	if err := r.startRetries(ctx, s); err != nil {
		return false, err
	}

	phases, finallyPhases, mainEnded := map[string]dag.Phase{}, map[string]dag.Phase{}, true
	for _, st := range wf.Status.Steps {
		if s.finally[st.Name] {
			finallyPhases[st.Name] = s.dagPhase(st)
			continue
		}
		phases[st.Name] = s.dagPhase(st)
	}
	if err := r.schedule(ctx, s, s.graph.Next(phases)); err != nil {
		return false, err
	}
	for _, st := range wf.Status.Steps {
		mainEnded = mainEnded && (s.finally[st.Name] || st.Phase.Ended())
	}
	if !mainEnded || len(s.finally) == 0 {
		return false, nil
	}
	if pods := s.stoppingPods(func(step string) bool { return !s.finally[step] }); len(pods) > 0 {
		// Finally steps clean up after the steps: not while a stopped one still runs.
		s.stopWait = stoppingMessage(pods)
		for i := range wf.Status.Steps {
			if st := &wf.Status.Steps[i]; s.finally[st.Name] && st.Phase == custodyv1alpha1.StepPending {
				s.setStep(st, custodyv1alpha1.StepPending, custodyv1alpha1.StepReasonWaitingForSteps, s.stopWait)
			}
		}
		return false, nil
	}
	return false, r.schedule(ctx, s, s.finallyGraph.NextAll(finallyPhases))
}

// startRetries starts the next attempt of each Retrying step whose backoff passed, once the pod
// of its last attempt has stopped.
func (r *Reconciler) startRetries(ctx context.Context, s *scope) error {
	for i := range s.wf.Status.Steps {
		st := &s.wf.Status.Steps[i]
		if st.Phase != custodyv1alpha1.StepRetrying || st.NextAttemptTime == nil {
			continue
		}
		if s.now.Before(st.NextAttemptTime.Time) {
			s.requeueAt(st.NextAttemptTime.Time)
			continue
		}
		if pods := s.stoppingPods(func(step string) bool { return step == st.Name }); len(pods) > 0 {
			// The next attempt would overlap what the last one still does; the pod going wakes the run.
			st.Message = fmt.Sprintf("%s; attempt %d starts once pod %s has stopped", attemptFailure(st), st.Attempt+1, pods[0].Name)
			continue
		}
		if err := r.startAttempt(ctx, s, st); err != nil {
			return err
		}
	}
	return nil
}

// attemptFailure is the part of a Retrying step's message that says why its last attempt failed
// (endAttempt wrote "Attempt N failed (REASON: MESSAGE); attempt N+1 starts at T"), so that a
// message that says what else the retry waits for keeps it; or the reason alone.
func attemptFailure(st *custodyv1alpha1.StepStatus) string {
	prefix := fmt.Sprintf("Attempt %d failed (%s", st.Attempt, st.LastFailureReason)
	if i := strings.LastIndex(st.Message, fmt.Sprintf("; attempt %d starts ", st.Attempt+1)); i > 0 && strings.HasPrefix(st.Message, prefix) {
		return st.Message[:i]
	}
	return prefix + ")"
}

// schedule carries out a decision of the graph: blocked steps are skipped, ready ones started.
func (r *Reconciler) schedule(ctx context.Context, s *scope, decision dag.Decision) error {
	for name, dep := range decision.Block {
		st := s.status(name)
		if dep == "" {
			s.setStep(st, custodyv1alpha1.StepSkipped, custodyv1alpha1.StepReasonWorkflowFailing,
				"Another step failed, so no further step starts")
		} else {
			s.setStep(st, custodyv1alpha1.StepSkipped, custodyv1alpha1.StepReasonDependencyNotSucceeded,
				fmt.Sprintf("Dependency %s did not succeed", dep))
		}
		s.stepEvent(name, corev1.EventTypeNormal, st.Reason, "Schedule", "Step %s skipped: %s", name, st.Message)
	}
	for _, name := range decision.Ready {
		if err := r.readyStep(ctx, s, s.status(name)); err != nil {
			return err
		}
	}
	return nil
}

func (s *scope) dagPhase(st custodyv1alpha1.StepStatus) dag.Phase {
	switch st.Phase {
	case custodyv1alpha1.StepRunning, custodyv1alpha1.StepRetrying:
		return dag.Active
	case custodyv1alpha1.StepSucceeded:
		return dag.Succeeded
	case custodyv1alpha1.StepSkipped:
		if st.Reason == custodyv1alpha1.StepReasonWhenFalse {
			return dag.Skipped
		}
		return dag.Blocked
	case custodyv1alpha1.StepFailed:
		if s.tolerated(st) {
			return dag.Tolerated
		}
		return dag.Failed
	case custodyv1alpha1.StepCancelled:
		return dag.Cancelled
	}
	return dag.NotStarted
}

// readyStep handles a step whose dependencies ended well: `when`, then approval, then the first
// attempt.
func (r *Reconciler) readyStep(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus) error {
	wf := s.wf
	step := s.specStep(st.Name)
	if st.ReadyTime == nil {
		st.ReadyTime = &metav1.Time{Time: s.now}
	}
	if w := s.whens[st.Name]; w != nil {
		run, err := w.Eval(s.exprEnv(st.Name))
		if err != nil {
			msg := text.Truncate("when: "+err.Error(), 512)
			s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.StepReasonWhenError, msg)
			s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonWhenError, "Schedule", "Step %s: %s", st.Name, msg)
			return nil
		}
		if !run {
			s.setStep(st, custodyv1alpha1.StepSkipped, custodyv1alpha1.StepReasonWhenFalse, "when evaluated to false")
			s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.StepReasonWhenFalse, "Schedule", "Step %s skipped: when is false", st.Name)
			return nil
		}
	}
	if step.Approval != nil && st.Approval == nil {
		if rej := rejectionOf(wf, st.Name, s.now); rej != nil {
			s.rejectStep(ctx, st, rej)
			return nil
		}
		rec, approved := approvalOf(wf, st.Name, s.now)
		if !approved {
			if step.Approval.Timeout != nil {
				deadline := st.ReadyTime.Add(step.Approval.Timeout.Duration)
				if !s.now.Before(deadline) {
					msg := fmt.Sprintf("No approval came within %s (approval.timeout) from %s", step.Approval.Timeout.Duration,
						step.Approval.Approvers.Describe())
					s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.ReasonApprovalTimedOut, msg)
					s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.ReasonApprovalTimedOut, "Schedule", "Step %s: %s", st.Name, msg)
					s.afterSave(func() { metrics.ObserveApprovalWait(wf, "timed_out", step.Approval.Timeout.Duration) })
					return nil
				}
				s.requeueAt(deadline)
			}
			if st.Phase != custodyv1alpha1.StepWaitingForApproval {
				who := step.Approval.Approvers.Describe()
				s.setStep(st, custodyv1alpha1.StepWaitingForApproval, custodyv1alpha1.ReasonWaitingForApproval, text.Truncate(
					fmt.Sprintf("Waiting for approval by %s: kubectl custody approve %s %s (the annotation %s%s), "+
						"or kubectl custody reject %s %s --reason REASON",
						who, s.wf.Name, st.Name, custodyv1alpha1.AnnotationApprovePrefix, st.Name, s.wf.Name, st.Name), 1024))
				s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.ReasonWaitingForApproval, "Schedule",
					"Step %s waits for approval by %s", st.Name, who)
			}
			return nil
		}
		st.Approval = rec
		s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.ReasonApproved, "Approve", "Step %s approved by %s", st.Name, rec.ApprovedBy)
		waited := rec.ApprovedAt.Sub(st.ReadyTime.Time) // approvalOf sets ApprovedAt
		name := st.Name
		s.afterSave(func() {
			metrics.ObserveApprovalWait(wf, "approved", waited)
			auditDecision(ctx, "approve", wf, name, rec.ApprovedBy, rec.ApprovedAt.Time, "")
		})
	}
	return r.startAttempt(ctx, s, st)
}

// rejectStep fails a step an approver rejected: it does not run, and it is not retried (a retry
// would wait for the same approvers).
func (s *scope) rejectStep(ctx context.Context, st *custodyv1alpha1.StepStatus, rej *custodyv1alpha1.RejectionRecord) {
	wf := s.wf
	st.Rejection = rej
	msg := "Rejected by " + rej.RejectedBy
	if rej.Reason != "" {
		msg += ": " + rej.Reason
	}
	s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.ReasonApprovalRejected, msg)
	s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.ReasonApprovalRejected, "Reject", "Step %s: %s", st.Name, msg)
	waited := rej.RejectedAt.Sub(st.ReadyTime.Time)
	name := st.Name
	s.afterSave(func() {
		metrics.ObserveApprovalWait(wf, "rejected", waited)
		auditDecision(ctx, "reject", wf, name, rej.RejectedBy, rej.RejectedAt.Time, rej.Reason)
	})
}

// auditDecision writes one structured line (logger audit, as for credentials) when a person's
// decision about a run takes effect: a step approved or rejected, a run cancelled. Status and
// Events say the same, but Events go within the hour and status with the Workflow
// (ttlAfterFinished); a log pipeline keeps this line. reason is what the person wrote, which
// admission refuses when it looks like a credential.
func auditDecision(ctx context.Context, action string, wf *custodyv1alpha1.Workflow, step, by string, at time.Time, reason string) {
	kv := []any{"action", action, "actor", by, "workflow", klog.KObj(wf), "workflowUID", wf.UID,
		"creator", wf.Annotations[custodyv1alpha1.AnnotationCreatedBy]}
	if step != "" {
		kv = append(kv, "step", step)
	}
	if !at.IsZero() {
		kv = append(kv, "at", at.UTC().Format(time.RFC3339))
	}
	if reason != "" {
		kv = append(kv, "reason", reason)
	}
	msg := map[string]string{"approve": "Step approved", "reject": "Step rejected", "cancel": "Workflow cancelled"}[action]
	ctrl.LoggerFrom(ctx).WithName("audit").Info(msg, kv...)
}

// rejectionOf reads the rejection annotation of a step (reject.custody.dev/<step>), or nil.
// Admission stamps it as {"rejectedBy": ..., "rejectedAt": ..., "reason": ...}; any other value
// is recorded as a rejection by an unverified approver, the value its reason.
func rejectionOf(wf *custodyv1alpha1.Workflow, step string, now time.Time) *custodyv1alpha1.RejectionRecord {
	v, ok := wf.Annotations[custodyv1alpha1.AnnotationRejectPrefix+step]
	if !ok {
		return nil
	}
	rec, _ := custodyv1alpha1.ParseRejection(v)
	if rec.RejectedAt.IsZero() {
		rec.RejectedAt = metav1.Time{Time: now}
	}
	return rec
}

// approvalOf reads the approval annotation of a step. Admission (the webhook issue) stamps it as
// {"approvedBy": "<user>", "approvedAt": "<RFC 3339>"}; any other non-empty value is recorded as
// an approval by an unverified approver.
func approvalOf(wf *custodyv1alpha1.Workflow, step string, now time.Time) (*custodyv1alpha1.ApprovalRecord, bool) {
	rec, _ := custodyv1alpha1.ParseApproval(wf.Annotations[custodyv1alpha1.AnnotationApprovePrefix+step])
	if rec == nil {
		return nil, false
	}
	if rec.ApprovedAt.IsZero() {
		rec.ApprovedAt = metav1.Time{Time: now}
	}
	return rec, true
}

// held says whether a step that may start attempt n must wait instead, and sets its status to
// say why: the workflow is suspended, or its parallelism limit is reached.
func (s *scope) held(st *custodyv1alpha1.StepStatus, step *custodyv1alpha1.Step, n int32) bool {
	wf := s.wf
	if wf.Spec.Suspend && !s.jobExists(step.Name, n) {
		// The step starts once the workflow is resumed (the spec change wakes it). An attempt
		// whose Job exists already started (its start was not saved): startAttempt records it.
		const msg = "The workflow is suspended (spec.suspend): no step starts until it is resumed"
		if st.Phase == custodyv1alpha1.StepRetrying {
			st.Message = msg
			return true
		}
		if st.Reason != custodyv1alpha1.ReasonSuspended {
			s.setStep(st, custodyv1alpha1.StepPending, custodyv1alpha1.ReasonSuspended, msg)
		}
		return true
	}
	if s.groupWait != "" && !s.jobExists(step.Name, n) {
		// The step starts when the run whose turn it is ended (groupPeers wakes the workflow).
		s.holdGroup(st)
		return true
	}
	if s.slots == 0 {
		// The step starts when a running step ends (its Job's end wakes the workflow).
		msg := fmt.Sprintf("Waiting for a free slot: %d steps run at once at most (parallelism)", *s.def.Parallelism)
		if st.Phase == custodyv1alpha1.StepRetrying {
			st.Message = text.Truncate(msg, 1024)
			return true
		}
		if st.Reason != custodyv1alpha1.StepReasonWaitingForParallelism {
			s.setStep(st, custodyv1alpha1.StepPending, custodyv1alpha1.StepReasonWaitingForParallelism, msg)
		}
		return true
	}
	if step.Parallelism != nil && !s.jobExists(step.Name, n) {
		forEach, _ := wf.ForEachOf(st.Name)
		if running := s.runningItems(forEach, st); running >= int(*step.Parallelism) {
			// The item starts when one of its forEach step's items ends (its Job's end wakes the
			// workflow). Items ask in the order they are listed, so they start in that order.
			msg := fmt.Sprintf("Waiting for a free slot: forEach step %s runs at most %d of its items at once (parallelism)",
				forEach, *step.Parallelism)
			if st.Phase == custodyv1alpha1.StepRetrying {
				st.Message = msg
				return true
			}
			if st.Reason != custodyv1alpha1.StepReasonWaitingForParallelism || st.Message != msg {
				s.setStep(st, custodyv1alpha1.StepPending, custodyv1alpha1.StepReasonWaitingForParallelism, msg)
			}
			return true
		}
	}
	return false
}

// runningItems counts the items of the forEach step forEach, other than self, that hold a slot of
// its parallelism: those running (attempts started in this reconcile among them) and those waiting
// to be retried, so that a rollout one item at a time retries an item before the next one starts.
// Items waiting to be retried take turns in the order listed instead of waiting for each other
// (more of them than the limit: a run an older controller let start more items).
func (s *scope) runningItems(forEach string, self *custodyv1alpha1.StepStatus) int {
	n, after := 0, false
	for _, st := range s.wf.Status.Steps {
		if st.Name == self.Name {
			after = true
			continue
		}
		retrying := st.Phase == custodyv1alpha1.StepRetrying && (!after || self.Phase != custodyv1alpha1.StepRetrying)
		if st.Phase != custodyv1alpha1.StepRunning && !retrying {
			continue
		}
		if of, _ := s.wf.ForEachOf(st.Name); of == forEach && forEach != "" {
			n++
		}
	}
	return n
}

// jobExists says whether attempt n of a step has a Job (in the cache this reconcile listed).
func (s *scope) jobExists(step string, n int32) bool {
	_, ok := s.jobs[jobspec.Name(s.wf.Name, string(s.wf.UID), step, n)]
	return ok
}

// startAttempt creates the next attempt's ServiceAccount and Job. Both names are deterministic,
// so creating them again after a crash finds them already there.
func (r *Reconciler) startAttempt(ctx context.Context, s *scope, st *custodyv1alpha1.StepStatus) error {
	wf := s.wf
	step := s.specStep(st.Name)
	n := st.Attempt + 1
	if s.held(st, step, n) {
		return nil
	}
	env := s.exprEnv(st.Name)
	cmd, errCmd := expr.ForContainerAll(step.Command, env)
	args, errArgs := expr.ForContainerAll(step.Args, env)
	vars := make([]custodyv1alpha1.EnvVar, len(step.Env))
	errEnv := make([]error, 0, len(step.Env))
	for i, e := range step.Env {
		vars[i] = *e.DeepCopy()
		var err error
		vars[i].Value, err = expr.ForContainer(e.Value, env)
		errEnv = append(errEnv, err)
	}
	if err := errors.Join(errCmd, errArgs, errors.Join(errEnv...)); err != nil {
		msg := text.Truncate(err.Error(), 512)
		s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.StepReasonInvalidReference, msg)
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonInvalidReference, "Start", "Step %s: %s", st.Name, msg)
		return nil
	}
	if err := jobspec.ScratchConflict(step.Scratch, r.workloadAPISocket()); err != nil {
		s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.ReasonInvalidSpec, err.Error())
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.ReasonInvalidSpec, "Start", "Step %s: %s", st.Name, err)
		return nil
	}
	grants, refusal, err := r.grantsFor(ctx, s, step)
	if err != nil {
		return err
	}
	if refusal == nil {
		if refusal, err = credentials.PullSecretsRefusal(ctx, r.APIReader, wf.Namespace, s.def.ImagePullSecrets); err != nil {
			return err
		}
		if refusal != nil {
			s.requeueAt(s.now.Add(pullSecretRecheck)) // nothing watches those Secrets
		}
	}
	if refusal != nil {
		if err := r.revokeUnrecordedCopies(ctx, s, step, n); err != nil {
			return err
		}
		r.waitForGrants(s, st, step, refusal)
		return nil
	}
	if previousHeld(st) {
		s.requeueAt(s.now.Add(identityRetryMin)) // the last attempt's revocation is pending
		return nil
	}
	if ok, err := r.newIdentity(s, st, n); err != nil || !ok {
		if err != nil {
			msg := text.Truncate("identity: "+err.Error(), 512)
			s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.ReasonInvalidSpec, msg)
			s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.ReasonInvalidSpec, "Start", "Step %s: %s", st.Name, msg)
		}
		return nil
	}
	if err := r.ensureFinalizer(ctx, s, r.finalizerNeeded(wf, grants)); err != nil {
		return err
	}
	a := jobspec.Attempt{Workflow: wf, Step: step, Number: n, Command: cmd, Args: args, Env: vars,
		WorkloadAPISocket: r.workloadAPISocket(), CSIDriver: r.csiDriver(), ImagePullSecrets: s.def.ImagePullSecrets,
		UserNamespace: r.UserNamespaces}
	if step.Retries != nil && step.Retries.AvoidFailedNodes {
		a.AvoidNodes = s.earlierNodes(st, n)
	}
	name := jobspec.Name(wf.Name, string(wf.UID), step.Name, n)
	// Creating what already exists (a crash or conflict between create and status) is harmless;
	// the cache saves the round trip when it already shows the object.
	sa := jobspec.ServiceAccount(a)
	if _, exists := s.sas[sa.Name]; !exists {
		if err := r.Create(ctx, sa, client.FieldOwner(ControllerName)); err != nil && !apierrors.IsAlreadyExists(err) {
			return s.createFailed(st, sa, err)
		}
	}
	if a.Volumes, err = r.issue(ctx, s, st, n, name, grants); err != nil {
		return err
	}
	job := jobspec.Job(a)
	if existing, exists := s.jobs[job.Name]; exists {
		job = existing
	} else if err := r.Create(ctx, job, client.FieldOwner(ControllerName)); apierrors.IsAlreadyExists(err) {
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return fmt.Errorf("reading Job %s: %w", klog.KObj(job), err)
		}
	} else if apierrors.IsInvalid(err) {
		s.jobInvalid(st, n, sa.Name, err)
		return nil
	} else if err != nil {
		return s.createFailed(st, job, err)
	}
	if err := r.copySecrets(ctx, s, st, n, job, grants); err != nil {
		return err
	}
	s.afterSave(metrics.StepAttempts.Inc)
	if s.slots > 0 {
		s.slots--
	}
	st.Attempt = n
	st.JobName, st.ServiceAccountName = job.Name, sa.Name
	st.PodName, st.NodeName, st.NextAttemptTime = "", "", nil
	if st.StartTime == nil {
		st.StartTime = &metav1.Time{Time: s.now}
	}
	s.setStep(st, custodyv1alpha1.StepRunning, custodyv1alpha1.StepReasonStarted, fmt.Sprintf("Attempt %d runs as Job %s", n, job.Name))
	s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.StepReasonStarted, "Start",
		"Step %s: attempt %d started as Job %s", st.Name, n, job.Name)
	return nil
}

// earlierNodes returns the nodes the attempts of a step before attempt n ran on: the last one's,
// as status recorded it, and those of the earlier attempts' pods still in the cache. Sorted.
func (s *scope) earlierNodes(st *custodyv1alpha1.StepStatus, n int32) []string {
	nodes := map[string]bool{}
	if st.NodeName != "" && n > 1 {
		nodes[st.NodeName] = true
	}
	for k := int32(1); k < n; k++ {
		if pod := s.pods[jobspec.Name(s.wf.Name, string(s.wf.UID), st.Name, k)]; pod != nil && pod.Spec.NodeName != "" {
			nodes[pod.Spec.NodeName] = true
		}
	}
	return slices.Sorted(maps.Keys(nodes))
}

// jobInvalid fails a step whose attempt's Job the API server refused as invalid (for example
// resource requests above their limits, which the CRD cannot check). Retrying would be refused the
// same way, so the step fails at once; what the attempt was issued is revoked as for any attempt
// that ended, and its ServiceAccount released.
func (s *scope) jobInvalid(st *custodyv1alpha1.StepStatus, n int32, serviceAccount string, err error) {
	st.Attempt, st.ServiceAccountName = n, serviceAccount
	st.JobName, st.PodName, st.NodeName = "", "", ""
	if st.StartTime == nil {
		st.StartTime = &metav1.Time{Time: s.now}
	}
	st.LastFailureReason = custodyv1alpha1.StepReasonJobInvalid
	msg := text.Truncate(fmt.Sprintf("The API server refused attempt %d's Job: %s", n, apiMessage(err)), 512)
	s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.StepReasonJobInvalid, msg)
	s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonJobInvalid, "Start", "Step %s failed: %s", st.Name, msg)
	s.afterSave(func() {
		metrics.StepAttempts.Inc()
		metrics.StepAttemptsEnded.WithLabelValues("failed", custodyv1alpha1.StepReasonJobInvalid).Inc()
	})
}

// createFailed records on a waiting step why its attempt could not be created (a ResourceQuota
// or an admission policy refused the ServiceAccount or Job, or the API server failed) and returns
// the error, so that the reconcile is retried with backoff. Status is saved all the same. A step
// with a timeout gives up once it passed (counted from when the step became ready), as it does
// waiting for its grants.
func (s *scope) createFailed(st *custodyv1alpha1.StepStatus, o client.Object, err error) error {
	kind := jobKind
	if _, ok := o.(*corev1.ServiceAccount); ok {
		kind = "ServiceAccount"
	}
	if step := s.specStep(st.Name); step.Timeout != nil && st.ReadyTime != nil &&
		!s.now.Before(st.ReadyTime.Add(step.Timeout.Duration)) {
		msg := text.Truncate(fmt.Sprintf("Creating %s %s failed: %s; gave up after the step's timeout of %s",
			kind, o.GetName(), apiMessage(err), step.Timeout.Duration), 512)
		s.setStep(st, custodyv1alpha1.StepFailed, custodyv1alpha1.StepReasonCreateFailed, msg)
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonCreateFailed, "Start", "Step %s failed: %s", st.Name, msg)
		return nil
	}
	msg := text.Truncate(fmt.Sprintf("Creating %s %s failed, retrying: %s", kind, o.GetName(), apiMessage(err)), 512)
	if st.Reason != custodyv1alpha1.StepReasonCreateFailed || st.Message != msg {
		phase := st.Phase
		if phase != custodyv1alpha1.StepRetrying {
			phase = custodyv1alpha1.StepPending
		}
		s.setStep(st, phase, custodyv1alpha1.StepReasonCreateFailed, msg)
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.StepReasonCreateFailed, "Start", "Step %s: %s", st.Name, msg)
	}
	return fmt.Errorf("creating %s %s: %w", kind, klog.KRef(o.GetNamespace(), o.GetName()), err)
}

// apiMessage is what the API server said, without the Go error's wrapping.
func apiMessage(err error) string {
	if status, ok := err.(apierrors.APIStatus); ok || errors.As(err, &status) {
		if m := status.Status().Message; m != "" {
			return m
		}
	}
	return err.Error()
}

// reconcileOutcome sets the workflow's phase from its steps. The steps decide the outcome
// (Succeeded, Failed, or Cancelled after spec.cancel); the run ends once the finally steps ended
// too, and a failed finally step fails it.
func (r *Reconciler) reconcileOutcome(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	if isFinished(wf.Status.Phase) {
		return false, nil
	}
	allEnded, started, failedFinally := true, false, ""
	for _, st := range wf.Status.Steps {
		allEnded = allEnded && st.Phase.Ended()
		// A step taken over from the run it reuses, or skipped, has ended without an attempt:
		// the run is under way even while its next step waits for an approver.
		started = started || st.Attempt > 0 || st.Phase.Ended()
		if s.finally[st.Name] && st.Phase == custodyv1alpha1.StepFailed && !s.tolerated(st) && failedFinally == "" {
			failedFinally = st.Name
		}
	}
	if !allEnded {
		if started {
			wf.Status.Phase = custodyv1alpha1.WorkflowRunning
		}
		return false, nil
	}
	if pods := s.stoppingPods(func(string) bool { return true }); len(pods) > 0 {
		// Not ended while a stopped attempt still runs: a concurrency group's next run, or a
		// CronWorkflow's, would overlap it.
		s.stopWait = stoppingMessage(pods)
		wf.Status.Phase = custodyv1alpha1.WorkflowRunning
		return false, nil
	}
	phase, reason, why := s.stepsOutcome()
	if phase == custodyv1alpha1.WorkflowSucceeded && failedFinally != "" {
		phase, reason, why = custodyv1alpha1.WorkflowFailed, custodyv1alpha1.ReasonFailed, "finally step "+failedFinally+" failed"
	}
	wf.Status.Phase = phase
	switch phase {
	case custodyv1alpha1.WorkflowSucceeded:
		if names := s.toleratedSteps(); len(names) > 0 {
			s.event(corev1.EventTypeNormal, reason, "Finish", "Workflow succeeded; failed, allowed to (onFailure: Continue): %s",
				strings.Join(names, ", "))
		} else {
			s.event(corev1.EventTypeNormal, reason, "Finish", "Workflow succeeded")
		}
	case custodyv1alpha1.WorkflowCancelled:
		s.event(corev1.EventTypeWarning, reason, "Stop", "%s", wf.Cancellation())
		if by := wf.Annotations[custodyv1alpha1.AnnotationCancelledBy]; wf.Spec.Cancel {
			if by == "" { // cancelled where no webhook recorded who
				by = custodyv1alpha1.UnverifiedApprover
			}
			why := custodyv1alpha1.CancelReason(wf.Annotations[custodyv1alpha1.AnnotationCancelReason])
			s.afterSave(func() { auditDecision(ctx, "cancel", wf, "", by, time.Time{}, why) })
		}
	default:
		s.event(corev1.EventTypeWarning, reason, "Finish", "Workflow failed: %s", why)
	}
	wf.Status.CompletionTime = &metav1.Time{Time: s.now}
	s.recordResults()
	if ttl, _, ok := r.ttlAfterFinished(wf); ok {
		s.requeueAt(s.now.Add(ttl))
	}
	return false, nil
}

// recordResults computes the run's results (spec.results, or its template's) once it ended, from
// the parameters and the results of the steps that succeeded. A result that reads what no step
// produced is left out, and an Event says why (naming references, never values).
func (s *scope) recordResults() {
	s.wf.Status.Results = nil
	if len(s.def.Results) == 0 {
		return
	}
	env := s.exprEnv("")
	for _, res := range s.def.Results {
		v, err := expr.Substitute(res.Value, env)
		if err == nil && len(v) > expr.MaxResultsBytes {
			err = fmt.Errorf("its value would be %d bytes, more than %d", len(v), expr.MaxResultsBytes)
		}
		if err != nil {
			s.event(corev1.EventTypeWarning, custodyv1alpha1.ReasonResultNotProduced, "Finish", "Result %s not produced: %s",
				res.Name, text.Truncate(strings.ReplaceAll(err.Error(), "\n", "; "), 512))
			continue
		}
		s.wf.Status.Results = append(s.wf.Status.Results, custodyv1alpha1.StepResult{Name: res.Name, Value: v})
	}
}

// stepsOutcome is the outcome of the workflow's steps (not its finally steps), once they ended,
// with its reason: Cancelled when spec.cancel stopped a step, Failed when the workflow timeout
// stopped one or a step failed, Succeeded otherwise (a cancel or timeout that came after every step
// ended changes nothing). Finally steps see it as workflow.phase.
func (s *scope) stepsOutcome() (phase custodyv1alpha1.WorkflowPhase, reason, why string) {
	failed, timedOut, cancelled := "", false, false
	for _, st := range s.wf.Status.Steps {
		if s.finally[st.Name] {
			continue
		}
		switch {
		case st.Phase == custodyv1alpha1.StepFailed && !s.tolerated(st) && failed == "":
			failed = st.Name
		case st.Phase == custodyv1alpha1.StepCancelled && st.Reason == custodyv1alpha1.ReasonTimedOut:
			timedOut = true
		case st.Phase == custodyv1alpha1.StepCancelled:
			cancelled = true
		}
	}
	switch {
	case cancelled:
		return custodyv1alpha1.WorkflowCancelled, custodyv1alpha1.ReasonCancelled, "cancelled"
	case timedOut:
		return custodyv1alpha1.WorkflowFailed, custodyv1alpha1.ReasonTimedOut, "timed out"
	case failed != "":
		return custodyv1alpha1.WorkflowFailed, custodyv1alpha1.ReasonFailed, "step " + failed + " failed"
	}
	return custodyv1alpha1.WorkflowSucceeded, custodyv1alpha1.ReasonSucceeded, ""
}

// stopUnrecordedJobs stops the Job of an attempt that status does not show started, once its step
// ended without it (skipped because another step failed, or failed while it waited): the reconcile
// that created the Job lost its status write. It would otherwise run to its end, accounted for
// nowhere. Jobs that status records end on their own terms (or reconcileStop deletes them). It
// reads the Jobs listAttempts put in the scope.
func (r *Reconciler) stopUnrecordedJobs(ctx context.Context, s *scope) (bool, error) {
	for _, job := range s.jobs {
		st := s.status(job.Labels[custodyv1alpha1.LabelStep])
		if st == nil || !st.Phase.Ended() || st.JobName == job.Name || jobFinished(job) || !job.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.stopJob(ctx, job); err != nil {
			return false, err
		}
		s.stepEvent(st.Name, corev1.EventTypeWarning, st.Reason, "Stop",
			"Step %s: stopped Job %s, which status did not show started (its start was not saved) and the step ended without it",
			st.Name, job.Name)
	}
	return false, nil
}

// releaseServiceAccounts deletes the ServiceAccount of every attempt that is not running: an
// attempt's identity ends with it.
func (r *Reconciler) releaseServiceAccounts(ctx context.Context, s *scope) (bool, error) {
	wf := s.wf
	if s.sas == nil {
		if err := r.listServiceAccounts(ctx, s); err != nil {
			return false, err
		}
	}
	live := map[string]bool{}
	for _, st := range wf.Status.Steps {
		if st.Phase == custodyv1alpha1.StepRunning {
			live[st.ServiceAccountName] = true
		}
	}
	for _, sa := range s.sas {
		if live[sa.Name] || !sa.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.Delete(ctx, sa, client.Preconditions{UID: &sa.UID}); client.IgnoreNotFound(err) != nil {
			return false, fmt.Errorf("deleting ServiceAccount %s: %w", klog.KObj(sa), err)
		}
	}
	return false, nil
}

// listServiceAccounts reads the attempt ServiceAccounts the workflow controls into the scope.
func (r *Reconciler) listServiceAccounts(ctx context.Context, s *scope) error {
	var sas corev1.ServiceAccountList
	if err := r.List(ctx, &sas, client.InNamespace(s.wf.Namespace), client.MatchingFields{workflowIndex: s.wf.Name}); err != nil {
		return fmt.Errorf("listing ServiceAccounts of %s: %w", klog.KObj(s.wf), err)
	}
	s.sas = map[string]*corev1.ServiceAccount{}
	for i := range sas.Items {
		if metav1.IsControlledBy(&sas.Items[i], s.wf) {
			s.sas[sas.Items[i].Name] = &sas.Items[i]
		}
	}
	return nil
}

// setStep moves a step to a phase, stamping its completion time when it ends.
func (s *scope) setStep(st *custodyv1alpha1.StepStatus, phase custodyv1alpha1.StepPhase, reason, msg string) {
	if phase == custodyv1alpha1.StepFailed {
		if step := s.specStep(st.Name); step != nil && step.ContinuesOnFailure() {
			msg = toleratedPrefix + msg
		}
	}
	st.Phase, st.Reason, st.Message = phase, reason, text.Truncate(msg, 1024)
	if phase.Ended() {
		st.NextAttemptTime = nil
		if st.CompletionTime == nil {
			st.CompletionTime = &metav1.Time{Time: s.now}
		}
	}
}

func (s *scope) status(name string) *custodyv1alpha1.StepStatus { return stepStatus(s.wf, name) }

// toleratedPrefix opens the message of a failed step whose failure lets the workflow go on.
const toleratedPrefix = "Failure allowed (onFailure: Continue), the workflow goes on. "

// tolerated says whether a step failed in a way that lets the workflow go on (onFailure:
// Continue): its dependents run, and the workflow does not fail because of it.
func (s *scope) tolerated(st custodyv1alpha1.StepStatus) bool {
	if st.Phase != custodyv1alpha1.StepFailed {
		return false
	}
	step := s.specStep(st.Name)
	return step != nil && step.ContinuesOnFailure()
}

// specStep returns a step or finally step of the run, from the definition reconcileSpec read once
// (the workflow's own, before it did or when the definition cannot run).
func (s *scope) specStep(name string) *custodyv1alpha1.Step {
	if st := specStepIn(s.def.Steps, name); st != nil {
		return st
	}
	if st := specStepIn(s.def.Finally, name); st != nil {
		return st
	}
	return specStep(s.wf, name)
}

// stepStatus returns the status of a workflow's step (nil if it has none yet).
func stepStatus(wf *custodyv1alpha1.Workflow, name string) *custodyv1alpha1.StepStatus {
	for i := range wf.Status.Steps {
		if wf.Status.Steps[i].Name == name {
			return &wf.Status.Steps[i]
		}
	}
	return nil
}

// specStep returns a workflow's step or finally step (nil if there is none of that name, or the
// run's template is not resolved yet).
func specStep(wf *custodyv1alpha1.Workflow, name string) *custodyv1alpha1.Step {
	def, _ := wf.Definition()
	if st := specStepIn(def.Steps, name); st != nil {
		return st
	}
	return specStepIn(def.Finally, name)
}

func specStepIn(steps []custodyv1alpha1.Step, name string) *custodyv1alpha1.Step {
	for i := range steps {
		if steps[i].Name == name {
			return &steps[i]
		}
	}
	return nil
}

// exprEnv is what a step's `when` expression and $(...) references see: the parameters, every step's
// phase and results, and for a finally step the steps' outcome (workflow.phase).
func (s *scope) exprEnv(step string) expr.Env {
	env := expr.StepEnv(s.wf, s.def, step)
	if s.finally[step] { // they start once every step ended: the outcome is known
		phase, _, _ := s.stepsOutcome()
		env.Workflow = map[string]string{"phase": string(phase)}
	}
	return env
}

func jobCondition(job *batchv1.Job, t batchv1.JobConditionType) bool {
	c := findJobCondition(job, t)
	return c != nil && c.Status == corev1.ConditionTrue
}

func findJobCondition(job *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		if job.Status.Conditions[i].Type == t {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// stepContainerState returns the terminated state of the step container, if the pod has one.
func stepContainerState(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	if pod == nil {
		return nil
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == jobspec.ContainerName && cs.State.Terminated != nil {
			return cs.State.Terminated
		}
	}
	return nil
}

func terminationMessage(pod *corev1.Pod) (string, bool) {
	t := stepContainerState(pod)
	if t == nil {
		return "", false
	}
	return t.Message, true
}

// jobFailure says why an attempt whose Job failed failed, without repeating anything the step wrote
// (its termination message may hold partial results): its reason (TimedOut for the Job's deadline,
// PodDeleted for a pod deleted under it, seen being the pod status recorded, otherwise JobFailed)
// and a message with the exit code and reason, or the Job's reason.
func jobFailure(job *batchv1.Job, pod *corev1.Pod, seen string) (reason, msg string) {
	t := stepContainerState(pod)
	c := findJobCondition(job, batchv1.JobFailed)
	timedOut := c != nil && c.Reason == batchv1.JobReasonDeadlineExceeded
	if name, ok := deletedPod(pod, seen); ok && !timedOut {
		msg = fmt.Sprintf("its pod %s was deleted before the step container ended", name)
		if t != nil {
			msg += fmt.Sprintf(" (the container then exited with code %d)", t.ExitCode)
		}
		return custodyv1alpha1.StepReasonPodDeleted, msg
	}
	reason, msg = custodyv1alpha1.StepReasonJobFailed, fmt.Sprintf("Job %s failed", job.Name)
	if timedOut {
		reason = custodyv1alpha1.ReasonTimedOut
	}
	if t != nil {
		msg = fmt.Sprintf("the step container exited with code %d (%s)", t.ExitCode, t.Reason)
	} else if c != nil {
		msg = fmt.Sprintf("Job %s failed: %s", job.Name, c.Reason)
	}
	if why, ok := disruption(pod); ok {
		msg += fmt.Sprintf("; its pod was disrupted (%s)", why)
	}
	return reason, msg
}

// event queues an Event about the Workflow as a whole; the reconciler records queued Events only
// after the status that explains them was saved, so a retried reconcile does not repeat them.
// Notes never contain credential values: steps hold none in the Workflow, and results and
// termination messages are not repeated.
func (s *scope) event(eventType, reason, action, note string, args ...any) {
	s.queueEvent("", "", eventType, reason, action, note, args...)
}

// stepEvent queues an Event about one step (see stepRef).
func (s *scope) stepEvent(step, eventType, reason, action, note string, args ...any) {
	s.queueEvent(step, "", eventType, reason, action, note, args...)
}

// grantEvent queues an Event about what one step was given by, or lost of, a CredentialGrant:
// the grant is its related object, so a step's Events about each of its grants stay apart.
func (s *scope) grantEvent(step, grant, eventType, reason, action, note string, args ...any) {
	s.queueEvent(step, grant, eventType, reason, action, note, args...)
}

func (s *scope) queueEvent(step, grant, eventType, reason, action, note string, args ...any) {
	msg := fmt.Sprintf(note, args...)
	s.afterSave(func() {
		if s.recorder != nil {
			recordEvent(s.recorder, s.wf, step, grant, eventType, reason, action, msg)
		}
	})
}

// recordEvent records an Event about the workflow, or about one of its steps when step is set,
// related to the CredentialGrant grant when that is set.
func recordEvent(rec events.EventRecorder, wf *custodyv1alpha1.Workflow, step, grant, eventType, reason, action, msg string) {
	var regarding runtime.Object = wf
	if step != "" {
		regarding = stepRef(wf, step)
	}
	var related runtime.Object
	if grant != "" {
		related = &corev1.ObjectReference{APIVersion: custodyv1alpha1.GroupVersion.String(), Kind: "CredentialGrant",
			Namespace: wf.Namespace, Name: grant}
	}
	rec.Eventf(regarding, related, eventType, reason, action, "%s", text.Truncate(msg, text.EventNoteMax))
}

// stepRef refers to one step of the workflow the way the kubelet's Events refer to a container
// (fieldPath spec.containers{name}): fieldPath status.steps{name}. kubectl describe lists them
// with the workflow's. The field path also keeps Events about sibling steps apart: the
// events.k8s.io recorder treats Events with the same regarding reference (resourceVersion
// included), reason and action as one series, and records only the first one's note with a count,
// so two steps started by the same reconcile would otherwise show as one.
func stepRef(wf *custodyv1alpha1.Workflow, step string) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: custodyv1alpha1.GroupVersion.String(), Kind: "Workflow",
		Namespace: wf.Namespace, Name: wf.Name, UID: wf.UID, ResourceVersion: wf.ResourceVersion,
		FieldPath: "status.steps{" + step + "}"}
}

// afterSave queues f (an Event or a metric) to run once the status was saved.
func (s *scope) afterSave(f func()) { s.saved = append(s.saved, f) }

// stopJob deletes a Job that has not been deleted yet, in the background, so that its pod gets its
// grace period; the UID precondition keeps it from deleting another Job of the same name. A Job
// already gone is fine.
func (r *Reconciler) stopJob(ctx context.Context, job *batchv1.Job) error {
	if !job.DeletionTimestamp.IsZero() {
		return nil
	}
	err := r.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &job.UID})
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting Job %s: %w", klog.KObj(job), err)
	}
	return nil
}
