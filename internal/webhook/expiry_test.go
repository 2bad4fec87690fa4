package webhook_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TestGrantExpiry: an approver approved a grant until its expiresAt. Moving the end earlier keeps
// the approval; moving it later clears it (kubectl prints why), as widening its subjects does. At
// its end the grant controller says it expired: Ready=False, Stalled, a Warning Event.
func TestGrantExpiry(t *testing.T) {
	ns := team(t)
	ctx := ctxT(t)
	g := mustGrant(t, ns, appDBGrant)
	g.Spec.ExpiresAt = &metav1.Time{Time: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
	create(t, as(alice), g)
	if err := annotate(ctx, as(bob), g, custodyv1alpha1.AnnotationApproveGrant, "approved"); err != nil {
		t.Fatalf("bob approving: %v", err)
	}
	setEnd := func(at time.Time) string {
		t.Helper()
		out, err := env.Kubectl(t, "-n", ns, "--as", alice, "--as-group", "system:authenticated", "patch", "cgrant", g.Name,
			"--type=merge", "-p", `{"spec":{"expiresAt":"`+at.UTC().Format(time.RFC3339)+`"}}`)
		if err != nil {
			t.Fatalf("alice moving the end to %s: %v\n%s", at, err, out)
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), g); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := setEnd(time.Now().Add(30 * time.Minute)); g.Annotations[custodyv1alpha1.AnnotationApproveGrant] == "" ||
		strings.Contains(out, "cleared") {
		t.Errorf("an earlier end cleared the approval (%q):\n%s", g.Annotations[custodyv1alpha1.AnnotationApproveGrant], out)
	}
	out := setEnd(time.Now().Add(48 * time.Hour))
	if v := g.Annotations[custodyv1alpha1.AnnotationApproveGrant]; v != "" ||
		!strings.Contains(out, "Warning: this change to the grant's subjects, credential or expiry cleared its approval by bob") {
		t.Errorf("a later end kept the approval (%q), or kubectl did not say why:\n%s", v, out)
	}
	if err := annotate(ctx, as(carol), g, custodyv1alpha1.AnnotationApproveGrant, "approved"); err != nil {
		t.Fatalf("carol approving again: %v", err)
	}
	end := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
	setEnd(end)
	waitGrant(t, g, func(g *custodyv1alpha1.CredentialGrant) error {
		ready := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionReady)
		if ready == nil || ready.Reason != custodyv1alpha1.ReasonExpired || !meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionStalled) {
			return fmt.Errorf("conditions %+v, want Ready=False (Expired) and Stalled", g.Status.Conditions)
		}
		return nil
	})
	if time.Now().Before(end) {
		t.Errorf("expired at %s, before its end %s", time.Now(), end)
	}
	eventually(t, "an Expired Event on the grant", func() error {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == g.Name && e.Reason == custodyv1alpha1.ReasonExpired && e.Type == "Warning" &&
				strings.Contains(e.Note, "Grant expired at "+end.Format(time.RFC3339)) {
				return nil
			}
		}
		return errors.New("none yet")
	})
	// kubectl get -o wide says when a grant ends and when it last issued.
	out, err := env.Kubectl(t, "-n", ns, "get", "cgrant", g.Name, "-o", "wide")
	if lines := strings.Split(out, "\n"); err != nil || len(lines) < 2 || !strings.Contains(lines[0], "EXPIRES") ||
		!strings.Contains(lines[0], "LAST ISSUED") {
		t.Errorf("kubectl get cgrant -o wide: %v\n%q", err, out)
	}
}
