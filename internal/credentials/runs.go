package credentials

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// TemplateRun is a run of a WorkflowTemplate as kubectl custody run makes it (a generated name,
// the template's label, default parameters), to ask whether a grant covers its steps.
func TemplateRun(tpl *custodyv1alpha1.WorkflowTemplate) *custodyv1alpha1.Workflow {
	return &custodyv1alpha1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: tpl.Namespace, Labels: map[string]string{custodyv1alpha1.LabelTemplate: tpl.Name}},
		Spec:       custodyv1alpha1.WorkflowSpec{WorkflowTemplateRef: &custodyv1alpha1.WorkflowTemplateRef{Name: tpl.Name}},
		Status:     custodyv1alpha1.WorkflowStatus{Template: &custodyv1alpha1.ResolvedTemplate{Name: tpl.Name, Spec: tpl.Spec}},
	}
}

// CronRun is a scheduled run of a CronWorkflow as the controller makes it (its labels; its name is
// the CronWorkflow's and a scheduled time, which no grant can name beforehand), to ask whether a
// grant covers its steps. tpl is the template the CronWorkflow runs (nil for inline steps).
func CronRun(cw *custodyv1alpha1.CronWorkflow, tpl *custodyv1alpha1.WorkflowTemplate) *custodyv1alpha1.Workflow {
	run := &custodyv1alpha1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: cw.Namespace, Labels: cw.RunLabels()},
		Spec:       *cw.Spec.WorkflowSpec.DeepCopy(),
	}
	if tpl != nil {
		run.Status.Template = &custodyv1alpha1.ResolvedTemplate{Name: tpl.Name, Spec: tpl.Spec}
	}
	return run
}

// CronDefinition reads what a CronWorkflow's runs would execute now: its inline steps, or its
// template's steps and the template, read with reader. For a template that does not exist it
// returns the reader's error, which apierrors.IsNotFound recognises.
func CronDefinition(ctx context.Context, reader client.Reader, cw *custodyv1alpha1.CronWorkflow) ([]custodyv1alpha1.Step,
	*custodyv1alpha1.WorkflowTemplate, error) {
	ref := cw.Spec.WorkflowSpec.WorkflowTemplateRef
	if ref == nil {
		return cw.Spec.WorkflowSpec.InlineSteps(), nil, nil
	}
	tpl := &custodyv1alpha1.WorkflowTemplate{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: cw.Namespace, Name: ref.Name}, tpl); err != nil {
		return nil, nil, err
	}
	return tpl.Spec.AllSteps(), tpl, nil
}

// RunsCoverage is whether a grant covers the steps that request it in the runs a WorkflowTemplate
// or a CronWorkflow makes, and if not, why not and what would.
type RunsCoverage struct {
	// Uncovered are the steps, of those that request the grant, that it does not cover.
	Uncovered []string
	// Selected is true when the grant's subjects select the runs (by label) but leave out these
	// steps, or the images they run.
	Selected bool
	// Named is a name under which a run would be covered (kubectl custody run --name): a subject
	// names that workflow. For a CronWorkflow's runs, whose names nobody chooses, it is the
	// CronWorkflow's own name when a subject names that, a likely slip: its runs are named
	// NAME-<minutes since the epoch>.
	Named string
	// Label selects every run of the definition: custody.dev/template=NAME or
	// custody.dev/cronworkflow=NAME.
	Label string
}

// CoverRuns says whether grant g covers steps (names as written: a forEach step covers its items)
// in run, one of a definition's runs as TemplateRun or CronRun make it.
func CoverRuns(g *custodyv1alpha1.CredentialGrant, run *custodyv1alpha1.Workflow, steps []string) RunsCoverage {
	uncovered := func(run *custodyv1alpha1.Workflow) []string {
		var not []string
		for _, st := range steps {
			if !Covers(g, run, st) {
				not = append(not, st)
			}
		}
		return not
	}
	c := RunsCoverage{Uncovered: uncovered(run)}
	if len(c.Uncovered) == 0 {
		return c
	}
	if c.Selected = Selects(g, run); c.Selected {
		return c
	}
	cron, scheduled := run.Labels[custodyv1alpha1.LabelCronWorkflow]
	if scheduled {
		c.Label = custodyv1alpha1.LabelCronWorkflow + "=" + cron
		if slices.ContainsFunc(g.Spec.Subjects, func(s custodyv1alpha1.GrantSubject) bool { return s.WorkflowName == cron }) {
			c.Named = cron
		}
		return c
	}
	c.Label = custodyv1alpha1.LabelTemplate + "=" + run.Labels[custodyv1alpha1.LabelTemplate]
	for _, s := range g.Spec.Subjects {
		named := run.DeepCopy()
		if named.Name = s.WorkflowName; named.Name != "" && len(uncovered(named)) == 0 {
			c.Named = named.Name
			break
		}
	}
	return c
}

// Covered is true when the grant covers every step that requests it.
func (c RunsCoverage) Covered() bool { return len(c.Uncovered) == 0 }

// Warning says, for admission and lint, what a definition's runs will meet when a grant does not
// cover their steps: they wait for it. "" when it covers them.
func (c RunsCoverage) Warning(grant string) string {
	if c.Covered() {
		return ""
	}
	steps := StepsPhrase(c.Uncovered)
	switch {
	case c.Selected:
		return fmt.Sprintf("%s of its runs will wait: CredentialGrant %s selects its runs but does not list %s among its "+
			"subjects' steps, or does not allow %s image", steps, grant, plural(c.Uncovered, "that step", "those steps"),
			plural(c.Uncovered, "its", "their"))
	case c.Named != "" && strings.HasPrefix(c.Label, custodyv1alpha1.LabelCronWorkflow+"="):
		return fmt.Sprintf("%s of its runs will wait: CredentialGrant %s names workflow %s, but a CronWorkflow's runs are named "+
			"%s-<minutes since the epoch>; to cover every run, select %s in its subjects (workflowSelector)",
			steps, grant, c.Named, c.Named, c.Label)
	case c.Named != "":
		return fmt.Sprintf("%s of its runs will wait: CredentialGrant %s covers only a run named %s; to cover every run, "+
			"select %s in its subjects (workflowSelector)", steps, grant, c.Named, c.Label)
	}
	return fmt.Sprintf("%s of its runs will wait: CredentialGrant %s does not select its runs; to cover every run, "+
		"select %s in its subjects (workflowSelector)", steps, grant, c.Label)
}

// StepsPhrase names steps in a sentence: step "a", or steps "a", "b".
func StepsPhrase(steps []string) string {
	if len(steps) == 1 {
		return fmt.Sprintf("step %q", steps[0])
	}
	quoted := make([]string, len(steps))
	for i, s := range steps {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return "steps " + strings.Join(quoted, ", ")
}

func plural(ss []string, one, many string) string {
	if len(ss) == 1 {
		return one
	}
	return many
}

// ReadGrants reads, with reader, the grants in namespace that steps request, by name: nil for one
// that does not exist. ends is when the first of them that has not ended ends (spec.expiresAt;
// zero: none does), for a definition's owner to look again then.
func ReadGrants(ctx context.Context, reader client.Reader, namespace string, steps []custodyv1alpha1.Step,
	now time.Time) (grants map[string]*custodyv1alpha1.CredentialGrant, ends time.Time, err error) {
	grants = map[string]*custodyv1alpha1.CredentialGrant{}
	for _, name := range custodyv1alpha1.RequestedGrants(steps) {
		g := &custodyv1alpha1.CredentialGrant{}
		switch err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, g); {
		case apierrors.IsNotFound(err):
			grants[name] = nil
		case err != nil:
			return nil, time.Time{}, fmt.Errorf("reading CredentialGrant %s: %w", name, err)
		default:
			grants[name] = g
			if end := g.Spec.ExpiresAt; end != nil && now.Before(end.Time) && (ends.IsZero() || end.Time.Before(ends)) {
				ends = end.Time
			}
		}
	}
	return grants, ends, nil
}

// CheckRuns says, a Refusal per grant, which grants would keep steps of the runs a WorkflowTemplate
// or a CronWorkflow makes waiting: grants that do not exist, do not cover those runs' steps, or
// expired. run is one of the runs as TemplateRun or CronRun make it; steps are its steps as
// written; grants are those the steps request, by name, nil for one that does not exist; a name
// that is not a key is not known, and not checked. Typically it finds a grant that names the
// definition as if it were a workflow instead of selecting its runs by their label.
func CheckRuns(run *custodyv1alpha1.Workflow, steps []custodyv1alpha1.Step, grants map[string]*custodyv1alpha1.CredentialGrant,
	now time.Time) []Refusal {
	var order []string
	requesters := map[string][]string{}
	for _, st := range steps {
		for _, name := range st.Credentials {
			if _, seen := requesters[name]; !seen {
				order = append(order, name)
			}
			requesters[name] = append(requesters[name], st.Name)
		}
	}
	var out []Refusal
	for _, name := range order {
		g, known := grants[name]
		if !known {
			continue
		}
		steps := StepsPhrase(requesters[name])
		if g == nil {
			out = append(out, Refusal{custodyv1alpha1.ReasonGrantNotFound, fmt.Sprintf("%s of its runs will wait until this "+
				"changes: CredentialGrant %s does not exist in namespace %s", steps, name, run.Namespace)})
			continue
		}
		switch c := CoverRuns(g, run, requesters[name]); {
		case !c.Covered():
			out = append(out, Refusal{custodyv1alpha1.ReasonGrantNotCovered, c.Warning(name)})
		case g.Expired(now):
			out = append(out, Refusal{custodyv1alpha1.ReasonGrantExpired, fmt.Sprintf("%s of its runs will wait until this "+
				"changes: CredentialGrant %s expired at %s (spec.expiresAt)", steps, name, g.Spec.ExpiresAt.UTC().Format(time.RFC3339))})
		}
	}
	return out
}
