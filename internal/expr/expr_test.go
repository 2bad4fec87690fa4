package expr

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var sample = Env{
	Params: map[string]string{"invoice": "4711"},
	Steps: map[string]StepView{
		"check": {Phase: "Succeeded", Results: map[string]string{"amount": "12000", "currency": "EUR"}},
		"skip":  {Phase: "Skipped"},
	},
}

func TestWhen(t *testing.T) {
	cases := []struct {
		src        string
		want       bool
		compileErr string
		evalErr    string
	}{
		{src: "int(steps['check'].results.amount) > 1000", want: true},
		{src: "int(steps['check'].results.amount) > 100000", want: false},
		{src: "params.invoice == '4711' && steps['check'].results.currency == 'EUR'", want: true},
		{src: "steps['skip'].phase == 'Skipped'", want: true},
		{src: "steps['check'].results.amount >", compileErr: "does not compile"},
		{src: "params.invoice", compileErr: "must be a boolean expression, not string"},
		{src: "int(steps['skip'].results.amount) > 0", evalErr: "no such key"},
		{src: "int(params.invoice + 'x') > 0", evalErr: "type conversion error"},
		{src: "steps['nope'].phase == 'Succeeded'", evalErr: "no such key"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			w, err := CompileWhen(tc.src)
			if tc.compileErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.compileErr) {
					t.Fatalf("compile error %v, want %q", err, tc.compileErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.Eval(sample)
			if tc.evalErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.evalErr) {
					t.Fatalf("eval error %v, want %q", err, tc.evalErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Eval = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestWhen_costLimit(t *testing.T) {
	w, err := CompileWhen("[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Eval(sample); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("an expensive expression was evaluated (err %v); want the cost limit to stop it", err)
	}
}

func TestSubstitute(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{in: "pay $(params.invoice) $(steps.check.results.amount)", want: "pay 4711 12000"},
		{in: "no refs, $(shell) and $HOME stay", want: "no refs, $(shell) and $HOME stay"},
		{in: "$(params.missing)", err: `$(params.missing): no parameter named "missing"`},
		{in: "$(steps.later.results.x)", err: `step "later" has not run before this step`},
		{in: "$(steps.skip.results.amount)", err: `step "skip" (Skipped) has no result "amount"`},
	}
	for _, tc := range cases {
		got, err := Substitute(tc.in, sample)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Substitute(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Substitute(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if refs := Refs("a $(params.x) b $(steps.s-1.results.y) c $(workflow.phase)"); !reflect.DeepEqual(refs,
		[]Ref{{Param: "x"}, {Step: "s-1", Result: "y"}, {Workflow: "phase"}}) {
		t.Errorf("Refs = %v", refs)
	}
}

// TestForContainer: in a container's command, args and env values the kubelet expands $(VAR) and
// turns $$ into $; a value put in has every $ doubled so that the program gets it as it was, while
// the author's own text around it keeps the kubelet's rule.
func TestForContainer(t *testing.T) {
	env := Env{Params: map[string]string{
		"password": "pa$$word",        // the kubelet would pass pa$word
		"template": "$(HOME)/x",       // ... the container's HOME, were one defined
		"escaped":  "$$(HOME)",        // ... $(HOME)
		"trailing": "cost: 5$",        // a lone $ at the end is kept by the kubelet either way
		"jsonpath": "$.items[0]",      // ... and one before anything but $ or (
		"plain":    "sha256:abc",      // nothing to do
		"ref":      "$(params.plain)", // text that looks like a reference is not read again
		"empty":    "",
	}}
	cases := []struct{ in, want string }{
		{"--password=$(params.password)", "--password=pa$$$$word"},
		{"$(params.template)", "$$(HOME)/x"},
		{"$(params.escaped)", "$$$$(HOME)"},
		{"$(params.trailing)", "cost: 5$$"},
		{"$(params.jsonpath)", "$$.items[0]"},
		{"$(HOME)/$(params.plain) $$ $(params.empty)", "$(HOME)/sha256:abc $$ "},
		{"$(params.ref)", "$$(params.plain)"},
	}
	for _, tc := range cases {
		got, err := ForContainer(tc.in, env)
		if err != nil || got != tc.want {
			t.Errorf("ForContainer(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// Status, results and previews show the value itself.
	if raw, err := Substitute("--password=$(params.password)", env); err != nil || raw != "--password=pa$$word" {
		t.Errorf("Substitute = %q, %v; want the value as it is", raw, err)
	}
	args, err := ForContainerAll([]string{"$(params.password)", "$(params.missing)"}, env)
	if err == nil || !strings.Contains(err.Error(), `no parameter named "missing"`) || args[0] != "pa$$$$word" {
		t.Errorf("ForContainerAll = %q, %v; want the first escaped and the missing parameter named", args, err)
	}
}

// TestSubstitute_workflowPhase: a finally step's args and env can carry the steps' outcome; a
// step that is not a finally step has none to read.
func TestSubstitute_workflowPhase(t *testing.T) {
	finally := sample
	finally.Workflow = map[string]string{"phase": "Failed"}
	if got, err := Substitute("--outcome=$(workflow.phase)", finally); err != nil || got != "--outcome=Failed" {
		t.Errorf("finally step: %q, %v; want --outcome=Failed", got, err)
	}
	if _, err := Substitute("$(workflow.name)", finally); err == nil || !strings.Contains(err.Error(), "workflow.phase only") {
		t.Errorf("$(workflow.name) in a finally step: error %v", err)
	}
	if _, err := Substitute("$(workflow.phase)", sample); err == nil || !strings.Contains(err.Error(), "only finally steps") {
		t.Errorf("$(workflow.phase) in a step: error %v", err)
	}
}

func TestParseResults(t *testing.T) {
	got, err := ParseResults(`{"amount":"12000","extra":"ignored"}`, []string{"amount"})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"amount": "12000"}) {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := ParseResults("", nil); err != nil || got != nil {
		t.Errorf("nothing declared: got %v, %v", got, err)
	}
	for msg, want := range map[string]string{
		`{"amount": 12000}`:                    "results that are not strings: amount",
		`{}`:                                   "missing results: amount",
		`token=s3cr3t`:                         "not a JSON object of strings",
		strings.Repeat("x", MaxResultsBytes+1): "more than 4096",
	} {
		_, err := ParseResults(msg, []string{"amount"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseResults(%.20q) error %v, want %q", msg, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error repeats the message's content: %v", err)
		}
	}
}

// FuzzWhen checks that no expression, however odd, panics the compiler or the evaluator.
func FuzzWhen(f *testing.F) {
	f.Add("int(steps['check'].results.amount) > 0")
	f.Add("params.invoice.size() > 2 || steps.exists(k, k == 'x')")
	f.Fuzz(func(_ *testing.T, src string) {
		w, err := CompileWhen(src)
		if err != nil {
			return
		}
		_, _ = w.Eval(sample)
	})
}

// FuzzRetryWhen: no retries.when expression panics the compiler, the reference finder or the
// evaluator, whatever the failed attempt looked like.
func FuzzRetryWhen(f *testing.F) {
	f.Add("disrupted || exitCode != 2", int32(2), "JobFailed", false)
	f.Add("int(params.env) > attempt && item.startsWith('eu')", int32(-1), "TimedOut", true)
	f.Fuzz(func(_ *testing.T, src string, exitCode int32, reason string, disrupted bool) {
		_, _ = RetryWhenRefs(src)
		w, err := CompileRetryWhen(src)
		if err != nil {
			return
		}
		_, _ = w.Eval(RetryEnv{Attempt: 1, Reason: reason, ExitCode: exitCode, Disrupted: disrupted,
			Params: map[string]string{"env": "7"}, Item: "eu-west"})
	})
}

// FuzzSubstitute: substitution never panics, leaves text without references as it is, and
// resolves every reference it reports no error for.
func FuzzSubstitute(f *testing.F) {
	f.Add("pay $(params.invoice) $(steps.check.results.amount) $(workflow.phase)")
	f.Add("$(workflow.name) $(steps.skip.results.x) $((params.invoice)) $(shell)")
	finally := sample
	finally.Workflow = map[string]string{"phase": "Succeeded"}
	f.Fuzz(func(t *testing.T, in string) {
		for _, env := range []Env{sample, finally} {
			out, err := Substitute(in, env)
			if len(Refs(in)) == 0 && (out != in || err != nil) {
				t.Fatalf("Substitute(%q) = %q, %v; want it unchanged", in, out, err)
			}
			if err == nil && len(Refs(in)) > 0 && out == in {
				t.Fatalf("Substitute(%q) replaced nothing and reported nothing", in)
			}
		}
	})
}

// A finally step's `when` reads the outcome; other steps see an empty workflow map.
func TestWhen_workflowPhase(t *testing.T) {
	w, err := CompileWhen("workflow.phase == 'Failed'")
	if err != nil {
		t.Fatal(err)
	}
	for phase, want := range map[string]bool{"Failed": true, "Succeeded": false, "Cancelled": false} {
		env := sample
		env.Workflow = map[string]string{"phase": phase}
		if got, err := w.Eval(env); err != nil || got != want {
			t.Errorf("phase %s: %v, %v; want %v", phase, got, err, want)
		}
	}
	if _, err := w.Eval(sample); err == nil || !strings.Contains(err.Error(), "no such key") {
		t.Errorf("without a workflow outcome: %v, want no such key", err)
	}
}

// TestWhen_item: a forEach step's item is `item` in its `when`; any other step's is "".
func TestWhen_item(t *testing.T) {
	w, err := CompileWhen(`item != 'ap-south' || params.asia == 'true'`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		item, asia string
		want       bool
	}{{"eu-west", "false", true}, {"ap-south", "false", false}, {"ap-south", "true", true}, {"", "false", true}} {
		got, err := w.Eval(Env{Params: map[string]string{"asia": c.asia}, Item: c.item})
		if err != nil || got != c.want {
			t.Errorf("item %q, asia %s: %v (%v), want %v", c.item, c.asia, got, err, c.want)
		}
	}
}

func TestWhenRefs(t *testing.T) {
	cases := map[string][]Ref{
		`params.region == 'eu'`:                                      {{Param: "region"}},
		`int(steps.check.results.amount) > 1000`:                     {{Step: "check", Result: "amount"}},
		`steps['check'].results['risk'] == 'high'`:                   {{Step: "check", Result: "risk"}},
		`steps.build.phase == 'Succeeded'`:                           {{Step: "build"}},
		`has(steps.scan.results.cve) && params['mode'] != 'dry-run'`: {{Step: "scan", Result: "cve"}, {Param: "mode"}},
		`steps[params.which].results.x == '1'`:                       {{Param: "which"}},
		`workflow.phase == 'Failed'`:                                 {{Workflow: "phase"}},
		`workflow['phase'] != 'Succeeded' && params.x == 'y'`:        {{Workflow: "phase"}, {Param: "x"}},
		`item != 'ap-south' || params.asia == 'true'`:                {{Item: true}, {Param: "asia"}},
		`true`: nil,
	}
	for src, want := range cases {
		got, err := WhenRefs(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		slices.SortFunc(got, func(a, b Ref) int { return strings.Compare(a.String(), b.String()) })
		slices.SortFunc(want, func(a, b Ref) int { return strings.Compare(a.String(), b.String()) })
		if !slices.Equal(got, want) {
			t.Errorf("%s: refs %v, want %v", src, got, want)
		}
	}
	if _, err := WhenRefs(`steps.x.results.`); err == nil {
		t.Error("an expression that does not compile gave no error")
	}
	if _, err := WhenRefs(`params.x`); err == nil || !strings.Contains(err.Error(), "must be a boolean expression") {
		t.Errorf("an expression that is not boolean: %v", err)
	}
}

// TestRetryWhen: a retries.when expression judges a failed attempt by how it failed; what it may
// not read (another step, the workflow) is refused when it is compiled, not when a step fails.
func TestRetryWhen(t *testing.T) {
	exited := RetryEnv{Attempt: 1, Reason: "JobFailed", ExitCode: 2, Params: map[string]string{"env": "prod"}, Item: "eu",
		Duration: 12 * time.Second}
	evicted := RetryEnv{Attempt: 2, Reason: "JobFailed", ExitCode: NoExitCode, Disrupted: true, Duration: 40 * time.Minute}
	timedOut := RetryEnv{Attempt: 3, Reason: "TimedOut", ExitCode: NoExitCode, Duration: time.Hour}
	cases := []struct {
		src        string
		want       [3]bool // exited, evicted, timedOut
		compileErr string
		evalErr    string
	}{
		{src: "exitCode != 2", want: [3]bool{false, true, true}},
		{src: "exitCode in [1, 137]", want: [3]bool{false, false, false}},
		{src: "disrupted || reason == 'TimedOut'", want: [3]bool{false, true, true}},
		{src: "attempt < 2", want: [3]bool{true, false, false}},
		{src: "exitCode == -1", want: [3]bool{false, true, true}},
		{src: "has(params.env) && params.env != 'prod'", want: [3]bool{false, false, false}},
		{src: "item == 'eu'", want: [3]bool{true, false, false}},
		{src: "duration < duration('1m')", want: [3]bool{true, false, false}},
		{src: "duration.getMinutes() <= 40", want: [3]bool{true, true, false}},
		{src: "duration < 60", compileErr: "no matching overload"},
		{src: "int(params.env) > 0", evalErr: "type conversion error"},
		{src: "steps['build'].phase == 'Failed'", compileErr: "undeclared reference to 'steps'"},
		{src: "workflow.phase == 'Failed'", compileErr: "undeclared reference to 'workflow'"},
		{src: "exitcode != 2", compileErr: "undeclared reference to 'exitcode'"},
		{src: "exitCode != '2'", compileErr: "no matching overload"},
		{src: "reason", compileErr: "must be a boolean expression, not string"},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			w, err := CompileRetryWhen(tc.src)
			if tc.compileErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.compileErr) {
					t.Fatalf("compile error %v, want %q", err, tc.compileErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, env := range []RetryEnv{exited, evicted, timedOut} {
				got, err := w.Eval(env)
				if tc.evalErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.evalErr) {
						t.Fatalf("eval error %v, want %q", err, tc.evalErr)
					}
					return
				}
				if err != nil || got != tc.want[i] {
					t.Errorf("attempt %+v: Eval = %v, %v; want %v", env, got, err, tc.want[i])
				}
			}
		})
	}
	refs, err := RetryWhenRefs("params.env == 'prod' && item != 'us' && exitCode != 2")
	if err != nil || !slices.Equal(refs, []Ref{{Param: "env"}, {Item: true}}) {
		t.Errorf("RetryWhenRefs = %v, %v", refs, err)
	}
}

// TestKubeletExpand: the kubelet's rule for a container's command, args and env values, and that
// ForContainer's escaping of a value survives it (the program gets the value exactly).
func TestKubeletExpand(t *testing.T) {
	vars := map[string]string{"ACCOUNT": "DE44 5001", "EMPTY": ""}
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"costs $$5", "costs $5"},
		{"$$(ACCOUNT)", "$(ACCOUNT)"},
		{"to $(ACCOUNT)!", "to DE44 5001!"},
		{"[$(EMPTY)]", "[]"},
		{"$(UNSET) stays", "$(UNSET) stays"},
		{"$(unclosed", "$(unclosed"},
		{"$HOME and $", "$HOME and $"},
		{"$$$(ACCOUNT)", "$DE44 5001"},
	} {
		if got := KubeletExpand(tc.in, vars); got != tc.want {
			t.Errorf("KubeletExpand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	in, err := ForContainer("pay $(params.p) $$ $(ACCOUNT)", Env{Params: map[string]string{"p": "pa$$word $(ACCOUNT)"}})
	if got, want := KubeletExpand(in, vars), "pay pa$$word $(ACCOUNT) $ DE44 5001"; err != nil || got != want {
		t.Errorf("ForContainer, then the kubelet: %q, %v; want %q", got, err, want)
	}
}
