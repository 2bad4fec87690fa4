package workflow

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestBackoff: the wait before each retry grows by the factor up to max; with jitter, each wait
// is shortened by up to that percentage, differently for each run, step and attempt, but the
// same whenever the same attempt's wait is computed again.
func TestBackoff(t *testing.T) {
	policy := func(jitter int32) *custodyv1alpha1.RetryPolicy {
		return &custodyv1alpha1.RetryPolicy{Limit: 5, Backoff: &custodyv1alpha1.Backoff{
			Duration: &metav1.Duration{Duration: 10 * time.Second}, Factor: ptr.To[int32](3),
			Max: &metav1.Duration{Duration: time.Minute}, Jitter: ptr.To(jitter)}}
	}
	for n, want := range map[int32]time.Duration{1: 10 * time.Second, 2: 30 * time.Second, 3: time.Minute, 4: time.Minute} {
		if got := backoff(policy(0), "uid/step", n); got != want {
			t.Errorf("no jitter, attempt %d: %s, want %s", n, got, want)
		}
	}
	if got := backoff(nil, "uid/step", 2); got != 2*defaultBackoff {
		t.Errorf("defaults, attempt 2: %s, want %s", got, 2*defaultBackoff)
	}
	for _, jitter := range []int32{25, 100} {
		lowest, highest, seen := time.Hour, time.Duration(0), map[time.Duration]bool{}
		for i := range 500 {
			seed := fmt.Sprintf("run-%d/step", i)
			for n, full := range map[int32]time.Duration{1: 10 * time.Second, 4: time.Minute} {
				got := backoff(policy(jitter), seed, n)
				if floor := full - full*time.Duration(jitter)/100; got > full || got < floor {
					t.Fatalf("jitter %d, %s attempt %d: %s, want between %s and %s", jitter, seed, n, got, floor, full)
				}
				if again := backoff(policy(jitter), seed, n); again != got {
					t.Fatalf("jitter %d, %s attempt %d: %s, then %s", jitter, seed, n, got, again)
				}
				if n == 1 {
					lowest, highest, seen[got] = min(lowest, got), max(highest, got), true
				}
			}
		}
		// 500 runs that failed together spread over the whole range rather than retrying at once.
		span := 10 * time.Second * time.Duration(jitter) / 100
		if len(seen) < 490 || highest-lowest < span*9/10 {
			t.Errorf("jitter %d: 500 runs' first waits take %d values from %s to %s, want them spread over %s",
				jitter, len(seen), lowest, highest, span)
		}
	}
	if a, b := backoff(policy(50), "run/step", 1), backoff(policy(50), "run/step", 2); a*3 == b {
		t.Errorf("attempts 1 and 2 of one step drew the same jitter (%s, %s)", a, b)
	}
}
