package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/credentials"
)

// templateName reads a reference to a WorkflowTemplate: template/NAME (or workflowtemplate/NAME,
// cwft/NAME, ..., as kubectl writes its kinds).
func templateName(ref string) (string, bool) {
	kind, name, _ := strings.Cut(ref, "/")
	switch strings.ToLower(kind) {
	case "template", "workflowtemplate", "workflowtemplates", "cwft", "workflowtemplate.custody.dev", "workflowtemplates.custody.dev":
		return name, name != ""
	}
	return "", false
}

// templateGrant is a grant a template's or CronWorkflow's steps request, as the person about to
// run it, or looking at its schedule, sees it.
type templateGrant struct {
	name  string
	steps []string
	grant *custodyv1alpha1.CredentialGrant // nil when it does not exist, or could not be read
	read  error                            // why it could not be read (not NotFound)
	use   *bool                            // whether you may use it (nil: the API server did not say, or not asked)
	// covers says whether the grant covers the steps that request it in a run of the template or
	// CronWorkflow ("" when it could not be read).
	covers string
}

// getTemplate prints a WorkflowTemplate as someone about to run it reads it: how to run it, its
// parameters, its steps and what they request, whether each grant is ready and whether you may
// use it (admission refuses your run otherwise), and its runs, the newest first.
func (o *Options) getTemplate(c client.Client, ns, name string) error {
	ctx, cancel := o.ctx()
	defer cancel()
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, tpl); err != nil {
		return err
	}
	tpl.ManagedFields = nil
	if o.output != "" && o.output != "table" && o.output != "wide" {
		return o.print(tpl, nil)
	}
	var runs custodyv1alpha1.WorkflowList
	if err := c.List(ctx, &runs, client.InNamespace(ns), client.MatchingLabels{custodyv1alpha1.LabelTemplate: name}); err != nil {
		return err
	}
	grants := stepGrants(ctx, c, tpl.Spec.AllSteps(), credentials.TemplateRun(tpl), true)
	return o.print(tpl, func(w io.Writer) error { return writeTemplate(w, tpl, grants, runs.Items, o.Now()) })
}

// stepGrants reads the grants steps request, says whether each covers them in run (one of a
// template's or CronWorkflow's runs: credentials.TemplateRun, CronRun), and, with askUse, asks
// the API server whether you may use each (SelfSubjectAccessReview): what admission asks of a
// run's creator.
func stepGrants(ctx context.Context, c client.Client, steps []custodyv1alpha1.Step, run *custodyv1alpha1.Workflow,
	askUse bool) []templateGrant {
	var out []templateGrant
	for _, step := range steps {
		for _, name := range step.Credentials {
			i := slices.IndexFunc(out, func(g templateGrant) bool { return g.name == name })
			if i < 0 {
				out = append(out, templateGrant{name: name})
				i = len(out) - 1
			}
			out[i].steps = append(out[i].steps, step.Name)
		}
	}
	for i := range out {
		g := &custodyv1alpha1.CredentialGrant{}
		switch err := c.Get(ctx, client.ObjectKey{Namespace: run.Namespace, Name: out[i].name}, g); {
		case err == nil:
			out[i].grant = g
			out[i].covers = coverage(g, run, out[i].steps)
		case !apierrors.IsNotFound(err):
			out[i].read = err
		}
		if !askUse {
			continue
		}
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: run.Namespace, Verb: "use",
				Group: custodyv1alpha1.GroupVersion.Group, Resource: "credentialgrants", Name: out[i].name}}}
		if err := c.Create(ctx, review); err == nil {
			out[i].use = &review.Status.Allowed
		}
	}
	return out
}

// answerYes is a table's yes.
const answerYes = "yes"

// coverage says whether a grant covers the steps that request it in a run of the template or
// CronWorkflow: "yes", or why not: its subjects leave out a step or its image, name the workflows
// they cover (which a template's run is only if it is given that name, and a scheduled run never
// is), or select other labels.
func coverage(g *custodyv1alpha1.CredentialGrant, run *custodyv1alpha1.Workflow, steps []string) string {
	c := credentials.CoverRuns(g, run, steps)
	_, scheduled := run.Labels[custodyv1alpha1.LabelCronWorkflow]
	switch {
	case c.Covered():
		return answerYes
	case c.Selected:
		return "NO for " + strings.Join(c.Uncovered, ",") + " (not among its steps, or another image)"
	case scheduled && c.Named != "":
		return fmt.Sprintf("NO (it names workflow %s, but the runs are named %s-<minutes since the epoch>; to cover every run, select %s)",
			c.Named, c.Named, c.Label)
	case scheduled:
		return "NO (its subjects do not select the runs; to cover every run, select " + c.Label + ")"
	case c.Named != "":
		return fmt.Sprintf("only a run named %s (kubectl custody run --name %s); to cover every run, select %s", c.Named, c.Named, c.Label)
	}
	return "NO (its subjects do not select this template's runs; to cover every run, select " + c.Label + ")"
}

func writeTemplate(w io.Writer, tpl *custodyv1alpha1.WorkflowTemplate, grants []templateGrant, runs []custodyv1alpha1.Workflow,
	now time.Time) error {
	_, _ = fmt.Fprintf(w, "%s/%s  generation %d  %s\n", tpl.Namespace, tpl.Name, tpl.Generation,
		readiness(tpl.Status.Conditions, "not checked yet (no status)"))
	run := "   run it: kubectl custody run " + tpl.Name
	for _, p := range tpl.Spec.Parameters {
		if p.Default == nil {
			run += " -p " + p.Name + "=VALUE"
		}
	}
	_, _ = fmt.Fprintln(w, run)
	if len(tpl.Spec.Parameters) == 0 {
		_, _ = fmt.Fprintln(w, "   parameters: none")
	} else {
		_, _ = fmt.Fprintln(w, "   parameters:")
	}
	for _, p := range tpl.Spec.Parameters {
		_, _ = fmt.Fprintln(w, "     "+describeParam(p))
	}
	if len(tpl.Spec.Results) > 0 {
		names := make([]string, 0, len(tpl.Spec.Results))
		for _, r := range tpl.Spec.Results {
			names = append(names, r.Name)
		}
		_, _ = fmt.Fprintf(w, "   results: %s\n", strings.Join(names, ", "))
	}
	_, _ = fmt.Fprintf(w, "STEPS: %d\n", len(tpl.Spec.Steps)+len(tpl.Spec.Finally))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "STEP\tAFTER\tIMAGE\tGRANTS\tAPPROVAL")
	step := func(s custodyv1alpha1.Step, after string) {
		if after == "" {
			after = orDash(strings.Join(s.DependsOn, ","))
		}
		approval := "-"
		if s.Approval != nil {
			approval = s.Approval.Approvers.Describe()
		}
		name := s.Name
		if len(s.ForEach) > 0 {
			name += " (for each item)"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, after, s.Image, orDash(strings.Join(s.Credentials, ",")), approval)
	}
	for _, s := range tpl.Spec.Steps {
		step(s, "")
	}
	for _, s := range tpl.Spec.Finally {
		step(s, "(finally)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeStepGrants(w, grants, "GRANTS THE STEPS REQUEST: %d (a run is refused unless its creator may use each)\n",
		true, now); err != nil {
		return err
	}
	return writeTemplateRuns(w, runs, now)
}

// readiness is an object's state as its conditions say it: Stalled and why, Ready, or not Ready
// and why; none without either condition.
func readiness(conds []metav1.Condition, none string) string {
	if c := meta.FindStatusCondition(conds, custodyv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue {
		return fmt.Sprintf("Stalled (%s): %s", c.Reason, c.Message)
	}
	c := meta.FindStatusCondition(conds, custodyv1alpha1.ConditionReady)
	switch {
	case c == nil:
		return none
	case c.Status == metav1.ConditionTrue:
		return "Ready"
	}
	return fmt.Sprintf("not Ready (%s): %s", c.Reason, c.Message)
}

// writeStepGrants writes the grants a definition's steps request under heading (with their
// number): whether each can issue now and whether it covers the runs, and with use whether you
// may use it (a template's run is refused at admission unless its creator may use every one);
// without, when it ends (a CronWorkflow's runs go on after today; its author's use is checked by
// the controller).
func writeStepGrants(w io.Writer, grants []templateGrant, heading string, use bool, now time.Time) error {
	if len(grants) == 0 {
		return nil
	}
	_, _ = fmt.Fprintf(w, heading, len(grants))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	column := "YOU MAY USE IT"
	if !use {
		column = "ENDS"
	}
	_, _ = fmt.Fprintf(tw, "GRANT\tSTEPS\tKIND\tAPPROVAL\tREADY\t%s\tCOVERS ITS RUNS\n", column)
	for _, g := range grants {
		kind, approval, ready, covers := "-", "-", "NOT FOUND (the steps would wait for it)", "-"
		switch {
		case apierrors.IsForbidden(g.read):
			ready = "? (you may not read it)"
		case g.read != nil:
			ready = "? (" + g.read.Error() + ")"
		}
		if g.grant != nil {
			sum := summarize(g.grant)
			kind, approval, ready, covers = string(sum.Kind), sum.Approval, sum.Ready, g.covers
		}
		cell := "?"
		switch {
		case !use:
			cell = "-"
			if g.grant != nil {
				cell = grantEnds(g.grant.Spec.ExpiresAt, now)
			}
		case g.use == nil:
		case *g.use:
			cell = answerYes
		default:
			cell = "NO (ask the grant's owner for use on it)"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.name, strings.Join(g.steps, ","), kind, approval, ready, cell, covers)
	}
	return tw.Flush()
}

// writeTemplateRuns lists the runs of the template, the newest first.
func writeTemplateRuns(w io.Writer, runs []custodyv1alpha1.Workflow, now time.Time) error {
	_, _ = fmt.Fprintf(w, "RUNS: %d\n", len(runs))
	if len(runs) == 0 {
		return nil
	}
	// By when a run started (a run that did not start yet: when it was created).
	started := func(wf *custodyv1alpha1.Workflow) time.Time {
		if st := wf.Status.StartTime; st != nil {
			return st.Time
		}
		return wf.CreationTimestamp.Time
	}
	slices.SortFunc(runs, func(a, b custodyv1alpha1.Workflow) int {
		if c := started(&b).Compare(started(&a)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "RUN\tCREATED BY\tTEMPLATE GENERATION\tPHASE\tREASON\tSTEPS\tDURATION")
	for i := range runs {
		run := &runs[i]
		phase, reason, took := runState(run, now)
		generation := "-"
		if t := run.Status.Template; t != nil {
			generation = fmt.Sprint(t.Generation)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", run.Name, orDash(run.Annotations[custodyv1alpha1.AnnotationCreatedBy]),
			generation, phase, reason, orDash(run.Status.Progress), took)
	}
	return tw.Flush()
}
