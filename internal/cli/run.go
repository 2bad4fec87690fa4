package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// runCommand is `kubectl custody run TEMPLATE -p name=value ...`: a run of a WorkflowTemplate,
// checked against the template's parameters before it is sent (admission checks again).
func (o *Options) runCommand() *cobra.Command {
	var params []string
	var name, from string
	var wait bool
	cmd := &cobra.Command{
		Use:   "run TEMPLATE [-p NAME=VALUE]... [--wait] | run --from cronworkflow/NAME [-p NAME=VALUE]...",
		Short: "Start a run of a WorkflowTemplate with values for its parameters, or of a CronWorkflow now",
		Long: "run starts a run of a WorkflowTemplate, its parameters checked first. With --from cronworkflow/NAME it starts " +
			"a run of what the CronWorkflow runs, now and by hand: its workflowSpec, -p replacing parameter values. Such a " +
			"run is yours, not one of the CronWorkflow's scheduled runs: it does not count for its concurrency policy " +
			"or history, and you are its creator.",
		Example: "  kubectl custody run db-backup -p database=orders -p retention=90d --wait\n" +
			"  kubectl custody run db-backup -p database=orders --name backup-before-migration\n" +
			"  kubectl custody run --from cronworkflow/nightly-db-backup",
		Args: cobra.RangeArgs(0, 1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			ctx, cancel := o.ctx()
			defer cancel()
			if (from == "") == (len(args) == 0) {
				return errors.New("name a WorkflowTemplate, or a CronWorkflow with --from cronworkflow/NAME, not both")
			}
			if from != "" {
				wf, err := o.runOfCron(ctx, c, ns, from, params, name)
				if err != nil {
					return err
				}
				if wait {
					return o.waitFor(c, ns, wf.Name, 0)
				}
				return nil
			}
			tpl := &custodyv1alpha1.WorkflowTemplate{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: args[0]}, tpl); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("workflowtemplate %s/%s not found (kubectl get workflowtemplates -n %s lists them)", ns, args[0], ns)
				}
				return err
			}
			values, err := parseParams(params)
			if err != nil {
				return err
			}
			if err := custodyv1alpha1.CheckParameters(tpl.Spec.Parameters, values); err != nil {
				return fmt.Errorf("workflowtemplate %s: %w\n%s", tpl.Name, err, describeParams(tpl.Spec.Parameters))
			}
			wf := &custodyv1alpha1.Workflow{}
			wf.Namespace = ns
			if name != "" {
				wf.Name = name
			} else {
				wf.GenerateName = generateName(tpl.Name)
			}
			wf.Spec.WorkflowTemplateRef = &custodyv1alpha1.WorkflowTemplateRef{Name: tpl.Name}
			wf.Spec.Parameters = values
			if err := c.Create(ctx, wf); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(o.io.Out, "workflow/%s created from workflowtemplate/%s (follow it: kubectl custody get %s -w)\n",
				wf.Name, tpl.Name, wf.Name)
			if wait {
				return o.waitFor(c, ns, wf.Name, 0)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "A parameter value, NAME=VALUE (repeat for each).")
	cmd.Flags().BoolVar(&wait, "wait", false, "Follow the run until it ends, as kubectl custody wait does, and fail unless it succeeded.")
	cmd.Flags().StringVar(&name, "name", "", "Name of the run (default: the template's name and a random suffix).")
	cmd.Flags().StringVar(&from, "from", "", "Run what a CronWorkflow runs, now: cronworkflow/NAME.")
	return cmd
}

// runOfCron creates a run of a CronWorkflow's workflowSpec, now, as the user.
func (o *Options) runOfCron(ctx context.Context, c client.Client, ns, from string, params []string,
	name string) (*custodyv1alpha1.Workflow, error) {
	cron, ok := cronName(from)
	if !ok {
		return nil, fmt.Errorf("--from %q: write cronworkflow/NAME", from)
	}
	cw := &custodyv1alpha1.CronWorkflow{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: cron}, cw); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("cronworkflow %s/%s not found", ns, cron)
		}
		return nil, err
	}
	values, err := parseParams(params)
	if err != nil {
		return nil, err
	}
	// The same as a resubmission of one of its runs, but without the CronWorkflow's own labels:
	// they describe the CronWorkflow, and its runs carry none of them.
	wf, err := resubmission(&custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Name: cw.Name, Namespace: ns},
		Spec: cw.Spec.WorkflowSpec}, values, name, false)
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, wf); err != nil {
		return nil, err
	}
	_, _ = fmt.Fprintf(o.io.Out, "workflow/%s created from cronworkflow/%s, now, not as one of its scheduled runs "+
		"(follow it: kubectl custody get %s -w)\n", wf.Name, cw.Name, wf.Name)
	return wf, nil
}

// parseParams reads NAME=VALUE pairs; a name given twice is an error.
func parseParams(in []string) ([]custodyv1alpha1.Parameter, error) {
	out := make([]custodyv1alpha1.Parameter, 0, len(in))
	seen := map[string]bool{}
	for _, p := range in {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("parameter %q: write NAME=VALUE", p)
		}
		if seen[k] {
			return nil, fmt.Errorf("parameter %q given twice", k)
		}
		seen[k] = true
		out = append(out, custodyv1alpha1.Parameter{Name: k, Value: v})
	}
	slices.SortFunc(out, func(a, b custodyv1alpha1.Parameter) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// describeParams lists a template's parameters, for an error message.
func describeParams(ps []custodyv1alpha1.ParameterSpec) string {
	if len(ps) == 0 {
		return "The template declares no parameters."
	}
	var b strings.Builder
	b.WriteString("The template's parameters:")
	for _, p := range ps {
		b.WriteString("\n  " + describeParam(p))
	}
	return b.String()
}

// describeParam says what a template's parameter takes: `name (required) one of a, b matching
// PATTERN: description`.
func describeParam(p custodyv1alpha1.ParameterSpec) string {
	line := p.Name
	switch {
	case p.Default != nil:
		line += fmt.Sprintf(" (default %q)", *p.Default)
	default:
		line += " (required)"
	}
	if len(p.AllowedValues) > 0 {
		line += " one of " + strings.Join(p.AllowedValues, ", ")
	}
	if p.Pattern != "" {
		line += " matching " + p.Pattern
	}
	if p.Description != "" {
		line += ": " + p.Description
	}
	return line
}

// generateName keeps the generated name within a Workflow's 63 characters (5 are random).
func generateName(template string) string {
	const maxPrefix = 63 - 5 - 1
	if len(template) > maxPrefix {
		template = strings.TrimRight(template[:maxPrefix], "-")
	}
	return template + "-"
}
