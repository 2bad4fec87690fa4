package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// resubmitCommand is `kubectl custody resubmit WORKFLOW`: a new run with the same spec (and the
// same template, for a run of one), optionally with other parameter values. It is a new Workflow
// created by whoever resubmits: admission checks their right to use its grants, and nothing of the
// old run carries over (no approval, no status, no cancel or suspension).
func (o *Options) resubmitCommand() *cobra.Command {
	var params []string
	var name string
	var reuse, wait bool
	cmd := &cobra.Command{
		Use:   "resubmit WORKFLOW [-p NAME=VALUE]... [--name NAME] [--reuse-succeeded] [--wait]",
		Short: "Run a workflow again as a new Workflow with the same spec",
		Long: "resubmit creates a new Workflow with the spec of an existing one (its steps, or its workflowTemplateRef, " +
			"parameters, timeouts), its labels except Custody's own (custody.dev/...), and none of its annotations: " +
			"approvals are asked for again and the new run's creator is you. -p replaces a parameter's value. " +
			"--reuse-succeeded runs only what did not succeed in a run that failed or was cancelled: the steps that " +
			"succeeded there are taken over with their results (spec.reuseFrom), and hold no credentials again; for a " +
			"run of a template fixed since, only those the fix left as they were and that depend on none it changed.",
		Example: "  kubectl custody resubmit pay-invoice-4711\n" +
			"  kubectl custody resubmit db-backup-x7k2p -p retention=90d --name db-backup-retry\n" +
			"  kubectl custody resubmit release-1.4 --reuse-succeeded",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			ctx, cancel := o.ctx()
			defer cancel()
			old := &custodyv1alpha1.Workflow{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: args[0]}, old); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("workflow %s/%s not found", ns, args[0])
				}
				return err
			}
			values, err := parseParams(params)
			if err != nil {
				return err
			}
			wf, err := resubmission(old, values, name, reuse)
			if err != nil {
				return err
			}
			if err := c.Create(ctx, wf); err != nil {
				return err
			}
			reused := ""
			if reuse {
				reused = ", reusing the steps that succeeded there"
			}
			_, _ = fmt.Fprintf(o.io.Out, "workflow/%s created from workflow/%s%s (follow it: kubectl custody get %s -w)\n",
				wf.Name, old.Name, reused, wf.Name)
			if wait {
				return o.waitFor(c, ns, wf.Name, 0)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "A new value for one of the workflow's parameters, NAME=VALUE (repeat for each).")
	cmd.Flags().StringVar(&name, "name", "", "Name of the new run (default: the old name and a random suffix).")
	cmd.Flags().BoolVar(&wait, "wait", false, "Follow the new run until it ends, as kubectl custody wait does, and fail unless it succeeded.")
	cmd.Flags().BoolVar(&reuse, "reuse-succeeded", false, "Do not run again the steps that succeeded in WORKFLOW (which failed "+
		"or was cancelled): take over their results and run the rest.")
	return cmd
}

// resubmission is the new Workflow that runs old again with the given parameter values; with
// reuse, only the steps that did not succeed in old (which needs the same parameter values).
func resubmission(old *custodyv1alpha1.Workflow, values []custodyv1alpha1.Parameter, name string,
	reuse bool) (*custodyv1alpha1.Workflow, error) {
	if reuse && len(values) > 0 {
		return nil, fmt.Errorf("--reuse-succeeded takes the results of %s's steps, which depend on its parameters: "+
			"-p cannot change them (resubmit without --reuse-succeeded to run every step with other values)", old.Name)
	}
	wf := &custodyv1alpha1.Workflow{}
	wf.Namespace = old.Namespace
	if name != "" {
		wf.Name = name
	} else {
		wf.GenerateName = generateName(old.Name)
	}
	wf.Labels = maps.Clone(old.Labels)
	maps.DeleteFunc(wf.Labels, func(k, _ string) bool { return strings.HasPrefix(k, "custody.dev/") })
	wf.Spec = *old.Spec.DeepCopy()
	wf.Spec.Cancel, wf.Spec.Suspend, wf.Spec.ReuseFrom = false, false, ""
	if reuse {
		wf.Spec.ReuseFrom = old.Name
	}
	for _, v := range values {
		i := slices.IndexFunc(wf.Spec.Parameters, func(p custodyv1alpha1.Parameter) bool { return p.Name == v.Name })
		switch {
		case i >= 0:
			wf.Spec.Parameters[i].Value = v.Value
		case wf.Spec.WorkflowTemplateRef != nil:
			// A template may declare a parameter the old run left at its default; admission checks it.
			wf.Spec.Parameters = append(wf.Spec.Parameters, v)
		default:
			return nil, fmt.Errorf("workflow %s has no parameter %q (it has: %s)", old.Name, v.Name, paramNames(old.Spec.Parameters))
		}
	}
	return wf, nil
}

func paramNames(ps []custodyv1alpha1.Parameter) string {
	if len(ps) == 0 {
		return "none"
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
