package workflow

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// concurrencyGroupIndex indexes Workflows by spec.concurrencyGroup.
const concurrencyGroupIndex = "spec.concurrencyGroup"

// indexConcurrencyGroup is the indexer of concurrencyGroupIndex.
func indexConcurrencyGroup(o client.Object) []string {
	if wf, ok := o.(*custodyv1alpha1.Workflow); ok && wf.Spec.ConcurrencyGroup != "" {
		return []string{wf.Spec.ConcurrencyGroup}
	}
	return nil
}

// groupHolders remembers which runs hold each concurrency group ("<namespace>/<group>"). Only the
// leader starts steps, and its decisions for a group are taken one at a time under mu, so no more
// runs take a group than its limit, however late the cache shows the others' starts. After a
// restart the map is empty, and a run that has started (status, or a Job in the cache) is taken
// to hold it.
type groupHolders struct {
	mu      sync.Mutex
	holders map[string]map[types.UID]bool
}

func newGroupHolders() *groupHolders { return &groupHolders{holders: map[string]map[types.UID]bool{}} }

// reconcileGroup decides whether a run of a concurrency group may start steps in this reconcile:
// it holds the group (it started, or took it before), or fewer runs hold it than the limit and
// no unfinished run of the group created before it waits for the free place. Otherwise
// s.groupWait says what it waits for, and held() keeps its steps from starting. The run that ends
// wakes the others (groupPeers).
func (r *Reconciler) reconcileGroup(ctx context.Context, s *scope) (bool, error) {
	wf, group := s.wf, s.wf.Spec.ConcurrencyGroup
	if group == "" || isFinished(wf.Status.Phase) || s.stopReason != "" {
		return false, nil
	}
	key := wf.Namespace + "/" + group
	r.groups.mu.Lock()
	defer r.groups.mu.Unlock()
	held := r.groups.holders[key]
	if held == nil {
		held = map[types.UID]bool{}
		r.groups.holders[key] = held
	}
	if held[wf.UID] || startedRun(wf) || len(s.jobs) > 0 {
		held[wf.UID] = true
		return false, nil
	}
	var peers custodyv1alpha1.WorkflowList
	if err := r.List(ctx, &peers, client.InNamespace(wf.Namespace), client.MatchingFields{concurrencyGroupIndex: group}); err != nil {
		return false, fmt.Errorf("listing the runs of concurrency group %s: %w", group, err)
	}
	limit := concurrencyLimit(wf)
	var holding []string
	var first *custodyv1alpha1.Workflow
	ahead, unfinished := 0, map[types.UID]bool{wf.UID: true}
	for i := range peers.Items {
		p := &peers.Items[i]
		if p.UID == wf.UID || isFinished(p.Status.Phase) {
			continue
		}
		unfinished[p.UID] = true
		started, err := r.hasStarted(ctx, p)
		if err != nil {
			return false, err
		}
		switch {
		case held[p.UID] || started:
			holding = append(holding, p.Name)
			limit = min(limit, concurrencyLimit(p))
		case createdBefore(p, wf):
			ahead++
			if first == nil || createdBefore(p, first) {
				first = p
			}
		}
	}
	for uid := range held {
		if !unfinished[uid] {
			delete(held, uid) // a run that finished, or is gone
		}
	}
	switch {
	case len(holding) >= limit:
		slices.Sort(holding)
		runs := "workflow " + holding[0]
		if len(holding) > 1 {
			runs = "workflows " + strings.Join(holding, ", ")
		}
		s.groupWait = fmt.Sprintf("Waiting for %s of concurrency group %s to finish", runs, group)
		if limit > 1 {
			s.groupWait += fmt.Sprintf(" (%d at a time)", limit)
		}
	case len(holding)+ahead >= limit:
		s.groupWait = fmt.Sprintf("Waiting for its turn in concurrency group %s: workflow %s was created before it", group, first.Name)
	default:
		held[wf.UID] = true
	}
	return false, nil
}

// concurrencyLimit is how many runs of its group a run lets start steps at once.
func concurrencyLimit(wf *custodyv1alpha1.Workflow) int {
	if l := wf.Spec.ConcurrencyLimit; l != nil && *l > 0 {
		return int(*l)
	}
	return 1
}

// startedRun says whether a run's status shows that it started a step.
func startedRun(wf *custodyv1alpha1.Workflow) bool {
	for _, st := range wf.Status.Steps {
		if st.Attempt > 0 {
			return true
		}
	}
	return false
}

// hasStarted says whether a run started a step: its status says so, or one of its Jobs exists
// (a start whose status was not saved).
func (r *Reconciler) hasStarted(ctx context.Context, wf *custodyv1alpha1.Workflow) (bool, error) {
	if startedRun(wf) {
		return true, nil
	}
	var jobs batchv1.JobList
	if err := r.List(ctx, &jobs, client.InNamespace(wf.Namespace), client.MatchingFields{workflowIndex: wf.Name}); err != nil {
		return false, fmt.Errorf("listing the Jobs of workflow %s: %w", wf.Name, err)
	}
	for _, j := range jobs.Items {
		if metav1.IsControlledBy(&j, wf) {
			return true, nil
		}
	}
	return false, nil
}

// createdBefore orders the runs of a group: by creation time, then name.
func createdBefore(a, b *custodyv1alpha1.Workflow) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// holdGroup keeps a step of a run that waits for its concurrency group from starting, and says so
// in its status (an Event the first time).
func (s *scope) holdGroup(st *custodyv1alpha1.StepStatus) {
	if st.Reason == custodyv1alpha1.ReasonWaitingForConcurrencyGroup && st.Message == s.groupWait {
		return
	}
	if st.Reason != custodyv1alpha1.ReasonWaitingForConcurrencyGroup {
		s.stepEvent(st.Name, corev1.EventTypeNormal, custodyv1alpha1.ReasonWaitingForConcurrencyGroup, "Schedule",
			"Step %s waits: %s", st.Name, s.groupWait)
	}
	s.setStep(st, custodyv1alpha1.StepPending, custodyv1alpha1.ReasonWaitingForConcurrencyGroup, s.groupWait)
}

// groupPeers wakes the unfinished runs of a concurrency group when one of its runs ended or is
// deleted: one of them may take the group now.
func (r *Reconciler) groupPeers(ctx context.Context, o client.Object) []reconcile.Request {
	wf, ok := o.(*custodyv1alpha1.Workflow)
	if !ok || wf.Spec.ConcurrencyGroup == "" {
		return nil
	}
	var peers custodyv1alpha1.WorkflowList
	if err := r.List(ctx, &peers, client.InNamespace(wf.Namespace),
		client.MatchingFields{concurrencyGroupIndex: wf.Spec.ConcurrencyGroup}); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, p := range peers.Items {
		if p.UID != wf.UID && !isFinished(p.Status.Phase) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
	}
	return out
}

// groupRunEnded passes the events of a grouped run that may free its group: it ended, or it is
// deleted.
var groupRunEnded = predicate.Funcs{
	CreateFunc: func(event.CreateEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*custodyv1alpha1.Workflow)
		n, ok2 := e.ObjectNew.(*custodyv1alpha1.Workflow)
		return ok1 && ok2 && n.Spec.ConcurrencyGroup != "" &&
			(isFinished(n.Status.Phase) && !isFinished(o.Status.Phase) || !n.DeletionTimestamp.IsZero())
	},
	DeleteFunc: func(e event.DeleteEvent) bool {
		wf, ok := e.Object.(*custodyv1alpha1.Workflow)
		return ok && wf.Spec.ConcurrencyGroup != ""
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}
