package workflow

// The stories in this package run the real reconciler against a real kube-apiserver and etcd
// (envtest). There is no Job controller in envtest, so the tests play it: they create the pod a
// Job would have and set the Job's status the way kube-controller-manager does, conditions
// included (the API server validates them).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/controllers/credentialgrant"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/testenv"
)

var (
	env          *testenv.Env
	registerOnce sync.Once
)

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

const (
	wait = 30 * time.Second
	poll = 100 * time.Millisecond
)

// startController runs a manager with the Workflow reconciler, watching only ns, until the
// returned stop function is called (or the test ends).
// opts are func(*Reconciler) to configure the reconciler, func(*credentialgrant.Reconciler) the
// grant controller, or a logr.Logger for the manager.
func startController(t *testing.T, ns string, opts ...any) (stop func()) {
	t.Helper()
	var configure []func(*Reconciler)
	var configureGrants []func(*credentialgrant.Reconciler)
	logger := ctrl.Log
	cfg := env.Config
	for _, o := range opts {
		switch o := o.(type) {
		case *rest.Config: // the manager's identity, instead of the test's
			cfg = o
		case func(*Reconciler):
			configure = append(configure, o)
		case func(*credentialgrant.Reconciler):
			configureGrants = append(configureGrants, o)
		case logr.Logger:
			logger = o
		default:
			t.Fatalf("startController: unknown option %T", o)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Logger:  logger,
		Scheme:  env.Scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}},
			// As in main.go: only grantable Secrets are cached.
			ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {
				Label: k8slabels.SelectorFromSet(k8slabels.Set{custodyv1alpha1.LabelGrantable: "true"})}}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// As in main.go.
		Client: client.Options{Cache: &client.CacheOptions{EnableReadYourWritesConsistency: ptr.To(true)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	registerOnce.Do(func() {
		if err := metrics.Register(metrics.Registry, mgr.GetAPIReader()); err != nil {
			t.Fatal(err)
		}
	})
	r := &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(ControllerName),
	}
	for _, c := range configure {
		c(r)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	grants := &credentialgrant.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder(credentialgrant.ControllerName)}
	for _, c := range configureGrants {
		c(grants)
	}
	if err := grants.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// setup makes a namespace and starts a controller for it.
func setup(t *testing.T, labels ...map[string]string) string {
	t.Helper()
	ns := env.Namespace(t, labels...)
	startController(t, ns)
	return ns
}

// setupAudited is setup with the manager's log captured (JSON lines, as in production).
func setupAudited(t *testing.T) (string, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	ns := env.Namespace(t)
	startController(t, ns, zap.New(zap.WriteTo(logs)))
	return ns, logs
}

// auditLines waits for the audit lines (logger audit) with message msg in a captured log, and
// returns their fields.
func auditLines(t *testing.T, logs *testenv.SyncBuffer, msg string) []map[string]any {
	t.Helper()
	var found []map[string]any
	eventually(t, "an audit line "+msg, func() error {
		found = nil
		for _, line := range strings.Split(logs.String(), "\n") {
			var fields map[string]any
			if json.Unmarshal([]byte(line), &fields) != nil {
				continue
			}
			if logger, _ := fields["logger"].(string); (logger == "audit" || strings.HasSuffix(logger, ".audit")) && fields["msg"] == msg {
				found = append(found, fields)
			}
		}
		if len(found) == 0 {
			return errorf("none in %d bytes of log", len(logs.String()))
		}
		return nil
	})
	return found
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// apply creates a Workflow from YAML in ns.
func apply(t *testing.T, ns, manifest string) *custodyv1alpha1.Workflow {
	t.Helper()
	wf := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(manifest), wf); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	wf.Namespace = ns
	if err := env.Client.Create(ctxT(t), wf); err != nil {
		t.Fatalf("creating workflow: %v", err)
	}
	return wf
}

func get(t *testing.T, wf *custodyv1alpha1.Workflow) *custodyv1alpha1.Workflow {
	t.Helper()
	out := &custodyv1alpha1.Workflow{}
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(wf), out); err != nil {
		t.Fatalf("reading workflow: %v", err)
	}
	return out
}

// eventually polls cond until it returns nil, failing the test with its last error after wait.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(poll)
	}
	t.Fatalf("%s: gave up after %s: %v", what, wait, err)
}

func stepOf(wf *custodyv1alpha1.Workflow, name string) custodyv1alpha1.StepStatus {
	for _, st := range wf.Status.Steps {
		if st.Name == name {
			return st
		}
	}
	return custodyv1alpha1.StepStatus{}
}

// waitStep waits until the step reaches phase and returns the workflow as then observed.
func waitStep(t *testing.T, wf *custodyv1alpha1.Workflow, step string, phase custodyv1alpha1.StepPhase) *custodyv1alpha1.Workflow {
	t.Helper()
	var cur *custodyv1alpha1.Workflow
	eventually(t, fmt.Sprintf("step %s to be %s", step, phase), func() error {
		cur = get(t, wf)
		if st := stepOf(cur, step); st.Phase != phase {
			return fmt.Errorf("step %s is %q (%s: %s)", step, st.Phase, st.Reason, st.Message)
		}
		return nil
	})
	return cur
}

// waitPhase waits until the workflow reaches phase.
func waitPhase(t *testing.T, wf *custodyv1alpha1.Workflow, phase custodyv1alpha1.WorkflowPhase) *custodyv1alpha1.Workflow {
	t.Helper()
	var cur *custodyv1alpha1.Workflow
	eventually(t, fmt.Sprintf("workflow to be %s", phase), func() error {
		cur = get(t, wf)
		if cur.Status.Phase != phase {
			return fmt.Errorf("workflow is %q, steps %s", cur.Status.Phase, summary(cur))
		}
		return nil
	})
	return cur
}

func summary(wf *custodyv1alpha1.Workflow) string {
	s := ""
	for _, st := range wf.Status.Steps {
		s += fmt.Sprintf("%s=%s(%s) ", st.Name, st.Phase, st.Reason)
	}
	return s
}

// jobOf waits for the Job of the step's current attempt and returns it.
// held returns what a step pod holds beyond its scratch directories (the emptyDirs of /tmp and of
// the step's scratch list): the volumes its identity and grants add, and their mounts.
func held(spec corev1.PodSpec) ([]corev1.Volume, []corev1.VolumeMount) {
	scratch := map[string]bool{}
	var vols []corev1.Volume
	for _, v := range spec.Volumes {
		if v.EmptyDir != nil {
			scratch[v.Name] = true
		} else {
			vols = append(vols, v)
		}
	}
	var mounts []corev1.VolumeMount
	for _, m := range spec.Containers[0].VolumeMounts {
		if !scratch[m.Name] {
			mounts = append(mounts, m)
		}
	}
	return vols, mounts
}

func jobOf(t *testing.T, wf *custodyv1alpha1.Workflow, step string, attempt int32) *batchv1.Job {
	t.Helper()
	name := jobspec.Name(wf.Name, string(wf.UID), step, attempt)
	job := &batchv1.Job{}
	eventually(t, "Job "+name, func() error {
		return env.Client.Get(ctxT(t), client.ObjectKey{Namespace: wf.Namespace, Name: name}, job)
	})
	return job
}

// jobs lists the workflow's Jobs.
func jobs(t *testing.T, wf *custodyv1alpha1.Workflow) []batchv1.Job {
	t.Helper()
	var list batchv1.JobList
	if err := env.Client.List(ctxT(t), &list, client.InNamespace(wf.Namespace),
		client.MatchingLabels{custodyv1alpha1.LabelWorkflow: wf.Name}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// createPod creates the pod the Job controller would create for job, scheduled on the test node.
func createPod(t *testing.T, job *batchv1.Job, suffix string) *corev1.Pod {
	t.Helper()
	return createPodOn(t, job, suffix, testNode)
}

// createPodOn is createPod for a pod scheduled on node.
func createPodOn(t *testing.T, job *batchv1.Job, suffix, node string) *corev1.Pod {
	t.Helper()
	labels := map[string]string{jobNameLabel: job.Name}
	for k, v := range job.Spec.Template.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: job.Name + "-" + suffix, Namespace: job.Namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = node
	if err := env.Client.Create(ctxT(t), pod); err != nil {
		t.Fatalf("creating pod for %s: %v", job.Name, err)
	}
	return pod
}

// runPod creates the pod the Job controller would create, scheduled on node, and sets its step
// container's terminated state and the pod's conditions.
func runPod(t *testing.T, job *batchv1.Job, exitCode int32, message string, conditions ...corev1.PodCondition) {
	t.Helper()
	runPodFor(t, job, 0, exitCode, message, conditions...)
}

// runPodFor is runPod for a step container that ran for ranFor before it exited.
func runPodFor(t *testing.T, job *batchv1.Job, ranFor time.Duration, exitCode int32, message string, conditions ...corev1.PodCondition) {
	t.Helper()
	ctx := ctxT(t)
	pod := createPod(t, job, "x7k2p")
	reason := "Completed"
	phase := corev1.PodSucceeded
	if exitCode != 0 {
		reason, phase = "Error", corev1.PodFailed
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: phase, Conditions: conditions,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: jobspec.ContainerName, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:0123",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: exitCode, Reason: reason, Message: message, StartedAt: metav1.NewTime(now.Add(-ranFor)), FinishedAt: now,
			}},
		}},
	}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatalf("setting pod status: %v", err)
	}
}

// finishJob sets the Job's status as kube-controller-manager does when its pod ended.
func finishJob(t *testing.T, job *batchv1.Job, succeeded bool, failReason string) {
	t.Helper()
	ctx := ctxT(t)
	eventually(t, "Job status update", func() error {
		cur := &batchv1.Job{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(job), cur); err != nil {
			return err
		}
		start := metav1.NewTime(cur.CreationTimestamp.Time)
		now := metav1.Now()
		cur.Status.StartTime = &start
		if succeeded {
			cur.Status.Succeeded = 1
			cur.Status.CompletionTime = &now
			cur.Status.Conditions = []batchv1.JobCondition{
				{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, LastTransitionTime: now},
				{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonCompletionsReached, LastTransitionTime: now},
			}
		} else {
			cur.Status.Failed = 1
			cur.Status.Conditions = []batchv1.JobCondition{
				{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: failReason, LastTransitionTime: now},
				{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: failReason, LastTransitionTime: now},
			}
		}
		return env.Client.Status().Update(ctx, cur)
	})
}

// succeed runs the step's attempt to success, writing results as its termination message.
func succeed(t *testing.T, wf *custodyv1alpha1.Workflow, step string, attempt int32, results string) *batchv1.Job {
	t.Helper()
	job := jobOf(t, wf, step, attempt)
	runPod(t, job, 0, results)
	finishJob(t, job, true, "")
	return job
}

// fail runs the step's attempt to failure (exit code 1).
func fail(t *testing.T, wf *custodyv1alpha1.Workflow, step string, attempt int32) *batchv1.Job {
	t.Helper()
	return failWith(t, wf, step, attempt, 1)
}

// failWith runs the step's attempt to failure with the exit code and the pod's conditions.
func failWith(t *testing.T, wf *custodyv1alpha1.Workflow, step string, attempt, exitCode int32,
	conditions ...corev1.PodCondition) *batchv1.Job {
	t.Helper()
	job := jobOf(t, wf, step, attempt)
	runPod(t, job, exitCode, "", conditions...)
	finishJob(t, job, false, batchv1.JobReasonBackoffLimitExceeded)
	return job
}

// kstatusOf computes the kstatus of the workflow, as Argo CD, Flux and kubectl wait do.
func kstatusOf(t *testing.T, wf *custodyv1alpha1.Workflow) status.Status {
	t.Helper()
	return testenv.Kstatus(t, get(t, wf))
}

// removePod deletes a pod at once, as its kubelet does once the pod stopped (after the garbage
// collector deleted the pod of a deleted Job, or the Job controller that of a Job that failed):
// envtest runs neither.
func removePod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if err := env.Client.Delete(ctxT(t), pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
		t.Fatalf("deleting pod %s: %v", pod.Name, err)
	}
}

// addDebugContainer adds to a step pod the ephemeral container `kubectl debug --image=busybox:1.36
// --target=step` would (within the restricted profile), as the tool kubectl-debug.
func addDebugContainer(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{
		TargetContainerName: jobspec.ContainerName,
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debugger", Image: "busybox:1.36", Stdin: true, TTY: true,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		},
	}}
	if err := env.Client.SubResource("ephemeralcontainers").Update(ctxT(t), pod,
		&client.SubResourceUpdateOptions{UpdateOptions: client.UpdateOptions{FieldManager: "kubectl-debug"}}); err != nil {
		t.Fatalf("adding an ephemeral container to %s: %v", pod.Name, err)
	}
}

// waitStopping waits until the workflow is Running and its Ready condition says it waits for
// the pods named to stop, and returns it as then observed.
func waitStopping(t *testing.T, wf *custodyv1alpha1.Workflow, pods ...string) *custodyv1alpha1.Workflow {
	t.Helper()
	var cur *custodyv1alpha1.Workflow
	eventually(t, "the workflow to wait for pods "+strings.Join(pods, ", ")+" to stop", func() error {
		cur = get(t, wf)
		c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReady)
		if cur.Status.Phase != custodyv1alpha1.WorkflowRunning || c == nil || c.Reason != custodyv1alpha1.ReasonStopping {
			return errorf("workflow %s, Ready %+v, steps %s", cur.Status.Phase, c, summary(cur))
		}
		for _, p := range pods {
			if !strings.Contains(c.Message, p) {
				return errorf("Ready says %q, not naming pod %s", c.Message, p)
			}
		}
		return nil
	})
	return cur
}

// cancelRun sets spec.cancel on the workflow, as `kubectl custody cancel` does.
func cancelRun(t *testing.T, wf *custodyv1alpha1.Workflow) {
	t.Helper()
	patchSpec(t, wf, func(s *custodyv1alpha1.WorkflowSpec) { s.Cancel = true })
}

// setSuspend sets spec.suspend on the workflow, as `kubectl custody suspend` and `resume` do.
func setSuspend(t *testing.T, wf *custodyv1alpha1.Workflow, suspend bool) {
	t.Helper()
	patchSpec(t, wf, func(s *custodyv1alpha1.WorkflowSpec) { s.Suspend = suspend })
}

// patchSpec changes the workflow's spec with a merge patch, as kubectl patch does.
func patchSpec(t *testing.T, wf *custodyv1alpha1.Workflow, change func(*custodyv1alpha1.WorkflowSpec)) {
	t.Helper()
	cur := get(t, wf)
	patch := client.MergeFrom(cur.DeepCopy())
	change(&cur.Spec)
	if err := env.Client.Patch(ctxT(t), cur, patch); err != nil {
		t.Fatal(err)
	}
}

// eventReasons returns the reasons of the Events recorded for the workflow.
func eventReasons(t *testing.T, wf *custodyv1alpha1.Workflow) map[string]int {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(ctxT(t), &list, client.InNamespace(wf.Namespace)); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Regarding.UID == wf.UID {
			out[e.Reason]++
		}
	}
	return out
}

// stepEvents returns, by step, the notes of the workflow's Events with the given reason that are
// about one step (fieldPath status.steps{name}); an Event folded into a series counts as many
// times as its series says, with its one note.
func stepEvents(t *testing.T, wf *custodyv1alpha1.Workflow, reason string) map[string][]string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Client.List(ctxT(t), &list, client.InNamespace(wf.Namespace)); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range list.Items {
		if e.Regarding.UID != wf.UID || e.Reason != reason {
			continue
		}
		step := strings.TrimSuffix(strings.TrimPrefix(e.Regarding.FieldPath, "status.steps{"), "}")
		n := 1
		if e.Series != nil {
			n = int(e.Series.Count)
		}
		for range n {
			out[step] = append(out[step], e.Note)
		}
	}
	return out
}

// waitStepEvents waits until the step has Events with the reason (they are recorded after the
// status that explains them is saved, asynchronously) and returns their notes.
func waitStepEvents(t *testing.T, wf *custodyv1alpha1.Workflow, step, reason string) []string {
	t.Helper()
	var notes []string
	eventually(t, fmt.Sprintf("%s Events of step %s", reason, step), func() error {
		if notes = stepEvents(t, wf, reason)[step]; len(notes) == 0 {
			return errorf("none yet")
		}
		return nil
	})
	return notes
}

// kubectl runs the pinned kubectl as an admin of the test API server and returns what it printed.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := env.Kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return out
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
