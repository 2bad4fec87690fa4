package workflow

// Identity stories: the real reconciler (envtest) against a real spire-server from bin/, one
// server per test (sqlite, admin socket in a temp dir). They check the entries in SPIRE itself.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
	"github.com/custody-dev/custody/internal/spiretest"
)

const testNode = "node-a"

var nodeOnce sync.Once

// identityEnv is one test's namespace, SPIRE server and controller with identity on.
type identityEnv struct {
	ns     string
	server *spiretest.Server
	reg    *spire.Client
	cfg    *identity.Config
	node   types.UID
	// stop stops the controller; start starts another one (as after a crash or an upgrade).
	stop  func()
	start func()
}

func setupIdentity(t *testing.T) *identityEnv {
	t.Helper()
	return setupIdentityWith(t, ctrl.Log)
}

// setupIdentityWith is setupIdentity with the manager logging to logger.
func setupIdentityWith(t *testing.T, logger logr.Logger) *identityEnv {
	t.Helper()
	return setupIdentityAt(t, logger, "/spiffe-workload-api/spire-agent.sock")
}

// setupIdentityAt is setupIdentityWith with the Workload API socket at socketPath in step
// containers (--workload-api-socket-path).
func setupIdentityAt(t *testing.T, logger logr.Logger, socketPath string) *identityEnv {
	t.Helper()
	ctx := context.Background()
	srv, err := spiretest.StartServer(ctx)
	if err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("spire-server log:\n%s", srv.Log())
		}
		_ = srv.Close()
	})
	reg, err := spire.Dial(ctx, spire.Options{Address: srv.Address})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	scheme, err := identity.NewScheme(spiretest.TrustDomain, "test-cluster", identity.DefaultEntryIDPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &identity.Config{Scheme: scheme, Registrar: reg, X509SVIDTTL: 5 * time.Minute, JWTSVIDTTL: 2 * time.Minute,
		MaxSVIDTTL: time.Hour, MaxEntryLifetime: 24 * time.Hour, SocketPath: socketPath}
	e := &identityEnv{server: srv, reg: reg, cfg: cfg, node: ensureNode(t)}
	e.ns = env.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	e.start = func() { e.stop = startController(t, e.ns, func(r *Reconciler) { r.Identity = cfg }, logger) }
	e.start()
	return e
}

// ensureNode creates the node step pods run on (nodes are cluster-wide, so once).
func ensureNode(t *testing.T) types.UID {
	t.Helper()
	nodeOnce.Do(func() {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode}}
		if err := env.Client.Create(ctxT(t), node); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	})
	node := &corev1.Node{}
	if err := env.Client.Get(ctxT(t), client.ObjectKey{Name: testNode}, node); err != nil {
		t.Fatal(err)
	}
	return node.UID
}

// startPod creates the Job's pod running its step container on the test node.
func startPod(t *testing.T, job *batchv1.Job) *corev1.Pod {
	t.Helper()
	return startPodNamed(t, job, "r4nd0")
}

// startPodNamed is startPod for a pod named after the Job and suffix.
func startPodNamed(t *testing.T, job *batchv1.Job, suffix string) *corev1.Pod {
	t.Helper()
	ctx := ctxT(t)
	pod := createPod(t, job, suffix)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: jobspec.ContainerName, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:0123", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatalf("setting pod status: %v", err)
	}
	return pod
}

// endPod ends the step container of a running pod with an exit code.
func endPod(t *testing.T, pod *corev1.Pod, exitCode int32) {
	t.Helper()
	eventually(t, "pod status update", func() error {
		cur := &corev1.Pod{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(pod), cur); err != nil {
			return err
		}
		cur.Status.Phase = corev1.PodSucceeded
		reason := "Completed"
		if exitCode != 0 {
			cur.Status.Phase, reason = corev1.PodFailed, "Error"
		}
		cs := &cur.Status.ContainerStatuses[0]
		cs.Ready = false
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: exitCode, Reason: reason, StartedAt: cs.State.Running.StartedAt, FinishedAt: metav1.Now()}}
		return env.Client.Status().Update(ctxT(t), cur)
	})
}

func (e *identityEnv) entries(t *testing.T) []identity.Entry {
	t.Helper()
	got, err := e.reg.List(ctxT(t), e.cfg.Scheme.EntryIDPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitEntries waits until exactly the entries with these IDs exist with Custody's prefix.
func (e *identityEnv) waitEntries(t *testing.T, ids ...string) []identity.Entry {
	t.Helper()
	var got []identity.Entry
	eventually(t, fmt.Sprintf("SPIRE entries %v", ids), func() error {
		got = e.entries(t)
		have := make([]string, 0, len(got))
		for _, g := range got {
			have = append(have, g.ID)
		}
		slices.Sort(have)
		want := slices.Clone(ids)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			return fmt.Errorf("entries %v, want %v", have, want)
		}
		return nil
	})
	return got
}

func (e *identityEnv) entryID(t *testing.T, wf *custodyv1alpha1.Workflow, step string, n int32) string {
	t.Helper()
	return e.cfg.Scheme.EntryID(identity.Attempt{Namespace: wf.Namespace, Workflow: wf.Name, WorkflowUID: get(t, wf).UID,
		Step: step, Number: n})
}

func waitIdentity(t *testing.T, wf *custodyv1alpha1.Workflow, step string, state custodyv1alpha1.IdentityState) *custodyv1alpha1.Workflow {
	t.Helper()
	var cur *custodyv1alpha1.Workflow
	eventually(t, fmt.Sprintf("step %s identity %s", step, state), func() error {
		cur = get(t, wf)
		st := stepOf(cur, step)
		if st.Identity == nil || st.Identity.State != state {
			return fmt.Errorf("step %s identity %+v; %s", step, st.Identity, summary(cur))
		}
		return nil
	})
	return cur
}

func waitGone(t *testing.T, wf *custodyv1alpha1.Workflow) {
	t.Helper()
	eventually(t, "workflow deleted", func() error {
		err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(wf), &custodyv1alpha1.Workflow{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %w", err)
	})
}

func hasFinalizer(t *testing.T, wf *custodyv1alpha1.Workflow) bool {
	return controllerutil.ContainsFinalizer(get(t, wf), custodyv1alpha1.FinalizerRevocation)
}

// TestIdentity_entryLivesExactlyWhileTheStepRuns: the entry appears when the pod is on a node,
// with exactly the selectors, parent, expiry and TTLs of the design, and is deleted as soon as
// the step container ends, before the Job is even done.
func TestIdentity_entryLivesExactlyWhileTheStepRuns(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: example.com/w:1, timeout: 10m}`)
	job := jobOf(t, wf, "post", 1)
	// Only the step container mounts the Workload API, read-only.
	vols, mounts := held(job.Spec.Template.Spec)
	if len(vols) != 1 || vols[0].CSI == nil || vols[0].CSI.Driver != "csi.spiffe.io" ||
		!*vols[0].CSI.ReadOnly || len(mounts) != 1 || !mounts[0].ReadOnly {
		t.Errorf("pod volumes = %+v, mounts = %+v", vols, mounts)
	}
	cur := waitStep(t, wf, "post", custodyv1alpha1.StepRunning)
	if st := stepOf(cur, "post"); st.Identity == nil || st.Identity.State != custodyv1alpha1.IdentityPending {
		t.Errorf("before the pod is scheduled the identity is %+v, want Pending", st.Identity)
	}
	if got := e.entries(t); len(got) != 0 {
		t.Fatalf("entries exist before the pod is on a node: %+v", got)
	}

	pod := startPod(t, job)
	id := e.entryID(t, wf, "post", 1)
	got := e.waitEntries(t, id)[0]
	cur = waitIdentity(t, wf, "post", custodyv1alpha1.IdentityRegistered)
	uid := string(cur.UID)
	want := "spiffe://example.org/ns/" + e.ns + "/workflow/pay/step/post/run/" + uid + "/attempt/1"
	if got.SPIFFEID.String() != want || stepOf(cur, "post").SPIFFEID != want {
		t.Errorf("SPIFFE ID = %s (status %s), want %s", got.SPIFFEID, stepOf(cur, "post").SPIFFEID, want)
	}
	if parent := "spiffe://example.org/spire/agent/k8s_psat/test-cluster/" + string(e.node); got.ParentID.String() != parent {
		t.Errorf("parent = %s, want %s", got.ParentID, parent)
	}
	wantSel := []string{"k8s:ns:" + e.ns, "k8s:sa:" + job.Spec.Template.Spec.ServiceAccountName,
		"k8s:pod-uid:" + string(pod.UID), "k8s:container-name:step"}
	haveSel := make([]string, 0, len(got.Selectors))
	for _, s := range got.Selectors {
		haveSel = append(haveSel, s.String())
	}
	slices.Sort(haveSel)
	slices.Sort(wantSel)
	if !slices.Equal(haveSel, wantSel) {
		t.Errorf("selectors = %v, want exactly %v", haveSel, wantSel)
	}
	deadline := job.CreationTimestamp.Add(10 * time.Minute)
	if got.ExpiresAt.Before(deadline) || got.ExpiresAt.After(deadline.Add(2*time.Second)) {
		t.Errorf("expiresAt = %s, want the step deadline %s", got.ExpiresAt, deadline)
	}
	if got.X509SVIDTTL != 5*time.Minute || got.JWTSVIDTTL != 2*time.Minute {
		t.Errorf("TTLs = %s/%s, want 5m/2m", got.X509SVIDTTL, got.JWTSVIDTTL)
	}
	if !hasFinalizer(t, wf) {
		t.Error("a workflow holding an entry has no revocation finalizer")
	}

	endPod(t, pod, 0)
	e.waitEntries(t)
	cur = waitIdentity(t, wf, "post", custodyv1alpha1.IdentityRevoked)
	if st := stepOf(cur, "post"); st.Phase != custodyv1alpha1.StepRunning {
		t.Logf("step already %s when its entry was revoked", st.Phase)
	}
	finishJob(t, job, true, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	eventually(t, "finalizer released", func() error {
		if hasFinalizer(t, wf) {
			return fmt.Errorf("finalizer still there")
		}
		return nil
	})
	reasons := eventReasons(t, wf)
	if reasons[custodyv1alpha1.ReasonIdentityIssued] != 1 || reasons[custodyv1alpha1.ReasonIdentityRevoked] != 1 {
		t.Errorf("events = %v, want one IdentityIssued and one IdentityRevoked", reasons)
	}
}

// TestIdentity_scratchWhereTheSocketIs: where the platform mounts the Workload API socket
// somewhere else than the default the CRD guards (--workload-api-socket-path), a step whose
// scratch directory is that directory, or inside it, fails saying so, and nothing is created for
// it; a step whose scratch directory holds the socket's runs, with both mounts.
func TestIdentity_scratchWhereTheSocketIs(t *testing.T) {
	t.Parallel()
	e := setupIdentityAt(t, ctrl.Log, "/run/spire/sockets/agent.sock")
	wf := apply(t, e.ns, `
metadata: {name: scratch}
spec:
  steps:
  - {name: at, image: example.com/w:1, scratch: [{path: /run/spire/sockets}]}
  - {name: inside, image: example.com/w:1, scratch: [{path: /workspace}, {path: /run/spire/sockets/cache}]}
  - {name: around, image: example.com/w:1, scratch: [{path: /run}]}`)
	for _, name := range []string{"at", "inside"} {
		st := stepOf(waitStep(t, wf, name, custodyv1alpha1.StepFailed), name)
		dir := map[string]string{"at": "/run/spire/sockets", "inside": "/run/spire/sockets/cache"}[name]
		if st.Reason != custodyv1alpha1.ReasonInvalidSpec || st.Message != "scratch directory "+dir+
			" is where the SPIFFE Workload API socket is mounted (/run/spire/sockets): choose another path" || st.JobName != "" {
			t.Errorf("step %s: %s %q, Job %q", name, st.Reason, st.Message, st.JobName)
		}
	}
	around := jobOf(t, wf, "around", 1).Spec.Template.Spec.Containers[0].VolumeMounts
	mounts := make([]string, 0, len(around))
	for _, m := range around {
		mounts = append(mounts, m.MountPath)
	}
	if want := []string{"/tmp", "/run", "/run/spire/sockets"}; !slices.Equal(mounts, want) {
		t.Errorf("mounts of the step around the socket: %v, want %v", mounts, want)
	}
	if reasons := eventReasons(t, wf); reasons[custodyv1alpha1.ReasonInvalidSpec] != 2 {
		t.Errorf("events %v, want two InvalidSpec", reasons)
	}
}

// TestIdentity_retryGetsANewIdentity: a failed attempt's entry is deleted, and its retry gets
// its own SPIFFE ID and entry.
func TestIdentity_retryGetsANewIdentity(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: retry}
spec:
  steps:
  - {name: a, image: example.com/w:1, retries: {limit: 1, backoff: {duration: 1s}}}`)
	job1 := jobOf(t, wf, "a", 1)
	pod1 := startPod(t, job1)
	e.waitEntries(t, e.entryID(t, wf, "a", 1))
	first := stepOf(waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRegistered), "a").SPIFFEID
	endPod(t, pod1, 1)
	finishJob(t, job1, false, batchv1.JobReasonBackoffLimitExceeded)
	e.waitEntries(t)
	// Status shows attempt 1's identity Revoked until attempt 2 starts, 1 s later; on a busy
	// machine the reconcile that records the revocation may start attempt 2 as well.
	eventually(t, "attempt 1's identity revoked in status", func() error {
		id := stepOf(get(t, wf), "a").Identity
		if id == nil || (id.Attempt == 1 && id.State != custodyv1alpha1.IdentityRevoked) {
			return errorf("identity %+v", id)
		}
		return nil
	})

	job2 := jobOf(t, wf, "a", 2)
	pod2 := startPod(t, job2)
	got := e.waitEntries(t, e.entryID(t, wf, "a", 2))[0]
	if got.SPIFFEID.String() == first || !strings.HasSuffix(got.SPIFFEID.String(), "/attempt/2") {
		t.Errorf("attempt 2 has SPIFFE ID %s; attempt 1 had %s", got.SPIFFEID, first)
	}
	endPod(t, pod2, 0)
	finishJob(t, job2, true, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	e.waitEntries(t)
}

// TestIdentity_ephemeralContainerRevokesTheEntry: a container added to a running step's pod
// (kubectl debug) could fetch the step's SVID through the step's processes: the entry is deleted
// at once and the attempt fails.
func TestIdentity_ephemeralContainerRevokesTheEntry(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: debugged}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	podA := startPod(t, jobOf(t, wf, "a", 1))
	e.waitEntries(t, e.entryID(t, wf, "a", 1))
	addDebugContainer(t, podA)
	e.waitEntries(t)
	cur := waitStep(t, wf, "a", custodyv1alpha1.StepFailed)
	if st := stepOf(cur, "a"); st.LastFailureReason != custodyv1alpha1.StepReasonEphemeralContainerAdded {
		t.Errorf("step a: lastFailureReason %q, message %q", st.LastFailureReason, st.Message)
	}
	eventually(t, "a's identity revoked in status", func() error {
		if id := stepOf(get(t, wf), "a").Identity; id == nil || id.State != custodyv1alpha1.IdentityRevoked {
			return errorf("identity %+v", id)
		}
		return nil
	})
}

// TestIdentity_podOfAnotherServiceAccountGetsNoEntry: a pod relabelled as a step's and given its
// Job as controller (whoever may update a pod can write both), running on a node before the real
// pod, does not get the attempt's entry: it runs as another ServiceAccount. The real pod does.
func TestIdentity_podOfAnotherServiceAccountGetsNoEntry(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: pay}
spec:
  steps:
  - {name: post, image: example.com/w:1}`)
	job := jobOf(t, wf, "post", 1)
	if err := env.Client.Create(ctxT(t), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "tools"}}); err != nil {
		t.Fatal(err)
	}
	impostor := startPodNamed(t, withServiceAccount(job, "tools"), "impst")
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got := e.entries(t); len(got) != 0 {
			t.Fatalf("an entry for the impostor pod %s: %+v", impostor.Name, got)
		}
	}
	pod := startPod(t, job)
	got := e.waitEntries(t, e.entryID(t, wf, "post", 1))[0]
	if !slices.ContainsFunc(got.Selectors, func(s identity.Selector) bool { return s.String() == "k8s:pod-uid:"+string(pod.UID) }) {
		t.Errorf("the entry's selectors %v, want the step's pod's UID %s", got.Selectors, pod.UID)
	}
}

// TestIdentity_cancelTimeoutAndFailureRevoke: whatever ends the attempt, the entry goes, without
// waiting for the pod to stop. Step a times out (the Job fails with DeadlineExceeded while the
// container still runs, as before Kubernetes 1.31); b is cancelled with the workflow, which ends
// once both pods stopped.
func TestIdentity_cancelTimeoutAndFailureRevoke(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: stop}
spec:
  steps:
  - {name: a, image: example.com/w:1, timeout: 5s}
  - {name: b, image: example.com/w:1}`)
	ja, jb := jobOf(t, wf, "a", 1), jobOf(t, wf, "b", 1)
	pa := startPod(t, ja)
	pb := startPod(t, jb)
	e.waitEntries(t, e.entryID(t, wf, "a", 1), e.entryID(t, wf, "b", 1))
	finishJob(t, ja, false, batchv1.JobReasonDeadlineExceeded)
	e.waitEntries(t, e.entryID(t, wf, "b", 1))
	waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRevoked)

	cancelRun(t, wf)
	e.waitEntries(t)
	waitIdentity(t, wf, "b", custodyv1alpha1.IdentityRevoked)
	waitStopping(t, wf, pa.Name, pb.Name)
	removePod(t, pa)
	removePod(t, pb)
	waitPhase(t, wf, custodyv1alpha1.WorkflowCancelled)
}

// TestIdentity_workflowTimeoutRevokes: the workflow's own timeout stops its steps and revokes.
func TestIdentity_workflowTimeoutRevokes(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: slow}
spec:
  timeout: 8s
  steps:
  - {name: a, image: example.com/w:1}`)
	// The timeout leaves a busy API server time to register the entry before it ends the run.
	pod := startPod(t, jobOf(t, wf, "a", 1))
	got := e.waitEntries(t, e.entryID(t, wf, "a", 1))[0]
	var start time.Time
	eventually(t, "the run's start saved", func() error {
		if st := get(t, wf).Status.StartTime; st != nil {
			start = st.Time
			return nil
		}
		return fmt.Errorf("no startTime yet")
	})
	if got.ExpiresAt.After(start.Add(10 * time.Second)) {
		t.Errorf("entry expires at %s, after the workflow's deadline %s", got.ExpiresAt, start.Add(8*time.Second))
	}
	// Revoked when the run stops its step, not when the pod is gone: the run waits for that.
	waitStopping(t, wf, pod.Name)
	e.waitEntries(t)
	removePod(t, pod)
	waitPhase(t, wf, custodyv1alpha1.WorkflowFailed)
}

// TestIdentity_deletionRevokesBeforeTheWorkflowGoes: deleting a running workflow deletes its
// entries first; the finalizer holds the workflow until then.
func TestIdentity_deletionRevokesBeforeTheWorkflowGoes(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: doomed}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	startPod(t, jobOf(t, wf, "a", 1))
	e.waitEntries(t, e.entryID(t, wf, "a", 1))
	waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRegistered)
	if err := env.Client.Delete(ctxT(t), get(t, wf)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, wf)
	e.waitEntries(t)
}

// TestIdentity_spireDownRevocationFailsClosed: with SPIRE stopped, an ended attempt's entry
// cannot be deleted: the workflow says so (condition, Event, step state), keeps its finalizer,
// and a deleted workflow stays. Once SPIRE is back, revocation completes and nothing is left.
func TestIdentity_spireDownRevocationFailsClosed(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: down}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	other := apply(t, e.ns, `
metadata: {name: down-deleted}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	job := jobOf(t, wf, "a", 1)
	pod := startPod(t, job)
	startPod(t, jobOf(t, other, "a", 1))
	e.waitEntries(t, e.entryID(t, wf, "a", 1), e.entryID(t, other, "a", 1))
	waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRegistered)
	waitIdentity(t, other, "a", custodyv1alpha1.IdentityRegistered)

	if err := e.server.Stop(); err != nil {
		t.Fatal(err)
	}
	endPod(t, pod, 0)
	finishJob(t, job, true, "")
	if err := env.Client.Delete(ctxT(t), get(t, other)); err != nil {
		t.Fatal(err)
	}
	cur := waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRevocationPending)
	eventually(t, "the workflow reports the pending revocation", func() error {
		cur = get(t, wf)
		c := meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReconciling)
		if cur.Status.Phase != custodyv1alpha1.WorkflowSucceeded || c == nil || c.Status != metav1.ConditionTrue ||
			c.Reason != custodyv1alpha1.ReasonRevocationPending {
			return fmt.Errorf("phase %s, Reconciling %+v", cur.Status.Phase, c)
		}
		return nil
	})
	if s := kstatusOf(t, cur); s != "InProgress" {
		t.Errorf("kstatus %s while revocation is pending, want InProgress", s)
	}
	if !hasFinalizer(t, wf) {
		t.Error("the finalizer was released while revocation is pending")
	}
	if eventReasons(t, wf)[custodyv1alpha1.ReasonRevocationPending] == 0 {
		t.Error("no RevocationPending Event")
	}
	// The deleted workflow is held by its finalizer.
	time.Sleep(2 * time.Second)
	if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(other), &custodyv1alpha1.Workflow{}); err != nil {
		t.Fatalf("the deleted workflow went while SPIRE was down: %v", err)
	}

	if err := e.server.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRevoked)
	waitGone(t, other)
	e.waitEntries(t)
	eventually(t, "settled", func() error {
		cur = get(t, wf)
		if meta.FindStatusCondition(cur.Status.Conditions, custodyv1alpha1.ConditionReconciling) != nil ||
			!meta.IsStatusConditionTrue(cur.Status.Conditions, custodyv1alpha1.ConditionReady) || hasFinalizer(t, wf) {
			return fmt.Errorf("conditions %+v, finalizers %v", cur.Status.Conditions, cur.Finalizers)
		}
		return nil
	})
}

// TestIdentity_sweepDeletesOrphansOnly: the sweep deletes entries with Custody's prefix that no
// running attempt owns (a vanished workflow's, an ended attempt's, a malformed one), and keeps a
// running attempt's entry and every entry with another prefix.
func TestIdentity_sweepDeletesOrphansOnly(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: sweep}
spec:
  steps:
  - {name: a, image: example.com/w:1}
  - {name: b, image: example.com/w:1, dependsOn: [a]}`)
	startPod(t, jobOf(t, wf, "a", 1))
	live := e.entryID(t, wf, "a", 1)
	e.waitEntries(t, live)
	waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRegistered)

	td := e.cfg.Scheme.TrustDomain
	plant := func(id string) identity.Entry {
		return identity.Entry{ID: id, SPIFFEID: spiffeid.RequireFromSegments(td, "planted", strings.ReplaceAll(id, ".", "-")),
			ParentID:  spiffeid.RequireFromSegments(td, "spire", "agent", "x"),
			Selectors: []identity.Selector{{Type: "k8s", Value: "pod-uid:" + id}}}
	}
	stale := []string{
		e.cfg.Scheme.EntryID(identity.Attempt{WorkflowUID: "0b6f2d9e-0000-4000-8000-000000000000", Step: "a", Number: 1}),
		e.entryID(t, wf, "b", 1), // a step that has not started
		e.entryID(t, wf, "a", 7), // an attempt that is not the running one
		"custody.not-our-shape",
	}
	foreign := "k8s-cluster.some-pod-entry"
	planted := make([]identity.Entry, 0, len(stale)+1)
	for _, id := range append(slices.Clone(stale), foreign) {
		planted = append(planted, plant(id))
	}
	res, err := e.reg.Create(ctxT(t), planted)
	if err != nil || slices.ContainsFunc(res, func(err error) bool { return err != nil }) {
		t.Fatalf("planting entries: %v %v", res, err)
	}
	// Young entries are spared (an attempt's status may not be saved yet when its entry is made).
	sw := &Sweeper{Reader: env.Client, APIReader: env.Client, Identity: e.cfg, Interval: time.Minute, MinAge: time.Hour}
	if deleted, _, err := sw.Sweep(ctxT(t)); err != nil || deleted != 0 {
		t.Fatalf("a sweep sparing young entries deleted %d (%v)", deleted, err)
	}
	sw.MinAge = 0
	deleted, kept, err := sw.Sweep(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if deleted != len(stale) || kept != 1 {
		t.Errorf("sweep deleted %d and kept %d, want %d and 1", deleted, kept, len(stale))
	}
	e.waitEntries(t, live)
	if got, err := e.reg.List(ctxT(t), "k8s-cluster."); err != nil || len(got) != 1 {
		t.Errorf("the foreign entry is gone: %v %v", got, err)
	}
}

// TestIdentity_disabledWithoutSPIRE: without SPIRE the steps run, without identity, and the
// status says so.
func TestIdentity_disabledWithoutSPIRE(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: plain}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	job := jobOf(t, wf, "a", 1)
	if vols, _ := held(job.Spec.Template.Spec); len(vols) != 0 || len(job.Spec.Template.Spec.Containers[0].Env) != 0 {
		t.Errorf("a step without SPIRE mounts %+v / env %+v", vols, job.Spec.Template.Spec.Containers[0].Env)
	}
	st := stepOf(waitIdentity(t, wf, "a", custodyv1alpha1.IdentityDisabled), "a")
	if st.SPIFFEID != "" || !strings.Contains(st.Identity.Message, "SPIRE is not configured") {
		t.Errorf("identity %+v, SPIFFE ID %q", st.Identity, st.SPIFFEID)
	}
	succeed(t, wf, "a", 1, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	if hasFinalizer(t, wf) {
		t.Error("a workflow without identity has the revocation finalizer")
	}
}

// TestIdentity_controllerRestart: a new controller (nothing in memory) neither registers a live
// attempt twice nor forgets to revoke it when it ends.
func TestIdentity_controllerRestart(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	wf := apply(t, e.ns, `
metadata: {name: restart}
spec:
  steps:
  - {name: a, image: example.com/w:1}`)
	job := jobOf(t, wf, "a", 1)
	pod := startPod(t, job)
	id := e.entryID(t, wf, "a", 1)
	e.waitEntries(t, id)
	registered := stepOf(waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRegistered), "a").Identity.RegisteredTime
	// Events are sent asynchronously: let the first one arrive before the controller stops.
	eventually(t, "the IdentityIssued Event", func() error {
		if eventReasons(t, wf)[custodyv1alpha1.ReasonIdentityIssued] == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	e.stop()

	e.start()
	time.Sleep(2 * time.Second)
	e.waitEntries(t, id)
	if st := stepOf(get(t, wf), "a"); st.Identity.State != custodyv1alpha1.IdentityRegistered ||
		!st.Identity.RegisteredTime.Equal(registered) {
		t.Errorf("after the restart the identity is %+v, want still Registered at %s", st.Identity, registered)
	}
	endPod(t, pod, 0)
	finishJob(t, job, true, "")
	waitPhase(t, wf, custodyv1alpha1.WorkflowSucceeded)
	e.waitEntries(t)
	waitIdentity(t, wf, "a", custodyv1alpha1.IdentityRevoked)
	if n := eventReasons(t, wf)[custodyv1alpha1.ReasonIdentityIssued]; n != 1 {
		t.Errorf("%d IdentityIssued Events, want 1", n)
	}
}

// TestIdentity_spiffeGrantShapesTheEntry: a spiffe grant adds DNS names and shorter TTLs to the
// attempt's entry; suspending the grant takes them away while the step keeps its identity.
func TestIdentity_spiffeGrantShapesTheEntry(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	g := grant(t, e.ns, `
metadata: {name: svid}
spec:
  subjects: [{workflowName: shaped, steps: [a]}]
  credential: {spiffe: {dnsNames: [pay.example.org], x509TTL: 10m, jwtTTL: 1m, audiences: [erp]}}`)
	wf := apply(t, e.ns, `
metadata: {name: shaped}
spec:
  steps:
  - {name: a, image: example.com/w:1, credentials: [svid]}`)
	startPod(t, jobOf(t, wf, "a", 1))
	id := e.entryID(t, wf, "a", 1)
	got := e.waitEntries(t, id)[0]
	if len(got.DNSNames) != 1 || got.DNSNames[0] != "pay.example.org" || got.X509SVIDTTL != 10*time.Minute ||
		got.JWTSVIDTTL != time.Minute {
		t.Errorf("entry %+v, want the grant's DNS name and TTLs", got)
	}
	if c := credentialOf(get(t, wf), "a"); c.Kind != custodyv1alpha1.CredentialKindSPIFFE || c.SPIFFEID == "" || c.RevokedAt != nil {
		t.Errorf("record %+v", c)
	}
	suspend(t, g, true)
	eventually(t, "the entry loses what the grant added", func() error {
		got = e.waitEntries(t, id)[0]
		if len(got.DNSNames) != 0 || got.X509SVIDTTL != 5*time.Minute || got.JWTSVIDTTL != 2*time.Minute {
			return fmt.Errorf("entry %+v", got)
		}
		return nil
	})
	// The entry is rewritten during the reconcile whose status patch records the revocation: the
	// status can trail it by a moment.
	eventually(t, "status records the grant's revocation, the identity kept", func() error {
		if st := stepOf(get(t, wf), "a"); st.Identity.State != custodyv1alpha1.IdentityRegistered || st.Credentials[0].RevokedAt == nil {
			return fmt.Errorf("identity %+v, credentials %+v", st.Identity, st.Credentials)
		}
		return nil
	})
}

// TestIdentity_registersBeforeStatusIsSaved: a step pod can be on a node before the reconcile that
// created its Job saved any step status (a workflow's first steps; a run of a template, whose
// first save records only the template). The identity controller still registers it: it used to
// skip such a pod and never look again, and the attempt then ran without an identity
// ("NotIssued"). And the entry still expires at the workflow's timeout, which status does not
// show yet either (it expired after the longest entry lifetime). The reconcile is called
// directly, so the window is not left to timing.
func TestIdentity_registersBeforeStatusIsSaved(t *testing.T) {
	t.Parallel()
	e := setupIdentity(t)
	ns := env.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}) // no controller here
	r := &Reconciler{Client: env.Client, APIReader: env.Client, Recorder: nil, Clock: clock.RealClock{}, Identity: e.cfg,
		observed: newObservations(), registry: newRegistry(), wake: make(chan event.GenericEvent, 16)}
	for _, manifest := range []string{`
metadata: {name: early-pod, finalizers: [custody.dev/revocation]}
spec:
  timeout: 5m
  steps: [{name: first, image: example.com/f:1}]`, `
metadata: {name: early-run, finalizers: [custody.dev/revocation]}
spec:
  timeout: 5m
  workflowTemplateRef: {name: not-resolved-yet}`} {
		wf := createHeld(t, ns, manifest)
		if len(wf.Status.Steps) != 0 || wf.Status.StartTime != nil {
			t.Fatalf("%s: status already saved: %+v", wf.Name, wf.Status)
		}
		step := custodyv1alpha1.Step{Name: "first", Image: "example.com/f:1"}
		job := jobspec.Job(jobspec.Attempt{Workflow: wf, Step: &step, Number: 1, WorkloadAPISocket: e.cfg.SocketPath})
		if err := env.Client.Create(ctxT(t), job); err != nil {
			t.Fatal(err)
		}
		pod := startPod(t, job)
		podEvent(t, r, pod)
		id := e.cfg.Scheme.EntryID(identity.Attempt{Namespace: ns, Workflow: wf.Name, WorkflowUID: wf.UID, Step: "first", Number: 1})
		var found *identity.Entry
		for _, en := range e.entries(t) {
			if en.ID == id {
				found = &en
			}
		}
		if found == nil {
			t.Fatalf("%s: no SPIRE entry %s for a pod on a node whose step status was not saved yet", wf.Name, id)
		}
		// The run's start is not saved either: the workflow's timeout still bounds the entry,
		// from the Job's creation, not the longest entry lifetime (24h here).
		if deadline := job.CreationTimestamp.Add(5*time.Minute + time.Second); found.ExpiresAt.After(deadline) {
			t.Errorf("%s: entry expires at %s, after the workflow's timeout (%s)", wf.Name, found.ExpiresAt, deadline)
		}
		if rec, known := r.registry.get(id); !known || rec.registered.IsZero() {
			t.Errorf("%s: registry = %+v (known %v), want the registration recorded for the Workflow reconciler",
				wf.Name, rec, known)
		}
		if _, err := e.reg.Delete(ctxT(t), []string{id}); err != nil {
			t.Fatal(err)
		}
	}
}

// createHeld creates a Workflow (with the revocation finalizer, in a namespace no controller
// watches) for a test that plays the controller; the finalizer is removed at the end.
func createHeld(t *testing.T, ns, manifest string) *custodyv1alpha1.Workflow {
	t.Helper()
	wf := &custodyv1alpha1.Workflow{}
	if err := yaml.UnmarshalStrict([]byte(manifest), wf); err != nil {
		t.Fatal(err)
	}
	wf.Namespace = ns
	if err := env.Client.Create(ctxT(t), wf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cur := &custodyv1alpha1.Workflow{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(wf), cur); err == nil {
			cur.Finalizers = nil
			_ = env.Client.Update(context.Background(), cur)
		}
	})
	return wf
}

// deleteCounter is the SPIRE client, counting the deletions asked for by entry ID.
type deleteCounter struct {
	identity.Registrar
	mu      sync.Mutex
	deletes map[string]int
}

func (c *deleteCounter) Delete(ctx context.Context, ids []string) ([]error, error) {
	c.mu.Lock()
	for _, id := range ids {
		c.deletes[id]++
	}
	c.mu.Unlock()
	return c.Registrar.Delete(ctx, ids)
}

// revocations is how many revocations custody_identity_revocation_seconds has observed, and
// the sum of their latencies.
func revocations(t *testing.T) (uint64, time.Duration) {
	t.Helper()
	var m dto.Metric
	if err := metrics.IdentityRevocation.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), time.Duration(m.GetHistogram().GetSampleSum() * float64(time.Second))
}

// TestIdentity_revocationCountedOnce: the identity controller (when the pod's step container
// ends) and the Workflow reconciler (when it ends the attempt) both revoke, in either order, and
// the identity controller may read a Workflow that still shows the entry Registered after the
// other recorded the revocation (its cache is behind). Each entry is deleted from SPIRE once and
// custody_identity_revocation_seconds counts each revocation once: it counted 85-87 for 60
// attempts in the identity benchmark. The reconciles are called directly, in every order, so
// the windows are not left to timing. Not parallel: the histogram is the process's own.
func TestIdentity_revocationCountedOnce(t *testing.T) {
	e := setupIdentity(t)
	ns := env.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}) // no controller here
	wf := createHeld(t, ns, `
metadata: {name: counted, finalizers: [custody.dev/revocation]}
spec:
  steps:
  - {name: one, image: example.com/one:1}
  - {name: two, image: example.com/two:1}
  - {name: three, image: example.com/three:1}`)
	r, counter := countingReconciler(t, e)
	cfg := r.Identity

	// Both steps run and are registered, and status says so (what the Workflow reconciler saves).
	jobs, pods, ids, jobNames := map[string]*batchv1.Job{}, map[string]*corev1.Pod{}, map[string]string{}, map[string]string{}
	for i := range wf.Spec.Steps {
		step := &wf.Spec.Steps[i]
		job := jobspec.Job(jobspec.Attempt{Workflow: wf, Step: step, Number: 1, WorkloadAPISocket: cfg.SocketPath})
		if err := env.Client.Create(ctxT(t), job); err != nil {
			t.Fatal(err)
		}
		jobs[job.Name], jobNames[step.Name] = job, job.Name
		ids[step.Name] = cfg.Scheme.EntryID(r.identityAttempt(wf, step.Name, 1))
		state := custodyv1alpha1.IdentityRegistered
		if step.Name == "three" {
			// Its pod is not on a node yet: the identity controller has not registered it.
			state = custodyv1alpha1.IdentityPending
		} else {
			pods[step.Name] = startPod(t, job)
			podEvent(t, r, pods[step.Name])
		}
		wf.Status.Steps = append(wf.Status.Steps, custodyv1alpha1.StepStatus{Name: step.Name,
			Phase: custodyv1alpha1.StepRunning, Attempt: 1, JobName: job.Name, Identity: &custodyv1alpha1.StepIdentity{
				State: state, Attempt: 1, EntryID: ids[step.Name]}})
	}
	e.waitEntries(t, ids["one"], ids["two"])
	if err := env.Client.Status().Update(ctxT(t), wf); err != nil {
		t.Fatal(err)
	}
	before, beforeSum := revocations(t)
	// ended plays the pod watch: the step container's end was seen 3s before the revocations.
	seen := map[string]time.Time{}
	ended := func(step string) {
		t.Helper()
		endPod(t, pods[step], 0)
		cur := &corev1.Pod{}
		if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(pods[step]), cur); err != nil {
			t.Fatal(err)
		}
		seen[step] = time.Now().Add(-3 * time.Second)
		r.observed.pod(cur, seen[step], true)
	}

	// workflowReconcile runs the Workflow reconciler's identity phase on the Workflow as stored
	// (steps one and two Registered, three Pending), with step three cancelled, and "saves" it:
	// its Events and metrics run, its status is not written, as when the cache is behind.
	workflowReconcile := func() *custodyv1alpha1.Workflow {
		t.Helper()
		s := &scope{wf: get(t, wf), now: time.Now(), jobs: jobs, pods: map[string]*corev1.Pod{}}
		for i := range s.wf.Status.Steps {
			if st := &s.wf.Status.Steps[i]; st.Name == "three" {
				st.Phase = custodyv1alpha1.StepCancelled
			}
		}
		for step, pod := range pods {
			cur := &corev1.Pod{}
			if err := env.Client.Get(ctxT(t), client.ObjectKeyFromObject(pod), cur); err != nil {
				t.Fatal(err)
			}
			s.pods[jobNames[step]] = cur
		}
		if _, err := r.reconcileIdentities(ctxT(t), s); err != nil {
			t.Fatal(err)
		}
		for _, f := range s.saved {
			f()
		}
		return s.wf
	}

	// Step one: the identity controller first, then the Workflow reconciler, then a late pod event.
	ended("one")
	podEvent(t, r, pods["one"])
	if got := stepOf(workflowReconcile(), "one").Identity.State; got != custodyv1alpha1.IdentityRevoked {
		t.Errorf("step one's identity recorded %s, want Revoked", got)
	}
	podEvent(t, r, pods["one"])
	// Step two: the Workflow reconciler first, then the pod event.
	ended("two")
	if got := stepOf(workflowReconcile(), "two").Identity.State; got != custodyv1alpha1.IdentityRevoked {
		t.Errorf("step two's identity recorded %s, want Revoked", got)
	}
	podEvent(t, r, pods["two"])
	podEvent(t, r, pods["one"])
	// Step three ended before its pod reached a node; the pod lands there afterwards, and the
	// identity controller, reading the stored Workflow (still Running, Pending), must not register
	// an attempt the Workflow reconciler already ended.
	if got := stepOf(workflowReconcile(), "three").Identity.State; got != custodyv1alpha1.IdentityNotIssued {
		t.Errorf("step three's identity recorded %s, want NotIssued", got)
	}
	pods["three"] = startPod(t, jobs[jobNames["three"]])
	podEvent(t, r, pods["three"])

	e.waitEntries(t)
	for step, id := range ids {
		if n := counter.deletes[id]; n != 1 {
			t.Errorf("step %s: SPIRE was asked %d times to delete entry %s, want once", step, n, id)
		}
	}
	count, sum := revocations(t)
	if n := count - before; n != 2 {
		t.Errorf("custody_identity_revocation_seconds counted %d revocations of 2 registered entries, want 2", n)
	}
	if d := sum - beforeSum; d < 6*time.Second {
		t.Errorf("custody_identity_revocation_seconds added %s for two revocations of ends seen 3s before, want at least 6s", d)
	}
	// The end stays the start of the attempt's other revocation clocks (its credentials').
	for _, step := range []string{"one", "two"} {
		if got := r.observed.firstEnded(pods[step].UID, time.Now()); !got.Equal(seen[step]) {
			t.Errorf("step %s: after its identity was revoked, its end reads as seen at %s, want %s", step, got, seen[step])
		}
	}
}

// TestIdentity_deletedWorkflowRevokedAndCountedOnce: a workflow deleted while its step runs
// (another finalizer keeps it a while longer): the identity controller revokes on the pod event,
// the finalizer deletes every attempt's entry by ID and the credentials, and a pod event after
// that finds the entry revoked. The entry's revocation and the credential's are counted once,
// also when the finalizer's pass runs again (it does whenever anything in it failed: the
// Workflow's status is no longer written). Not parallel: the metrics are the process's own.
func TestIdentity_deletedWorkflowRevokedAndCountedOnce(t *testing.T) {
	e := setupIdentity(t)
	ns := env.Namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}) // no controller here
	r, counter := countingReconciler(t, e)
	before, _ := revocations(t)
	deleted := createHeld(t, ns, `
metadata: {name: deleted, finalizers: [custody.dev/revocation, test.custody.dev/hold]}
spec:
  steps: [{name: a, image: example.com/a:1}]`)
	delJob := jobspec.Job(jobspec.Attempt{Workflow: deleted, Step: &deleted.Spec.Steps[0], Number: 1, WorkloadAPISocket: r.Identity.SocketPath})
	if err := env.Client.Create(ctxT(t), delJob); err != nil {
		t.Fatal(err)
	}
	delPod := startPod(t, delJob)
	podEvent(t, r, delPod)
	delID := r.Identity.Scheme.EntryID(r.identityAttempt(deleted, "a", 1))
	deleted.Status.Steps = []custodyv1alpha1.StepStatus{{Name: "a", Phase: custodyv1alpha1.StepRunning, Attempt: 1,
		JobName: delJob.Name, Identity: &custodyv1alpha1.StepIdentity{State: custodyv1alpha1.IdentityRegistered, Attempt: 1, EntryID: delID},
		Credentials: []custodyv1alpha1.IssuedCredential{{Grant: "reader", Kind: custodyv1alpha1.CredentialKindKubernetesRole,
			Attempt: 1, Resource: "RoleBinding/" + delJob.Name + "-reader", IssuedAt: metav1.Now()}}}}
	if err := env.Client.Status().Update(ctxT(t), deleted); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctxT(t), deleted); err != nil {
		t.Fatal(err)
	}
	podEvent(t, r, delPod)
	credBefore := testutil.ToFloat64(metrics.CredentialsRevoked.WithLabelValues(string(custodyv1alpha1.CredentialKindKubernetesRole), revokedDeleted))
	if err := r.finalizeCredentials(ctxT(t), get(t, deleted), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.finalize(ctxT(t), get(t, deleted)); err != nil {
		t.Fatal(err)
	}
	if d := testutil.ToFloat64(metrics.CredentialsRevoked.WithLabelValues(string(custodyv1alpha1.CredentialKindKubernetesRole),
		revokedDeleted)) - credBefore; d != 1 {
		t.Errorf("custody_credentials_revoked_total{reason=%q} rose by %v for one credential revoked twice, want 1", revokedDeleted, d)
	}
	if cur := get(t, deleted); controllerutil.ContainsFinalizer(cur, custodyv1alpha1.FinalizerRevocation) {
		t.Errorf("finalizer %s kept after the entries were revoked", custodyv1alpha1.FinalizerRevocation)
	}
	podEvent(t, r, delPod)

	e.waitEntries(t)
	if n := counter.deletes[delID]; n != 2 {
		t.Errorf("SPIRE was asked %d times to delete entry %s, want twice (on the pod event, and by the finalizer)", n, delID)
	}
	if count, _ := revocations(t); count-before != 1 {
		t.Errorf("custody_identity_revocation_seconds counted %d revocations of 1 registered entry, want 1", count-before)
	}
}

// podEvent runs the identity controller's reconcile of a pod, as a pod event would.
func podEvent(t *testing.T, r *Reconciler, pod *corev1.Pod) {
	t.Helper()
	if _, err := r.reconcilePod(ctxT(t), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(pod)}); err != nil {
		t.Fatal(err)
	}
}

// countingReconciler is a Workflow reconciler with identity on, for a test that calls it
// directly, with a count of the deletions it asks SPIRE for.
func countingReconciler(t *testing.T, e *identityEnv) (*Reconciler, *deleteCounter) {
	t.Helper()
	counter := &deleteCounter{Registrar: e.cfg.Registrar, deletes: map[string]int{}}
	cfg := *e.cfg
	cfg.Registrar = counter
	return &Reconciler{Client: env.Client, APIReader: env.Client, Clock: clock.RealClock{}, Identity: &cfg,
		Recorder: env.EventRecorder(t, "custody-test"), observed: newObservations(), registry: newRegistry(), wake: make(chan event.GenericEvent, 64)}, counter
}
