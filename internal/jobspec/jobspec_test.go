package jobspec

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func sampleAttempt() Attempt {
	wf := &custodyv1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{
		Name: "pay-invoice-4711", Namespace: "finance", UID: "0b7c3a5e-8f1d-4c2a-9d6e-1f2a3b4c5d6e",
	}}
	step := &custodyv1alpha1.Step{
		Name:    "post-payment",
		Image:   "registry.example.com/erp-client:2.0",
		Timeout: &metav1.Duration{Duration: 10 * time.Minute},
		EnvFrom: []custodyv1alpha1.ConfigMapEnvSource{{Prefix: "ERP_", ConfigMapRef: custodyv1alpha1.ConfigMapRef{Name: "erp-endpoints"}}},
		Resources: &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
		},
		NodeSelector: map[string]string{"pool": "finance"},
		Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "finance",
			Effect: corev1.TaintEffectNoSchedule}},
		PriorityClassName: "batch-low",
		ImagePullPolicy:   corev1.PullAlways,
	}
	return Attempt{
		Workflow: wf, Step: step, Number: 2,
		Args:             []string{"pay", "4711", "12000"},
		ImagePullSecrets: []custodyv1alpha1.ImagePullSecret{{Name: "erp-registry"}},
		Env: []custodyv1alpha1.EnvVar{
			{Name: "AMOUNT", Value: "12000"},
			{Name: "REGION", ValueFrom: &custodyv1alpha1.EnvVarSource{ConfigMapKeyRef: custodyv1alpha1.ConfigMapKeySelector{Name: "erp", Key: "region", Optional: ptr.To(true)}}},
		},
	}
}

func golden(t *testing.T, name string, obj any) {
	t.Helper()
	got, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/jobspec -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (run with -update if the change is intended):\n%s", name, got)
	}
}

func TestJob_golden(t *testing.T) {
	golden(t, "job.golden.yaml", Job(sampleAttempt()))
}

// TestJobWithIdentity_golden: only the step container mounts the Workload API (read-only) and
// gets SPIFFE_ENDPOINT_SOCKET, after the step's own variables.
func TestJobWithIdentity_golden(t *testing.T) {
	a := sampleAttempt()
	a.WorkloadAPISocket = "/spiffe-workload-api/spire-agent.sock"
	a.Step.Scratch = []custodyv1alpha1.ScratchDir{{Path: "/home/nonroot/.cache", SizeLimit: ptr.To(resource.MustParse("1Gi"))}}
	job := Job(a)
	golden(t, "job-identity.golden.yaml", job)
	c := job.Spec.Template.Spec.Containers[0]
	if last := c.Env[len(c.Env)-1]; last.Name != EndpointSocketEnv || last.Value != "unix:///spiffe-workload-api/spire-agent.sock" {
		t.Errorf("last env var = %+v, want SPIFFE_ENDPOINT_SOCKET", last)
	}
}

func TestServiceAccount_golden(t *testing.T) {
	golden(t, "serviceaccount.golden.yaml", ServiceAccount(sampleAttempt()))
}

func TestName(t *testing.T) {
	long := strings.Repeat("w", 63)
	cases := []struct {
		workflow, uid, step string
		attempt             int32
	}{
		{"pay", "uid-1", "post", 1},
		{long, "uid-1", strings.Repeat("s", 63), 20},
		{"a-", "uid-1", "-b", 3},
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		name := Name(tc.workflow, tc.uid, tc.step, tc.attempt)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Errorf("Name(%q, %q, %d) = %q is not a DNS-1123 label: %v", tc.workflow, tc.step, tc.attempt, name, errs)
		}
		if seen[name] {
			t.Errorf("duplicate name %q", name)
		}
		seen[name] = true
		if again := Name(tc.workflow, tc.uid, tc.step, tc.attempt); again != name {
			t.Errorf("Name is not deterministic: %q then %q", name, again)
		}
	}
	if Name("pay", "uid-1", "post", 1) == Name("pay", "uid-2", "post", 1) {
		t.Error("a re-created workflow (new UID) reuses the old Job names")
	}
	if a, b := Name(long, "u", long+"x", 1), Name(long, "u", long+"y", 1); a == b {
		t.Errorf("steps differing only after truncation share the name %q", a)
	}
	if got := Name("pay-invoice-4711", "u", "post-payment", 2); !strings.HasPrefix(got, "pay-invoice-4711-post-payment-2-") {
		t.Errorf("short names should stay readable, got %q", got)
	}
}

// TestJobAvoidsNodes: an attempt that avoids nodes prefers, strongly, every other node; one that
// avoids none has no affinity at all.
func TestJobAvoidsNodes(t *testing.T) {
	a := sampleAttempt()
	if aff := Job(a).Spec.Template.Spec.Affinity; aff != nil {
		t.Errorf("affinity %+v, want none", aff)
	}
	a.AvoidNodes = []string{"node-a", "node-b"}
	aff := Job(a).Spec.Template.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil ||
		len(aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("affinity %+v, want one preferred node affinity term", aff)
	}
	term := aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0]
	want := corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"node-a", "node-b"}}
	if term.Weight != 100 || len(term.Preference.MatchExpressions) != 1 || !equality.Semantic.DeepEqual(term.Preference.MatchExpressions[0], want) {
		t.Errorf("term %+v, want weight 100 and %+v", term, want)
	}
}

// TestJobScratch: the step container's root filesystem is read-only; it writes to /tmp and to the
// directories its step lists, each an emptyDir of its own, and a listed /tmp sets /tmp's limit
// instead of mounting a second volume there.
func TestJobScratch(t *testing.T) {
	type mount struct{ path, limit string }
	mounts := func(a Attempt) []mount {
		spec := Job(a).Spec.Template.Spec
		c := spec.Containers[0]
		if c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("root filesystem not read-only: %+v", c.SecurityContext)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		var out []mount
		for _, m := range c.VolumeMounts {
			v := vols[m.Name]
			if v.EmptyDir == nil || m.ReadOnly {
				t.Errorf("mount %s: volume %+v, read-only %v; want a writable emptyDir", m.MountPath, v.VolumeSource, m.ReadOnly)
				continue
			}
			limit := ""
			if v.EmptyDir.SizeLimit != nil {
				limit = v.EmptyDir.SizeLimit.String()
			}
			out = append(out, mount{m.MountPath, limit})
		}
		return out
	}
	a := sampleAttempt()
	if got, want := mounts(a), []mount{{"/tmp", ""}}; !slices.Equal(got, want) {
		t.Errorf("a step that lists nothing: %v, want %v", got, want)
	}
	a.Step.Scratch = []custodyv1alpha1.ScratchDir{
		{Path: "/workspace"},
		{Path: "/tmp", SizeLimit: ptr.To(resource.MustParse("256Mi"))},
		{Path: "/home/nonroot/.cache", SizeLimit: ptr.To(resource.MustParse("1Gi"))},
	}
	want := []mount{{"/tmp", "256Mi"}, {"/workspace", ""}, {"/home/nonroot/.cache", "1Gi"}}
	if got := mounts(a); !slices.Equal(got, want) {
		t.Errorf("a step that lists three: %v, want %v", got, want)
	}
}

// TestJobUserNamespace: a pod gets a user namespace of its own only when the platform asks for it.
func TestJobUserNamespace(t *testing.T) {
	a := sampleAttempt()
	if hu := Job(a).Spec.Template.Spec.HostUsers; hu != nil {
		t.Errorf("hostUsers %v by default, want it unset (the node's users)", *hu)
	}
	a.UserNamespace = true
	if hu := Job(a).Spec.Template.Spec.HostUsers; hu == nil || *hu {
		t.Errorf("hostUsers %v with UserNamespace, want false", hu)
	}
}
