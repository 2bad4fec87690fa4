package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/text"
)

// resultsCommand is `kubectl custody results WORKFLOW [RESULT]`: a finished run's results, for the
// script or pipeline that started it (kubectl custody run --wait, then this).
func (o *Options) resultsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "results WORKFLOW [RESULT]",
		Short: "Print a finished workflow's results: NAME=VALUE lines, or one result's value alone",
		Long: "results prints the results a run computed when it ended (spec.results, or its template's): one NAME=VALUE " +
			"line each, or with RESULT only that value, for a script to read. It fails while the run is going, and for a " +
			"result the run declares but did not produce (a step it reads did not succeed; its Events say which).",
		Example: "  kubectl custody run release -p version=1.4.2 --wait --name release-1-4-2\n" +
			"  digest=$(kubectl custody results release-1-4-2 digest)",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			wf, err := o.readWorkflow(c, ns, args[0])
			if err != nil {
				return err
			}
			only := ""
			if len(args) == 2 {
				only = args[1]
			}
			return writeResults(o.io.Out, wf, only)
		},
	}
}

// writeResults prints a finished run's results as NAME=VALUE lines, or one value alone.
func writeResults(w io.Writer, wf *custodyv1alpha1.Workflow, only string) error {
	def, _ := wf.Definition()
	declared := make([]string, 0, len(def.Results))
	for _, r := range def.Results {
		declared = append(declared, r.Name)
	}
	if only != "" && !slices.Contains(declared, only) {
		has := "it declares none"
		if len(declared) > 0 {
			has = "it has " + strings.Join(declared, ", ")
		}
		return fmt.Errorf("workflow %s/%s has no result %q (%s)", wf.Namespace, wf.Name, only, has)
	}
	if !ended(wf.Status.Phase) {
		return fmt.Errorf("workflow %s/%s is %s: its results are computed when it ends", wf.Namespace, wf.Name,
			orDash(string(wf.Status.Phase)))
	}
	if only == "" {
		for _, r := range wf.Status.Results {
			_, _ = fmt.Fprintf(w, "%s=%s\n", r.Name, r.Value)
		}
		return nil
	}
	for _, r := range wf.Status.Results {
		if r.Name == only {
			_, _ = fmt.Fprintln(w, r.Value)
			return nil
		}
	}
	return fmt.Errorf("workflow %s/%s did not produce result %q: a step it reads did not succeed "+
		"(kubectl get events --field-selector involvedObject.name=%s,reason=ResultNotProduced)", wf.Namespace, wf.Name, only, wf.Name)
}

// writeResultLines prints a run's results under its tree.
func writeResultLines(w io.Writer, wf *custodyv1alpha1.Workflow) {
	if len(wf.Status.Results) == 0 {
		return
	}
	_, _ = fmt.Fprintln(w, "results")
	for _, r := range wf.Status.Results {
		// One line each: a long or multi-line value is cut, and says where to read it whole.
		v, _, multiline := strings.Cut(r.Value, "\n")
		if short := text.Truncate(v, 100); short != r.Value || multiline {
			v = strings.TrimSuffix(short, "...") + "... (kubectl custody results " + wf.Name + " " + r.Name + ")"
		}
		_, _ = fmt.Fprintf(w, "   %s = %s\n", r.Name, v)
	}
}
