package bench

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/localcluster"
)

// jobKey names a step of a chain in either phase: the baseline labels its Jobs bench/chain,
// Custody custody.dev/workflow; both name steps s0, s1, ... in custody.dev/step.
type jobKey struct {
	chain string
	step  int
}

func keyOf(j *batchv1.Job) jobKey {
	step, _ := strconv.Atoi(strings.TrimPrefix(j.Labels[custodyv1alpha1.LabelStep], "s"))
	return jobKey{j.Labels["bench/chain"] + j.Labels[custodyv1alpha1.LabelWorkflow], step}
}

// handoffWatch records, to the millisecond, when the bench first saw each Job of a phase and
// when it first saw it complete. A handoff is the time from seeing a step's Job complete to
// seeing the next step's Job: what the engine (or the baseline's driver) adds between two steps.
// Object timestamps have one-second resolution; these are the bench's own clock, the same
// watcher for both phases.
type handoffWatch struct {
	mu                 sync.Mutex
	created, completed map[jobKey]time.Time
	stop               context.CancelFunc
	done               chan struct{}
}

// watchHandoffs starts watching the Jobs in ns (from now on); call result once the phase is over.
func watchHandoffs(ctx context.Context, t *testing.T, c *localcluster.Cluster, ns string) *handoffWatch {
	t.Helper()
	wc, rv := listForWatch(ctx, t, c, ns, &batchv1.JobList{})
	ctx, cancel := context.WithCancel(ctx)
	h := &handoffWatch{created: map[jobKey]time.Time{}, completed: map[jobKey]time.Time{}, stop: cancel, done: make(chan struct{})}
	// Stopped before the test ends even if the phase fails: the watcher reports through t.
	t.Cleanup(func() { cancel(); <-h.done })
	go func() {
		defer close(h.done)
		err := watchEach(ctx, wc, ns, &batchv1.JobList{}, rv, func(o client.Object) bool {
			h.see(o.(*batchv1.Job), time.Now())
			return false
		})
		if ctx.Err() == nil { // not stopped by result or cleanup: the handoffs would be incomplete
			t.Errorf("watching Jobs in %s: %v", ns, err)
		}
	}()
	return h
}

func (h *handoffWatch) see(j *batchv1.Job, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := keyOf(j)
	if _, ok := h.created[k]; !ok {
		h.created[k] = now
	}
	if _, ok := h.completed[k]; !ok && jobCondition(j, batchv1.JobComplete) {
		h.completed[k] = now
	}
}

// result stops the watch and returns the handoffs, sorted.
func (h *handoffWatch) result() []time.Duration {
	h.stop()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Duration
	for k, created := range h.created {
		if prev, ok := h.completed[jobKey{k.chain, k.step - 1}]; ok {
			out = append(out, created.Sub(prev))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// summary is "p50 / p90 / max" of sorted durations, in milliseconds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	at := func(q float64) int64 { return ds[int(q*float64(len(ds)-1))].Milliseconds() }
	return fmt.Sprintf("%d / %d / %d ms (%d handoffs)", at(0.5), at(0.9), ds[len(ds)-1].Milliseconds(), len(ds))
}
