package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

// Inventory is who holds what right now, from the records Custody keeps (never a value).
type Inventory struct {
	// Issuances are the credentials held right now.
	Issuances []Issuance `json:"issuances"`
	// Grants are every grant with its state.
	Grants []Grant `json:"grants"`
	// Standing are credentials held by nothing running: an attempt that ended, or was replaced by
	// a later one, but whose credential is not recorded as revoked. It must be empty.
	Standing []Issuance `json:"standing"`
}

// Issuance is one credential held by one step attempt.
type Issuance struct {
	Namespace string                         `json:"namespace"`
	Workflow  string                         `json:"workflow"`
	Step      string                         `json:"step"`
	Attempt   int32                          `json:"attempt"`
	StepPhase custodyv1alpha1.StepPhase      `json:"stepPhase"`
	Grant     string                         `json:"grant"`
	Kind      custodyv1alpha1.CredentialKind `json:"kind"`
	SPIFFEID  string                         `json:"spiffeID,omitempty"`
	Resource  string                         `json:"resource,omitempty"`
	IssuedAt  metav1.Time                    `json:"issuedAt"`
	ExpiresAt *metav1.Time                   `json:"expiresAt,omitempty"`
}

// Grant is one grant's state.
type Grant struct {
	Namespace         string                         `json:"namespace"`
	Name              string                         `json:"name"`
	Kind              custodyv1alpha1.CredentialKind `json:"kind"`
	Subjects          []string                       `json:"subjects"`
	Approval          string                         `json:"approval"`
	Suspended         bool                           `json:"suspended"`
	Ready             string                         `json:"ready"`
	Active            int32                          `json:"active"`
	ExpiresAt         *metav1.Time                   `json:"expiresAt,omitempty"`
	OnRevoke          custodyv1alpha1.RevokePolicy   `json:"onRevoke"`
	SourceChangedTime *metav1.Time                   `json:"sourceChangedTime,omitempty"`
	RotationOverdue   bool                           `json:"rotationOverdue"`
	LastIssuedTime    *metav1.Time                   `json:"lastIssuedTime,omitempty"`
	Unused            bool                           `json:"unused"`
	BroadAccess       bool                           `json:"broadAccess"`
	// Unprotected: the grant's namespace does not protect step pods (custody.dev/protect-step-pods).
	Unprotected bool `json:"unprotected"`
	// ApprovalLapsesAt is when its approval lapses (approval.validFor); ReviewDue is true from the
	// start of its review window, and after the lapse, until it is approved again.
	ApprovalLapsesAt *metav1.Time `json:"approvalLapsesAt,omitempty"`
	ReviewDue        bool         `json:"reviewDue"`
}

func (o *Options) inventoryCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Every credential held right now, every grant, and anything held by nothing running",
		Long: "inventory lists, for the namespace (or every namespace with -A), every live issuance (workflow, step, " +
			"attempt, SPIFFE ID, grant, kind, expiry), every grant with its subjects, approval, source age and rotation " +
			"state, and the standing privileges: credentials held by nothing running, which must be none. It exits " +
			"with an error when there are any.",
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			inv, err := o.inventory()
			if err != nil {
				return err
			}
			if err := o.print(inv, func(w io.Writer) error { return writeInventory(w, inv, o.Now(), o.all) }); err != nil {
				return err
			}
			if len(inv.Standing) > 0 {
				return fmt.Errorf("%d credentials are held by nothing running", len(inv.Standing))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all-namespaces", "A", false, "Every namespace.")
	return cmd
}

func (o *Options) inventory() (*Inventory, error) {
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	var opts []client.ListOption
	if !o.all {
		ns, err := o.namespace()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.InNamespace(ns))
	}
	ctx, cancel := o.ctx()
	defer cancel()
	var wfs custodyv1alpha1.WorkflowList
	if err := c.List(ctx, &wfs, opts...); err != nil {
		return nil, err
	}
	var grants custodyv1alpha1.CredentialGrantList
	if err := c.List(ctx, &grants, opts...); err != nil {
		return nil, err
	}
	inv := &Inventory{Issuances: []Issuance{}, Grants: []Grant{}, Standing: []Issuance{}}
	for _, wf := range wfs.Items {
		for _, st := range wf.Status.Steps {
			for _, cr := range st.Credentials {
				if cr.RevokedAt != nil {
					continue
				}
				is := Issuance{Namespace: wf.Namespace, Workflow: wf.Name, Step: st.Name, Attempt: cr.Attempt, StepPhase: st.Phase,
					Grant: cr.Grant, Kind: cr.Kind, SPIFFEID: cr.SPIFFEID, Resource: cr.Resource, IssuedAt: cr.IssuedAt, ExpiresAt: cr.ExpiresAt}
				if st.Phase == custodyv1alpha1.StepRunning && cr.Attempt == st.Attempt {
					inv.Issuances = append(inv.Issuances, is)
				} else {
					inv.Standing = append(inv.Standing, is)
				}
			}
		}
	}
	for _, g := range grants.Items {
		inv.Grants = append(inv.Grants, summarize(&g))
	}
	sort.Slice(inv.Issuances, func(i, j int) bool { return key(inv.Issuances[i]) < key(inv.Issuances[j]) })
	sort.Slice(inv.Standing, func(i, j int) bool { return key(inv.Standing[i]) < key(inv.Standing[j]) })
	sort.Slice(inv.Grants, func(i, j int) bool {
		return inv.Grants[i].Namespace+"/"+inv.Grants[i].Name < inv.Grants[j].Namespace+"/"+inv.Grants[j].Name
	})
	return inv, nil
}

func key(i Issuance) string {
	return fmt.Sprintf("%s/%s/%s/%05d/%s", i.Namespace, i.Workflow, i.Step, i.Attempt, i.Grant)
}

func summarize(g *custodyv1alpha1.CredentialGrant) Grant {
	out := Grant{Namespace: g.Namespace, Name: g.Name, Kind: credentials.Kind(g), Suspended: g.Spec.Suspended,
		Active: g.Status.Active, ExpiresAt: g.Spec.ExpiresAt, SourceChangedTime: g.Status.SourceChangedTime, Subjects: []string{}}
	for _, s := range g.Spec.Subjects {
		who := s.WorkflowName
		if s.WorkflowSelector != nil {
			who = metav1.FormatLabelSelector(s.WorkflowSelector)
		}
		subject := who + ":" + strings.Join(s.Steps, ",")
		if len(s.Images) > 0 {
			subject += "[" + strings.Join(s.Images, ",") + "]"
		}
		out.Subjects = append(out.Subjects, subject)
	}
	switch {
	case g.Spec.Approval == nil || !g.Spec.Approval.Required:
		out.Approval = "not required"
	case credentials.Approved(g) && conditionReason(g, custodyv1alpha1.ConditionApproved) == custodyv1alpha1.ReasonRoleChanged:
		out.Approval = "ROLE CHANGED (approved by " + g.Status.Approval.ApprovedBy + ")"
	case credentials.Approved(g) && conditionReason(g, custodyv1alpha1.ConditionApproved) == custodyv1alpha1.ReasonApprovalExpired:
		out.Approval = "LAPSED (approved by " + g.Status.Approval.ApprovedBy + ")"
	case credentials.Approved(g) && conditionReason(g, custodyv1alpha1.ConditionReviewDue) == custodyv1alpha1.ReasonApprovalLapsesSoon:
		out.Approval = "REVIEW DUE (approved by " + g.Status.Approval.ApprovedBy + ")"
	case credentials.Approved(g):
		out.Approval = "approved by " + g.Status.Approval.ApprovedBy
	default:
		out.Approval = "waiting"
	}
	out.Ready = "Unknown"
	if c := meta.FindStatusCondition(g.Status.Conditions, custodyv1alpha1.ConditionReady); c != nil {
		out.Ready = string(c.Status)
		if c.Status != metav1.ConditionTrue {
			out.Ready += " (" + c.Reason + ")"
		}
	}
	out.OnRevoke, _ = onRevoke(g)
	out.RotationOverdue = meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionRotationOverdue)
	out.LastIssuedTime = g.Status.LastIssuedTime
	out.Unused = meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionUnused)
	out.BroadAccess = meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionBroadAccess)
	out.Unprotected = meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionUnprotected)
	out.ReviewDue = meta.IsStatusConditionTrue(g.Status.Conditions, custodyv1alpha1.ConditionReviewDue)
	if at := g.ApprovalLapsesAt(); at != nil {
		out.ApprovalLapsesAt = &metav1.Time{Time: *at}
	}
	return out
}

// grantEnds says when a grant ends (spec.expiresAt): "in 29d", "ENDED 2026-11-01", or "never".
func grantEnds(expiresAt *metav1.Time, now time.Time) string {
	switch {
	case expiresAt == nil:
		return never
	case !now.Before(expiresAt.Time):
		return "ENDED " + expiresAt.UTC().Format(time.DateOnly)
	}
	return "in " + age(expiresAt.Sub(now))
}

func writeInventory(w io.Writer, inv *Inventory, now time.Time, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	nsCol := func(ns string) string {
		if all {
			return ns + "\t"
		}
		return ""
	}
	nsHead := ""
	if all {
		nsHead = "NAMESPACE\t"
	}
	_, _ = fmt.Fprintf(tw, "LIVE CREDENTIALS: %d\n", len(inv.Issuances))
	if len(inv.Issuances) > 0 {
		_, _ = fmt.Fprintf(tw, "%sWORKFLOW\tSTEP\tATTEMPT\tGRANT\tKIND\tEXPIRES IN\tSPIFFE ID\n", nsHead)
		for _, i := range inv.Issuances {
			_, _ = fmt.Fprintf(tw, "%s%s\t%s\t%d\t%s\t%s\t%s\t%s\n", nsCol(i.Namespace), i.Workflow, i.Step, i.Attempt, i.Grant, i.Kind,
				expiresIn(i.ExpiresAt, now), orDash(i.SPIFFEID))
		}
	}
	_, _ = fmt.Fprintf(tw, "\nGRANTS: %d\n", len(inv.Grants))
	if len(inv.Grants) > 0 {
		_, _ = fmt.Fprintf(tw, "%sNAME\tKIND\tSUBJECTS\tAPPROVAL\tREADY\tACTIVE\tLAST ISSUED\tENDS\tON REVOKE\tSOURCE AGE\tROTATION\n", nsHead)
		for _, g := range inv.Grants {
			src := "-"
			if g.SourceChangedTime != nil {
				src = age(now.Sub(g.SourceChangedTime.Time))
			}
			rot := "ok"
			if g.RotationOverdue {
				rot = "OVERDUE"
			}
			ends := grantEnds(g.ExpiresAt, now)
			last := never
			if g.LastIssuedTime != nil {
				last = age(now.Sub(g.LastIssuedTime.Time)) + " ago"
			}
			if g.Unused {
				last += " (UNUSED)"
			}
			var marks []string
			if g.BroadAccess {
				marks = append(marks, "BROAD")
			}
			if g.Unprotected {
				marks = append(marks, "UNPROTECTED")
			}
			kind := string(g.Kind)
			if len(marks) > 0 {
				kind += " (" + strings.Join(marks, ", ") + ")"
			}
			_, _ = fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", nsCol(g.Namespace), g.Name, kind,
				strings.Join(g.Subjects, " "), g.Approval, g.Ready, g.Active, last, ends, g.OnRevoke, src, rot)
		}
	}
	// The namespaces to label, so that nobody gets into a step's pod there.
	unprotected := map[string]int{}
	for _, g := range inv.Grants {
		if g.Unprotected {
			unprotected[g.Namespace]++
		}
	}
	if len(unprotected) > 0 {
		list := make([]string, 0, len(unprotected))
		for _, ns := range slices.Sorted(maps.Keys(unprotected)) {
			grants := "grants"
			if unprotected[ns] == 1 {
				grants = "grant"
			}
			list = append(list, fmt.Sprintf("%s (%d %s)", ns, unprotected[ns], grants))
		}
		_, _ = fmt.Fprintf(tw, "\nNAMESPACES THAT DO NOT PROTECT STEP PODS: %s; label them %s=true\n", strings.Join(list, ", "),
			custodyv1alpha1.LabelProtectStepPods)
	}
	if len(inv.Standing) == 0 {
		_, _ = fmt.Fprintln(tw, "\nSTANDING PRIVILEGE: none (every credential is held by a running step)")
	} else {
		_, _ = fmt.Fprintf(tw, "\nSTANDING PRIVILEGE: %d credentials held by nothing running\n", len(inv.Standing))
		_, _ = fmt.Fprintf(tw, "%sWORKFLOW\tSTEP\tATTEMPT\tSTEP PHASE\tGRANT\tKIND\tRESOURCE\n", nsHead)
		for _, i := range inv.Standing {
			_, _ = fmt.Fprintf(tw, "%s%s\t%s\t%d\t%s\t%s\t%s\t%s\n", nsCol(i.Namespace), i.Workflow, i.Step, i.Attempt, i.StepPhase,
				i.Grant, i.Kind, orDash(i.Resource))
		}
	}
	return tw.Flush()
}

func expiresIn(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return age(t.Sub(now))
}

// conditionReason is the reason of one of a grant's conditions ("" without it).
func conditionReason(g *custodyv1alpha1.CredentialGrant, condition string) string {
	if c := meta.FindStatusCondition(g.Status.Conditions, condition); c != nil {
		return c.Reason
	}
	return ""
}
