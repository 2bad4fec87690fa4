package webhook

import (
	"cmp"
	"context"
	"fmt"
	"time"

	logf "sigs.k8s.io/controller-runtime/pkg/log"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/text"
)

// Grants are the CredentialGrants steps request, by name, as far as they are known: nil for one
// that does not exist; a name that is not a key could not be read (a namespace the controller does
// not watch; for lint, a grant that is not among the manifests), and is not warned about.
type Grants map[string]*custodyv1alpha1.CredentialGrant

// grantCheck reads the grants steps request, to warn of what they would do to them. Best effort: a
// grant that cannot be read is left out (and logged), and never fails the request.
func (h *handler) grantCheck(ctx context.Context, ns string, steps []custodyv1alpha1.Step) GrantCheck {
	grants := Grants{}
	tried := map[string]bool{}
	for _, st := range steps {
		for _, name := range st.Credentials {
			if tried[name] {
				continue
			}
			tried[name] = true
			var list custodyv1alpha1.CredentialGrantList
			switch err := h.listByName(ctx, ns, name, &list); {
			case err != nil:
				logf.FromContext(ctx).V(1).Info("not warning about a grant that cannot be read", "grant", name, "error", err.Error())
			case len(list.Items) == 0:
				grants[name] = nil
			default:
				grants[name] = &list.Items[0]
			}
		}
	}
	return GrantCheck{Grants: grants, Now: h.now(), DefaultOnRevoke: cmp.Or(h.policy.DefaultOnRevoke, custodyv1alpha1.RevokeContinue)}
}

// GrantCheck looks at the grants steps request as they stand, for admission's warnings and lint's.
// The warnings are not refusals: a grant may be created or changed after the run or definition,
// as GitOps tools apply in any order, and the steps wait until then.
type GrantCheck struct {
	// Grants are those the steps request, as far as they are known.
	Grants Grants
	// Now is when expiresAt is compared with.
	Now time.Time
	// DefaultOnRevoke is the platform's onRevoke for grants that set none (--grant-on-revoke);
	// "" when it is not known (lint), and the warnings say what either would do.
	DefaultOnRevoke custodyv1alpha1.RevokePolicy
}

// Run says which grants a new run's steps (as they run: stepDefaults applied) request would keep
// a step waiting as things stand: grants that do not exist, do not cover the step (its workflow,
// name or image), or expired; and which steps may run longer than an issuance of a grant lives.
func (c GrantCheck) Run(run *custodyv1alpha1.Workflow, steps []custodyv1alpha1.Step) []string {
	var out []string
	for _, st := range steps {
		for _, name := range st.Credentials {
			g, known := c.Grants[name]
			if !known {
				continue
			}
			r := credentials.Check(name, g, run, st.Name, c.Now)
			if r != nil && (r.Reason == custodyv1alpha1.ReasonGrantNotFound || r.Reason == custodyv1alpha1.ReasonGrantNotCovered ||
				r.Reason == custodyv1alpha1.ReasonGrantExpired) {
				out = append(out, fmt.Sprintf("step %q will wait until this changes: %s", st.Name, r.Message))
			}
		}
	}
	return append(out, c.TTL(steps)...)
}

// Definition says the same of the runs a WorkflowTemplate or a CronWorkflow makes
// (credentials.CheckRuns), and which of their steps outlive a grant's ttl.
func (c GrantCheck) Definition(run *custodyv1alpha1.Workflow, steps []custodyv1alpha1.Step) []string {
	refusals := credentials.CheckRuns(run, steps, c.Grants, c.Now)
	out := make([]string, 0, len(refusals))
	for _, r := range refusals {
		out = append(out, r.Message)
	}
	return append(out, c.TTL(steps)...)
}

// TTL says which steps (stepDefaults applied) may run longer than an issuance of a known grant
// they request lives: their authors expect them to take that long, and the credential is revoked
// after the grant's ttl, with the step left running without it or stopped (onRevoke).
func (c GrantCheck) TTL(steps []custodyv1alpha1.Step) []string {
	var out []string
	for _, st := range steps {
		for _, name := range st.Credentials {
			g := c.Grants[name]
			if g == nil || g.Spec.TTL == nil || st.Timeout == nil || st.Timeout.Duration <= g.Spec.TTL.Duration {
				continue
			}
			ttl := text.Duration(g.Spec.TTL.Duration)
			out = append(out, fmt.Sprintf("step %q may run for %s (its timeout), longer than an issuance of grant %s lives "+
				"(ttl %s): after %s %s", st.Name, text.Duration(st.Timeout.Duration), g.Name, ttl, ttl, c.afterRevocation(g)))
		}
	}
	return out
}

// afterRevocation says what a revocation before the step ends does to it under the grant's policy.
func (c GrantCheck) afterRevocation(g *custodyv1alpha1.CredentialGrant) string {
	switch {
	case g.Spec.OnRevoke.StopsStep():
		return "it is stopped (the grant's onRevoke is StopStep)"
	case g.Spec.OnRevoke != "":
		return "it runs on without the credential"
	case c.DefaultOnRevoke == "":
		return "it runs on without the credential, or is stopped if the platform's default onRevoke (--grant-on-revoke) is StopStep"
	case c.DefaultOnRevoke.StopsStep():
		return "it is stopped (onRevoke: StopStep, the platform's default for grants that set none)"
	}
	return "it runs on without the credential"
}
