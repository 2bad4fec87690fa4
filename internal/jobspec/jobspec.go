// Package jobspec builds, without a client, the objects one step attempt runs as: its own
// ServiceAccount (no token automount, no bindings) and the Job whose pod runs the step container
// with restricted Pod Security defaults. Names are derived deterministically from the workflow's
// name and UID, the step and the attempt, so a re-run of a reconcile never creates a second Job for
// the same attempt.
package jobspec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

const (
	// ContainerName is the name of the step container in every step pod. SPIRE selectors
	// (k8s:container-name) and credential mounts target exactly this container.
	ContainerName = "step"
	// TerminationMessagePath is where a step writes its results as a JSON object of strings.
	TerminationMessagePath = "/dev/termination-log"
	// RunAsUser is the user and group step containers run as, whatever user the image names
	// (the pod's runAsUser wins over it): the conventional non-root user of distroless images.
	RunAsUser int64 = 65532

	// LabelManagedBy marks objects Custody created.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "custody"
	// maxNameLength keeps Job names within the 63 characters of the job-name label.
	maxNameLength = 63
)

// Attempt is everything needed to build the objects of one step attempt. Command, Args and Env
// are already substituted ($(params.x), $(steps.s.results.r)).
type Attempt struct {
	Workflow *custodyv1alpha1.Workflow
	Step     *custodyv1alpha1.Step
	Number   int32
	Command  []string
	Args     []string
	Env      []custodyv1alpha1.EnvVar
	// WorkloadAPISocket, when set, is the path of the SPIFFE Workload API socket in the step
	// container: the step container (only it) mounts the SPIFFE CSI driver's volume at the
	// socket's directory and gets SPIFFE_ENDPOINT_SOCKET.
	WorkloadAPISocket string
	// CSIDriver is the SPIFFE CSI driver that provides the socket (DefaultCSIDriver when empty).
	CSIDriver string
	// Volumes are credential volumes (for example projected tokens) mounted read-only into the
	// step container only.
	Volumes []MountedVolume
	// ImagePullSecrets are the pod's image pull Secrets (the workflow's imagePullSecrets).
	ImagePullSecrets []custodyv1alpha1.ImagePullSecret
	// AvoidNodes are the nodes (kubernetes.io/hostname) the pod prefers not to run on: those of
	// the step's earlier attempts, with retries.avoidFailedNodes.
	AvoidNodes []string
	// UserNamespace runs the pod in a user namespace of its own (hostUsers: false): its users are
	// not the node's, so a process that escapes the container is nobody on the node.
	UserNamespace bool
}

// MountedVolume is a volume of the pod and its mount in the step container.
type MountedVolume struct {
	Volume corev1.Volume
	Mount  corev1.VolumeMount
}

const (
	// WorkloadAPIVolume is the name of the SPIFFE CSI driver volume.
	WorkloadAPIVolume = "spiffe-workload-api"
	// DefaultCSIDriver is the SPIFFE CSI driver's name as the SPIFFE project ships it.
	DefaultCSIDriver = "csi.spiffe.io"
	// EndpointSocketEnv is the variable SPIFFE libraries read the Workload API address from.
	EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"
)

// Name returns the name of the Job and ServiceAccount of a step attempt: readable
// (<workflow>-<step>-<attempt>-<hash>), at most 63 characters, and unique per workflow UID, step
// and attempt even when workflow and step names are truncated.
func Name(workflow string, uid string, step string, attempt int32) string {
	sum := sha256.Sum256([]byte(uid + "/" + step))
	suffix := "-" + strconv.Itoa(int(attempt)) + "-" + hex.EncodeToString(sum[:])[:6]
	prefix := workflow + "-" + step
	if max := maxNameLength - len(suffix); len(prefix) > max {
		prefix = prefix[:max]
	}
	prefix = strings.TrimRight(prefix, "-.")
	return prefix + suffix
}

// Labels are the labels of every object of a step attempt.
func Labels(workflow, step string, attempt int32) map[string]string {
	return map[string]string{
		custodyv1alpha1.LabelWorkflow: workflow,
		custodyv1alpha1.LabelStep:     step,
		custodyv1alpha1.LabelAttempt:  strconv.Itoa(int(attempt)),
		LabelManagedBy:                ManagedByValue,
	}
}

func (a Attempt) name() string {
	return Name(a.Workflow.Name, string(a.Workflow.UID), a.Step.Name, a.Number)
}

func (a Attempt) meta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      a.name(),
		Namespace: a.Workflow.Namespace,
		Labels:    Labels(a.Workflow.Name, a.Step.Name, a.Number),
		OwnerReferences: []metav1.OwnerReference{
			*metav1.NewControllerRef(a.Workflow, custodyv1alpha1.GroupVersion.WithKind("Workflow")),
		},
	}
}

// ServiceAccount returns the attempt's own ServiceAccount: no token is mounted automatically and
// nothing is bound to it; credentials are added per grant and removed when the attempt ends.
func ServiceAccount(a Attempt) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   a.meta(),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// Job returns the attempt's Job. It runs once (retries are new attempts with new identities),
// within the step's timeout, as the attempt's ServiceAccount, and passes the restricted Pod
// Security Standard.
func Job(a Attempt) *batchv1.Job {
	meta := a.meta()
	var deadline *int64
	if a.Step.Timeout != nil {
		deadline = ptr.To(max(int64(a.Step.Timeout.Seconds()), 1))
	}
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: meta,
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			Completions:           ptr.To[int32](1),
			Parallelism:           ptr.To[int32](1),
			ActiveDeadlineSeconds: deadline,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: meta.Labels},
				Spec:       podSpec(a, meta.Name),
			},
		},
	}
}

func podSpec(a Attempt, serviceAccount string) corev1.PodSpec {
	spec := corev1.PodSpec{
		RestartPolicy:                corev1.RestartPolicyNever,
		ServiceAccountName:           serviceAccount,
		AutomountServiceAccountToken: ptr.To(false),
		EnableServiceLinks:           ptr.To(false),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: ptr.To(true),
			RunAsUser:    ptr.To(RunAsUser),
			RunAsGroup:   ptr.To(RunAsUser),
			// The group of the files the kubelet writes into credential volumes (a Secret copy's,
			// mode 0440): the kubelet writes them as root, and only the step's own group may read
			// them. The SPIFFE CSI driver's volume is left alone (its fsGroupPolicy is None).
			FSGroup:        ptr.To(RunAsUser),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Containers: []corev1.Container{{
			Name:                     ContainerName,
			Image:                    a.Step.Image,
			Command:                  a.Command,
			Args:                     a.Args,
			Env:                      env(a.Env),
			EnvFrom:                  envFrom(a.Step.EnvFrom),
			Resources:                resources(a.Step.Resources),
			WorkingDir:               a.Step.WorkingDir,
			TerminationMessagePath:   TerminationMessagePath,
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          a.Step.ImagePullPolicy,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		}},
	}
	if len(a.Step.NodeSelector) > 0 {
		spec.NodeSelector = maps.Clone(a.Step.NodeSelector)
	}
	for _, t := range a.Step.Tolerations {
		spec.Tolerations = append(spec.Tolerations, *t.DeepCopy())
	}
	spec.PriorityClassName = a.Step.PriorityClassName
	if a.UserNamespace {
		spec.HostUsers = ptr.To(false)
	}
	if len(a.AvoidNodes) > 0 {
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 100,
				Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpNotIn, Values: slices.Clone(a.AvoidNodes)}}}}},
		}}
	}
	for _, ps := range a.ImagePullSecrets {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: ps.Name})
	}
	for _, v := range scratch(a.Step.Scratch) {
		spec.Volumes = append(spec.Volumes, v.Volume)
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, v.Mount)
	}
	for _, v := range a.Volumes {
		spec.Volumes = append(spec.Volumes, v.Volume)
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, v.Mount)
	}
	if a.WorkloadAPISocket != "" {
		dir := WorkloadAPIDir(a.WorkloadAPISocket)
		driver := a.CSIDriver
		if driver == "" {
			driver = DefaultCSIDriver
		}
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: WorkloadAPIVolume, VolumeSource: corev1.VolumeSource{
			CSI: &corev1.CSIVolumeSource{Driver: driver, ReadOnly: ptr.To(true)},
		}})
		c := &spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: WorkloadAPIVolume, MountPath: dir, ReadOnly: true})
		// Last, so that it wins over a step env var of the same name.
		c.Env = append(c.Env, corev1.EnvVar{Name: EndpointSocketEnv, Value: "unix://" + a.WorkloadAPISocket})
	}
	return spec
}

// TmpDir is the scratch directory every step container has, besides those the step lists.
const TmpDir = "/tmp"

// ScratchConflict says why a step's scratch directory cannot be mounted where the platform put
// the SPIFFE Workload API socket (socketPath; the CRD already refuses the default's directory):
// the two would be the same mount, or the scratch directory would be made inside the read-only
// socket volume. Nil when none conflicts.
func ScratchConflict(dirs []custodyv1alpha1.ScratchDir, socketPath string) error {
	if socketPath == "" {
		return nil
	}
	socketDir := WorkloadAPIDir(socketPath)
	for _, d := range dirs {
		if d.Path == socketDir || strings.HasPrefix(d.Path, socketDir+"/") {
			return fmt.Errorf("scratch directory %s is where the SPIFFE Workload API socket is mounted (%s): choose another path",
				d.Path, socketDir)
		}
	}
	return nil
}

// WorkloadAPIDir is where the SPIFFE CSI driver volume is mounted in the step container: the
// directory of the Workload API socket's path.
func WorkloadAPIDir(socketPath string) string { return socketPath[:strings.LastIndex(socketPath, "/")] }

// scratch returns the emptyDir volumes of the directories a step may write to (its container's
// root filesystem is read-only): /tmp, then those the step lists, in its order. A step that lists
// /tmp sets its sizeLimit.
func scratch(dirs []custodyv1alpha1.ScratchDir) []MountedVolume {
	tmp := custodyv1alpha1.ScratchDir{Path: TmpDir}
	rest := make([]custodyv1alpha1.ScratchDir, 0, len(dirs))
	for _, d := range dirs {
		if d.Path == TmpDir {
			tmp = d
		} else {
			rest = append(rest, d)
		}
	}
	out := make([]MountedVolume, 0, len(rest)+1)
	for i, d := range append([]custodyv1alpha1.ScratchDir{tmp}, rest...) {
		name := "tmp"
		if i > 0 {
			name = "scratch-" + strconv.Itoa(i)
		}
		src := &corev1.EmptyDirVolumeSource{}
		if d.SizeLimit != nil {
			src.SizeLimit = ptr.To(d.SizeLimit.DeepCopy())
		}
		out = append(out, MountedVolume{
			Volume: corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: src}},
			Mount:  corev1.VolumeMount{Name: name, MountPath: d.Path},
		})
	}
	return out
}

func env(in []custodyv1alpha1.EnvVar) []corev1.EnvVar {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.EnvVar, 0, len(in))
	for _, e := range in {
		v := corev1.EnvVar{Name: e.Name, Value: e.Value}
		if e.ValueFrom != nil {
			ref := e.ValueFrom.ConfigMapKeyRef
			v.ValueFrom = &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name},
				Key:                  ref.Key,
				Optional:             ref.Optional,
			}}
		}
		out = append(out, v)
	}
	return out
}

func envFrom(in []custodyv1alpha1.ConfigMapEnvSource) []corev1.EnvFromSource {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.EnvFromSource, 0, len(in))
	for _, e := range in {
		out = append(out, corev1.EnvFromSource{
			Prefix: e.Prefix,
			ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: e.ConfigMapRef.Name},
				Optional:             e.ConfigMapRef.Optional,
			},
		})
	}
	return out
}

func resources(r *corev1.ResourceRequirements) corev1.ResourceRequirements {
	if r == nil {
		return corev1.ResourceRequirements{}
	}
	return *r.DeepCopy()
}
