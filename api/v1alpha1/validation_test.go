package v1alpha1_test

// These tests send manifests to a real kube-apiserver (envtest) with the generated CRDs installed
// and assert on the error a user sees, so they prove the CRD schema and its CEL rules, not a copy of
// them. Creates use strict field validation, as `kubectl apply` does by default.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/custody-dev/custody/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

var strict = client.FieldValidation("Strict")

func parse(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &obj.Object); err != nil {
		t.Fatalf("test manifest is not YAML: %v", err)
	}
	return obj
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestSamplesAreAccepted applies every manifest in config/samples, as a user following the README
// would, and expects each to be accepted unchanged.
func TestSamplesAreAccepted(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "custody_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found in config/samples (err=%v)", err)
	}
	ns := env.Namespace(t)
	applied := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(string(data)), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); err != nil {
				break
			}
			if len(obj.Object) == 0 {
				continue
			}
			obj.SetNamespace(ns)
			if err := env.Client.Create(ctx(t), obj, strict); err != nil {
				t.Errorf("%s: %s %q was refused: %v", filepath.Base(f), obj.GetKind(), obj.GetName(), err)
				continue
			}
			applied++
		}
	}
	if applied < 3 {
		t.Errorf("applied %d sample objects, want at least 3", applied)
	}
}

type invalidCase struct {
	name string
	// manifest is created first; when update is set it must be accepted, and update (a
	// replacement spec) is the change that must be refused.
	manifest string
	update   string
	// want are substrings of the error the API server returns.
	want []string
}

const validWorkflow = `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  parameters: [{name: invoice, value: "4711"}]
  steps:
  - {name: route, image: example.com/invoices:1.4}
  - {name: pay, image: example.com/erp:2.0, dependsOn: [route]}
`

func invalidWorkflows() []invalidCase {
	return []invalidCase{
		{
			name: "step name with capital letters",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: Build, image: example.com/build:1}]`,
			want: []string{`spec.steps[0].name: Invalid value: "Build"`, "should match"},
		},
		{
			name: "two steps with the same name",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
  - {name: build, image: example.com/build:1}
  - {name: build, image: example.com/build:2}`,
			want: []string{"spec.steps[1]: Duplicate value", `"name":"build"`},
		},
		{
			name: "dependsOn names a step that does not exist",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
  - {name: build, image: example.com/build:1}
  - {name: deploy, image: example.com/deploy:1, dependsOn: [biuld]}`,
			want: []string{"every name in dependsOn must be the name of a step of this workflow"},
		},
		{
			name: "step depends on itself",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, dependsOn: [build]}]`,
			want: []string{"spec.steps[0]", "a step cannot depend on itself"},
		},
		{
			name: "no steps",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: []`,
			want: []string{"spec.steps", "should have at least 1 items"},
		},
		{
			name: "step without image",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, args: [make]}]`,
			want: []string{"spec.steps[0].image: Required value"},
		},
		{
			// The Job would be accepted and its pod refused, leaving the step running without one.
			name: "image with a space",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: "example.com/build:1 "}]`,
			want: []string{`spec.steps[0].image: Invalid value: "example.com/build:1 "`, "should match"},
		},
		{
			name: "forEach item that is not a DNS label",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: deploy, image: example.com/deploy:1, forEach: [eu-west, US_EAST]}]`,
			want: []string{`spec.steps[0].forEach[1]: Invalid value: "US_EAST"`, "should match"},
		},
		{
			name: "forEach item that makes a step name too long",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: deploy-to-every-region-of-the-known-world, image: example.com/deploy:1, forEach: [europe-west-and-north-and-east-2b]}]`,
			want: []string{"spec.steps[0]", "each forEach item names a step <name>-<item>, which must be at most 63 characters: " +
				"deploy-to-every-region-of-the-known-world-europe-west-and-north-and-east-2b is longer"},
		},
		{
			name: "forEach entry that is neither an item nor a parameter",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: deploy, image: example.com/deploy:1, forEach: ["$(params.regions)", "$(item)"]}]`,
			want: []string{`spec.steps[0].forEach[1]: Invalid value: "$(item)"`, "should match"},
		},
		{
			name: "parallelism on a step without forEach",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: deploy, image: example.com/deploy:1, parallelism: 1}]`,
			want: []string{"spec.steps[0]", "parallelism limits how many items of a forEach step run at once; this step has no forEach"},
		},
		{
			name: "forEach parallelism of none",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: deploy, image: example.com/deploy:1, forEach: [eu, us], parallelism: 0}]`,
			want: []string{"spec.steps[0].parallelism: Invalid value: 0", "greater than or equal to 1"},
		},
		{
			name: "onFailure that is not a policy",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: lint, image: example.com/lint:1, onFailure: Ignore}]`,
			want: []string{`spec.steps[0].onFailure: Unsupported value: "Ignore"`, `"FailWorkflow", "Continue"`},
		},
		{
			name: "forEach item twice",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: deploy, image: example.com/deploy:1, forEach: [eu, eu]}]`,
			want: []string{`spec.steps[0].forEach[1]: Duplicate value: "eu"`},
		},
		{
			name: "timeout written in words",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, timeout: 10 minutes}]`,
			want: []string{`spec.steps[0].timeout: Invalid value: "10 minutes"`, "should match"},
		},
		{
			name: "step timeout longer than a week",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, timeout: 200h}]`,
			want: []string{"spec.steps[0].timeout", "step timeout must be between 1s and 168h"},
		},
		{
			name: "negative ttlAfterFinished",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  ttlAfterFinished: -1h
  steps: [{name: build, image: example.com/build:1}]`,
			want: []string{`spec.ttlAfterFinished: Invalid value: "-1h"`, "should match"},
		},
		{
			name: "too many retries",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, retries: {limit: 100}}]`,
			want: []string{"spec.steps[0].retries.limit", "should be less than or equal to 20"},
		},
		{
			name: "backoff longer than its max",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, retries: {limit: 3, backoff: {duration: 5m, max: 1m}}}]`,
			want: []string{"spec.steps[0].retries.backoff", "backoff duration must not be longer than max"},
		},
		{
			name: "concurrencyLimit without a group",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  concurrencyLimit: 2
  steps: [{name: build, image: example.com/build:1}]`,
			want: []string{"concurrencyLimit needs a concurrencyGroup"},
		},
		{
			name: "empty retries.when",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, retries: {limit: 3, when: ""}}]`,
			want: []string{"spec.steps[0].retries.when", "should be at least 1 chars long"},
		},
		{
			name: "env with both value and valueFrom",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
  - name: build
    image: example.com/build:1
    env: [{name: MODE, value: fast, valueFrom: {configMapKeyRef: {name: cfg, key: mode}}}]`,
			want: []string{"spec.steps[0].env[0]", "set value or valueFrom, not both"},
		},
		{
			name: "env from a Secret instead of a grant",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
  - name: build
    image: example.com/build:1
    env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: erp-api, key: token}}}]`,
			want: []string{`unknown field "spec.steps[0].env[0].valueFrom.secretKeyRef"`},
		},
		{
			name: "step chooses its own ServiceAccount",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, serviceAccountName: deployer}]`,
			want: []string{`unknown field "spec.steps[0].serviceAccountName"`},
		},
		{
			name: "step asks for a privileged security context",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
  - name: build
    image: example.com/build:1
    securityContext: {privileged: true}`,
			want: []string{`unknown field "spec.steps[0].securityContext"`},
		},
		{
			name: "step mounts a host path",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps:
  - name: build
    image: example.com/build:1
    volumes: [{name: spire, hostPath: {path: /run/spire/sockets}}]`,
			want: []string{`unknown field "spec.steps[0].volumes"`},
		},
		{
			name: "approval without approvers",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: pay, image: example.com/erp:2, approval: {approvers: {users: []}}}]`,
			want: []string{"spec.steps[0].approval.approvers", "approvers must name at least one user or group"},
		},
		{
			name: "parameter name with a hyphen",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  parameters: [{name: invoice-id, value: "4711"}]
  steps: [{name: route, image: example.com/invoices:1.4}]`,
			want: []string{`spec.parameters[0].name: Invalid value: "invoice-id"`, "should match"},
		},
		{
			name: "credential name that is not a Kubernetes name",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: pay, image: example.com/erp:2, credentials: [ERP_Payments]}]`,
			want: []string{`spec.steps[0].credentials[0]: Invalid value: "ERP_Payments"`, "should match"},
		},
		{
			name: "workflow name longer than a label value",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: nightly-reconciliation-of-all-supplier-invoices-for-the-emea-region}
spec:
  steps: [{name: route, image: example.com/invoices:1.4}]`,
			want: []string{"a Workflow name must be at most 63 characters"},
		},
		{
			name:     "steps changed after creation",
			manifest: validWorkflow,
			update: `
parameters: [{name: invoice, value: "4711"}]
steps:
- {name: route, image: example.com/invoices:1.5}
- {name: pay, image: example.com/erp:2.0, dependsOn: [route]}`,
			want: []string{"steps are immutable; create a new Workflow to run different steps"},
		},
		{
			name:     "parameters changed after creation",
			manifest: validWorkflow,
			update: `
parameters: [{name: invoice, value: "4712"}]
steps:
- {name: route, image: example.com/invoices:1.4}
- {name: pay, image: example.com/erp:2.0, dependsOn: [route]}`,
			want: []string{"parameters are immutable"},
		},
		{
			name: "imagePullSecrets changed after creation",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  imagePullSecrets: [{name: erp-registry}]
  steps: [{name: route, image: example.com/invoices:1.4}]`,
			update: `
imagePullSecrets: [{name: other-registry}]
steps: [{name: route, image: example.com/invoices:1.4}]`,
			want: []string{"imagePullSecrets are immutable"},
		},
		{
			name: "imagePullSecret that is not a Secret name",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  imagePullSecrets: [{name: ../registry}]
  steps: [{name: route, image: example.com/invoices:1.4}]`,
			want: []string{`spec.imagePullSecrets[0].name: Invalid value: "../registry"`},
		},
		{
			name: "cancel set back to false",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  cancel: true
  steps: [{name: route, image: example.com/invoices:1.4}]`,
			update: `
cancel: false
steps: [{name: route, image: example.com/invoices:1.4}]`,
			want: []string{"cancel cannot be set back to false once it is true"},
		},
		scratchCase("a relative scratch directory", `[{path: workspace}]`, `spec.steps[0].scratch[0].path: Invalid value: "workspace"`),
		scratchCase("the root as a scratch directory", `[{path: /}]`, `spec.steps[0].scratch[0].path: Invalid value: "/"`),
		scratchCase("a scratch directory with ..", `[{path: /workspace/../etc}]`, "path must not have . or .. in it"),
		scratchCase("a scratch directory with a trailing /", `[{path: /workspace/}]`, `Invalid value: "/workspace/"`),
		scratchCase("a scratch directory over the credentials", `[{path: /var/run/secrets/custody.dev/erp}]`,
			"path /var/run/secrets/custody.dev/erp is, or is under, a directory Custody or the container runtime mounts: /dev, /proc, /sys, /var/run/secrets/custody.dev (credentials)"),
		scratchCase("a scratch directory over the Workload API socket", `[{path: /spiffe-workload-api}]`,
			"path /spiffe-workload-api is, or is under, a directory Custody"),
		scratchCase("a scratch directory in /proc", `[{path: /proc/self}]`, "path /proc/self is, or is under"),
		scratchCase("one scratch directory twice", `[{path: /workspace}, {path: /workspace, sizeLimit: 1Gi}]`,
			`spec.steps[0].scratch[1]: Duplicate value: {"path":"/workspace"}`),
		scratchCase("nine scratch directories", `[{path: /a}, {path: /b}, {path: /c}, {path: /d}, {path: /e}, {path: /f}, {path: /g}, {path: /h}, {path: /i}]`,
			"spec.steps[0].scratch: Too many: 9: must have at most 8 items"),
	}
}

// scratchCase is a Workflow whose step lists scratch directories the CRD refuses.
func scratchCase(name, scratch, want string) invalidCase {
	return invalidCase{name: name, want: []string{want}, manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1, scratch: ` + scratch + `}]`}
}

func invalidGrants() []invalidCase {
	return []invalidCase{
		{
			name: "role grant with a ttl shorter than the shortest token",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}
  ttl: 5m`,
			want: []string{"kubernetesRole grant's ttl must be at least 10m"},
		},
		{
			// A wildcard that does not end a path, tag or digest would let erp-client-evil match.
			name: "grant image wildcard in the middle of a name",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post], images: ["registry.example.com/erp-client*"]}]
  credential: {kubernetesRole: {kind: Role, name: deployer}}`,
			want: []string{`spec.subjects[0].images[0]: Invalid value: "registry.example.com/erp-client*"`, "should match"},
		},
		{
			name: "grant with two credential kinds",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential:
    secret: {name: erp-api, keys: [token]}
    kubernetesRole: {kind: Role, name: deployer}`,
			want: []string{"spec.credential", "set exactly one of kubernetesRole, secret or spiffe"},
		},
		{
			name: "grant with no credential kind",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {}`,
			want: []string{"set exactly one of kubernetesRole, secret or spiffe"},
		},
		{
			name: "subject with both a name and a selector",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, workflowSelector: {matchLabels: {app: invoices}}, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`,
			want: []string{"spec.subjects[0]", "set exactly one of workflowName or workflowSelector"},
		},
		{
			name: "empty selector that would match every workflow",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowSelector: {}, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`,
			want: []string{"spec.subjects[0].workflowSelector", "must not be empty: it would match every workflow"},
		},
		{
			name: "subject without steps",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: []}]
  credential: {secret: {name: erp-api, keys: [token]}}`,
			want: []string{"spec.subjects[0].steps", "should have at least 1 items"},
		},
		{
			name: "wildcard step",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: ["*"]}]
  credential: {secret: {name: erp-api, keys: [token]}}`,
			want: []string{`spec.subjects[0].steps[0]: Invalid value: "*"`},
		},
		{
			name: "ttl of two days",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  ttl: 48h`,
			want: []string{"spec.ttl", "ttl must be between 1m and 24h"},
		},
		{
			name: "unusedAfter of ten minutes",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  unusedAfter: 10m`,
			want: []string{"spec.unusedAfter", "unusedAfter must be between 1h and 8760h"},
		},
		{
			name: "role kind that does not exist",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: deploy, steps: [apply]}]
  credential: {kubernetesRole: {kind: Group, name: admins}}`,
			want: []string{`spec.credential.kubernetesRole.kind: Unsupported value: "Group"`, `"Role"`, `"ClusterRole"`},
		},
		{
			name: "secret without keys",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api}}`,
			want: []string{"spec.credential.secret.keys: Required value"},
		},
		{
			name: "approval required but nobody may approve",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}
  approval: {required: true}`,
			want: []string{"spec.approval", "approvers must be set when approval is required"},
		},
		{
			name: "SVID TTL of seconds",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {spiffe: {x509TTL: 5s}}`,
			want: []string{"spec.credential.spiffe.x509TTL", "x509TTL must be between 1m and 24h"},
		},
		{
			name: "federated trust domain written as a SPIFFE ID",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {spiffe: {federatesWith: ["spiffe://partner.example"]}}`,
			want: []string{`spec.credential.spiffe.federatesWith[0]: Invalid value: "spiffe://partner.example"`},
		},
	}
}

// invalidDefinitions are mistakes in templates, runs of templates, finally steps and CronWorkflows.
func invalidDefinitions() []invalidCase {
	return []invalidCase{
		{
			name: "both steps and a template",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  workflowTemplateRef: {name: release}
  steps: [{name: build, image: example.com/build:1}]`,
			want: []string{"set either steps or workflowTemplateRef, not both and not neither"},
		},
		{
			name: "neither steps nor a template",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  parameters: [{name: a, value: b}]`,
			want: []string{"set either steps or workflowTemplateRef, not both and not neither"},
		},
		{
			name: "finally step depending on a step",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1}]
  finally: [{name: notify, image: example.com/n:1, dependsOn: [build]}]`,
			want: []string{"a finally step may depend only on other finally steps"},
		},
		{
			name: "finally step with a step's name",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1}]
  finally: [{name: build, image: example.com/n:1}]`,
			want: []string{"finally step names must differ from the names of steps"},
		},
		{
			name: "parallelism of zero",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  parallelism: 0
  steps: [{name: build, image: example.com/build:1}]`,
			want: []string{"spec.parallelism", "should be greater than or equal to 1"},
		},
		{
			name:     "step defaults on a run of a template",
			manifest: "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {workflowTemplateRef: {name: a}, stepDefaults: {retries: {limit: 1}}}",
			want:     []string{"stepDefaults come from the template when workflowTemplateRef is set"},
		},
		{
			name:     "results on a run of a template",
			manifest: "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {workflowTemplateRef: {name: a}, results: [{name: x, value: \"z\"}]}",
			want:     []string{"results come from the template when workflowTemplateRef is set"},
		},
		{
			name: "a run's result named as CEL cannot read it",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1}]
  results: [{name: image-digest, value: "$(params.x)"}]`,
			want: []string{"spec.results[0].name", "should match"},
		},
		{
			name: "changing a run's results",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  steps: [{name: build, image: example.com/build:1}]
  results: [{name: image, value: "a"}]`,
			update: "{steps: [{name: build, image: example.com/build:1}], results: [{name: image, value: b}]}",
			want:   []string{"results are immutable"},
		},
		{
			name:     "changing the template of a run",
			manifest: "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {workflowTemplateRef: {name: a}}",
			update:   "workflowTemplateRef: {name: b}",
			want:     []string{"workflowTemplateRef is immutable"},
		},
		{
			name:     "changing the run a run reuses",
			manifest: "apiVersion: custody.dev/v1alpha1\nkind: Workflow\nmetadata: {name: wf}\nspec: {workflowTemplateRef: {name: a}, reuseFrom: wf-1}",
			update:   "reuseFrom: wf-2",
			want:     []string{"reuseFrom is immutable"},
		},
		{
			name: "template default outside its allowed values",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: tpl}
spec:
  parameters: [{name: env, default: dev, allowedValues: [staging, prod]}]
  steps: [{name: build, image: example.com/build:1}]`,
			want: []string{"spec.parameters[0]", "default must be one of allowedValues"},
		},
		{
			name: "CronWorkflow name too long for its runs' names",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: a-cron-workflow-name-that-is-far-too-long-for-its-runs-x}
spec:
  schedule: "@daily"
  workflowSpec: {steps: [{name: build, image: example.com/build:1}]}`,
			want: []string{"a CronWorkflow name must be at most 52 characters"},
		},
		{
			name: "CronWorkflow that would create cancelled runs",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  workflowSpec: {cancel: true, steps: [{name: build, image: example.com/build:1}]}`,
			want: []string{"cannot set cancel; set suspend to stop creating runs"},
		},
		{
			name: "CronWorkflow whose runs would reuse a run",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  workflowSpec: {reuseFrom: nightly-1, steps: [{name: build, image: example.com/build:1}]}`,
			want: []string{"a CronWorkflow's workflowSpec cannot set reuseFrom: each scheduled run runs every step"},
		},
		{
			name: "CronWorkflow that would create suspended runs",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  workflowSpec: {suspend: true, steps: [{name: build, image: example.com/build:1}]}`,
			want: []string{"cannot set suspend (its runs would never start); set the CronWorkflow's own suspend"},
		},
		{
			name: "CronWorkflow with an unknown concurrency policy",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  concurrencyPolicy: Queue
  workflowSpec: {steps: [{name: build, image: example.com/build:1}]}`,
			want: []string{"spec.concurrencyPolicy", `supported values: "Allow", "Forbid", "Replace"`},
		},
		{
			name: "CronWorkflow whose starting deadline would skip its runs",
			manifest: `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  startingDeadlineSeconds: 0
  workflowSpec: {steps: [{name: build, image: example.com/build:1}]}`,
			want: []string{"spec.startingDeadlineSeconds", "must be at least 10 (or unset): a run starts moments after its scheduled time"},
		},
	}
}

// TestCronWorkflowSpecCanChange: unlike a Workflow's, a CronWorkflow's workflowSpec may be edited
// (the next runs use it), and it is defaulted as documented.
func TestCronWorkflowSpecCanChange(t *testing.T) {
	ns := env.Namespace(t)
	obj := parse(t, `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: nightly}
spec:
  schedule: "@daily"
  workflowSpec: {steps: [{name: build, image: example.com/build:1}]}`)
	obj.SetNamespace(ns)
	if err := env.Client.Create(ctx(t), obj, strict); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{"concurrencyPolicy": "Allow", "successfulRunsHistoryLimit": int64(3), "failedRunsHistoryLimit": int64(1)} {
		if got, _, _ := unstructured.NestedFieldNoCopy(obj.Object, "spec", field); got != want {
			t.Errorf("spec.%s defaulted to %v, want %v", field, got, want)
		}
	}
	steps, _, _ := unstructured.NestedSlice(obj.Object, "spec", "workflowSpec", "steps")
	steps[0].(map[string]any)["image"] = "example.com/build:2"
	if err := unstructured.SetNestedSlice(obj.Object, steps, "spec", "workflowSpec", "steps"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx(t), obj, strict); err != nil {
		t.Errorf("editing a CronWorkflow's workflowSpec was refused: %v", err)
	}
}

// TestInvalidManifestsAreRejected sends realistic mistakes to the API server and checks that each
// is refused with a message that tells the user what is wrong, and that nothing was stored.
func TestInvalidManifestsAreRejected(t *testing.T) {
	cases := append(append(invalidWorkflows(), invalidGrants()...), invalidDefinitions()...)
	if len(cases) < 20 {
		t.Fatalf("want at least 20 invalid manifests, have %d", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			obj := parse(t, tc.manifest)
			obj.SetNamespace(ns)

			var err error
			if tc.update == "" {
				err = env.Client.Create(ctx(t), obj, strict)
			} else {
				if err := env.Client.Create(ctx(t), obj, strict); err != nil {
					t.Fatalf("the original object was refused: %v", err)
				}
				var spec map[string]any
				if err := yaml.Unmarshal([]byte(tc.update), &spec); err != nil {
					t.Fatal(err)
				}
				obj.Object["spec"] = spec
				err = env.Client.Update(ctx(t), obj, strict)
			}
			if err == nil {
				t.Fatalf("the API server accepted it; want an error containing %q", tc.want)
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}

			// Nothing half-written: a refused create stores nothing, a refused update keeps the
			// old spec.
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(obj.GroupVersionKind())
			getErr := env.Client.Get(ctx(t), client.ObjectKeyFromObject(obj), got)
			if tc.update == "" && getErr == nil {
				t.Errorf("a refused %s was stored anyway", obj.GetKind())
			}
			if tc.update != "" {
				orig := parse(t, tc.manifest)
				if getErr != nil {
					t.Fatalf("reading back: %v", getErr)
				}
				origSpec, _ := yaml.Marshal(orig.Object["spec"])
				gotSpec, _ := yaml.Marshal(got.Object["spec"])
				if string(origSpec) != string(gotSpec) {
					t.Errorf("a refused update changed the spec:\nwant %s\ngot  %s", origSpec, gotSpec)
				}
			}
		})
	}
}

// TestWorkflowCancelIsAllowed checks the one change the spec allows after creation.
func TestWorkflowCancelIsAllowed(t *testing.T) {
	ns := env.Namespace(t)
	obj := parse(t, validWorkflow)
	obj.SetNamespace(ns)
	if err := env.Client.Create(ctx(t), obj, strict); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(obj.Object, true, "spec", "cancel"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx(t), obj, strict); err != nil {
		t.Fatalf("setting cancel: true was refused: %v", err)
	}
	// Setting it again (as a GitOps tool re-applying the same manifest does) is fine too.
	if err := env.Client.Update(ctx(t), obj, strict); err != nil {
		t.Fatalf("re-applying cancel: true was refused: %v", err)
	}
}

// TestGrantDefaults checks that a grant without ttl gets the documented 15m default.
func TestGrantDefaults(t *testing.T) {
	ns := env.Namespace(t)
	obj := parse(t, `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: g}
spec:
  subjects: [{workflowName: pay, steps: [post]}]
  credential: {secret: {name: erp-api, keys: [token]}}`)
	obj.SetNamespace(ns)
	if err := env.Client.Create(ctx(t), obj, strict); err != nil {
		t.Fatal(err)
	}
	ttl, _, _ := unstructured.NestedString(obj.Object, "spec", "ttl")
	if ttl != "15m" {
		t.Errorf("spec.ttl = %q after create, want the default 15m", ttl)
	}
}

// TestLargestWorkflowIsAccepted creates a Workflow at the schema's limits (64 steps, each
// depending on up to 32 earlier ones) so that the CEL rules' runtime cost stays within the API
// server's budget for the biggest object a user can write.
func TestLargestWorkflowIsAccepted(t *testing.T) {
	ns := env.Namespace(t)
	var steps []any
	for i := 0; i < 64; i++ {
		step := map[string]any{"name": fmt.Sprintf("step-%02d", i), "image": "example.com/work:1"}
		var deps []any
		for j := max(0, i-32); j < i; j++ {
			deps = append(deps, fmt.Sprintf("step-%02d", j))
		}
		if len(deps) > 0 {
			step["dependsOn"] = deps
		}
		steps = append(steps, step)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "custody.dev/v1alpha1",
		"kind":       "Workflow",
		"metadata":   map[string]any{"name": "big", "namespace": ns},
		"spec":       map[string]any{"steps": steps},
	}}
	if err := env.Client.Create(ctx(t), obj, strict); err != nil {
		t.Fatalf("a workflow at the schema's limits was refused: %v", err)
	}
	if err := unstructured.SetNestedField(obj.Object, true, "spec", "cancel"); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Update(ctx(t), obj, strict); err != nil {
		t.Fatalf("cancelling a workflow at the schema's limits was refused: %v", err)
	}
}

// TestNewObjectsAreInProgress: before the controller has seen a new Workflow or grant, kstatus
// (what Flux waits on) must read it as InProgress, not Current: the status defaults to
// observedGeneration 0.
func TestNewObjectsAreInProgress(t *testing.T) {
	ns := env.Namespace(t)
	for _, manifest := range []string{`
apiVersion: custody.dev/v1alpha1
kind: Workflow
metadata: {name: fresh}
spec:
  steps: [{name: a, image: busybox}]`, `
apiVersion: custody.dev/v1alpha1
kind: CredentialGrant
metadata: {name: fresh}
spec:
  subjects: [{workflowName: fresh, steps: [a]}]
  credential: {secret: {name: erp-api, keys: [token]}}`, `
apiVersion: custody.dev/v1alpha1
kind: WorkflowTemplate
metadata: {name: fresh}
spec:
  steps: [{name: a, image: busybox}]`, `
apiVersion: custody.dev/v1alpha1
kind: CronWorkflow
metadata: {name: fresh}
spec:
  schedule: "@daily"
  workflowSpec: {workflowTemplateRef: {name: fresh}}`} {
		obj := parse(t, manifest)
		obj.SetNamespace(ns)
		if err := env.Client.Create(ctx(t), obj, strict); err != nil {
			t.Fatal(err)
		}
		for _, read := range []string{"create response", "get"} {
			if read == "get" {
				if err := env.Client.Get(ctx(t), client.ObjectKeyFromObject(obj), obj); err != nil {
					t.Fatal(err)
				}
			}
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != status.InProgressStatus {
				t.Errorf("%s %s (%s): kstatus %s (%s), want InProgress; status %v", obj.GetKind(), obj.GetName(), read,
					res.Status, res.Message, obj.Object["status"])
			}
		}
	}
}
