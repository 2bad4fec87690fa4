// Package e2e runs Custody end to end on a local cluster (internal/localcluster): real
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler and KWOK nodes from bin/, and the
// manager binary built from this checkout and run as its own process, as in a real install.
package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/custody-dev/custody/internal/localcluster"
	"github.com/custody-dev/custody/internal/testenv"
)

var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// CUSTODY_E2E_DIR keeps the cluster's kubeconfig and process logs for a look afterwards.
	c, err := localcluster.Start(localcluster.Options{Nodes: 2, Dir: os.Getenv("CUSTODY_E2E_DIR")})
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
	stop, err := startManager(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startManager builds the manager from this checkout and runs it against the cluster.
func startManager(c *localcluster.Cluster) (func(), error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(c.Dir, "manager")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the manager: %w\n%s", err, out)
	}
	logPath := filepath.Join(c.Dir, "manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--kubeconfig="+c.Kubeconfig,
		"--trust-domain=e2e.custody.test", "--cluster-name=e2e",
		"--metrics-bind-address="+freeAddr(), "--health-probe-bind-address="+freeAddr())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = logFile.Close()
		if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
			if data, err := os.ReadFile(logPath); err == nil {
				fmt.Fprintf(os.Stderr, "--- manager log ---\n%s\n", data)
			}
		}
	}, nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
