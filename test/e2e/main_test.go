// Package e2e runs Custody end to end on a local cluster (internal/localcluster): real
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler and KWOK nodes from bin/, and the
// manager binary built from this checkout and run as its own process, as in a real install.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/spiretest"
)

var (
	cluster     *localcluster.Cluster
	spireServer *spiretest.Server
	// managerArgs and managerPID let the fault suite kill and restart the manager.
	managerArgs []string
	managerPID  int
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The tests' own controller-runtime clients; the manager logs to its file in the cluster's directory.
	log.SetLogger(logr.Discard())
	// CUSTODY_E2E_DIR keeps the cluster's kubeconfig and process logs (manager.log, ...) for a
	// look afterwards.
	// A real spire-server; the manager registers step identities in it over the admin socket.
	srv, err := spiretest.StartServer(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if srv != nil {
			_ = srv.Close()
		}
		return 1
	}
	spireServer = srv
	defer func() { _ = srv.Close() }()
	// Pods run for a moment, as real steps do, so that their identities are registered.
	// The manager runs with the race detector: the fault suite's restarts, leader changes and
	// SIGKILLs are where concurrency bugs show; a data race fails the suite.
	c, err := localcluster.Start(localcluster.Options{Nodes: 2, Dir: os.Getenv("CUSTODY_E2E_DIR"), PodRunTime: 2 * time.Second,
		ExitCodeFromEnv: true, ResultsFromEnv: true, RaceDetector: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cluster = c
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the local cluster:", err)
		}
	}()
	metrics, err1 := localcluster.FreeAddr()
	probes, err2 := localcluster.FreeAddr()
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, err1, err2)
		return 1
	}
	managerArgs = suiteManagerArgs(metrics, probes, srv.Address)
	// Admission as installed by config/webhook (failurePolicy Fail), served by every manager.
	if err := c.EnableWebhooks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if managerPID, err = c.StartManager(managerArgs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.WaitForAdmission(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if err := c.DataRaces(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	return code
}

// suiteManagerArgs are the flags of every manager the suite runs (the leader failover's replicas
// too, which the tests after it use), with its own metrics and probe addresses.
func suiteManagerArgs(metrics, probes, spireAddress string, extra ...string) []string {
	return append([]string{"--metrics-bind-address=" + metrics, "--health-probe-bind-address=" + probes,
		"--trust-domain=" + spiretest.TrustDomain, "--spire-server-address=" + spireAddress,
		// A restarted manager sweeps at once; keep the sweep frequent, as the fault suite needs.
		"--identity-sweep-interval=10s",
		// Step pods in user namespaces of their own: the API server and Pod Security admit them.
		"--step-user-namespaces"}, extra...)
}
