package gitops

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"

	"github.com/custody-dev/custody/internal/testenv"
)

// The scripts' logic on hand-written statuses (the e2e suite checks them on real objects).
func TestHealthScripts(t *testing.T) {
	cases := []struct {
		name, object, want string
	}{
		// As the API server serves a new object (the CRD defaults observedGeneration to 0).
		{"workflow not reconciled", `{kind: Workflow, metadata: {generation: 1}, status: {observedGeneration: 0}}`, Progressing},
		{"grant not reconciled", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 0}}`, Progressing},
		{"workflow running", `{kind: Workflow, metadata: {generation: 1}, status: {observedGeneration: 1, phase: Running,
			conditions: [{type: Ready, status: "False", reason: Progressing, message: "1/3 steps ended"},
			             {type: Reconciling, status: "True", reason: Progressing}],
			steps: [{name: a, phase: Running}]}}`, Progressing},
		{"workflow waiting for approval", `{kind: Workflow, metadata: {generation: 1}, status: {observedGeneration: 1, phase: Running,
			conditions: [{type: Ready, status: "False", reason: WaitingForApproval}, {type: Reconciling, status: "True"}],
			steps: [{name: a, phase: Succeeded}, {name: pay, phase: WaitingForApproval}]}}`, Suspended},
		{"workflow suspended", `{kind: Workflow, metadata: {generation: 2}, status: {observedGeneration: 2, phase: Running,
			conditions: [{type: Ready, status: "False", reason: Suspended, message: "Suspended (spec.suspend)"},
			             {type: Reconciling, status: "True", reason: Suspended}],
			steps: [{name: a, phase: Succeeded}, {name: b, phase: Pending, reason: Suspended}]}}`, Suspended},
		{"workflow succeeded", `{kind: Workflow, metadata: {generation: 1}, status: {observedGeneration: 1, phase: Succeeded,
			conditions: [{type: Ready, status: "True", reason: Succeeded}]}}`, Healthy},
		{"workflow cancelled", `{kind: Workflow, metadata: {generation: 2}, status: {observedGeneration: 2, phase: Cancelled,
			conditions: [{type: Ready, status: "False", reason: Cancelled}, {type: Stalled, status: "True", reason: Cancelled, message: c}]}}`, Degraded},
		{"workflow failed, revocation pending", `{kind: Workflow, metadata: {generation: 1}, status: {observedGeneration: 1, phase: Failed,
			conditions: [{type: Ready, status: "False", reason: RevocationPending},
			             {type: Reconciling, status: "True", reason: RevocationPending, message: "SPIRE unreachable"}]}}`, Progressing},
		{"workflow cancel not yet seen", `{kind: Workflow, metadata: {generation: 2}, status: {observedGeneration: 1, phase: Running,
			conditions: [{type: Ready, status: "False"}]}}`, Progressing},
		{"grant issuing", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "True", reason: Active, message: ok}]}}`, Healthy},
		{"grant issuing, unused", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "True", reason: Active, message: ok},
			             {type: Unused, status: "True", reason: NotUsedRecently, message: m}]}}`, Healthy},
		{"grant issuing, broad access", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "True", reason: Active, message: ok},
			             {type: BroadAccess, status: "True", reason: RoleReachesBeyondStep, message: "Role deployer lets a step run pods"}]}}`, Healthy},
		{"grant of a broad role without the approval its namespace asks for", `{kind: CredentialGrant, metadata: {generation: 1},
			status: {observedGeneration: 1, conditions: [{type: Ready, status: "False", reason: ApprovalRequired},
			{type: Stalled, status: "True", reason: ApprovalRequired, message: m}, {type: BroadAccess, status: "True", reason: RoleReachesBeyondStep}]}}`, Degraded},
		{"grant suspended", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "False", reason: Suspended}]}}`, Suspended},
		{"grant waiting for approval", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Approved, status: "False"}, {type: Ready, status: "False", reason: WaitingForApproval}]}}`, Suspended},
		{"grant source missing", `{kind: CredentialGrant, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "False", reason: SourceNotFound}, {type: Stalled, status: "True", reason: SourceNotFound, message: m}]}}`, Degraded},
		{"template not checked", `{kind: WorkflowTemplate, metadata: {generation: 2}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "True", reason: Valid}]}}`, Progressing},
		{"template valid", `{kind: WorkflowTemplate, metadata: {generation: 2}, status: {observedGeneration: 2,
			conditions: [{type: Ready, status: "True", reason: Valid, message: "3 steps"}]}}`, Healthy},
		{"template invalid", `{kind: WorkflowTemplate, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "False", reason: InvalidSpec}, {type: Stalled, status: "True", reason: InvalidSpec, message: cycle}]}}`, Degraded},
		{"cron not reconciled", `{kind: CronWorkflow, metadata: {generation: 1}, status: {observedGeneration: 0}}`, Progressing},
		{"cron scheduling", `{kind: CronWorkflow, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "True", reason: Scheduled, message: "Next run at ..."}]}}`, Healthy},
		{"cron suspended", `{kind: CronWorkflow, metadata: {generation: 3}, status: {observedGeneration: 3,
			conditions: [{type: Ready, status: "True", reason: Suspended, message: "Suspended"}]}}`, Healthy},
		{"cron schedule invalid", `{kind: CronWorkflow, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "False", reason: InvalidSchedule}, {type: Stalled, status: "True", reason: InvalidSchedule, message: m}]}}`, Degraded},
		{"cron template missing", `{kind: CronWorkflow, metadata: {generation: 1}, status: {observedGeneration: 1,
			conditions: [{type: Ready, status: "False", reason: TemplateNotFound}, {type: Stalled, status: "True", reason: TemplateNotFound, message: m}]}}`, Degraded},
	}
	for _, tc := range cases {
		// As the API server serves it: JSON, integers as int64.
		j, err := yaml.YAMLToJSON([]byte(tc.object))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		u := &unstructured.Unstructured{}
		if err := utiljson.Unmarshal(j, &u.Object); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		h, err := ArgoHealth(u)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.Status != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, h.Status, h.Message, tc.want)
		}
		if strings.Contains(tc.name, "broad access") && !strings.HasSuffix(h.Message, "; broad access: Role deployer lets a step run pods") {
			t.Errorf("%s: message %q does not say what the role reaches", tc.name, h.Message)
		}
		u.SetAPIVersion("custody.dev/v1alpha1")
		if s, err := Kstatus(u); err != nil || !Agree(h, s) {
			t.Errorf("%s: Argo CD %s but kstatus %s (%v)", tc.name, h.Status, s, err)
		}
	}
}

// The argocd-cm that config/gitops/argocd renders carries exactly the scripts tested here.
func TestArgoCDConfigMapCarriesTheScripts(t *testing.T) {
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(root, "config", "gitops", "argocd")).Output() //nolint:gosec // pinned kubectl
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(out, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Name != "argocd-cm" || cm.Namespace != "argocd" || len(cm.Data) != 4 {
		t.Fatalf("rendered %s/%s with keys %v", cm.Namespace, cm.Name, cm.Data)
	}
	for _, kind := range []string{"Workflow", "CredentialGrant", "WorkflowTemplate", "CronWorkflow"} {
		path, err := ScriptPath(kind)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(path) //nolint:gosec // the repository's own script
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Data["resource.customizations.health.custody.dev_"+kind]; got != string(want) {
			t.Errorf("argocd-cm's %s health check differs from %s", kind, path)
		}
	}
}
