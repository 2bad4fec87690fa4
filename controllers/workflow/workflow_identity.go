package workflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/text"
)

// identityRetry bounds how long the controller waits before it tries SPIRE again.
const (
	identityRetryMin = time.Second
	identityRetryMax = 30 * time.Second
)

// observations remembers when the controller first saw facts that start the latency clocks: an
// attempt's pod on a node (identity registration), and an attempt's end (the revocation of its
// identity and of its credentials: both clocks start at the same moment, so the end is kept until
// it is pruned, not consumed by the first revocation). They feed the latency metrics only;
// nothing depends on them for correctness.
type observations struct {
	mu       sync.Mutex
	onNode   map[types.UID]time.Time // pod UID
	ended    map[types.UID]time.Time // pod UID
	failures map[types.UID]int       // workflow UID -> consecutive SPIRE failures
	pruned   time.Time
}

// observationMaxAge is how long a fact nobody acted on is kept.
const observationMaxAge = 10 * time.Minute

func newObservations() *observations {
	return &observations{onNode: map[types.UID]time.Time{}, ended: map[types.UID]time.Time{}, failures: map[types.UID]int{}}
}

// pod records what a pod event shows (its node only when identities are registered).
func (o *observations) pod(p *corev1.Pod, now time.Time, onNode bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pruneLocked(now)
	if onNode && p.Spec.NodeName != "" {
		if _, ok := o.onNode[p.UID]; !ok {
			o.onNode[p.UID] = now
		}
	}
	if !p.DeletionTimestamp.IsZero() || stepContainerState(p) != nil {
		if _, ok := o.ended[p.UID]; !ok {
			o.ended[p.UID] = now
		}
	}
}

// sinceOnNode returns how long ago a pod was first seen on a node (or since fallback if it was
// not seen, for example before a restart), and forgets it: one registration per pod.
func (o *observations) sinceOnNode(uid types.UID, fallback, now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.onNode[uid]
	if !ok {
		t = fallback
	}
	delete(o.onNode, uid)
	return now.Sub(t)
}

// firstEnded returns when a pod was first seen ending (fallback if it was not, or later), keeping
// it for the other revocations of the same end.
func (o *observations) firstEnded(uid types.UID, fallback time.Time) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t, ok := o.ended[uid]; ok && t.Before(fallback) {
		return t
	}
	return fallback
}

// failed counts a failed SPIRE round for a workflow and returns how long to wait.
func (o *observations) failed(wf types.UID) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.failures[wf]
	o.failures[wf] = n + 1
	return min(identityRetryMin<<min(n, 10), identityRetryMax)
}

func (o *observations) succeeded(wf types.UID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.failures, wf)
}

// pruneLocked drops observations older than observationMaxAge, at most once a minute.
func (o *observations) pruneLocked(now time.Time) {
	if now.Sub(o.pruned) < time.Minute {
		return
	}
	o.pruned = now
	for _, m := range []map[types.UID]time.Time{o.onNode, o.ended} {
		for k, t := range m {
			if now.Sub(t) > observationMaxAge {
				delete(m, k)
			}
		}
	}
}

// identityAttempt names the identity of a step's current attempt.
func (r *Reconciler) identityAttempt(wf *custodyv1alpha1.Workflow, step string, n int32) identity.Attempt {
	return identity.Attempt{Namespace: wf.Namespace, Workflow: wf.Name, WorkflowUID: wf.UID, Step: step, Number: n}
}

// newIdentity sets up the identity record of a new attempt (before its Job exists). It returns
// false when the attempt must not start: the identity of the previous attempt is still live.
func (r *Reconciler) newIdentity(s *scope, st *custodyv1alpha1.StepStatus, n int32) (bool, error) {
	if prev := st.Identity; prev != nil && (prev.State == custodyv1alpha1.IdentityRegistered ||
		prev.State == custodyv1alpha1.IdentityRevocationPending) {
		s.requeueAt(s.now.Add(identityRetryMin))
		return false, nil
	}
	if !r.Identity.Enabled() {
		st.SPIFFEID = ""
		st.Identity = &custodyv1alpha1.StepIdentity{State: custodyv1alpha1.IdentityDisabled, Attempt: n,
			Message: "SPIRE is not configured: the step runs without a SPIFFE identity"}
		return true, nil
	}
	a := r.identityAttempt(s.wf, st.Name, n)
	id, err := r.Identity.Scheme.SPIFFEID(a)
	if err != nil {
		return false, err
	}
	st.SPIFFEID = id.String()
	st.Identity = &custodyv1alpha1.StepIdentity{State: custodyv1alpha1.IdentityPending, Attempt: n,
		EntryID: r.Identity.Scheme.EntryID(a), Message: "Waiting for the attempt's pod to be scheduled on a node"}
	return true, nil
}

// workloadAPISocket is the socket path step containers get, or "" without identity.
// csiDriver is the SPIFFE CSI driver of step identities ("" for the default).
func (r *Reconciler) csiDriver() string {
	if !r.Identity.Enabled() {
		return ""
	}
	return r.Identity.CSIDriver
}

func (r *Reconciler) workloadAPISocket() string {
	if !r.Identity.Enabled() {
		return ""
	}
	return r.Identity.SocketPath
}

// reconcileIdentities makes SPIRE match the attempts: an entry for every attempt whose pod runs
// on a node, none for any attempt that ended. Revocation fails closed: the Workflow keeps
// FinalizerRevocation while an entry may exist, and an attempt's retry waits for the previous
// attempt's revocation.
func (r *Reconciler) reconcileIdentities(ctx context.Context, s *scope) (bool, error) {
	if !r.Identity.Enabled() {
		return false, nil
	}
	wf := s.wf
	var revoke []*custodyv1alpha1.StepStatus
	for i := range wf.Status.Steps {
		st := &wf.Status.Steps[i]
		id := st.Identity
		if id == nil || id.EntryID == "" {
			continue
		}
		rec, known := r.registry.get(id.EntryID)
		live := id.Attempt == st.Attempt && st.Phase == custodyv1alpha1.StepRunning && s.attemptOnNode(st) != nil
		switch {
		case live && id.State == custodyv1alpha1.IdentityPending:
			// The identity controller registers; record what it did.
			r.recordRegistration(s, st, rec, known)
		case !live && (id.State == custodyv1alpha1.IdentityRegistered || id.State == custodyv1alpha1.IdentityRevocationPending ||
			id.State == custodyv1alpha1.IdentityPending && (st.Attempt != id.Attempt || st.Phase != custodyv1alpha1.StepRunning ||
				s.attemptEnded(st))):
			if known && !rec.revoked.IsZero() {
				r.recordRevocation(s, st, rec.revoked)
				continue
			}
			revoke = append(revoke, st)
		}
	}
	if len(revoke) > 0 {
		if err := r.revoke(ctx, s, revoke); err != nil {
			s.requeueAt(s.now.Add(r.observed.failed(wf.UID)))
			s.revocationErr = errors.Join(s.revocationErr, err)
			return false, nil
		}
	}
	r.observed.succeeded(wf.UID)
	return false, r.releaseFinalizer(ctx, s)
}

// recordRegistration records in status what the identity controller did for a running attempt.
func (r *Reconciler) recordRegistration(s *scope, st *custodyv1alpha1.StepStatus, rec attemptRecord, known bool) {
	id := st.Identity
	switch {
	case !known:
	case !rec.registered.IsZero():
		id.State = custodyv1alpha1.IdentityRegistered
		id.RegisteredTime = &metav1.Time{Time: rec.registered}
		id.ExpiresAt = &metav1.Time{Time: rec.expiresAt}
		id.Message = fmt.Sprintf("Pod %s on node %s can obtain SVIDs for %s", rec.podName, rec.nodeName, st.SPIFFEID)
		s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.ReasonIdentityIssued, "Register",
			"Step %s attempt %d: registered %s for pod %s (entry %s)", st.Name, st.Attempt, st.SPIFFEID, rec.podName, id.EntryID)
	case rec.err != "":
		msg := text.Truncate("SPIRE registration failed, retrying: "+rec.err, 512)
		if id.Message != msg {
			s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.ReasonIdentityFailed, "Register", "Step %s attempt %d: %s",
				st.Name, st.Attempt, msg)
		}
		id.Message = msg
	}
}

// recordRevocation records that an attempt's entry is gone.
func (r *Reconciler) recordRevocation(s *scope, st *custodyv1alpha1.StepStatus, at time.Time) {
	id := st.Identity
	// The record stays (the registry prunes it): a reconcile retried after a conflict, and a pod
	// event read against a stale Workflow, must still know the entry existed and is gone.
	rec, known := r.registry.get(id.EntryID)
	if id.State == custodyv1alpha1.IdentityPending {
		if !known || rec.registered.IsZero() {
			id.State, id.Message = custodyv1alpha1.IdentityNotIssued, "The attempt ended before its pod ran on a node"
			return
		}
		// Registered and ended between two reconciles: record both, never "not issued" for an
		// entry that existed (its pod could have obtained an SVID).
		r.recordRegistration(s, st, rec, known)
	}
	id.State, id.RevokedTime = custodyv1alpha1.IdentityRevoked, &metav1.Time{Time: at}
	id.Message = "The entry was deleted when the attempt ended"
	s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.ReasonIdentityRevoked, "Revoke",
		"Step %s attempt %d: revoked %s (entry %s)", st.Name, id.Attempt, st.SPIFFEID, id.EntryID)
}

// entryHeld says whether an attempt's entry may exist: the identity controller registered it, or
// the status of its step (id, which may be another attempt's) says it is registered or its
// revocation is pending.
func (r *Reconciler) entryHeld(entryID string, id *custodyv1alpha1.StepIdentity) bool {
	if rec, known := r.registry.get(entryID); known && !rec.registered.IsZero() {
		return true
	}
	return id != nil && id.EntryID == entryID &&
		(id.State == custodyv1alpha1.IdentityRegistered || id.State == custodyv1alpha1.IdentityRevocationPending)
}

// countRevocation marks an entry deleted at `at`. The identity controller, the Workflow reconciler
// and the finalizer may each delete it: the first mark counts the revocation (latency from
// since), if the entry may have existed. The mark also keeps the identity controller from
// registering an attempt that ended.
func (r *Reconciler) countRevocation(entryID string, id *custodyv1alpha1.StepIdentity, at, since time.Time) {
	held := r.entryHeld(entryID, id)
	if r.registry.markRevoked(entryID, at) && held {
		metrics.IdentityRevocation.Observe(r.Clock.Now().Sub(since).Seconds())
	}
}

// attemptOnNode returns the pod of a running attempt while its step container runs on a node.
func (s *scope) attemptOnNode(st *custodyv1alpha1.StepStatus) *corev1.Pod {
	pod := s.pods[st.JobName]
	if pod == nil || pod.Spec.NodeName == "" || !pod.DeletionTimestamp.IsZero() || stepContainerState(pod) != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || podAltered(pod) {
		return nil
	}
	if job := s.jobs[st.JobName]; job == nil || jobFinished(job) || !job.DeletionTimestamp.IsZero() {
		return nil
	}
	return pod
}

// attemptEnded says whether a running attempt's pod is past running its step container.
func (s *scope) attemptEnded(st *custodyv1alpha1.StepStatus) bool {
	pod := s.pods[st.JobName]
	if pod == nil {
		return false // not created yet, or gone: observeAttempts ends the attempt then
	}
	return !pod.DeletionTimestamp.IsZero() || stepContainerState(pod) != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// revoke deletes the entries of attempts that ended.
func (r *Reconciler) revoke(ctx context.Context, s *scope, steps []*custodyv1alpha1.StepStatus) error {
	ids := make([]string, len(steps))
	for i, st := range steps {
		ids[i] = st.Identity.EntryID
	}
	results, err := r.Identity.Registrar.Delete(ctx, ids)
	if err != nil {
		for _, st := range steps {
			r.revocationPending(s, st, err)
		}
		return err
	}
	now := r.Clock.Now()
	var errs []error
	for i, st := range steps {
		if results[i] != nil {
			r.revocationPending(s, st, results[i])
			errs = append(errs, results[i])
			continue
		}
		since := s.now
		if pod := s.pods[st.JobName]; pod != nil {
			since = r.observed.firstEnded(pod.UID, s.now)
		}
		r.countRevocation(st.Identity.EntryID, st.Identity, now, since)
		r.recordRevocation(s, st, s.now)
	}
	return errors.Join(errs...)
}

func (r *Reconciler) revocationPending(s *scope, st *custodyv1alpha1.StepStatus, err error) {
	id := st.Identity
	msg := text.Truncate("Revocation pending, retrying: "+err.Error(), 512)
	if id.State != custodyv1alpha1.IdentityRevocationPending {
		s.stepEvent(st.Name, corev1.EventTypeWarning, custodyv1alpha1.ReasonRevocationPending, "Revoke",
			"Step %s attempt %d: cannot delete entry %s yet: %s", st.Name, id.Attempt, id.EntryID, text.Truncate(err.Error(), 256))
	}
	if id.State != custodyv1alpha1.IdentityPending {
		id.State = custodyv1alpha1.IdentityRevocationPending
	}
	id.Message = msg
}

// identityHeld says whether any attempt of the workflow may still have an entry in SPIRE.
func identityHeld(wf *custodyv1alpha1.Workflow) bool {
	for _, st := range wf.Status.Steps {
		if id := st.Identity; id != nil && id.EntryID != "" && (id.State == custodyv1alpha1.IdentityRegistered ||
			id.State == custodyv1alpha1.IdentityRevocationPending) {
			return true
		}
	}
	return false
}

// revocationPending lists the steps whose revocation waits for SPIRE.
func revocationPendingSteps(wf *custodyv1alpha1.Workflow) []string {
	var names []string
	for _, st := range wf.Status.Steps {
		if st.Identity != nil && st.Identity.State == custodyv1alpha1.IdentityRevocationPending {
			names = append(names, st.Name)
		}
	}
	return names
}

func hasRevocationFinalizer(wf *custodyv1alpha1.Workflow) bool {
	return controllerutil.ContainsFinalizer(wf, custodyv1alpha1.FinalizerRevocation)
}

// finalizerNeeded says whether a run needs FinalizerRevocation before its next Job: its steps get
// SPIFFE identities or credentials, or it is in a concurrency group (a deleted run keeps its place
// until its pods stopped).
func (r *Reconciler) finalizerNeeded(wf *custodyv1alpha1.Workflow, grants []*custodyv1alpha1.CredentialGrant) bool {
	return r.Identity.Enabled() || len(grants) > 0 || wf.Spec.ConcurrencyGroup != ""
}

// ensureFinalizer adds FinalizerRevocation before the workflow's first Job exists, so no pod can
// be registered, hold a credential or, in a concurrency group, run without it.
func (r *Reconciler) ensureFinalizer(ctx context.Context, s *scope, needed bool) error {
	if !needed || hasRevocationFinalizer(s.wf) {
		return nil
	}
	return r.patchMetadata(ctx, s, func(wf *custodyv1alpha1.Workflow) bool {
		return controllerutil.AddFinalizer(wf, custodyv1alpha1.FinalizerRevocation)
	})
}

// releaseFinalizer removes FinalizerRevocation once the workflow ended and nothing is held.
func (r *Reconciler) releaseFinalizer(ctx context.Context, s *scope) error {
	if !controllerutil.ContainsFinalizer(s.wf, custodyv1alpha1.FinalizerRevocation) || !isFinished(s.wf.Status.Phase) ||
		identityHeld(s.wf) || credentialsHeld(s.wf) {
		return nil
	}
	return r.patchMetadata(ctx, s, func(wf *custodyv1alpha1.Workflow) bool {
		return controllerutil.RemoveFinalizer(wf, custodyv1alpha1.FinalizerRevocation)
	})
}

// patchMetadata changes the finalizers or labels with an optimistic lock (a merge patch
// replaces the whole list) and carries the new resourceVersion into the status patch that follows.
func (r *Reconciler) patchMetadata(ctx context.Context, s *scope, change func(*custodyv1alpha1.Workflow) bool) error {
	orig := s.wf.DeepCopy()
	orig.Status = custodyv1alpha1.WorkflowStatus{}
	upd := orig.DeepCopy()
	if !change(upd) {
		return nil
	}
	if err := r.Patch(ctx, upd, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}),
		client.FieldOwner(ControllerName)); err != nil {
		return fmt.Errorf("updating the metadata of %s: %w", klog.KObj(s.wf), err)
	}
	s.wf.Finalizers, s.wf.Labels, s.wf.ResourceVersion = upd.Finalizers, upd.Labels, upd.ResourceVersion
	if s.before != nil {
		s.before.Finalizers, s.before.Labels, s.before.ResourceVersion = upd.Finalizers, upd.Labels, upd.ResourceVersion
	}
	return nil
}

// finalize revokes every entry any attempt of a deleted workflow may hold, by their
// deterministic IDs (so it works even when status was lost), then releases the finalizer.
func (r *Reconciler) finalize(ctx context.Context, wf *custodyv1alpha1.Workflow) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(wf, custodyv1alpha1.FinalizerRevocation) {
		return ctrl.Result{}, nil
	}
	s := &scope{wf: wf, now: r.Clock.Now(), recorder: r.Recorder}
	err := r.finalizeCredentials(ctx, wf, s.now)
	if err == nil { // and the bindings whose issuance no record shows
		_, err = r.releaseRoleBindings(ctx, s)
	}
	for _, f := range s.saved { // their Events: no status is saved here to wait for
		f()
	}
	s.saved = nil
	if err != nil {
		r.Recorder.Eventf(wf, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonRevocationPending, "Revoke",
			"Cannot revoke the workflow's credentials yet, retrying: %s", text.Truncate(err.Error(), 512))
		return ctrl.Result{RequeueAfter: r.observed.failed(wf.UID)}, nil
	}
	if !r.Identity.Enabled() && !identityHeld(wf) {
		r.observed.succeeded(wf.UID)
		return r.releaseDeleted(ctx, s)
	}
	if !r.Identity.Enabled() {
		err := fmt.Errorf("%s has the finalizer %s but SPIRE is not configured, so its entries cannot be revoked; "+
			"configure SPIRE, or remove the finalizer by hand after deleting entries with the prefix of run %s",
			klog.KObj(wf), custodyv1alpha1.FinalizerRevocation, wf.UID)
		return ctrl.Result{}, err
	}
	var ids []string
	var idents []*custodyv1alpha1.StepIdentity // the status of each entry's step
	for _, st := range wf.Status.Steps {
		for n := int32(1); n <= st.Attempt; n++ {
			ids = append(ids, r.Identity.Scheme.EntryID(r.identityAttempt(wf, st.Name, n)))
			idents = append(idents, st.Identity)
		}
	}
	results, err := r.Identity.Registrar.Delete(ctx, ids)
	if err == nil {
		err = errors.Join(results...)
	}
	if err != nil {
		r.Recorder.Eventf(wf, nil, corev1.EventTypeWarning, custodyv1alpha1.ReasonRevocationPending, "Revoke",
			"Cannot revoke the workflow's entries yet, retrying: %s", text.Truncate(err.Error(), 512))
		return ctrl.Result{RequeueAfter: r.observed.failed(wf.UID)}, nil
	}
	r.observed.succeeded(wf.UID)
	// Marked, not forgotten: a pod event read against the Workflow until it is gone finds its
	// entry revoked, and a revocation the identity controller already counted is not counted again.
	done := r.Clock.Now()
	for i, id := range ids {
		r.countRevocation(id, idents[i], done, s.now)
	}
	if identityHeld(wf) && r.registry.markRevoked("deleted/"+string(wf.UID), done) { // once, not on each wait for pods
		r.Recorder.Eventf(wf, nil, corev1.EventTypeNormal, custodyv1alpha1.ReasonIdentityRevoked, "Revoke",
			"Revoked the entries of every attempt of the deleted workflow")
	}
	return r.releaseDeleted(ctx, s)
}

// releaseDeleted removes the finalizer of a deleted Workflow whose credentials and entries were
// revoked. A run of a concurrency group first has its Jobs deleted and keeps the finalizer, and so
// its place in the group, until their pods stopped: the group's next run must not start beside
// them (revocation does not wait for them).
func (r *Reconciler) releaseDeleted(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.wf.Spec.ConcurrencyGroup != "" {
		pods, err := r.podsOfDeletedRun(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		if len(pods) > 0 {
			r.Recorder.Eventf(s.wf, nil, corev1.EventTypeNormal, custodyv1alpha1.ReasonStopping, "Delete",
				"%s; the run keeps its place in concurrency group %s until then", stoppingMessage(pods), s.wf.Spec.ConcurrencyGroup)
			return ctrl.Result{RequeueAfter: max(s.requeueAfter, 5*time.Second)}, nil
		}
	}
	err := r.patchMetadata(ctx, s, func(w *custodyv1alpha1.Workflow) bool {
		return controllerutil.RemoveFinalizer(w, custodyv1alpha1.FinalizerRevocation)
	})
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// podsOfDeletedRun deletes the Jobs of a deleted run (in the background: the pods get their grace
// period) and returns its pods that may still run their step (scope.mayRun), by name.
func (r *Reconciler) podsOfDeletedRun(ctx context.Context, s *scope) ([]*corev1.Pod, error) {
	s.podStopMargin = r.PodStopMargin
	if err := r.listAttempts(ctx, s); err != nil {
		return nil, err
	}
	for _, job := range s.jobs {
		if err := r.stopJob(ctx, job); err != nil {
			return nil, fmt.Errorf("the deleted run: %w", err)
		}
	}
	var out []*corev1.Pod
	for _, pod := range s.pods {
		if s.mayRun(pod) {
			out = append(out, pod)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// pendingMessage describes pending revocations for the workflow's conditions.
func pendingMessage(steps []string) string {
	return fmt.Sprintf("Revocation pending for step %s: SPIRE has not confirmed the deletion; retrying",
		strings.Join(steps, ", "))
}
