package webhook

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/expr"
)

// Literal is text written into a spec that is shaped like a credential (a private key, a token:
// expr.CredentialLike). A spec is readable by anyone who can read the object, and sits in Git in
// a GitOps repository: a credential belongs in a Secret that a CredentialGrant hands to the steps
// that need it.
type Literal struct {
	Path  *field.Path
	value string
	What  string
}

// WorkflowLiterals finds credential-shaped text in a Workflow's (or a CronWorkflow's workflowSpec)
// parameter values, step commands, args and env values, step defaults' env and results.
func WorkflowLiterals(path *field.Path, spec *custodyv1alpha1.WorkflowSpec) []Literal {
	var out []Literal
	for i, p := range spec.Parameters {
		out = appendLiteral(out, path.Child("parameters").Index(i).Child("value"), p.Value)
	}
	return append(out, definitionLiterals(path, spec.Steps, spec.Finally, spec.StepDefaults, spec.Results)...)
}

// TemplateLiterals finds credential-shaped text in a WorkflowTemplate: parameter defaults and
// allowed values, and what WorkflowLiterals looks at in steps.
func TemplateLiterals(spec *custodyv1alpha1.WorkflowTemplateSpec) []Literal {
	var out []Literal
	path := field.NewPath("spec")
	for i, p := range spec.Parameters {
		if p.Default != nil {
			out = appendLiteral(out, path.Child("parameters").Index(i).Child("default"), *p.Default)
		}
		for j, v := range p.AllowedValues {
			out = appendLiteral(out, path.Child("parameters").Index(i).Child("allowedValues").Index(j), v)
		}
	}
	return append(out, definitionLiterals(path, spec.Steps, spec.Finally, spec.StepDefaults, spec.Results)...)
}

func definitionLiterals(path *field.Path, steps, finally []custodyv1alpha1.Step, d *custodyv1alpha1.StepDefaults,
	results []custodyv1alpha1.WorkflowResultSpec) []Literal {
	var out []Literal
	for _, list := range []struct {
		name  string
		steps []custodyv1alpha1.Step
	}{{fieldSteps, steps}, {fieldFinally, finally}} {
		for i, st := range list.steps {
			p := path.Child(list.name).Index(i)
			for j, s := range st.Command {
				out = appendLiteral(out, p.Child("command").Index(j), s)
			}
			for j, s := range st.Args {
				out = appendLiteral(out, p.Child("args").Index(j), s)
			}
			for j, e := range st.Env {
				out = appendLiteral(out, p.Child("env").Index(j).Child("value"), e.Value)
			}
		}
	}
	if d != nil {
		for j, e := range d.Env {
			out = appendLiteral(out, path.Child("stepDefaults", "env").Index(j).Child("value"), e.Value)
		}
	}
	for i, r := range results {
		out = appendLiteral(out, path.Child("results").Index(i).Child("value"), r.Value)
	}
	return out
}

func appendLiteral(out []Literal, p *field.Path, value string) []Literal {
	if what := expr.CredentialLike(value); what != "" {
		out = append(out, Literal{Path: p, value: value, What: what})
	}
	return out
}

// LiteralErrors refuses the literals of cur that old (the object before an update; nil on
// create) did not already have at the same place: an existing CronWorkflow or template can still
// be suspended or fixed. The errors name the field and what the text looks like, never the text.
func LiteralErrors(cur, old []Literal) field.ErrorList {
	had := map[string]string{}
	for _, l := range old {
		had[l.Path.String()] = l.value
	}
	var errs field.ErrorList
	for _, l := range cur {
		if v, ok := had[l.Path.String()]; ok && v == l.value {
			continue
		}
		errs = append(errs, field.Forbidden(l.Path, "looks like "+l.What+": a spec is readable by anyone who can read it, "+
			"so a credential belongs in a Secret that a CredentialGrant hands to the steps that need it"))
	}
	return errs
}
