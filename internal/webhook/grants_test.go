package webhook_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/webhook"
)

// TestGrantCheckTTL: the warning of a step that outlives a grant's ttl says what the revocation
// does to it: the grant's own onRevoke, else the platform's default (--grant-on-revoke), and,
// where that is not known (lint), both.
func TestGrantCheckTTL(t *testing.T) {
	step := custodyv1alpha1.Step{Name: "post", Timeout: &metav1.Duration{Duration: time.Hour}}
	step.Credentials = []string{"erp"}
	for _, c := range []struct {
		name          string
		own, platform custodyv1alpha1.RevokePolicy
		want          string
	}{
		{"its own StopStep", custodyv1alpha1.RevokeStopStep, custodyv1alpha1.RevokeContinue,
			"after 15m it is stopped (the grant's onRevoke is StopStep)"},
		{"its own Continue", custodyv1alpha1.RevokeContinue, custodyv1alpha1.RevokeStopStep, "after 15m it runs on without the credential"},
		{"the platform's StopStep", "", custodyv1alpha1.RevokeStopStep,
			"after 15m it is stopped (onRevoke: StopStep, the platform's default for grants that set none)"},
		{"the platform's Continue", "", custodyv1alpha1.RevokeContinue, "after 15m it runs on without the credential"},
		{"not known", "", "", "after 15m it runs on without the credential, or is stopped if the platform's default onRevoke " +
			"(--grant-on-revoke) is StopStep"},
	} {
		g := &custodyv1alpha1.CredentialGrant{ObjectMeta: metav1.ObjectMeta{Name: "erp"}}
		g.Spec.TTL, g.Spec.OnRevoke = &metav1.Duration{Duration: 15 * time.Minute}, c.own
		got := webhook.GrantCheck{Grants: webhook.Grants{"erp": g}, DefaultOnRevoke: c.platform}.TTL([]custodyv1alpha1.Step{step})
		if len(got) != 1 || !strings.HasSuffix(got[0], c.want) {
			t.Errorf("%s: %q, want one warning ending %q", c.name, got, c.want)
		}
	}
}
