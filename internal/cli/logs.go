package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/jobspec"
)

// jobNameLabel is the label the Job controller puts on a Job's pods.
const jobNameLabel = "batch.kubernetes.io/job-name"

// logStreamGrace is how long `logs -f` keeps reading a step container's log after the container
// ended: the kubelet ends the stream itself once it has sent the last line; this only bounds a
// stream that stays open (a node that does not end it).
const logStreamGrace = 5 * time.Second

type logFlags struct {
	follow     bool
	attempt    int32
	tail       int64
	since      time.Duration
	timestamps bool
}

// logsCommand is `kubectl custody logs WORKFLOW [STEP]`: the step containers' logs of a run, every
// line prefixed with its step and attempt, in the order the steps are listed in status; with -f,
// it follows the run, starting on each step's log as the step starts, until the run ends.
func (o *Options) logsCommand() *cobra.Command {
	var f logFlags
	cmd := &cobra.Command{
		Use:   "logs WORKFLOW [STEP] [-f]",
		Short: "Print the logs of a workflow's steps (every attempt), each line prefixed with [step#attempt]",
		Long: "logs prints what each step container of a workflow wrote, every attempt of every step that started, " +
			"in the order of the steps in status, each line prefixed with [STEP#ATTEMPT]. With STEP, only that step; " +
			"with --attempt, only that attempt of it. -f follows the run: it prints each step's log as the step runs " +
			"and returns when the workflow has ended and its last log is read. It reads pods and pods/log with your " +
			"own permissions (the built-in view role has both).",
		Example: "  kubectl custody logs build-diamond\n" +
			"  kubectl custody logs build-diamond test-unit --attempt 2\n" +
			"  kubectl custody logs release-1-4-2 -f",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			step := ""
			if len(args) == 2 {
				step = args[1]
			}
			if f.attempt != 0 && step == "" {
				return errors.New("--attempt needs a STEP: kubectl custody logs WORKFLOW STEP --attempt N")
			}
			c, ns, err := o.clientIn()
			if err != nil {
				return err
			}
			cs, err := o.newClientset()
			if err != nil {
				return err
			}
			l := &logReader{o: o, c: c, cs: cs, ns: ns, name: args[0], step: step, flags: f,
				out: &lineWriter{w: o.io.Out}}
			if f.follow {
				return l.follow()
			}
			return l.print()
		},
	}
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "Follow the run: print each step's log as it runs, until the workflow ends.")
	cmd.Flags().Int32Var(&f.attempt, "attempt", 0, "Only this attempt of STEP (default: every attempt).")
	cmd.Flags().Int64Var(&f.tail, "tail", -1, "Lines of the end of each log to print (default: all).")
	cmd.Flags().DurationVar(&f.since, "since", 0, "Only lines newer than this duration (5s, 2m, 3h).")
	cmd.Flags().BoolVar(&f.timestamps, "timestamps", false, "Include the time the runtime recorded for each line.")
	return cmd
}

// logSource is one pod of one step attempt whose step container log can be read, or, with no pod,
// why there is none to read.
type logSource struct {
	step    string
	attempt int32
	pod     *corev1.Pod
	note    string
}

func (s logSource) prefix() string { return "[" + s.step + "#" + strconv.Itoa(int(s.attempt)) + "] " }

// logSources says where the logs of wf's steps are: for every step that has started an attempt
// (or only step, and only attempt when not 0), in status order, every attempt's pods, oldest first.
// Only pods of this run's Jobs count (a Job's name carries the Workflow's UID), so the pods of an
// earlier Workflow of the same name are never shown.
func logSources(wf *custodyv1alpha1.Workflow, pods []corev1.Pod, step string, attempt int32) ([]logSource, error) {
	if step != "" && !slices.ContainsFunc(wf.Status.Steps, func(s custodyv1alpha1.StepStatus) bool { return s.Name == step }) {
		names := make([]string, 0, len(wf.Status.Steps))
		for _, s := range wf.Status.Steps {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("workflow %s has no step %q (its steps: %s)", wf.Name, step, strings.Join(names, ", "))
	}
	byJob := map[string][]*corev1.Pod{}
	for i := range pods {
		p := &pods[i]
		byJob[p.Labels[jobNameLabel]] = append(byJob[p.Labels[jobNameLabel]], p)
	}
	var out []logSource
	for _, st := range wf.Status.Steps {
		if step != "" && st.Name != step {
			continue
		}
		if attempt > st.Attempt {
			return nil, fmt.Errorf("step %s of workflow %s has made %d attempts, not %d", st.Name, wf.Name, st.Attempt, attempt)
		}
		for a := int32(1); a <= st.Attempt; a++ {
			if attempt != 0 && a != attempt {
				continue
			}
			job := jobspec.Name(wf.Name, string(wf.UID), st.Name, a)
			ps := byJob[job]
			if len(ps) == 0 {
				out = append(out, logSource{step: st.Name, attempt: a,
					note: "no pod (job/" + job + " has none: not created yet, or deleted)"})
				continue
			}
			slices.SortFunc(ps, func(x, y *corev1.Pod) int {
				return x.CreationTimestamp.Compare(y.CreationTimestamp.Time)
			})
			for _, p := range ps {
				out = append(out, logSource{step: st.Name, attempt: a, pod: p, note: notStarted(p)})
			}
		}
	}
	return out, nil
}

// notStarted says why a pod's step container has no log yet ("" once it has started).
func notStarted(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != jobspec.ContainerName {
			continue
		}
		switch {
		case cs.State.Running != nil || cs.State.Terminated != nil:
			return ""
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			return "no log yet: the container is waiting (" + cs.State.Waiting.Reason + ")"
		}
	}
	if p.Spec.NodeName == "" {
		return "no log yet: pod/" + p.Name + " is not scheduled to a node"
	}
	return "no log yet: pod/" + p.Name + " has not started its container"
}

// containerEnded reports whether a pod's step container has ended.
func containerEnded(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == jobspec.ContainerName && cs.State.Terminated != nil {
			return true
		}
	}
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// lineWriter writes whole lines from concurrent streams, each line once and never interleaved.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// copyLines writes every line of r to w with prefix, ending the last one with a newline.
func (w *lineWriter) copyLines(prefix string, r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			w.mu.Lock()
			_, werr := io.WriteString(w.w, prefix+line)
			w.mu.Unlock()
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// logReader reads the logs of one workflow's steps.
type logReader struct {
	o     *Options
	c     client.Client
	cs    kubernetes.Interface
	ns    string
	name  string
	step  string
	flags logFlags
	out   *lineWriter
}

// sources reads the workflow and its pods and says where their logs are.
func (l *logReader) sources() (*custodyv1alpha1.Workflow, []logSource, error) {
	ctx, cancel := l.o.ctx()
	defer cancel()
	wf := &custodyv1alpha1.Workflow{}
	if err := l.c.Get(ctx, client.ObjectKey{Namespace: l.ns, Name: l.name}, wf); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("workflow %s/%s not found", l.ns, l.name)
		}
		return nil, nil, err
	}
	sel := client.MatchingLabels{custodyv1alpha1.LabelWorkflow: l.name}
	if l.step != "" {
		sel[custodyv1alpha1.LabelStep] = l.step
	}
	var pods corev1.PodList
	if err := l.c.List(ctx, &pods, client.InNamespace(l.ns), sel); err != nil {
		return nil, nil, fmt.Errorf("listing the pods of workflow %s: %w", l.name, err)
	}
	src, err := logSources(wf, pods.Items, l.step, l.flags.attempt)
	return wf, src, err
}

func (l *logReader) podLogOptions(follow bool) *corev1.PodLogOptions {
	opts := &corev1.PodLogOptions{Container: jobspec.ContainerName, Follow: follow, Timestamps: l.flags.timestamps}
	if l.flags.tail >= 0 {
		opts.TailLines = &l.flags.tail
	}
	if l.flags.since > 0 {
		s := max(int64(l.flags.since.Seconds()), 1) // the API takes whole seconds, at least one
		opts.SinceSeconds = &s
	}
	return opts
}

// stream copies one pod's step container log to the output.
func (l *logReader) stream(ctx context.Context, s logSource, follow bool) error {
	rc, err := l.cs.CoreV1().Pods(s.pod.Namespace).GetLogs(s.pod.Name, l.podLogOptions(follow)).Stream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	return l.out.copyLines(s.prefix(), rc)
}

// print prints the logs there are now, one step attempt after another.
func (l *logReader) print() error {
	_, sources, err := l.sources()
	if err != nil {
		return err
	}
	if len(sources) == 0 {
		what := "no step of workflow " + l.name + " has started yet"
		if l.step != "" {
			what = "step " + l.step + " of workflow " + l.name + " has not started yet"
		}
		_, _ = fmt.Fprintf(l.o.io.ErrOut, "%s (kubectl custody get %s says why)\n", what, l.name)
		return nil
	}
	failed := 0
	for _, s := range sources {
		if s.note != "" {
			_, _ = fmt.Fprintf(l.o.io.ErrOut, "%s%s\n", s.prefix(), s.note)
			continue
		}
		if err := l.stream(context.Background(), s, false); err != nil {
			failed++
			_, _ = fmt.Fprintf(l.o.io.ErrOut, "%scannot read the log of pod/%s: %v\n", s.prefix(), s.pod.Name, err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("could not read %d of the logs of workflow %s", failed, l.name)
	}
	return nil
}

// followed is a log stream of `logs -f`.
type followed struct {
	cancel  context.CancelFunc
	done    chan struct{}
	endedAt time.Time // when the container was first seen ended
}

// follow prints each step attempt's log as it starts, until the workflow has ended and every log
// started is read to its end.
func (l *logReader) follow() error {
	streams := map[string]*followed{}
	var mu sync.Mutex
	var errs []error
	defer func() {
		for _, f := range streams {
			f.cancel()
			<-f.done
		}
	}()
	for {
		wf, sources, err := l.sources()
		if err != nil {
			return err
		}
		now := time.Now()
		for _, s := range sources {
			if s.pod == nil || s.note != "" {
				continue
			}
			f, ok := streams[string(s.pod.UID)]
			if !ok {
				ctx, cancel := context.WithCancel(context.Background())
				f = &followed{cancel: cancel, done: make(chan struct{})}
				streams[string(s.pod.UID)] = f
				go func(s logSource) {
					defer close(f.done)
					if err := l.stream(ctx, s, true); err != nil && ctx.Err() == nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("%scannot read the log of pod/%s: %w", s.prefix(), s.pod.Name, err))
						mu.Unlock()
					}
				}(s)
			}
			if containerEnded(s.pod) {
				if f.endedAt.IsZero() {
					f.endedAt = now
				} else if now.Sub(f.endedAt) > logStreamGrace {
					f.cancel()
				}
			}
		}
		if ended(wf.Status.Phase) && l.allDone(streams) {
			mu.Lock()
			defer mu.Unlock()
			for _, err := range errs {
				_, _ = fmt.Fprintln(l.o.io.ErrOut, err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("could not read %d of the logs of workflow %s", len(errs), l.name)
			}
			return nil
		}
		time.Sleep(time.Second)
	}
}

func (l *logReader) allDone(streams map[string]*followed) bool {
	for _, f := range streams {
		select {
		case <-f.done:
		default:
			return false
		}
	}
	return true
}
