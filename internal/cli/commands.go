package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/webhook"
)

func (o *Options) getCommand() *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use: "get WORKFLOW | get cronworkflow/NAME | get grant/NAME | get template/NAME",
		Short: "Show a workflow as a tree of steps: phase, attempt, duration, SPIFFE ID, credentials; or a CronWorkflow and its runs; " +
			"or a CredentialGrant: what it hands out to whom, its approval, what is wrong with it, who holds it now; " +
			"or a WorkflowTemplate: how to run it, its parameters and steps, whether you may use the grants they request, its runs",
		Example: "  kubectl custody get pay-invoice-4711\n" +
			"  kubectl custody get cronworkflow/nightly-db-backup\n" +
			"  kubectl custody get grant/erp-payments\n" +
			"  kubectl custody get template/db-backup",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			if cron, ok := cronName(args[0]); ok {
				if watch {
					return errors.New("-w follows a workflow; a CronWorkflow's runs are workflows: kubectl custody get RUN -w")
				}
				return o.getCron(c, ns, cron)
			}
			if grant, ok := grantName(args[0]); ok {
				if watch {
					return errors.New("-w follows a workflow, not a grant")
				}
				return o.getGrant(c, ns, grant)
			}
			if tpl, ok := templateName(args[0]); ok {
				if watch {
					return errors.New("-w follows a workflow; a template's runs are workflows: kubectl custody get RUN -w")
				}
				return o.getTemplate(c, ns, tpl)
			}
			name, err := workflowName(args[0])
			if err != nil {
				return err
			}
			if watch {
				_, err := o.follow(c, ns, name, 0)
				return err
			}
			wf, err := o.readWorkflow(c, ns, name)
			if err != nil {
				return err
			}
			wf.ManagedFields = nil
			return o.print(wf, func(w io.Writer) error { return writeTree(w, wf, o.Now()) })
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "Follow the workflow until it ends, printing the tree whenever it changes.")
	return cmd
}

// waitCommand is `kubectl custody wait WORKFLOW`: follow a run to its end and exit with its
// outcome, for scripts and CI jobs that start one (kubectl wait cannot tell a failed run from
// one still running).
func (o *Options) waitCommand() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait WORKFLOW [--timeout DURATION]",
		Short: "Follow a workflow until it ends; fail unless it succeeded",
		Long: "wait prints a line whenever a step changes (starts, ends, retries, waits for an approver or says why it cannot " +
			"start) until the run ends, then the workflow's tree, and exits 0 if it Succeeded and non-zero, with the reason, " +
			"if it Failed or was Cancelled, or if --timeout passed first (after printing the tree as it is).",
		Example: "  kubectl custody wait release-1-4 --timeout 30m",
		Args:    cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			return o.waitFor(c, ns, args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "Give up after this long (0: wait as long as the run takes).")
	return cmd
}

// waitFor follows a run to its end and returns an error unless it succeeded.
func (o *Options) waitFor(c client.Client, ns, name string, timeout time.Duration) error {
	wf, err := o.followSteps(c, ns, name, timeout)
	if err != nil {
		return err
	}
	if wf.Status.Phase == custodyv1alpha1.WorkflowSucceeded {
		return nil
	}
	why := ""
	for _, t := range []string{custodyv1alpha1.ConditionStalled, custodyv1alpha1.ConditionReady} {
		if c := meta.FindStatusCondition(wf.Status.Conditions, t); c != nil && c.Message != "" {
			why = fmt.Sprintf(" (%s): %s", c.Reason, c.Message)
			break
		}
	}
	return fmt.Errorf("workflow %s/%s %s%s", ns, name, wf.Status.Phase, why)
}

// followSteps prints a line, with the time, whenever a step changes (phase, reason, attempt, the
// message saying why it waits or failed, its approval) until the run ends, then the whole tree:
// what a CI job's log should show, where get -w would print the tree at every change. It returns
// the workflow as it ended; with a timeout, the tree and an error once it passed.
func (o *Options) followSteps(c client.Client, ns, name string, timeout time.Duration) (*custodyv1alpha1.Workflow, error) {
	start := time.Now()
	seen, printed := map[string]string{}, false
	for {
		wf, err := o.readWorkflow(c, ns, name)
		if err != nil {
			return nil, err
		}
		now := o.Now()
		if !ended(wf.Status.Phase) || len(seen) > 0 {
			def, _ := wf.Definition()
			for _, st := range wf.Status.Steps {
				line := stepLine(wf, def, st, time.Time{})
				if why(st) {
					line += ": " + st.Message
				}
				before, known := seen[st.Name]
				seen[st.Name] = line
				waiting := st.Phase == custodyv1alpha1.StepPending && !why(st)
				if line == before || (!known && waiting) {
					continue
				}
				_, _ = fmt.Fprintf(o.io.Out, "%s  %s\n", now.Format("15:04:05"), line)
				if st.Phase == custodyv1alpha1.StepWaitingForApproval { // a CI job's log shows what approvers are asked
					writeToApprove(o.io.Out, "       ", wf, def, st.Name)
				}
				printed = true
			}
		}
		timedOut := timeout > 0 && time.Since(start) >= timeout
		if ended(wf.Status.Phase) || timedOut {
			if printed {
				_, _ = fmt.Fprintln(o.io.Out)
			}
			_ = writeTree(o.io.Out, wf, now)
			if timedOut && !ended(wf.Status.Phase) {
				return nil, fmt.Errorf("workflow %s/%s is still %s after %s", ns, name, orDash(string(wf.Status.Phase)), timeout)
			}
			return wf, nil
		}
		time.Sleep(time.Second)
	}
}

// follow prints a workflow's tree whenever it changes until the run ends, and returns it as it
// ended; with a timeout, an error once it passed.
func (o *Options) follow(c client.Client, ns, name string, timeout time.Duration) (*custodyv1alpha1.Workflow, error) {
	start := time.Now()
	last := ""
	for {
		wf, err := o.readWorkflow(c, ns, name)
		if err != nil {
			return nil, err
		}
		// A change is a change of anything but the clock: the tree drawn at a fixed instant
		// differs. Durations alone would print it every second.
		var key, b strings.Builder
		if err := writeTree(&key, wf, start); err != nil {
			return nil, err
		}
		if key.String() != last {
			last = key.String()
			_ = writeTree(&b, wf, o.Now())
			_, _ = fmt.Fprintf(o.io.Out, "%s\n", b.String())
		}
		if ended(wf.Status.Phase) {
			return wf, nil
		}
		if timeout > 0 && time.Since(start) >= timeout {
			return nil, fmt.Errorf("workflow %s/%s is still %s after %s", ns, name, orDash(string(wf.Status.Phase)), timeout)
		}
		time.Sleep(time.Second)
	}
}

// readWorkflow reads one Workflow.
func (o *Options) readWorkflow(c client.Client, ns, name string) (*custodyv1alpha1.Workflow, error) {
	ctx, cancel := o.ctx()
	defer cancel()
	wf := &custodyv1alpha1.Workflow{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, wf); err != nil {
		return nil, err
	}
	return wf, nil
}

// writeHeader prints the lines about the run as a whole: phase, progress, duration, its
// template, concurrency group and the run it reuses.
func writeHeader(w io.Writer, wf *custodyv1alpha1.Workflow, now time.Time) {
	phase := string(wf.Status.Phase)
	if phase == "" {
		phase = "Pending"
	}
	started := "not started"
	if wf.Status.StartTime != nil {
		end := now
		if wf.Status.CompletionTime != nil {
			end = wf.Status.CompletionTime.Time
		}
		started = "running for " + age(end.Sub(wf.Status.StartTime.Time))
		if wf.Status.CompletionTime != nil {
			started = "ran " + age(end.Sub(wf.Status.StartTime.Time))
		}
	}
	progress := ""
	if wf.Status.Progress != "" {
		progress = wf.Status.Progress + " steps ended  "
	}
	_, _ = fmt.Fprintf(w, "%s/%s  %s  %s%s\n", wf.Namespace, wf.Name, phase, progress, started)
	if cw, at := wf.Labels[custodyv1alpha1.LabelCronWorkflow], wf.Annotations[custodyv1alpha1.AnnotationScheduledTime]; cw != "" && at != "" {
		by := ""
		if author := wf.Annotations[custodyv1alpha1.AnnotationOnBehalfOf]; author != "" {
			by = " on behalf of " + author
		}
		_, _ = fmt.Fprintf(w, "   run of cronworkflow/%s scheduled for %s%s\n", cw, at, by)
	}
	if t := wf.Status.Template; t != nil {
		_, _ = fmt.Fprintf(w, "   from workflowtemplate/%s (generation %d)\n", t.Name, t.Generation)
	}
	if d := wf.DeletionTimestamp; d != nil {
		_, _ = fmt.Fprintf(w, "   %s\n", deleting(wf, d.UTC().Format(time.RFC3339)))
	}
	if wf.Spec.Cancel && (wf.Status.Phase == custodyv1alpha1.WorkflowCancelled || !ended(wf.Status.Phase)) {
		_, _ = fmt.Fprintf(w, "   %s\n", wf.CancelledAs())
	}
	if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionReady); c != nil &&
		c.Reason == custodyv1alpha1.ReasonStopping && !ended(wf.Status.Phase) {
		// Every step ended, but the run does not until the pods of those it stopped have.
		_, _ = fmt.Fprintf(w, "   %s\n", c.Message)
	}
	if c := meta.FindStatusCondition(wf.Status.Conditions, custodyv1alpha1.ConditionStalled); c != nil &&
		wf.Status.Phase == custodyv1alpha1.WorkflowFailed && c.Message != "" {
		// Why the run failed, before a tree that may be long.
		_, _ = fmt.Fprintf(w, "   %s (%s)\n", c.Message, c.Reason)
	}
	if g := wf.Spec.ConcurrencyGroup; g != "" {
		limit := ""
		if l := wf.Spec.ConcurrencyLimit; l != nil && *l > 1 {
			limit = fmt.Sprintf(" (%d at a time)", *l)
		}
		_, _ = fmt.Fprintf(w, "   concurrency group %s%s\n", g, limit)
	}
	if t, done := wf.Spec.TTLAfterFinished, wf.Status.CompletionTime; t != nil && done != nil && ended(wf.Status.Phase) {
		left := max(done.Add(t.Duration).Sub(now), 0)
		_, _ = fmt.Fprintf(w, "   deleted in %s, with its Jobs (ttlAfterFinished %s)\n", age(left), t.Duration)
	}
	if wf.Spec.Suspend && !ended(wf.Status.Phase) {
		_, _ = fmt.Fprintf(w, "   suspended: no step starts until kubectl custody resume %s\n", wf.Name)
	}
	if r := wf.Status.Reused; r != nil {
		_, _ = fmt.Fprintf(w, "   reuses workflow/%s (steps taken over: %d)\n", r.Name, r.Steps)
	} else if wf.Spec.ReuseFrom != "" {
		_, _ = fmt.Fprintf(w, "   reuses workflow/%s\n", wf.Spec.ReuseFrom)
	}
}

// deleting says what a deleted Workflow still waits for: the controller's revocation of what its
// attempts held and, for a run of a concurrency group, its pods to stop.
func deleting(wf *custodyv1alpha1.Workflow, since string) string {
	msg := "deleted at " + since
	if !slices.Contains(wf.Finalizers, custodyv1alpha1.FinalizerRevocation) {
		return msg
	}
	msg += ": goes once the controller revoked what its steps held"
	if g := wf.Spec.ConcurrencyGroup; g != "" {
		msg += " and its pods stopped (it keeps its place in concurrency group " + g + " until then)"
	}
	return msg + " (finalizer " + custodyv1alpha1.FinalizerRevocation + ")"
}

func ended(p custodyv1alpha1.WorkflowPhase) bool {
	return p == custodyv1alpha1.WorkflowSucceeded || p == custodyv1alpha1.WorkflowFailed || p == custodyv1alpha1.WorkflowCancelled
}

// writeTree prints a workflow and its steps.
func writeTree(w io.Writer, wf *custodyv1alpha1.Workflow, now time.Time) error {
	writeHeader(w, wf, now)
	def, _ := wf.Definition()
	for i, st := range wf.Status.Steps {
		branch, indent := "├─", "│  "
		if i == len(wf.Status.Steps)-1 {
			branch, indent = "└─", "   "
		}
		_, _ = fmt.Fprintln(w, branch+" "+stepLine(wf, def, st, now))
		if why(st) {
			_, _ = fmt.Fprintf(w, "%s   %s\n", indent, st.Message)
		}
		if st.Phase == custodyv1alpha1.StepWaitingForApproval {
			writeToApprove(w, indent, wf, def, st.Name)
		}
		if st.SPIFFEID != "" {
			state := ""
			if st.Identity != nil {
				state = " (" + string(st.Identity.State) + ")"
			}
			_, _ = fmt.Fprintf(w, "%s   identity %s%s\n", indent, st.SPIFFEID, state)
		}
		for _, cr := range st.Credentials {
			held := "held"
			if cr.RevokedAt != nil {
				held = "revoked " + cr.RevokedAt.UTC().Format(time.RFC3339)
				if cr.RevocationReason != "" {
					held += " (" + cr.RevocationReason + ")"
				}
			} else if cr.ExpiresAt != nil {
				held += ", expires in " + age(cr.ExpiresAt.Sub(now))
			}
			if cr.RevokedAt == nil && cr.OnRevoke.StopsStep() {
				held += "; revoking it stops the step"
			}
			_, _ = fmt.Fprintf(w, "%s   credential %s %s (attempt %d): %s\n", indent, cr.Kind, cr.Grant, cr.Attempt, held)
		}
	}
	writeResultLines(w, wf)
	return nil
}

// stepLine is a step's line of the tree: its name (with its forEach step and item, and whether it
// is a finally step or may fail), phase and reason, attempt, how long it ran (until now while it
// runs; nothing for a zero now) and who approved it.
func stepLine(wf *custodyv1alpha1.Workflow, def custodyv1alpha1.WorkflowTemplateSpec, st custodyv1alpha1.StepStatus, now time.Time) string {
	name := st.Name
	if forEach, item := wf.ForEachOf(st.Name); forEach != "" {
		name += " (" + forEach + " item " + item + ")"
	}
	if isFinally(def, st.Name) {
		name += " (finally)"
	}
	if step := specStepOf(def, st.Name); step != nil && step.ContinuesOnFailure() {
		name += " (may fail)"
	}
	line := fmt.Sprintf("%s  %s", name, st.Phase)
	if st.Reason != "" && st.Reason != string(st.Phase) {
		line += " (" + st.Reason + ")"
	}
	if st.Attempt > 0 {
		line += fmt.Sprintf("  attempt %d", st.Attempt)
	}
	if st.StartTime != nil && (st.CompletionTime != nil || !now.IsZero()) {
		end := now
		if st.CompletionTime != nil {
			end = st.CompletionTime.Time
		}
		line += "  " + age(end.Sub(st.StartTime.Time))
	}
	if st.Approval != nil {
		line += "  approved by " + st.Approval.ApprovedBy
	}
	return line
}

// isFinally says whether a definition's step of that name is one of its finally steps.
func isFinally(def custodyv1alpha1.WorkflowTemplateSpec, name string) bool {
	return slices.ContainsFunc(def.Finally, func(f custodyv1alpha1.Step) bool { return f.Name == name })
}

// specStepOf returns the step (or finally step) of a definition with that name, nil if none.
func specStepOf(def custodyv1alpha1.WorkflowTemplateSpec, name string) *custodyv1alpha1.Step {
	for i, st := range def.Steps {
		if st.Name == name {
			return &def.Steps[i]
		}
	}
	for i, st := range def.Finally {
		if st.Name == name {
			return &def.Finally[i]
		}
	}
	return nil
}

// why says whether a step's message explains something its phase does not: why it failed, waits,
// retries or cannot get going. The messages of steps that run or ended as expected are left out.
func why(st custodyv1alpha1.StepStatus) bool {
	if st.Message == "" {
		return false
	}
	switch st.Phase {
	case custodyv1alpha1.StepSucceeded, custodyv1alpha1.StepSkipped:
		return false
	case custodyv1alpha1.StepRunning:
		return st.Reason != custodyv1alpha1.StepReasonStarted
	case custodyv1alpha1.StepPending:
		return st.Reason != custodyv1alpha1.StepReasonWaitingForDependencies
	}
	return true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// patch applies a JSON merge patch, as kubectl annotate and kubectl patch do.
func (o *Options) patch(obj client.Object, body string) error {
	c, ns, err := o.clientIn()
	if err != nil {
		return err
	}
	obj.SetNamespace(ns)
	ctx, cancel := o.ctx()
	defer cancel()
	return c.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(body)))
}

func (o *Options) approveCommand() *cobra.Command {
	var step string
	cmd := &cobra.Command{
		Use:   "approve WORKFLOW STEP | approve grant GRANT",
		Short: "Approve a step of a workflow, or a grant (admission checks that you are a listed approver and not the creator)",
		Example: "  kubectl custody approve pay-invoice-4711 post-payment\n" +
			"  kubectl custody approve pay-invoice-4711 --step post-payment\n" +
			"  kubectl custody approve grant erp-payments",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			if args[0] == kindGrant {
				if len(args) != 2 {
					return errors.New("approve grant needs the grant's name")
				}
				g := &custodyv1alpha1.CredentialGrant{}
				g.Name = args[1]
				if err := o.patch(g, approval(custodyv1alpha1.AnnotationApproveGrant)); err != nil {
					return approveHint(err, "credentialgrants", "Custody's credentialgrant-editor role")
				}
				_, _ = fmt.Fprintln(o.io.Out, grantApproved(g))
				return nil
			}
			if len(args) == 2 {
				if step != "" && step != args[1] {
					return fmt.Errorf("approve names step %s and --step %s: give one", args[1], step)
				}
				step = args[1]
			}
			if step == "" {
				return fmt.Errorf("approve %s needs the step to approve: kubectl custody approve %s STEP", args[0], args[0])
			}
			wf := &custodyv1alpha1.Workflow{}
			wf.Name = args[0]
			key := custodyv1alpha1.AnnotationApprovePrefix + step
			if err := o.patch(wf, approval(key)); err != nil {
				return approveHint(err, "workflows", "the built-in edit role")
			}
			_, _ = fmt.Fprintf(o.io.Out, "workflow/%s step %s approved: %s\n", wf.Name, step, wf.Annotations[key])
			return nil
		},
	}
	cmd.Flags().StringVar(&step, "step", "", "The step to approve.")
	return cmd
}

// approveHint adds to RBAC's refusal of an approval what an approver needs: patch on the object,
// which Kubernetes checks before admission checks that they are a listed approver.
func approveHint(err error, resource, role string) error {
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "cannot patch resource") {
		return err
	}
	return fmt.Errorf("%w\nan approval is an annotation: approvers need patch on %s.%s in the namespace (%s has it); "+
		"admission then checks that they are listed", err, resource, custodyv1alpha1.GroupVersion.Group, role)
}

// grantApproved says what approving a grant did: the approval admission stamped and, when it lapses
// (approval.validFor), until when it stands.
func grantApproved(g *custodyv1alpha1.CredentialGrant) string {
	v := g.Annotations[custodyv1alpha1.AnnotationApproveGrant]
	line := fmt.Sprintf("credentialgrant/%s approved: %s", g.Name, v)
	rec, stamped := custodyv1alpha1.ParseGrantApproval(v)
	if !stamped {
		return line
	}
	// The approval as the controller will record it, and when it lapses and is due for review.
	given := g.DeepCopy()
	given.Status.Approval = rec
	lapses, from := given.ApprovalLapsesAt(), given.ApprovalReviewFrom()
	if lapses == nil {
		return line
	}
	return fmt.Sprintf("%s\n   it stands until %s (approval.validFor %s); review due from %s", line, lapses.UTC().Format(time.RFC3339),
		g.Spec.Approval.ValidFor.Duration, from.UTC().Format(time.RFC3339))
}

// approval is the patch that adds an approval annotation; admission replaces the value with who
// approved and when.
func approval(key string) string {
	return fmt.Sprintf(`{"metadata":{"annotations":{%q:"approved"}}}`, key)
}

func (o *Options) rejectCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "reject WORKFLOW STEP [--reason TEXT]",
		Short: "Reject a step waiting for an approval: it fails without running (admission checks that you are a listed approver)",
		Long: "Reject a step that waits for an approval, instead of approving it: the step fails with reason " +
			custodyv1alpha1.ReasonApprovalRejected + " without running and is not retried; the run then goes on as after any " +
			"failure (its finally steps run). Admission allows it from the step's approvers, not the run's creator, only while " +
			"the step waits, and records who rejected it and when (annotation " + custodyv1alpha1.AnnotationRejectPrefix +
			"STEP); --reason says why and appears in the step's status, its Events and kubectl custody get. " +
			"A rejection cannot be withdrawn.",
		Example: `  kubectl custody reject pay-invoice-4711 post-payment --reason "the total does not match the purchase order"`,
		Args:    cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			name, err := workflowName(args[0])
			if err != nil {
				return err
			}
			// Checked here too, so that a credential pasted by mistake never reaches the API server
			// (and its audit log).
			if msg := webhook.RejectReasonProblem(reason); msg != "" {
				return fmt.Errorf("--reason %s", msg)
			}
			wf := &custodyv1alpha1.Workflow{}
			wf.Name = name
			key := custodyv1alpha1.AnnotationRejectPrefix + args[1]
			b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: reason}}})
			if err != nil {
				return err
			}
			if err := o.patch(wf, string(b)); err != nil {
				return approveHint(err, "workflows", "the built-in edit role")
			}
			rec, _ := custodyv1alpha1.ParseRejection(wf.Annotations[key])
			_, _ = fmt.Fprintf(o.io.Out, "workflow/%s step %s rejected by %s\n", wf.Name, args[1], rec.RejectedBy)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", fmt.Sprintf("why, in a few words (at most %d characters; recorded on the "+
		"Workflow, so never a credential)", custodyv1alpha1.MaxRejectReasonLength))
	return cmd
}

func (o *Options) cancelCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel WORKFLOW [--reason TEXT]",
		Short: "Cancel a workflow: running Jobs are deleted, unfinished steps Cancelled (cannot be undone)",
		Long: "Cancel a workflow: running Jobs are deleted, their credentials revoked, unfinished steps become Cancelled, " +
			"then its finally steps run. Admission records who cancelled it (annotation " + custodyv1alpha1.AnnotationCancelledBy +
			"); --reason says why (annotation " + custodyv1alpha1.AnnotationCancelReason + "), and both appear in its status, " +
			"its Events and kubectl custody get.",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			name, err := workflowName(args[0])
			if err != nil {
				return err
			}
			wf, err := o.readWorkflow(c, ns, name)
			if err != nil {
				return err
			}
			// Nothing to stop: say so rather than record a cancellation that changes nothing.
			switch {
			case wf.Spec.Cancel:
				return fmt.Errorf("workflow %s/%s was already %s", ns, wf.Name, wf.CancelledAs())
			case ended(wf.Status.Phase):
				return fmt.Errorf("workflow %s/%s already ended (%s): there is nothing to cancel", ns, wf.Name, wf.Status.Phase)
			}
			if msg := webhook.CancelReasonProblem(reason); msg != "" {
				return fmt.Errorf("--reason %s", msg)
			}
			patch := map[string]any{"spec": map[string]any{"cancel": true}}
			if reason != "" {
				patch["metadata"] = map[string]any{"annotations": map[string]string{custodyv1alpha1.AnnotationCancelReason: reason}}
			}
			b, err := json.Marshal(patch)
			if err != nil {
				return err
			}
			if err := o.patch(wf, string(b)); err != nil {
				return err
			}
			_, _ = fmt.Fprintf(o.io.Out, "workflow/%s cancelled\n", wf.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", fmt.Sprintf("why, in a few words (at most %d characters; recorded on the "+
		"Workflow, so never a credential)", custodyv1alpha1.MaxCancelReasonLength))
	return cmd
}

// suspendCommands are `kubectl custody suspend WORKFLOW` and `resume WORKFLOW`: spec.suspend.
func (o *Options) suspendCommands() []*cobra.Command {
	toggle := func(use, short, done string, suspend bool) *cobra.Command {
		usage := use + " WORKFLOW | " + use + " cronworkflow/NAME"
		if !suspend {
			usage += " | resume grant GRANT"
		}
		return &cobra.Command{
			Use: usage, Short: short, Args: cobra.RangeArgs(1, 2),
			RunE: func(_ *cobra.Command, args []string) error {
				switch {
				case args[0] == kindGrant && suspend:
					return errors.New("a grant is suspended with the kill switch, which says what happens to the steps " +
						"holding it: kubectl custody revoke grant NAME")
				case args[0] == kindGrant && len(args) == 1:
					return errors.New("resume grant needs the grant's name: kubectl custody resume grant NAME")
				case args[0] == kindGrant:
					return o.resumeGrant(args[1])
				case len(args) == 2:
					return fmt.Errorf("%s takes one workflow or cronworkflow/NAME, or grant NAME", use)
				}
				var obj client.Object = &custodyv1alpha1.Workflow{}
				kind := "workflow"
				name, err := workflowName(args[0])
				if cron, ok := cronName(args[0]); ok {
					obj, kind, name, err = &custodyv1alpha1.CronWorkflow{}, "cronworkflow", cron, nil
				}
				if err != nil {
					return err
				}
				obj.SetName(name)
				if err := o.patch(obj, fmt.Sprintf(`{"spec":{"suspend":%t}}`, suspend)); err != nil {
					return err
				}
				_, _ = fmt.Fprintf(o.io.Out, "%s/%s %s\n", kind, name, done)
				return nil
			},
		}
	}
	return []*cobra.Command{
		toggle("suspend", "Hold a workflow: no step starts until it is resumed, running steps go on; or pause a CronWorkflow's "+
			"schedule", "suspended", true),
		toggle("resume", "Resume a suspended workflow: its steps start again as they become ready; or a CronWorkflow's schedule "+
			"(the times missed are not made up); or a grant suspended with revoke grant", "resumed", false),
	}
}

// resumeGrant undoes the kill switch (revoke grant): the grant issues again to the steps it
// covers. It says what a revocation would do to them now, since revoke --stop-steps left
// onRevoke: StopStep set.
func (o *Options) resumeGrant(name string) error {
	g := &custodyv1alpha1.CredentialGrant{}
	g.Name = name
	if err := o.patch(g, `{"spec":{"suspended":false}}`); err != nil {
		return err
	}
	line := fmt.Sprintf("credentialgrant/%s resumed: it issues again to the steps it covers; revoked before its step ends, %s",
		g.Name, onRevokeLine(g))
	if g.Spec.OnRevoke == custodyv1alpha1.RevokeStopStep {
		line += " (set on the grant, for example by revoke --stop-steps; remove spec.onRevoke for the platform's default)"
	}
	_, _ = fmt.Fprintln(o.io.Out, line)
	return nil
}

func (o *Options) revokeCommand() *cobra.Command {
	var yes, stop bool
	cmd := &cobra.Command{
		Use:   "revoke grant GRANT",
		Short: "The kill switch: suspend a grant, which revokes every live issuance of it at once",
		Long: "Suspend a grant: every live issuance of it is revoked at once and it issues nothing until spec.suspended is " +
			"false again. The steps that held it run on without it unless the grant's onRevoke is StopStep; --stop-steps " +
			"sets that too, so that they are stopped (a step that already read a Secret's value would otherwise go on using it).",
		Example: "  kubectl custody revoke grant erp-payments\n" +
			"  kubectl custody revoke grant erp-payments --stop-steps --yes",
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			if args[0] != kindGrant {
				return fmt.Errorf("revoke works on grants: kubectl custody revoke grant %s", args[0])
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			if !yes {
				also := ""
				if stop {
					also = ", and stop the steps holding it"
				}
				_, _ = fmt.Fprintf(o.io.Out, "Suspend credentialgrant %s/%s and revoke every credential it issued%s? [y/N] ", ns, args[1], also)
				answer, _ := bufio.NewReader(o.io.In).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return errors.New("not revoked")
				}
			}
			g := &custodyv1alpha1.CredentialGrant{}
			g.Name = args[1]
			body := `{"spec":{"suspended":true}}`
			if stop {
				body = `{"spec":{"suspended":true,"onRevoke":"StopStep"}}`
			}
			if err := o.patch(g, body); err != nil {
				return err
			}
			steps := "the steps holding it run on without it (onRevoke: Continue; --stop-steps stops them)"
			if p, _ := onRevoke(g); p.StopsStep() {
				steps = "the steps holding it are stopped (onRevoke: StopStep)"
			}
			_, _ = fmt.Fprintf(o.io.Out, "credentialgrant/%s suspended: live issuances are being revoked; %s; "+
				"set spec.suspended=false to resume\n", g.Name, steps)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "Do not ask for confirmation.")
	cmd.Flags().BoolVar(&stop, "stop-steps", false, "Also set the grant's onRevoke to StopStep: the steps that held it are stopped.")
	return cmd
}
