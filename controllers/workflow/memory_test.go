package workflow

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The controller's in-memory records (what it saw of pods, what it did in SPIRE) are kept until
// they are 10 minutes untouched, and no longer: their memory follows the recent attempts, with
// or without the identity sweep.
func TestInMemoryRecordsArePruned(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)
	endedPod := func(uid string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), DeletionTimestamp: &metav1.Time{Time: t0}},
			Spec: corev1.PodSpec{NodeName: "node-a"}}
	}
	o := newObservations()
	o.pod(endedPod("old"), t0, true)
	o.pod(endedPod("recent"), t0.Add(5*time.Minute), true)
	o.pod(endedPod("new"), t0.Add(11*time.Minute), true)
	later := t0.Add(time.Hour)
	for uid, want := range map[string]time.Time{"old": later, "recent": t0.Add(5 * time.Minute), "new": t0.Add(11 * time.Minute)} {
		if got := o.firstEnded(types.UID(uid), later); !got.Equal(want) {
			t.Errorf("observation %s: end read as %s, want %s", uid, got, want)
		}
	}
	if _, ok := o.onNode["old"]; ok {
		t.Errorf("observation of pod old on a node kept after 11 minutes")
	}

	g := newRegistry()
	g.update("old", t0, func(r *attemptRecord) { r.registered = t0 })
	g.markRevoked("recent", t0.Add(5*time.Minute))
	if !g.markRevoked("new", t0.Add(11*time.Minute)) || g.markRevoked("new", t0.Add(11*time.Minute)) {
		t.Errorf("markRevoked: want true the first time only")
	}
	if _, known := g.get("old"); known {
		t.Errorf("registry record old kept after 11 minutes untouched")
	}
	if rec, known := g.get("recent"); !known || rec.revoked.IsZero() {
		t.Errorf("registry record recent = %+v (known %v), want kept and revoked", rec, known)
	}
}
