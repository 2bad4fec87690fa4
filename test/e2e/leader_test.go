package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/localcluster"
)

// TestLeaderFailover runs two manager replicas with leader election, kills the leader with
// SIGKILL while workflows run, and expects the other replica to take over and finish them. The
// surviving replica keeps running for the tests after this one.
func TestLeaderFailover(t *testing.T) {
	ctx := context.Background()
	if err := cluster.KillManager(managerPID); err != nil {
		t.Fatal(err)
	}
	replica := func() int {
		metrics, err1 := localcluster.FreeAddr()
		probes, err2 := localcluster.FreeAddr()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		pid, err := cluster.StartManager(suiteManagerArgs(metrics, probes, spireServer.Address,
			"--leader-elect", "--leader-election-namespace=default")...)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	a, b := replica(), replica()
	leads := func(pid int) bool {
		data, _ := os.ReadFile(cluster.ManagerLog(pid)) //nolint:gosec // the cluster's own log
		return strings.Contains(string(data), "Successfully acquired lease")
	}
	var leader, follower int
	eventually(t, time.Minute, "a leader", func() error {
		switch {
		case leads(a):
			leader, follower = a, b
		case leads(b):
			leader, follower = b, a
		default:
			return fmt.Errorf("no replica leads yet")
		}
		return nil
	})
	managerPID = follower

	admission, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cluster.WaitForAdmission(admission); err != nil { // both replicas serve it
		t.Fatal(err)
	}
	ns := namespace(t)
	const n = 10
	for i := range n {
		wf := &custodyv1alpha1.Workflow{}
		wf.Name, wf.Namespace = fmt.Sprintf("ha-%d", i), ns
		wf.Spec.Steps = []custodyv1alpha1.Step{{Name: "a", Image: "example.com/w:1"},
			{Name: "b", Image: "example.com/w:1", DependsOn: []string{"a"}}}
		if err := cluster.Client.Create(ctx, wf); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, "work under way", func() error {
		wf := &custodyv1alpha1.Workflow{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "ha-0"}, wf); err != nil {
			return err
		}
		if wf.Status.Phase != custodyv1alpha1.WorkflowRunning {
			return fmt.Errorf("ha-0 is %q", wf.Status.Phase)
		}
		return nil
	})
	if leads(follower) {
		t.Fatal("both replicas lead")
	}
	if err := cluster.KillManager(leader); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 3*time.Minute, "the other replica finishes every workflow", func() error {
		var list custodyv1alpha1.WorkflowList
		if err := cluster.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, wf := range list.Items {
			if wf.Status.Phase != custodyv1alpha1.WorkflowSucceeded || len(wf.Finalizers) != 0 {
				return fmt.Errorf("%s is %q", wf.Name, wf.Status.Phase)
			}
		}
		return nil
	})
	if !leads(follower) {
		t.Error("the surviving replica never acquired the lease")
	}
	t.Logf("leader killed; the other replica finished %d workflows %s later", n, time.Since(killed).Round(time.Second))
}
