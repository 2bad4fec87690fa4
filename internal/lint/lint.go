// Package lint checks Custody manifests without a cluster, as the API server and admission would
// check them when they are applied: the CRDs' schemas and CEL rules (with apiextensions-apiserver,
// the code kube-apiserver runs for them), then what admission adds (cycles, references,
// expressions, a template run's parameters when the template is among the manifests). What only
// the cluster knows is not checked: whether grants exist and who may use them, templates that are
// not among the manifests, the run a reuseFrom names, and rules that compare an object with its
// previous version (immutability).
package lint

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/config/crd"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/webhook"
)

// Problem is one thing the API server or admission would refuse (or, for a warning, what could
// not be checked without the cluster).
type Problem struct {
	// Source is where the object was read: a file name and, in a file of several documents, the
	// document's number ("samples.yaml#2").
	Source string
	// Object is its kind and name ("Workflow build-diamond"); empty when the document could not
	// be read as an object.
	Object  string
	Message string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Object != "" {
		b.WriteString(": " + p.Object)
	}
	if p.Warning {
		b.WriteString(": warning")
	}
	b.WriteString(": " + p.Message)
	return b.String()
}

// Linter checks manifests against Custody's CRDs and admission rules.
type Linter struct {
	kinds map[schema.GroupVersionKind]*version
}

// version is what checks objects of one kind and version.
type version struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator // nil when the version has no CEL rules
}

// New reads the CRDs built into the binary.
func New() (*Linter, error) {
	l := &Linter{kinds: map[schema.GroupVersionKind]*version{}}
	files, err := fs.Glob(crd.Bases, "bases/*.yaml")
	if err != nil {
		return nil, err
	}
	for _, name := range files {
		data, err := crd.Bases.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if err := l.add(data); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return l, nil
}

func (l *Linter) add(data []byte) error {
	def := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, def); err != nil {
		return err
	}
	for _, v := range def.Spec.Versions {
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			return fmt.Errorf("version %s has no schema", v.Name)
		}
		internal := &apiextensionsinternal.JSONSchemaProps{}
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal,
			nil); err != nil {
			return err
		}
		structural, err := structuralschema.NewStructural(internal)
		if err != nil {
			return err
		}
		validator, _, err := apiservervalidation.NewSchemaValidator(internal)
		if err != nil {
			return err
		}
		gvk := schema.GroupVersionKind{Group: def.Spec.Group, Version: v.Name, Kind: def.Spec.Names.Kind}
		l.kinds[gvk] = &version{structural: structural, schema: validator,
			cel: cel.NewValidator(structural, true, celconfig.PerCallLimit)}
	}
	return nil
}

// Document is one manifest: its source (for messages) and its YAML or JSON.
type Document struct {
	Source string
	Data   []byte
}

// Split reads the documents of a YAML (or JSON) stream, separated by ---; empty ones are left
// out. In a stream of several documents each is named by its number (source#n).
func Split(source string, r io.Reader) ([]Document, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Document
	for {
		data, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if js, err := yaml.YAMLToJSON(data); err == nil && string(bytes.TrimSpace(js)) == "null" {
			continue // only comments, or nothing
		}
		docs = append(docs, Document{Source: fmt.Sprintf("%s#%d", source, len(docs)+1), Data: data})
	}
	if len(docs) == 1 {
		docs[0].Source = source
	}
	return docs, nil
}

// Result is what Lint found.
type Result struct {
	Problems []Problem
	// Checked counts the Custody objects checked; other kinds are left alone.
	Checked int
}

// Errors counts the problems that are not warnings.
func (r Result) Errors() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Warning {
			n++
		}
	}
	return n
}

// object is one Custody object of the manifests, once its schema checks passed.
type object struct {
	source, name string
	raw          []byte
	namespace    string
	kind         string
	// generated is true when the API server would name the object (generateName): lint made up a name.
	generated bool
	// typed is raw decoded into its Go type (decode).
	typed any
}

// decode sets o.typed from o.raw.
func (o *object) decode() error {
	switch o.kind {
	case "Workflow":
		o.typed = &custodyv1alpha1.Workflow{}
	case "WorkflowTemplate":
		o.typed = &custodyv1alpha1.WorkflowTemplate{}
	case "CronWorkflow":
		o.typed = &custodyv1alpha1.CronWorkflow{}
	case "CredentialGrant":
		o.typed = &custodyv1alpha1.CredentialGrant{}
	default:
		return nil // a kind the CRDs have and admission does not check further
	}
	return json.Unmarshal(o.raw, o.typed)
}

// Lint checks every Custody object of the documents; documents of other API groups are skipped.
func (l *Linter) Lint(ctx context.Context, docs []Document) Result {
	var res Result
	var objects []object
	docs = expandLists(docs)
	rbac := rbacOf(docs)
	for _, d := range docs {
		obj, problems, ok := l.schemaCheck(ctx, d)
		res.Problems = append(res.Problems, problems...)
		if obj.kind != "" {
			res.Checked++
		}
		if !ok {
			continue
		}
		if err := obj.decode(); err != nil {
			res.Problems = append(res.Problems, Problem{Source: obj.source, Object: obj.name, Message: err.Error()})
			continue
		}
		objects = append(objects, obj)
	}
	templates := map[[2]string]*custodyv1alpha1.WorkflowTemplate{}
	grants := map[[2]string]*custodyv1alpha1.CredentialGrant{}
	now := time.Now() // a grant's expiresAt
	for _, o := range objects {
		switch obj := o.typed.(type) {
		case *custodyv1alpha1.WorkflowTemplate:
			templates[[2]string{o.namespace, obj.Name}] = obj
		case *custodyv1alpha1.CredentialGrant:
			grants[[2]string{o.namespace, obj.Name}] = obj
		}
	}
	for _, o := range objects {
		res.Problems = append(res.Problems, admissionCheck(o, templates, rbac)...)
		res.Problems = append(res.Problems, grantProblems(o, grants, templates, now)...)
	}
	return res
}

// roleKey is a Role (by namespace and name) or ClusterRole (by name) of the manifests.
type roleKey struct{ kind, namespace, name string }

// rbacManifests is what the manifests say of RBAC, for the grants among them.
type rbacManifests struct {
	// roles are the rules of the Roles and ClusterRoles (credentials.Reach).
	roles map[roleKey][]rbacv1.PolicyRule
	// approvalFirst are the Namespaces labelled custody.dev/broad-roles-need-approval=true.
	approvalFirst map[string]bool
	// unprotected are the Namespaces not labelled custody.dev/protect-step-pods=true.
	unprotected map[string]bool
}

// rbacOf reads the Roles, ClusterRoles and Namespaces among the documents.
func rbacOf(docs []Document) rbacManifests {
	m := rbacManifests{roles: map[roleKey][]rbacv1.PolicyRule{}, approvalFirst: map[string]bool{}, unprotected: map[string]bool{}}
	for _, d := range docs {
		var r struct {
			APIVersion string              `json:"apiVersion"`
			Kind       string              `json:"kind"`
			Metadata   metav1.ObjectMeta   `json:"metadata"`
			Rules      []rbacv1.PolicyRule `json:"rules"`
		}
		if err := yaml.Unmarshal(d.Data, &r); err != nil {
			continue
		}
		switch {
		case r.APIVersion == rbacv1.SchemeGroupVersion.String() && r.Kind == "Role":
			m.roles[roleKey{r.Kind, r.Metadata.Namespace, r.Metadata.Name}] = r.Rules
		case r.APIVersion == rbacv1.SchemeGroupVersion.String() && r.Kind == "ClusterRole":
			m.roles[roleKey{r.Kind, "", r.Metadata.Name}] = r.Rules
		case r.APIVersion == "v1" && r.Kind == "Namespace":
			m.approvalFirst[r.Metadata.Name] = r.Metadata.Labels[custodyv1alpha1.LabelBroadRolesNeedApproval] == "true"
			m.unprotected[r.Metadata.Name] = !credentials.StepPodsProtected(r.Metadata.Labels)
		}
	}
	return m
}

// expandLists replaces each kind: List document (what kubectl get -o yaml prints) by its items.
func expandLists(docs []Document) []Document {
	out := make([]Document, 0, len(docs))
	for _, d := range docs {
		var list struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Items      []json.RawMessage `json:"items"`
		}
		if err := yaml.Unmarshal(d.Data, &list); err != nil || list.APIVersion != "v1" || !strings.HasSuffix(list.Kind, "List") {
			out = append(out, d)
			continue
		}
		for i, item := range list.Items {
			out = append(out, Document{Source: fmt.Sprintf("%s[%d]", d.Source, i), Data: item})
		}
	}
	return out
}

// schemaCheck checks a document as the API server checks a custom resource it is asked to
// create: unknown fields, defaults, the schema, the CEL rules. ok says the object passed and can
// be checked further.
func (l *Linter) schemaCheck(ctx context.Context, d Document) (o object, problems []Problem, ok bool) {
	problem := func(msg string) { problems = append(problems, Problem{Source: d.Source, Object: o.name, Message: msg}) }
	unreadable := func(err error) []Problem {
		// A Helm template or some other file that is not a manifest is skipped, with a warning;
		// one that names Custody's API group is a manifest kubectl apply would refuse.
		if bytes.Contains(d.Data, []byte(custodyv1alpha1.GroupVersion.Group+"/")) {
			return []Problem{{Source: d.Source, Message: err.Error()}}
		}
		return []Problem{{Source: d.Source, Message: "skipped, not a manifest: " + err.Error(), Warning: true}}
	}
	raw, err := yaml.YAMLToJSON(d.Data)
	if err != nil {
		return o, unreadable(err), false
	}
	u := map[string]any{}
	// As the API server decodes: whole numbers as int64, which CEL rules reading integer fields need.
	if err := utiljson.Unmarshal(raw, &u); err != nil {
		return o, unreadable(fmt.Errorf("not an object: %w", err)), false
	}
	apiVersion, _ := u["apiVersion"].(string)
	kind, _ := u["kind"].(string)
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || gv.Group != custodyv1alpha1.GroupVersion.Group {
		return o, nil, false // not Custody's
	}
	o.kind = kind
	meta, _ := u["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if name == "" {
		name, _ = meta["generateName"].(string)
	}
	o.name = strings.TrimSpace(kind + " " + name)
	o.namespace, _ = meta["namespace"].(string)
	v := l.kinds[gv.WithKind(kind)]
	if v == nil {
		problem(fmt.Sprintf("no kind %q in version %q of %s (this kubectl-custody knows %s)", kind, gv.Version, gv.Group,
			strings.Join(l.known(), ", ")))
		return o, problems, false
	}
	if problems = metadataProblems(d.Source, o.name, meta); len(problems) > 0 {
		return o, problems, false // the API server refuses such a name before it looks further
	}
	if meta != nil && meta["name"] == nil && meta["generateName"] != nil {
		// The API server names the object before it validates it; rules may read the name.
		meta["name"] = names.SimpleNameGenerator.GenerateName(name)
		o.generated = true
	}
	opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
	for _, path := range pruning.PruneWithOptions(u, v.structural, true, opts) {
		problem(fmt.Sprintf("unknown field %q", path))
	}
	structuraldefaulting.Default(u, v.structural)
	errs := apiservervalidation.ValidateCustomResource(nil, u, v.schema)
	if v.cel != nil && len(errs) == 0 {
		celErrs, _ := v.cel.Validate(ctx, nil, v.structural, u, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	for _, e := range errs {
		problem(e.Error())
	}
	if len(problems) > 0 {
		return o, problems, false
	}
	o.raw, err = json.Marshal(u)
	if err != nil {
		problem(err.Error())
		return o, problems, false
	}
	o.source = d.Source
	return o, nil, true
}

// metadataProblems checks what the API server checks of any object's name.
func metadataProblems(source, object string, meta map[string]any) []Problem {
	name, _ := meta["name"].(string)
	generateName, _ := meta["generateName"].(string)
	var msgs []string
	switch {
	case name == "" && generateName == "":
		msgs = append(msgs, "metadata.name: Required value: name or generateName is required")
	case name != "":
		for _, m := range validation.IsDNS1123Subdomain(name) {
			msgs = append(msgs, fmt.Sprintf("metadata.name: Invalid value: %q: %s", name, m))
		}
	}
	problems := make([]Problem, 0, len(msgs))
	for _, m := range msgs {
		problems = append(problems, Problem{Source: source, Object: object, Message: m})
	}
	return problems
}

// admissionCheck runs the checks Custody's admission adds to the schema's, on an object that
// passed them.
func admissionCheck(o object, templates map[[2]string]*custodyv1alpha1.WorkflowTemplate, rbac rbacManifests) []Problem {
	var errs field.ErrorList
	var warnings []string
	switch obj := o.typed.(type) {
	case *custodyv1alpha1.Workflow:
		errs = webhook.ValidateWorkflowSpec(&obj.Spec)
		errs = append(errs, webhook.LiteralErrors(webhook.WorkflowLiterals(field.NewPath("spec"), &obj.Spec), nil)...)
		e, w := runOfTemplate(field.NewPath("spec"), &obj.Spec, o.namespace, templates)
		errs, warnings = append(errs, e...), w
		if obj.Spec.ReuseFrom != "" {
			warnings = append(warnings, fmt.Sprintf("spec.reuseFrom: not checked: whether workflow %s can be reused is known "+
				"only in the cluster", obj.Spec.ReuseFrom))
		}
		warnings = append(warnings, webhook.ValueWarnings(field.NewPath("spec"), obj.Spec.Steps, obj.Spec.Finally, nil)...)
	case *custodyv1alpha1.WorkflowTemplate:
		errs = webhook.ValidateWorkflowTemplateSpec(&obj.Spec)
		errs = append(errs, webhook.LiteralErrors(webhook.TemplateLiterals(&obj.Spec), nil)...)
		warnings = webhook.ValueWarnings(field.NewPath("spec"), obj.Spec.Steps, obj.Spec.Finally,
			append([]custodyv1alpha1.ParameterSpec{}, obj.Spec.Parameters...))
	case *custodyv1alpha1.CronWorkflow:
		ws := &obj.Spec.WorkflowSpec
		errs = webhook.ValidateCronWorkflowSpec(&obj.Spec)
		errs = append(errs, webhook.LiteralErrors(webhook.WorkflowLiterals(field.NewPath("spec", "workflowSpec"), ws), nil)...)
		e, w := runOfTemplate(field.NewPath("spec", "workflowSpec"), ws, o.namespace, templates)
		errs, warnings = append(errs, e...), w
		warnings = append(warnings, webhook.ValueWarnings(field.NewPath("spec", "workflowSpec"), ws.Steps, ws.Finally, nil)...)
	case *custodyv1alpha1.CredentialGrant:
		errs = webhook.ValidateGrantReferences(&obj.Spec)
		if rbac.unprotected[o.namespace] {
			g := obj.DeepCopy()
			g.Namespace = o.namespace
			warnings = append(warnings, credentials.UnprotectedMessage(g))
		}
		if r := obj.Spec.Credential.KubernetesRole; r != nil {
			key := roleKey{kind: string(r.Kind), name: r.Name}
			if r.Kind != custodyv1alpha1.RoleKindClusterRole {
				key.namespace = o.namespace
			}
			if reach := credentials.Reach(rbac.roles[key]); len(reach) > 0 {
				warnings = append(warnings, "spec.credential.kubernetesRole: "+credentials.ReachMessage(obj, reach))
				g := obj.DeepCopy()
				g.Namespace = o.namespace
				if r := credentials.ApprovalRequired(g, reach); r != nil && rbac.approvalFirst[o.namespace] {
					errs = append(errs, field.Forbidden(field.NewPath("spec", "approval"), r.Message))
				}
			}
		}
	}
	if m, ok := o.typed.(metav1.Object); ok {
		e, w := annotationProblems(m)
		errs, warnings = append(errs, e...), append(warnings, w...)
	}
	problems := make([]Problem, 0, len(errs)+len(warnings))
	for _, e := range errs {
		problems = append(problems, Problem{Source: o.source, Object: o.name, Message: e.Error()})
	}
	for _, w := range warnings {
		problems = append(problems, Problem{Source: o.source, Object: o.name, Message: w, Warning: true})
	}
	return problems
}

// grantProblems warns, as admission does, of what the grants among the manifests (in the same
// namespace) would do to the steps that request them: keep them waiting because they do not cover
// them (a Workflow's steps; the runs of a CronWorkflow or a WorkflowTemplate) or expired, or stop
// serving them before a step's timeout (ttl). Grants that are not among the manifests are not
// known here: admission checks them when the objects are applied.
func grantProblems(o object, grants map[[2]string]*custodyv1alpha1.CredentialGrant,
	templates map[[2]string]*custodyv1alpha1.WorkflowTemplate, now time.Time) []Problem {
	// check knows the grants steps request that are among the manifests, and not the platform's
	// default onRevoke.
	check := func(steps []custodyv1alpha1.Step) webhook.GrantCheck {
		out := webhook.Grants{}
		for _, st := range steps {
			for _, name := range st.Credentials {
				if g := grants[[2]string{o.namespace, name}]; g != nil {
					out[name] = g
				}
			}
		}
		return webhook.GrantCheck{Grants: out, Now: now}
	}
	// definition is what a run executes: its inline steps, or its template's if it is among the manifests.
	definition := func(ws *custodyv1alpha1.WorkflowSpec) (*custodyv1alpha1.WorkflowTemplate, []custodyv1alpha1.Step) {
		if ref := ws.WorkflowTemplateRef; ref != nil {
			tpl := templates[[2]string{o.namespace, ref.Name}]
			if tpl == nil {
				return nil, nil
			}
			return tpl, custodyv1alpha1.ApplyStepDefaults(tpl.Spec.AllSteps(), tpl.Spec.StepDefaults)
		}
		return nil, custodyv1alpha1.ApplyStepDefaults(ws.InlineSteps(), ws.StepDefaults)
	}
	var warnings []string
	switch obj := o.typed.(type) {
	case *custodyv1alpha1.Workflow:
		tpl, steps := definition(&obj.Spec)
		if o.generated { // whether a grant covers a name the API server makes up is not known yet
			warnings = check(steps).TTL(steps)
			break
		}
		run := obj.DeepCopy()
		run.Namespace = o.namespace
		if tpl != nil {
			// Admission labels every run of a template with it (grants select them by it).
			run.Labels = maps.Clone(run.Labels)
			if run.Labels == nil {
				run.Labels = map[string]string{}
			}
			run.Labels[custodyv1alpha1.LabelTemplate] = tpl.Name
			run.Status.Template = &custodyv1alpha1.ResolvedTemplate{Name: tpl.Name, Spec: tpl.Spec}
		}
		warnings = check(steps).Run(run, steps)
	case *custodyv1alpha1.CronWorkflow:
		tpl, steps := definition(&obj.Spec.WorkflowSpec)
		cw := obj.DeepCopy()
		cw.Namespace = o.namespace
		warnings = check(steps).Definition(credentials.CronRun(cw, tpl), steps)
	case *custodyv1alpha1.WorkflowTemplate:
		tpl := obj.DeepCopy()
		tpl.Namespace = o.namespace
		steps := custodyv1alpha1.ApplyStepDefaults(tpl.Spec.AllSteps(), tpl.Spec.StepDefaults)
		warnings = check(steps).Definition(credentials.TemplateRun(tpl), steps)
	}
	problems := make([]Problem, 0, len(warnings))
	for _, w := range warnings {
		problems = append(problems, Problem{Source: o.source, Object: o.name, Message: w, Warning: true})
	}
	return problems
}

// annotationProblems finds the annotations that admission or the controller write, which a
// manifest cannot carry as it is created (an approval or rejection, who cancelled a run, whose CronWorkflow a
// run is), and those admission replaces (the creator, a CronWorkflow's author): typically left
// over from kubectl get -o yaml.
func annotationProblems(m metav1.Object) (field.ErrorList, []string) {
	_, workflow := m.(*custodyv1alpha1.Workflow)
	var errs field.ErrorList
	var warnings []string
	path := field.NewPath("metadata", "annotations")
	ann := m.GetAnnotations()
	for _, k := range slices.Sorted(maps.Keys(ann)) {
		switch {
		case strings.HasPrefix(k, custodyv1alpha1.AnnotationApprovePrefix):
			errs = append(errs, field.Forbidden(path.Key(k), "an object cannot be approved as it is created (its creator may not "+
				"approve it): an approver annotates it afterwards (kubectl custody approve)"))
		case strings.HasPrefix(k, custodyv1alpha1.AnnotationRejectPrefix):
			errs = append(errs, field.Forbidden(path.Key(k), "an object cannot be rejected as it is created: an approver "+
				"rejects a step while it waits (kubectl custody reject)"))
		case k == custodyv1alpha1.AnnotationCreatedBy || k == custodyv1alpha1.AnnotationAuthorizedBy:
			warnings = append(warnings, fmt.Sprintf("%s: set by admission to whoever applies the manifest; a different value "+
				"on an existing object is refused: remove it from the manifest", path.Key(k)))
		case workflow && k == custodyv1alpha1.AnnotationCancelledBy:
			errs = append(errs, field.Forbidden(path.Key(k), "admission records who set spec.cancel here: remove it from the manifest"))
		case workflow && k == custodyv1alpha1.AnnotationOnBehalfOf && m.GetLabels()[custodyv1alpha1.LabelCronWorkflow] == "":
			errs = append(errs, field.Forbidden(path.Key(k), "set on the runs of a CronWorkflow only (with the label "+
				custodyv1alpha1.LabelCronWorkflow+"): remove it from the manifest"))
		case workflow && k == custodyv1alpha1.AnnotationCancelReason:
			if msg := webhook.CancelReasonProblem(ann[k]); msg != "" {
				errs = append(errs, field.Forbidden(path.Key(k), msg))
			}
		}
	}
	return errs, warnings
}

// runOfTemplate checks a run's parameters against its template, as admission does, when the
// template is among the manifests (in the same namespace); otherwise it warns that it could not.
func runOfTemplate(path *field.Path, ws *custodyv1alpha1.WorkflowSpec, ns string,
	templates map[[2]string]*custodyv1alpha1.WorkflowTemplate) (field.ErrorList, []string) {
	ref := ws.WorkflowTemplateRef
	if ref == nil {
		return nil, nil
	}
	tpl := templates[[2]string{ns, ref.Name}]
	if tpl == nil {
		return nil, []string{fmt.Sprintf("%s: not checked: WorkflowTemplate %s is not among the manifests, so its parameters "+
			"are checked only when the run is created", path.Child("parameters"), ref.Name)}
	}
	if err := custodyv1alpha1.CheckParameters(tpl.Spec.Parameters, ws.Parameters); err != nil {
		return field.ErrorList{field.Invalid(path.Child("parameters"), nil, fmt.Sprintf("WorkflowTemplate %s: %v", ref.Name, err))}, nil
	}
	if err := custodyv1alpha1.CheckItems(&tpl.Spec, custodyv1alpha1.ParameterValues(tpl.Spec.Parameters, ws.Parameters)); err != nil {
		return field.ErrorList{field.Invalid(path.Child("parameters"), nil, fmt.Sprintf("WorkflowTemplate %s: %v", ref.Name, err))}, nil
	}
	return nil, nil
}

// known lists the kinds and versions the linter knows, for a message.
func (l *Linter) known() []string {
	out := make([]string, 0, len(l.kinds))
	for gvk := range l.kinds {
		out = append(out, gvk.Kind+" ("+gvk.GroupVersion().String()+")")
	}
	slices.Sort(out)
	return out
}
