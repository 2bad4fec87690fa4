package webhook

import (
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

// readGrants reads the grants steps request. Best effort: a grant that cannot be read is left out
// (and logged), and never fails the request.
func (h *handler) readGrants(ctx context.Context, ns string, steps []custodyv1alpha1.Step) Grants {
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
	return grants
}

// GrantWarnings says which grants a new run's steps (as they run: stepDefaults applied) request
// would keep a step waiting as things stand: grants that do not exist, do not cover the step (its
// workflow, name or image), or expired; and which steps may run longer than an issuance of a grant
// lives (OutlivesTTL). They are warnings, not refusals: a grant may be created or changed after the
// run, as GitOps tools apply in any order, and the step waits until then.
func GrantWarnings(run *custodyv1alpha1.Workflow, steps []custodyv1alpha1.Step, grants Grants, now time.Time) []string {
	var out []string
	for _, st := range steps {
		for _, name := range st.Credentials {
			g, known := grants[name]
			if !known {
				continue
			}
			r := credentials.Check(name, g, run, st.Name, now)
			if r != nil && (r.Reason == custodyv1alpha1.ReasonGrantNotFound || r.Reason == custodyv1alpha1.ReasonGrantNotCovered ||
				r.Reason == custodyv1alpha1.ReasonGrantExpired) {
				out = append(out, fmt.Sprintf("step %q will wait until this changes: %s", st.Name, r.Message))
			}
		}
	}
	return append(out, TTLWarnings(steps, grants)...)
}

// DefinitionGrantWarnings says the same of the runs a WorkflowTemplate or a CronWorkflow makes
// (credentials.CheckRuns), and which of their steps outlive a grant's ttl.
func DefinitionGrantWarnings(run *custodyv1alpha1.Workflow, steps []custodyv1alpha1.Step, grants Grants, now time.Time) []string {
	refusals := credentials.CheckRuns(run, steps, grants, now)
	out := make([]string, 0, len(refusals))
	for _, r := range refusals {
		out = append(out, r.Message)
	}
	return append(out, TTLWarnings(steps, grants)...)
}

// TTLWarnings are OutlivesTTL's warnings of steps (stepDefaults applied) for the known grants they
// request.
func TTLWarnings(steps []custodyv1alpha1.Step, grants Grants) []string {
	var out []string
	for _, st := range steps {
		for _, name := range st.Credentials {
			if w := OutlivesTTL(st, grants[name]); w != "" {
				out = append(out, w)
			}
		}
	}
	return out
}

// OutlivesTTL says, as a warning, when a step's timeout lets it run longer than an issuance of a
// grant it requests lives: its author expects it to take that long, and the credential is revoked
// after the grant's ttl, with the step left running without it or stopped (onRevoke). Admission
// warns of a new run's steps; lint of the steps of manifests whose grants are among them.
func OutlivesTTL(st custodyv1alpha1.Step, g *custodyv1alpha1.CredentialGrant) string {
	if g == nil || g.Spec.TTL == nil || st.Timeout == nil || st.Timeout.Duration <= g.Spec.TTL.Duration {
		return ""
	}
	then := "it runs on without the credential"
	if g.Spec.OnRevoke.StopsStep() {
		then = "it is stopped (the grant's onRevoke is StopStep)"
	}
	ttl := text.Duration(g.Spec.TTL.Duration)
	return fmt.Sprintf("step %q may run for %s (its timeout), longer than an issuance of grant %s lives (ttl %s): after %s %s",
		st.Name, text.Duration(st.Timeout.Duration), g.Name, ttl, ttl, then)
}
