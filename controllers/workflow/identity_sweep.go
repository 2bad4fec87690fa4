package workflow

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/metrics"
)

// Sweeper deletes SPIRE entries with Custody's prefix that belong to no running attempt: entries
// left by a crash between creating an entry and recording it, by a workflow deleted while its
// finalizer was removed by hand, or by anything else that went wrong. It runs at start-up and
// every Interval, on the leader only.
type Sweeper struct {
	// Reader lists Workflows (the manager's cache); APIReader confirms with the API server before
	// an entry of a workflow that still exists is deleted.
	Reader    client.Reader
	APIReader client.Reader
	Identity  *identity.Config
	Interval  time.Duration
	// MinAge spares entries younger than this: an entry is only created for an attempt whose
	// running state is persisted, and the grace covers caches catching up (default 30s).
	MinAge time.Duration
}

// NeedLeaderElection makes the sweep run on the leader only.
func (w *Sweeper) NeedLeaderElection() bool { return true }

// Start sweeps now and then every Interval until ctx ends.
func (w *Sweeper) Start(ctx context.Context) error {
	log := ctrl.Log.WithName("identity-sweep")
	for {
		if deleted, kept, err := w.Sweep(ctx); err != nil {
			log.Error(err, "Sweeping SPIRE entries failed; trying again at the next interval")
		} else if deleted > 0 {
			log.Info("Deleted SPIRE entries that belonged to no running attempt", "deleted", deleted, "live", kept)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.Interval):
		}
	}
}

// Sweep runs once: it returns how many entries it deleted and how many it kept.
func (w *Sweeper) Sweep(ctx context.Context) (deleted, kept int, err error) {
	cfg := w.Identity
	entries, err := cfg.Registrar.List(ctx, cfg.Scheme.EntryIDPrefix)
	if err != nil {
		return 0, 0, err
	}
	var list custodyv1alpha1.WorkflowList
	if err := w.Reader.List(ctx, &list); err != nil {
		return 0, 0, fmt.Errorf("listing Workflows: %w", err)
	}
	byUID := map[types.UID]*custodyv1alpha1.Workflow{}
	for i := range list.Items {
		byUID[list.Items[i].UID] = &list.Items[i]
	}
	var orphans []string
	confirmed := map[types.UID]*custodyv1alpha1.Workflow{}
	for _, e := range entries {
		// SPIRE keeps creation times in whole seconds, possibly rounded up: compare only when asked.
		if w.MinAge > 0 && !e.CreatedAt.IsZero() && time.Since(e.CreatedAt) < w.MinAge {
			continue
		}
		p, ok := cfg.Scheme.ParseEntryID(e.ID)
		if !ok {
			// The prefix is Custody's; an entry in another shape is not one of ours to keep.
			orphans = append(orphans, e.ID)
			continue
		}
		wf := byUID[p.WorkflowUID]
		if wf != nil && !ownsEntry(wf, p) {
			// The cache may be behind: read the workflow itself before deleting.
			if fresh, seen := confirmed[wf.UID]; seen {
				wf = fresh
			} else {
				fresh := &custodyv1alpha1.Workflow{}
				if err := w.APIReader.Get(ctx, client.ObjectKeyFromObject(wf), fresh); client.IgnoreNotFound(err) != nil {
					return 0, 0, fmt.Errorf("reading Workflow %s: %w", client.ObjectKeyFromObject(wf), err)
				} else if err != nil || fresh.UID != wf.UID {
					fresh = nil
				}
				confirmed[wf.UID] = fresh
				wf = fresh
			}
		}
		if wf == nil || !ownsEntry(wf, p) {
			orphans = append(orphans, e.ID)
		}
	}
	logr.FromContextOrDiscard(ctx).V(1).Info("Swept SPIRE entries", "entries", len(entries), "orphans", len(orphans))
	if len(orphans) > 0 {
		results, err := cfg.Registrar.Delete(ctx, orphans)
		if err != nil {
			return 0, 0, err
		}
		for i, r := range results {
			if r == nil {
				deleted++
				metrics.IdentityOrphansDeleted.Inc()
			} else {
				err = fmt.Errorf("deleting orphaned entry %s: %w", orphans[i], r)
			}
		}
		if err != nil {
			return deleted, len(entries) - deleted, err
		}
	}
	kept = len(entries) - deleted
	metrics.IdentityEntries.Set(float64(kept))
	return deleted, kept, nil
}

// ownsEntry says whether a workflow's step runs the entry's attempt now, with its identity not
// yet revoked.
func ownsEntry(wf *custodyv1alpha1.Workflow, p identity.ParsedEntryID) bool {
	if !wf.DeletionTimestamp.IsZero() {
		return false
	}
	for _, st := range wf.Status.Steps {
		if st.Name != p.Step {
			continue
		}
		id := st.Identity
		return st.Phase == custodyv1alpha1.StepRunning && st.Attempt == p.Number && id != nil && id.Attempt == p.Number &&
			(id.State == custodyv1alpha1.IdentityPending || id.State == custodyv1alpha1.IdentityRegistered)
	}
	return false
}
