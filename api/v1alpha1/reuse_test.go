package v1alpha1

import (
	"strings"
	"testing"
)

// TestReuseProblem_templateRuns: runs of a template are compared by the template's name until
// they are resolved, then by the steps they resolved to; a parameter left at its default equals
// the same value given.
func TestReuseProblem_templateRuns(t *testing.T) {
	def := "7"
	tpl := WorkflowTemplateSpec{
		Parameters: []ParameterSpec{{Name: "db", Default: nil}, {Name: "keep", Default: &def}},
		Steps:      []Step{{Name: "dump", Image: "example.com/dump:1", Args: []string{"$(params.db)"}}},
	}
	src := &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: "backup"},
		Parameters: []Parameter{{Name: "db", Value: "orders"}}}}
	src.Name = "backup-1"
	src.Status = WorkflowStatus{Phase: WorkflowFailed, Template: &ResolvedTemplate{Name: "backup", Spec: tpl}}
	run := func(template string, params ...Parameter) *Workflow {
		return &Workflow{Spec: WorkflowSpec{WorkflowTemplateRef: &WorkflowTemplateRef{Name: template}, Parameters: params,
			ReuseFrom: src.Name}}
	}
	changed := *tpl.DeepCopy()
	changed.Steps[0].Image = "example.com/dump:2"
	resolved := func(w *Workflow, spec WorkflowTemplateSpec) *Workflow {
		w.Status.Template = &ResolvedTemplate{Name: w.Spec.WorkflowTemplateRef.Name, Spec: spec}
		return w
	}
	for name, c := range map[string]struct {
		run  *Workflow
		want string
	}{
		"same template, not resolved":         {run("backup", Parameter{Name: "db", Value: "orders"}), ""},
		"a default given as the same value":   {run("backup", Parameter{Name: "db", Value: "orders"}, Parameter{Name: "keep", Value: "7"}), ""},
		"a default given as another value":    {run("backup", Parameter{Name: "db", Value: "orders"}, Parameter{Name: "keep", Value: "30"}), `parameter "keep" has another value`},
		"another template":                    {run("restore", Parameter{Name: "db", Value: "orders"}), "not a run of the same template"},
		"resolved to the same steps":          {resolved(run("backup", Parameter{Name: "db", Value: "orders"}), tpl), ""},
		"resolved after the template changed": {resolved(run("backup", Parameter{Name: "db", Value: "orders"}), changed), `step "dump" differs`},
		"another parameter value":             {run("backup", Parameter{Name: "db", Value: "users"}), `parameter "db" has another value`},
	} {
		got := ReuseProblem(c.run, src)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	src.Status.Template = nil
	if got := ReuseProblem(run("backup"), src); !strings.Contains(got, "never resolved its template") {
		t.Errorf("a source that never resolved its template: %q", got)
	}
}
