package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

const (
	// kindGrant names a grant in the commands' arguments (approve grant NAME, get grant/NAME).
	kindGrant = "grant"
	never     = "never"
)

// grantName reads a reference to a CredentialGrant: grant/NAME (or cgrant/NAME,
// credentialgrant/NAME, ..., as kubectl writes its kinds).
func grantName(ref string) (string, bool) {
	kind, name, _ := strings.Cut(ref, "/")
	switch strings.ToLower(kind) {
	case kindGrant, "cgrant", "credentialgrant", "credentialgrants", "credentialgrant.custody.dev", "credentialgrants.custody.dev":
		return name, name != ""
	}
	return "", false
}

// getGrant prints a CredentialGrant as its approvers and owners read it: what it hands out, to
// which steps, for how long, who approved it, what is wrong with it, who may request it, and who
// holds it now.
func (o *Options) getGrant(c client.Client, ns, name string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	g := &custodyv1alpha1.CredentialGrant{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, g); err != nil {
		return err
	}
	g.ManagedFields = nil
	return o.print(g, func(w io.Writer) error {
		var role *grantRole
		if g.Spec.Credential.KubernetesRole != nil {
			role = &grantRole{}
			role.rules, role.exists, role.err = credentials.Role(ctx, c, g)
		}
		users, err := usersOf(ctx, c, g)
		return writeGrant(w, g, role, users, err, o.Now())
	})
}

// onRevoke is the grant's policy in force: its own, or the platform's default that the controller
// recorded in its status (Continue before it did); platform says it is the default.
func onRevoke(g *custodyv1alpha1.CredentialGrant) (p custodyv1alpha1.RevokePolicy, platform bool) {
	if g.Spec.OnRevoke != "" {
		return g.Spec.OnRevoke, false
	}
	return g.OnRevokePolicy(g.Status.OnRevoke), true
}

// onRevokeLine says what a revocation before the step ended does to the step.
func onRevokeLine(g *custodyv1alpha1.CredentialGrant) string {
	p, platform := onRevoke(g)
	whose := ""
	if platform {
		whose = ", the platform's default"
	}
	if p.StopsStep() {
		return "the step is stopped (onRevoke: StopStep" + whose + ")"
	}
	return "the step runs on without it (onRevoke: Continue" + whose + ")"
}

// grantRole is the role a kubernetesRole grant hands out, as the caller may read it.
type grantRole struct {
	rules  []rbacv1.PolicyRule
	exists bool
	err    error // why it could not be read
}

// writeGrant prints a grant, the rules of its role (role, nil for other kinds), and who may use it
// (users, or why that could not be read: usersErr).
func writeGrant(w io.Writer, g *custodyv1alpha1.CredentialGrant, role *grantRole, users []grantUser, usersErr error,
	now time.Time) error {
	sum := summarize(g)
	state := readiness(g.Status.Conditions, "not reconciled yet (no status)")
	_, _ = fmt.Fprintf(w, "%s/%s  %s  %s\n", g.Namespace, g.Name, sum.Kind, state)
	_, _ = fmt.Fprintf(w, "   hands out %s\n", handsOut(g.Spec.Credential))
	writeRoleRules(w, g, role)
	for _, s := range g.Spec.Subjects {
		who := "workflow " + s.WorkflowName
		if s.WorkflowSelector != nil {
			who = "workflows " + metav1.FormatLabelSelector(s.WorkflowSelector)
		}
		line := fmt.Sprintf("   to %s, steps %s", who, strings.Join(s.Steps, ", "))
		if len(s.Images) > 0 {
			line += ", running " + strings.Join(s.Images, " or ")
		}
		_, _ = fmt.Fprintln(w, line)
	}
	ttl := "15m"
	if g.Spec.TTL != nil {
		ttl = age(g.Spec.TTL.Duration)
	}
	ends := "; the grant does not end"
	if end := g.Spec.ExpiresAt; end != nil {
		ends = fmt.Sprintf("; the grant ends %s (in %s)", end.UTC().Format(time.RFC3339), age(end.Sub(now)))
		if !now.Before(end.Time) {
			ends = fmt.Sprintf("; the grant ENDED %s", end.UTC().Format(time.RFC3339))
		}
	}
	_, _ = fmt.Fprintf(w, "   each issuance lives at most %s%s\n", ttl, ends)
	_, _ = fmt.Fprintf(w, "   revoked before its step ends: %s\n", onRevokeLine(g))
	_, _ = fmt.Fprintf(w, "   approval: %s\n", approvalLine(g, sum.Approval, now))
	if c := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionApproved); c != nil &&
		c.Reason == custodyv1alpha1.ReasonRoleChanged {
		_, _ = fmt.Fprintf(w, "   ROLE CHANGED: %s\n", c.Message)
	}
	for _, c := range []struct{ typ, label string }{
		{custodyv1alpha1.ConditionReviewDue, "REVIEW DUE"},
		{custodyv1alpha1.ConditionBroadAccess, "BROAD ACCESS"},
		{custodyv1alpha1.ConditionUnprotected, "UNPROTECTED"},
		{custodyv1alpha1.ConditionRotationOverdue, "ROTATION OVERDUE"},
		{custodyv1alpha1.ConditionUnused, "UNUSED"},
	} {
		if cond := meta.FindStatusCondition(g.Status.Conditions, c.typ); cond != nil && cond.Status == metav1.ConditionTrue {
			_, _ = fmt.Fprintf(w, "   %s: %s\n", c.label, cond.Message)
		}
	}
	last := never
	if t := g.Status.LastIssuedTime; t != nil {
		last = fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), age(max(now.Sub(t.Time), 0)))
	}
	_, _ = fmt.Fprintf(w, "   issued %d, revoked %d (by the namespace's existing workflows); last issued %s\n",
		g.Status.IssuedTotal, g.Status.RevokedTotal, last)
	if err := writeGrantUsers(w, users, usersErr); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(w, "LIVE ISSUANCES: %d\n", g.Status.Active)
	if len(g.Status.ActiveIssuances) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "WORKFLOW\tSTEP\tATTEMPT\tISSUED\tEXPIRES IN\tSPIFFE ID")
	for _, i := range g.Status.ActiveIssuances {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%s ago\t%s\t%s\n", i.Workflow, i.Step, i.Attempt, age(max(now.Sub(i.IssuedAt.Time), 0)),
			expiresIn(i.ExpiresAt, now), orDash(i.SPIFFEID))
	}
	return tw.Flush()
}

// writeRoleRules prints the rules of a role grant's role, one line each: what the role lets a step
// do, and what an approval covers (changed, the grant needs approving again).
func writeRoleRules(w io.Writer, g *custodyv1alpha1.CredentialGrant, role *grantRole) {
	if role == nil {
		return
	}
	r := g.Spec.Credential.KubernetesRole
	switch {
	case apierrors.IsForbidden(role.err):
		_, _ = fmt.Fprintf(w, "   its rules: unknown (you may not read %s %s)\n", r.Kind, r.Name)
		return
	case role.err != nil:
		_, _ = fmt.Fprintf(w, "   its rules: unknown (%v)\n", role.err)
		return
	case !role.exists:
		_, _ = fmt.Fprintf(w, "   its rules: none, %s\n", credentials.RoleRefusal(g, false).Message)
		return
	}
	covers := ""
	if a := g.Spec.Approval; a != nil && a.Required {
		covers = " (what an approval covers; allowing more, the grant needs approving again)"
	}
	_, _ = fmt.Fprintf(w, "   its rules%s: %d\n", covers, len(role.rules))
	for _, rule := range role.rules {
		line := credentials.RuleString(rule)
		if beyond, known := credentials.BeyondApproval(g, rule); beyond && known && g.Status.Approval != nil {
			line += "   <- NOT APPROVED: beyond what " + g.Status.Approval.ApprovedBy + " approved"
		}
		_, _ = fmt.Fprintf(w, "     %s\n", line)
	}
}

// handsOut says what a grant's credential is, never its value.
func handsOut(c custodyv1alpha1.Credential) string {
	switch {
	case c.KubernetesRole != nil:
		r := c.KubernetesRole
		audience := "the API server"
		if r.Audience != "" {
			audience = r.Audience
		}
		return fmt.Sprintf("%s %s, bound to the step's own ServiceAccount, with a token for %s", r.Kind, r.Name, audience)
	case c.Secret != nil:
		s := c.Secret
		out := fmt.Sprintf("keys %s of Secret %s, as the step's own copy", strings.Join(s.Keys, ", "), s.Name)
		if s.MaxAge != nil {
			out += fmt.Sprintf(" (to be rotated every %s)", age(s.MaxAge.Duration))
		}
		return out
	case c.SPIFFE != nil:
		s := c.SPIFFE
		var parts []string
		for _, p := range []struct {
			what string
			list []string
		}{{"DNS names", s.DNSNames}, {"federation with", s.FederatesWith}, {"JWT audiences", s.Audiences}} {
			if len(p.list) > 0 {
				parts = append(parts, p.what+" "+strings.Join(p.list, ", "))
			}
		}
		if s.X509TTL != nil {
			parts = append(parts, "X.509-SVIDs for "+age(s.X509TTL.Duration))
		}
		if s.JWTTTL != nil {
			parts = append(parts, "JWT-SVIDs for "+age(s.JWTTTL.Duration))
		}
		return "SVID properties: " + strings.Join(parts, "; ")
	}
	return "nothing this version knows"
}

// approvalLine says whether the grant needs an approval, from whom, and who gave it until when.
func approvalLine(g *custodyv1alpha1.CredentialGrant, summary string, now time.Time) string {
	a := g.Spec.Approval
	if a == nil || !a.Required {
		return summary
	}
	who := "an approver"
	if a.Approvers != nil {
		who = a.Approvers.Describe()
	}
	line := "required of " + who + "; " + summary
	if rec := g.Status.Approval; rec != nil {
		line += fmt.Sprintf(" at %s", rec.ApprovedAt.UTC().Format(time.RFC3339))
		if at := g.ApprovalLapsesAt(); at != nil && now.Before(*at) {
			line += fmt.Sprintf(", until %s (in %s)", at.UTC().Format(time.RFC3339), age(at.Sub(now)))
			// In the window, the summary and the REVIEW DUE line (the condition) say what to do.
			if from := g.ApprovalReviewFrom(); now.Before(*from) {
				line += fmt.Sprintf("; review due from %s (in %s)", from.UTC().Format(time.RFC3339), age(from.Sub(now)))
			}
		}
	} else {
		line += ": kubectl custody approve grant " + g.Name
	}
	return line
}
