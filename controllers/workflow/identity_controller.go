package workflow

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/text"
)

// IdentityControllerName names the controller that registers and revokes step pods' entries.
const IdentityControllerName = "custody-identity"

// The identity controller is keyed by pod, not by Workflow: it does one SPIRE call per pod
// event and never writes the Workflow, so that an identity appears the moment a pod is on a node
// and disappears the moment its step container ends, however busy the Workflow reconciler is.
// What it did is kept in the registry; the Workflow reconciler records it in status (and Events),
// and itself revokes whatever the identity controller could not (fail closed).

// attemptRecord is what the identity controller did for one entry.
type attemptRecord struct {
	registered time.Time
	expiresAt  time.Time
	podName    string
	nodeName   string
	revoked    time.Time
	err        string
	touched    time.Time
}

// registry holds attempt records by entry ID (and, under "credential/...", marks of the
// credentials a deleted workflow's finalizer revoked). A record is kept after the revocation is
// recorded in status (until it is 10 minutes untouched), so that a pod event read against a
// Workflow the cache still shows "Registered" finds the entry already revoked instead of deleting
// it again.
type registry struct {
	mu     sync.Mutex
	m      map[string]*attemptRecord
	pruned time.Time
}

// registryMaxAge is how long a record nobody touched is kept.
const registryMaxAge = 10 * time.Minute

func newRegistry() *registry { return &registry{m: map[string]*attemptRecord{}} }

func (g *registry) get(id string) (attemptRecord, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.m[id]
	if !ok {
		return attemptRecord{}, false
	}
	return *r, true
}

// update changes an entry's record (creating it) and returns the record as changed.
func (g *registry) update(id string, now time.Time, f func(*attemptRecord)) attemptRecord {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pruneLocked(now)
	r := g.m[id]
	if r == nil {
		r = &attemptRecord{}
		g.m[id] = r
	}
	f(r)
	r.touched = now
	return *r
}

// markRevoked records that an entry was deleted and says whether it is the first to: the
// identity controller and the Workflow reconciler may both delete an entry, and the revocation
// is counted once.
func (g *registry) markRevoked(id string, now time.Time) bool {
	first := false
	g.update(id, now, func(r *attemptRecord) {
		if first = r.revoked.IsZero(); first {
			r.revoked, r.err = now, ""
		}
	})
	return first
}

// pruneLocked drops records untouched for registryMaxAge, at most once a minute.
func (g *registry) pruneLocked(now time.Time) {
	if now.Sub(g.pruned) < time.Minute {
		return
	}
	g.pruned = now
	for id, r := range g.m {
		if now.Sub(r.touched) > registryMaxAge {
			delete(g.m, id)
		}
	}
}

// podEnded says whether a pod is past running its step container.
func podEnded(pod *corev1.Pod) bool {
	return !pod.DeletionTimestamp.IsZero() || stepContainerState(pod) != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// reconcilePod registers the entry of a step pod on a node and revokes it when the pod's step
// container ends.
func (r *Reconciler) reconcilePod(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod := &corev1.Pod{}
	if err := r.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	n, err := strconv.ParseInt(pod.Labels[custodyv1alpha1.LabelAttempt], 10, 32)
	step := pod.Labels[custodyv1alpha1.LabelStep]
	if err != nil || n < 1 || step == "" {
		return reconcile.Result{}, nil
	}
	wf := &custodyv1alpha1.Workflow{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: pod.Labels[custodyv1alpha1.LabelWorkflow]}, wf); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	// Only a pod of a Job this workflow run controls may get the run's identity.
	job := &batchv1.Job{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: pod.Labels[jobNameLabel]}, job); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(job, wf) || !podOfAttempt(pod, job.Name, job) {
		return reconcile.Result{}, nil
	}
	a := r.identityAttempt(wf, step, int32(n))
	entryID := r.Identity.Scheme.EntryID(a)
	st := stepStatus(wf, step)
	rec, known := r.registry.get(entryID)
	now := r.Clock.Now()

	p := podAttempt{wf: wf, pod: pod, job: job, attempt: a, entryID: entryID, st: st, rec: rec, known: known, now: now}
	if podEnded(pod) || podAltered(pod) || !wf.DeletionTimestamp.IsZero() {
		return r.revokePod(ctx, p)
	}
	return r.registerPod(ctx, p)
}

// podAttempt is what reconcilePod found out about a step pod.
type podAttempt struct {
	wf      *custodyv1alpha1.Workflow
	pod     *corev1.Pod
	job     *batchv1.Job
	attempt identity.Attempt
	entryID string
	st      *custodyv1alpha1.StepStatus
	rec     attemptRecord
	known   bool
	now     time.Time
}

// revokePod deletes the entry of a pod whose step container ended.
func (r *Reconciler) revokePod(ctx context.Context, p podAttempt) (reconcile.Result, error) {
	wf, pod, entryID, rec, known, now := p.wf, p.pod, p.entryID, p.rec, p.known, p.now
	var id *custodyv1alpha1.StepIdentity
	if p.st != nil {
		id = p.st.Identity
	}
	if !r.entryHeld(entryID, id) || known && !rec.revoked.IsZero() {
		return reconcile.Result{}, nil
	}
	if err := r.deleteEntry(ctx, entryID); err != nil {
		// The Workflow reconciler records the pending revocation and retries too.
		r.wakeWorkflow(ctx, wf)
		return reconcile.Result{}, fmt.Errorf("revoking entry %s: %w", entryID, err)
	}
	r.countRevocation(entryID, id, now, r.observed.firstEnded(pod.UID, now))
	r.wakeWorkflow(ctx, wf)
	return reconcile.Result{}, nil
}

// deleteEntry deletes one entry from SPIRE.
func (r *Reconciler) deleteEntry(ctx context.Context, id string) error {
	results, err := r.Identity.Registrar.Delete(ctx, []string{id})
	if err != nil {
		return err
	}
	return results[0]
}

// registerPod creates the entry of a pod on a node.
func (r *Reconciler) registerPod(ctx context.Context, p podAttempt) (reconcile.Result, error) {
	wf, pod, job, a, entryID, st, rec, known, now := p.wf, p.pod, p.job, p.attempt, p.entryID, p.st, p.rec, p.known, p.now
	if pod.Spec.NodeName == "" || known && (!rec.registered.IsZero() || !rec.revoked.IsZero()) {
		return reconcile.Result{}, nil
	}
	// Never register an attempt that status shows superseded or ended. The status of the attempt
	// itself may not be saved yet (its Job and pod can be faster than the reconcile that created
	// them; with no step status at all on a workflow's first steps, or a run of a template): the
	// Job is the workflow's, so the attempt is real, and the sweep spares young entries for that
	// reason.
	if st != nil && (st.Attempt > a.Number || st.Attempt == a.Number && st.Phase != custodyv1alpha1.StepRunning) {
		return reconcile.Result{}, nil
	}
	if st != nil && st.Attempt == a.Number && st.Identity != nil && st.Identity.State == custodyv1alpha1.IdentityRegistered {
		return reconcile.Result{}, nil // registered before a restart
	}
	// The finalizer that guarantees revocation is added before the workflow's first Job; the
	// cache may not show it yet, the API server does.
	if !hasRevocationFinalizer(wf) {
		fresh := &custodyv1alpha1.Workflow{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(wf), fresh); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
		if fresh.UID != wf.UID || !hasRevocationFinalizer(fresh) {
			return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
	}
	e, err := r.buildEntry(ctx, wf, a, pod, job)
	if err == nil {
		var results []error
		results, err = r.Identity.Registrar.Create(ctx, []identity.Entry{e})
		if err == nil {
			err = results[0]
		}
	}
	if err != nil {
		r.registry.update(entryID, now, func(rec *attemptRecord) { rec.err = text.Truncate(err.Error(), 400) })
		r.wakeWorkflow(ctx, wf)
		return reconcile.Result{}, fmt.Errorf("registering entry %s: %w", entryID, err)
	}
	done := r.Clock.Now()
	latency := r.observed.sinceOnNode(pod.UID, pod.CreationTimestamp.Time, done)
	metrics.IdentityRegistration.Observe(latency.Seconds())
	rec = r.registry.update(entryID, now, func(rec *attemptRecord) {
		rec.registered, rec.expiresAt, rec.podName, rec.nodeName, rec.err = now, e.ExpiresAt, pod.Name, pod.Spec.NodeName, ""
	})
	if !rec.revoked.IsZero() {
		// The Workflow reconciler ended the attempt while the entry was being created: revocation
		// wins (fail closed), and it is recorded as registered and revoked.
		if err := r.deleteEntry(ctx, entryID); err != nil {
			r.wakeWorkflow(ctx, wf)
			return reconcile.Result{}, fmt.Errorf("revoking entry %s of an attempt that ended while it was registered: %w", entryID, err)
		}
	}
	r.wakeWorkflow(ctx, wf)
	return reconcile.Result{}, nil
}

// buildEntry builds the registration entry of a step pod.
func (r *Reconciler) buildEntry(ctx context.Context, wf *custodyv1alpha1.Workflow, a identity.Attempt, pod *corev1.Pod,
	job *batchv1.Job) (identity.Entry, error) {
	cfg := r.Identity
	id, err := cfg.Scheme.SPIFFEID(a)
	if err != nil {
		return identity.Entry{}, err
	}
	parent := cfg.ParentID
	if parent == nil {
		node := &metav1.PartialObjectMetadata{}
		node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
		if err := r.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
			return identity.Entry{}, fmt.Errorf("reading node %s: %w", pod.Spec.NodeName, err)
		}
		agent, err := cfg.Scheme.AgentID(node.UID)
		if err != nil {
			return identity.Entry{}, err
		}
		parent = &agent
	}
	props, err := r.svidProperties(ctx, wf, a)
	if err != nil {
		return identity.Entry{}, err
	}
	return identity.Entry{
		ID:            cfg.Scheme.EntryID(a),
		SPIFFEID:      id,
		ParentID:      *parent,
		Selectors:     identity.PodSelectors(pod.Namespace, pod.Spec.ServiceAccountName, pod.UID, jobspec.ContainerName),
		ExpiresAt:     r.entryExpiry(wf, job),
		X509SVIDTTL:   credentials.CapTTL(props.X509TTL, cfg.X509SVIDTTL, cfg.MaxSVIDTTL),
		JWTSVIDTTL:    credentials.CapTTL(props.JWTTTL, cfg.JWTSVIDTTL, cfg.MaxSVIDTTL),
		DNSNames:      props.DNSNames,
		FederatesWith: props.FederatesWith,
	}, nil
}

// svidProperties merges what the attempt's live spiffe grants add to its entry: grants the step
// requests that allow it now, except those whose issuance to this attempt was revoked (ttl).
func (r *Reconciler) svidProperties(ctx context.Context, wf *custodyv1alpha1.Workflow,
	a identity.Attempt) (credentials.SVIDProperties, error) {
	var props credentials.SVIDProperties
	step := specStep(wf, a.Step)
	if step == nil {
		return props, nil
	}
	st := stepStatus(wf, a.Step)
	for _, name := range step.Credentials {
		if st != nil && slices.ContainsFunc(st.Credentials, func(c custodyv1alpha1.IssuedCredential) bool {
			return c.Grant == name && c.Attempt == a.Number && c.RevokedAt != nil
		}) {
			continue
		}
		g := &custodyv1alpha1.CredentialGrant{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: wf.Namespace, Name: name}, g); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return props, fmt.Errorf("reading CredentialGrant %s: %w", name, err)
			}
			continue
		}
		if credentials.Kind(g) == custodyv1alpha1.CredentialKindSPIFFE && credentials.Check(name, g, wf, a.Step, r.Clock.Now()) == nil {
			props.Add(g)
		}
	}
	return props, nil
}

// entryExpiry is the attempt's deadline: the earliest of the step timeout (from the Job's
// start), the workflow timeout (from the run's start), and the configured longest entry
// lifetime; rounded up to the second, as SPIRE stores it.
func (r *Reconciler) entryExpiry(wf *custodyv1alpha1.Workflow, job *batchv1.Job) time.Time {
	expiry := r.Clock.Now().Add(r.Identity.MaxEntryLifetime)
	if job != nil && job.Spec.ActiveDeadlineSeconds != nil {
		start := job.CreationTimestamp.Time
		if job.Status.StartTime != nil {
			start = job.Status.StartTime.Time
		}
		if d := start.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds) * time.Second); d.Before(expiry) {
			expiry = d
		}
	}
	timeout := wf.Spec.Timeout // a run of a template whose resolution is not saved yet: its own timeout, if any
	if def, ok := wf.Definition(); ok {
		timeout = def.Timeout
	}
	if timeout != nil {
		// A pod can be on a node before the status that records the run's start is saved; the
		// run started before its Job was created, so the Job's creation bounds the deadline (by
		// at most a reconcile late) instead of leaving the entry to the longest lifetime.
		start := wf.Status.StartTime
		if start == nil && job != nil {
			start = &job.CreationTimestamp
		}
		if start != nil {
			if d := start.Add(timeout.Duration); d.Before(expiry) {
				expiry = d
			}
		}
	}
	return expiry.Add(time.Second - 1).Truncate(time.Second)
}

// wakeWorkflow asks the Workflow reconciler to record what the identity controller did (or
// gives up when the manager stops).
func (r *Reconciler) wakeWorkflow(ctx context.Context, wf *custodyv1alpha1.Workflow) {
	select {
	case r.wake <- event.GenericEvent{Object: wf}:
	case <-ctx.Done():
	}
}
