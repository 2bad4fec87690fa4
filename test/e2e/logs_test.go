package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/cli"
	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/testenv"
)

// kubectlCustody runs `kubectl custody args...` in ns with the cluster's admin kubeconfig and
// returns what it wrote to stdout and to stderr.
func kubectlCustody(ns string, args ...string) (stdout, stderr string, err error) {
	var out, errOut testenv.SyncBuffer
	cmd := cli.NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	cmd.SetArgs(append(args, "--kubeconfig", cluster.Kubeconfig, "-n", ns))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

// TestStepLogs: `kubectl custody logs` reads each step container's log through kube-apiserver from
// the node (KWOK serves the kubelet's log API): -f follows a run from before its first step starts
// until it ends, with each step's log as the step runs; afterwards every step's own log, in step
// order, each line marked with its step and attempt; one step alone; a step the workflow does not
// have is an error naming those it has.
func TestStepLogs(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	wf := createWorkflow(ctx, t, ns, `
metadata: {name: release}
spec:
  steps:
  - {name: fetch, image: registry.example.com/fetch:1}
  - {name: build, image: registry.example.com/build:1, dependsOn: [fetch]}
  - {name: sign, image: registry.example.com/sign:1, dependsOn: [fetch], when: "1 == 2"}
`)
	type result struct {
		out string
		err error
	}
	followed := make(chan result, 1)
	go func() {
		out, errOut, err := kubectlCustody(ns, "logs", "release", "-f")
		if err != nil {
			err = fmt.Errorf("%w (stderr: %s)", err, errOut)
		}
		followed <- result{out, err}
	}()
	waitPhase(ctx, t, wf, custodyv1alpha1.WorkflowSucceeded, 2*time.Minute)
	select {
	case r := <-followed:
		if r.err != nil {
			t.Fatalf("logs -f: %v", r.err)
		}
		// No container runs on a KWOK node: each started step's log is KWOK's one line. Both
		// steps' logs, each once; the skipped step has none.
		lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
		slices.Sort(lines)
		want := []string{"[build#1] " + localcluster.DefaultContainerLog, "[fetch#1] " + localcluster.DefaultContainerLog}
		if !slices.Equal(lines, want) {
			t.Errorf("logs -f printed\n%s\nwant (in any order)\n%s", r.out, strings.Join(want, "\n"))
		}
	case <-time.After(time.Minute):
		t.Fatal("logs -f did not return within a minute of the workflow's end")
	}

	// Every step pod gets a log of its own, naming its pod, so that a log shown under the wrong
	// step would show.
	pods := stepPods(ctx, t, ns, "release")
	if len(pods) != 2 {
		t.Fatalf("%d step pods, want 2 (fetch and build)", len(pods))
	}
	byStep := map[string]string{}
	for _, p := range pods {
		step := p.Labels[custodyv1alpha1.LabelStep]
		byStep[step] = p.Name
		if err := cluster.SetContainerLog(ctx, ns, p.Name, step+" ran in pod "+p.Name, "done"); err != nil {
			t.Fatal(err)
		}
	}
	want := "[fetch#1] fetch ran in pod " + byStep["fetch"] + "\n[fetch#1] done\n" +
		"[build#1] build ran in pod " + byStep["build"] + "\n[build#1] done\n"
	eventually(t, 30*time.Second, "logs to print every step's own log", func() error {
		out, errOut, err := kubectlCustody(ns, "logs", "release")
		if err != nil {
			return fmt.Errorf("%w (stderr: %s)", err, errOut)
		}
		if out != want {
			return fmt.Errorf("printed\n%s\nwant\n%s(stderr: %s)", out, want, errOut)
		}
		return nil
	})
	out, _, err := kubectlCustody(ns, "logs", "release", "build", "--attempt", "1")
	if err != nil || out != "[build#1] build ran in pod "+byStep["build"]+"\n[build#1] done\n" {
		t.Errorf("logs release build: err %v, printed\n%s", err, out)
	}
	// The skipped step never ran: nothing to print, and stderr says so.
	if out, errOut, err := kubectlCustody(ns, "logs", "release", "sign"); err != nil || out != "" ||
		!strings.Contains(errOut, "step sign of workflow release has not started yet") {
		t.Errorf("logs of a skipped step: err %v, stdout %q, stderr %q", err, out, errOut)
	}
	if _, _, err := kubectlCustody(ns, "logs", "release", "deploy"); err == nil ||
		err.Error() != `workflow release has no step "deploy" (its steps: fetch, build, sign)` {
		t.Errorf("logs of a step the workflow does not have: %v", err)
	}
}

func stepPods(ctx context.Context, t *testing.T, ns, workflow string) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := cluster.Client.List(ctx, &pods, client.InNamespace(ns),
		client.MatchingLabels{custodyv1alpha1.LabelWorkflow: workflow}); err != nil {
		t.Fatal(err)
	}
	return pods.Items
}
