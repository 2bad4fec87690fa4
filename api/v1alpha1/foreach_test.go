package v1alpha1

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// TestExpandForEach: a forEach step runs as one step per item, in its place, each reading its item;
// a step that depends on it depends on every item; everything else is left as it is.
func TestExpandForEach(t *testing.T) {
	steps := []Step{
		{Name: "build", Image: "b", Args: []string{"$(item)"}}, // not a forEach step: $(item) stays
		{Name: "deploy", Image: "d", DependsOn: []string{"build"}, ForEach: []string{"eu", "us"},
			Command: []string{"deploy"}, Args: []string{"--region=$(item)", "$(params.version)"},
			Env:      []EnvVar{{Name: "REGION", Value: "$(item)"}, {Name: "FROM", ValueFrom: &EnvVarSource{}}},
			Approval: &StepApproval{Approvers: Approvers{Groups: []string{"ops"}}}},
		{Name: "verify", Image: "v", DependsOn: []string{"deploy", "build"}},
	}
	orig := *(&WorkflowSpec{Steps: steps}).DeepCopy()
	got := ExpandForEach(steps)
	want := []Step{
		{Name: "build", Image: "b", Args: []string{"$(item)"}},
		{Name: "deploy-eu", Image: "d", DependsOn: []string{"build"}, Command: []string{"deploy"},
			Args:     []string{"--region=eu", "$(params.version)"},
			Env:      []EnvVar{{Name: "REGION", Value: "eu"}, {Name: "FROM", ValueFrom: &EnvVarSource{}}},
			Approval: &StepApproval{Approvers: Approvers{Groups: []string{"ops"}}}},
		{Name: "deploy-us", Image: "d", DependsOn: []string{"build"}, Command: []string{"deploy"},
			Args:     []string{"--region=us", "$(params.version)"},
			Env:      []EnvVar{{Name: "REGION", Value: "us"}, {Name: "FROM", ValueFrom: &EnvVarSource{}}},
			Approval: &StepApproval{Approvers: Approvers{Groups: []string{"ops"}}}},
		{Name: "verify", Image: "v", DependsOn: []string{"deploy-eu", "deploy-us", "build"}},
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("expanded:\n%+v\nwant\n%+v", got, want)
	}
	if !equality.Semantic.DeepEqual(steps, orig.Steps) {
		t.Errorf("the spec's steps were changed: %+v", steps)
	}
	got[1].Args[0] = "changed"
	if got[2].Args[0] != "--region=us" {
		t.Error("the items share their args")
	}
	if plain := []Step{{Name: "a"}}; &ExpandForEach(plain)[0] != &plain[0] {
		t.Error("steps without forEach are copied")
	}
}

// TestForEachOf: which forEach step and item a step of a run is, for inline runs and runs of
// templates.
func TestForEachOf(t *testing.T) {
	steps := []Step{{Name: "deploy", ForEach: []string{"eu", "us-east"}}, {Name: "deploy-eu-x"}}
	inline := &Workflow{Spec: WorkflowSpec{Steps: steps}}
	fromTemplate := &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: "t"}},
		Status: WorkflowStatus{Template: &ResolvedTemplate{Name: "t", Spec: WorkflowTemplateSpec{Finally: steps}}}}
	for _, wf := range []*Workflow{inline, fromTemplate} {
		for step, want := range map[string][2]string{
			"deploy-us-east": {"deploy", "us-east"}, "deploy-eu": {"deploy", "eu"},
			"deploy": {}, "deploy-eu-x": {}, "deploy-ap": {},
		} {
			if f, it := wf.ForEachOf(step); f != want[0] || it != want[1] {
				t.Errorf("ForEachOf(%s) = %q, %q; want %q, %q", step, f, it, want[0], want[1])
			}
		}
	}
	def, _ := fromTemplate.Definition()
	if len(def.Finally) != 3 || def.Finally[1].Name != "deploy-us-east" {
		t.Errorf("a template's forEach steps are not expanded: %+v", def.Finally)
	}
}

// TestItems: a forEach entry $(params.NAME) stands for the comma-separated items of the run's
// value, beside listed items; what keeps them from running is said, naming the step and parameter.
func TestItems(t *testing.T) {
	step := Step{Name: "deploy", ForEach: []string{"eu", "$(params.regions)"}}
	cases := []struct {
		name, regions string
		unset         bool
		want          []string
		problems      []string
	}{
		{name: "listed and from the parameter", regions: " us-east, ap ,", want: []string{"eu", "us-east", "ap"}},
		{name: "not set", unset: true, want: []string{"eu"},
			problems: []string{`step "deploy" runs once per item of parameter regions, which lists none`}},
		{name: "empty", regions: " , ", want: []string{"eu"},
			problems: []string{`step "deploy" runs once per item of parameter regions, which lists none`}},
		{name: "not a DNS label", regions: "us,EU_WEST", want: []string{"eu", "us"},
			problems: []string{`step "deploy": forEach item "EU_WEST" (from parameter regions) is not a DNS label`}},
		{name: "twice", regions: "us,eu", want: []string{"eu", "us"},
			problems: []string{`step "deploy": forEach item "eu" (from parameter regions) is listed twice`}},
		{name: "too long a step name", regions: strings.Repeat("x", 57), want: []string{"eu"},
			problems: []string{"makes the step name deploy-xxx", "64 characters; at most 63"}},
		{name: "too many", regions: "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p", want: strings.Split("eu,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o", ","),
			problems: []string{`step "deploy" runs 17 items; at most 16`}},
		{name: "many bad ones", regions: strings.Repeat("X,", 200), want: []string{"eu"},
			problems: []string{`step "deploy": forEach item "X" (from parameter regions) is not a DNS label`, `step "deploy": 192 more problems with its items`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			params := map[string]string{"regions": tc.regions}
			if tc.unset {
				params = map[string]string{}
			}
			items, problems := step.Items(params)
			if !slices.Equal(items, tc.want) {
				t.Errorf("items %v, want %v", items, tc.want)
			}
			all := strings.Join(problems, "\n")
			for _, want := range tc.problems {
				if !strings.Contains(all, want) {
					t.Errorf("problems %q, want one containing %q", problems, want)
				}
			}
			if len(tc.problems) == 0 && len(problems) > 0 {
				t.Errorf("problems %q, want none", problems)
			}
		})
	}
	if items, problems := (&Step{Name: "s", ForEach: []string{"a", "b"}}).Items(nil); !slices.Equal(items, []string{"a", "b"}) || problems != nil {
		t.Errorf("listed items: %v %v", items, problems)
	}
}

// TestDefinition_itemsFromParameters: a run's steps use its own parameter values, or the
// template's defaults; the items are steps like listed ones (names, $(item), dependents, ForEachOf).
func TestDefinition_itemsFromParameters(t *testing.T) {
	def := "eu"
	tpl := WorkflowTemplateSpec{
		Parameters: []ParameterSpec{{Name: "regions", Default: &def}},
		Steps: []Step{
			{Name: "deploy", Image: "d", ForEach: []string{"$(params.regions)"}, Args: []string{"--region=$(item)"}},
			{Name: "verify", Image: "v", DependsOn: []string{"deploy"}},
		},
	}
	run := func(params ...Parameter) *Workflow {
		return &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: "t"}, Parameters: params},
			Status: WorkflowStatus{Template: &ResolvedTemplate{Name: "t", Spec: *tpl.DeepCopy()}}}
	}
	names := func(wf *Workflow) []string {
		d, _ := wf.Definition()
		out := make([]string, 0, len(d.Steps))
		for _, st := range d.Steps {
			out = append(out, st.Name+strings.Join(st.Args, " ")+"<"+strings.Join(st.DependsOn, ",")+">")
		}
		return out
	}
	if got, want := names(run()), []string{"deploy-eu--region=eu<>", "verify<deploy-eu>"}; !slices.Equal(got, want) {
		t.Errorf("with the default: %v, want %v", got, want)
	}
	wf := run(Parameter{Name: "regions", Value: "us,ap"})
	if got, want := names(wf), []string{"deploy-us--region=us<>", "deploy-ap--region=ap<>", "verify<deploy-us,deploy-ap>"}; !slices.Equal(got, want) {
		t.Errorf("with the run's value: %v, want %v", got, want)
	}
	if f, it := wf.ForEachOf("deploy-ap"); f != "deploy" || it != "ap" {
		t.Errorf("ForEachOf(deploy-ap) = %q, %q", f, it)
	}
	if f, _ := wf.ForEachOf("deploy-eu"); f != "" {
		t.Errorf("deploy-eu is an item of %q, but the run's regions are us and ap", f)
	}
	if err := wf.CheckItems(); err != nil {
		t.Errorf("CheckItems: %v", err)
	}
	// A run whose value lists nothing runs nothing of the step, and cannot start.
	empty := run(Parameter{Name: "regions", Value: ""})
	if got, want := names(empty), []string{"verify<deploy>"}; !slices.Equal(got, want) {
		t.Errorf("with no items: %v, want %v (no step runs deploy)", got, want)
	}
	if err := empty.CheckItems(); err == nil || !strings.Contains(err.Error(), "parameter regions, which lists none") {
		t.Errorf("CheckItems with no items: %v", err)
	}
	taken := run(Parameter{Name: "regions", Value: "eu,x"})
	taken.Status.Template.Spec.Steps = append(taken.Status.Template.Spec.Steps, Step{Name: "deploy-x", Image: "x"})
	if err := taken.CheckItems(); err == nil || !strings.Contains(err.Error(), `runs item "x" as step "deploy-x", which is already the name of a step`) {
		t.Errorf("CheckItems with a taken name: %v", err)
	}
}

// TestApplyStepDefaults: a step takes what it leaves unset from the defaults; its own env
// variables win over and come after the defaults'; the definition's steps are not changed.
func TestApplyStepDefaults(t *testing.T) {
	limit := 2
	d := &StepDefaults{
		Env:               []EnvVar{{Name: "REGION", Value: "eu"}, {Name: "LOG", Value: "info"}},
		NodeSelector:      map[string]string{"pool": "ci"},
		Retries:           &RetryPolicy{Limit: int32(limit)},
		PriorityClassName: "batch-low",
		Scratch:           []ScratchDir{{Path: "/workspace"}, {Path: "/tmp", SizeLimit: ptr.To(resource.MustParse("1Gi"))}},
	}
	steps := []Step{
		{Name: "a", Env: []EnvVar{{Name: "LOG", Value: "debug"}},
			Scratch: []ScratchDir{{Path: "/cache"}, {Path: "/workspace", SizeLimit: ptr.To(resource.MustParse("8Gi"))}}},
		{Name: "b", NodeSelector: map[string]string{"pool": "gpu"}, Retries: &RetryPolicy{Limit: 0}, PriorityClassName: "urgent"},
	}
	got := ApplyStepDefaults(steps, d)
	if names := []string{got[0].Env[0].Name + "=" + got[0].Env[0].Value, got[0].Env[1].Name + "=" + got[0].Env[1].Value}; len(got[0].Env) != 2 ||
		!slices.Equal(names, []string{"REGION=eu", "LOG=debug"}) {
		t.Errorf("a's env = %+v, want the default REGION, then its own LOG", got[0].Env)
	}
	if got[0].NodeSelector["pool"] != "ci" || got[0].Retries == nil || got[0].Retries.Limit != 2 || got[0].PriorityClassName != "batch-low" {
		t.Errorf("a = %+v, want the default nodeSelector, retries and priority class", got[0])
	}
	if got[1].NodeSelector["pool"] != "gpu" || got[1].Retries.Limit != 0 || len(got[1].Env) != 2 || got[1].PriorityClassName != "urgent" {
		t.Errorf("b = %+v, want its own nodeSelector, retries and priority class, and the default env", got[1])
	}
	scratch := func(st Step) (out []string) {
		for _, s := range st.Scratch {
			limit := "-"
			if s.SizeLimit != nil {
				limit = s.SizeLimit.String()
			}
			out = append(out, s.Path+"="+limit)
		}
		return out
	}
	if got, want := scratch(got[0]), []string{"/tmp=1Gi", "/cache=-", "/workspace=8Gi"}; !slices.Equal(got, want) {
		t.Errorf("a's scratch = %v, want the default /tmp, then its own (its /workspace winning)", got)
	}
	if got, want := scratch(got[1]), []string{"/workspace=-", "/tmp=1Gi"}; !slices.Equal(got, want) {
		t.Errorf("b's scratch = %v, want the defaults", got)
	}
	got[0].NodeSelector["pool"] = "changed"
	if d.NodeSelector["pool"] != "ci" || len(steps[0].Env) != 1 || steps[1].Env != nil {
		t.Error("applying the defaults changed the defaults or the steps")
	}
	if plain := ApplyStepDefaults(steps, nil); &plain[0] != &steps[0] {
		t.Error("steps are copied without defaults")
	}
}
