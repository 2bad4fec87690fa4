// Package localcluster runs a small but real Kubernetes cluster on loopback from the pinned
// binaries in bin/: kube-apiserver and etcd (through internal/testenv, with Custody's CRDs),
// kube-controller-manager (Job controller, garbage collector, ...), kube-scheduler, and KWOK, which
// plays the kubelet of fake nodes: it moves scheduled pods to Running and pods owned by Jobs to
// Succeeded, so real Jobs run to completion without containers, and serves their containers' logs
// (logs.go).
//
// End-to-end tests, benchmarks and the sandbox build on it:
//
//	c, err := localcluster.Start(localcluster.Options{Nodes: 2})
//	defer c.Stop()
//	// c.Client, c.Config, c.Kubeconfig
//
// Every process binds to 127.0.0.1 only; logs go to files in Options.Dir.
package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/custody-dev/custody/internal/testenv"
)

// Options configure a cluster.
type Options struct {
	// Nodes is the number of KWOK nodes (default 1), named kwok-node-0, kwok-node-1, ...
	Nodes int
	// Dir holds kubeconfigs and process logs; a temporary directory when empty (removed on Stop).
	Dir string
	// PodRunTime is how long KWOK keeps a Job's pod Running before it completes it (KWOK's fast
	// stages complete it at once).
	PodRunTime time.Duration
	// ResultsFromEnv makes KWOK write the value of a container's ResultsEnv variable as its
	// termination message when it completes the pod, so that steps "write" results.
	ResultsFromEnv bool
	// ExitCodeFromEnv makes KWOK end a Job's pod whose container sets ExitCodeEnv as Failed, the
	// container terminated with that exit code, so that steps can fail.
	ExitCodeFromEnv bool
	// WithoutCRDs leaves Custody's CRDs out, for tests that install them as a user would.
	WithoutCRDs bool
	// AuditLog, when set, is where the API server writes its audit log (level Metadata).
	AuditLog string
	// RaceDetector builds the manager with the race detector (go build -race); DataRaces then
	// reports what it found.
	RaceDetector bool
}

// ResultsEnv is the variable whose value KWOK writes as a container's termination message when
// ResultsFromEnv is set (the sandbox's stand-in for a step writing its results).
const ResultsEnv = "CUSTODY_SANDBOX_RESULTS"

// ExitCodeEnv is the variable whose value (a number) KWOK ends a container with, its pod Failed,
// when ExitCodeFromEnv is set (the stand-in for a step that fails).
const ExitCodeEnv = "CUSTODY_SANDBOX_EXIT_CODE"

// Cluster is a running local cluster.
type Cluster struct {
	*testenv.Env
	// Kubeconfig is the path of an admin (system:masters) kubeconfig for this cluster.
	Kubeconfig string
	// Nodes are the names of the KWOK nodes.
	Nodes []string
	// Dir holds kubeconfigs and logs.
	Dir string

	procs   []*process
	tempDir bool

	managerBuilt  bool
	managerStarts int
	race          bool
	webhooks      *webhooks
}

type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited; err is then set
	err  error
}

// Start starts the cluster and returns once every node is Ready.
func Start(opts Options) (c *Cluster, err error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	c = &Cluster{Dir: opts.Dir, race: opts.RaceDetector}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "custody-cluster-"); err != nil {
			return nil, err
		}
		c.tempDir = true
	} else if err := os.MkdirAll(c.Dir, 0o750); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
			c = nil
		}
	}()
	kubelet, err := newKubeletServer(c.Dir)
	if err != nil {
		return c, err
	}
	envOpts := kubelet.apiServerOptions()
	if opts.WithoutCRDs {
		envOpts = append(envOpts, testenv.WithoutCRDs())
	}
	if opts.AuditLog != "" {
		envOpts = append(envOpts, testenv.WithAuditLog(opts.AuditLog))
	}
	if c.Env, err = testenv.Start(envOpts...); err != nil {
		return c, err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := c.WriteKubeconfig(c.Kubeconfig, "custody-admin", "system:masters"); err != nil {
		return c, err
	}
	// kube-controller-manager acts as itself, as in a real cluster (its Job controller is who
	// admission lets create step pods), with the admin's rights.
	kcmKubeconfig := filepath.Join(c.Dir, "kube-controller-manager.kubeconfig")
	if err := c.WriteKubeconfig(kcmKubeconfig, "system:kube-controller-manager", "system:masters"); err != nil {
		return c, err
	}

	stages, err := testenv.Binary("kwok-stages.yaml")
	if err != nil {
		return c, err
	}
	if opts.PodRunTime > 0 || opts.ResultsFromEnv || opts.ExitCodeFromEnv {
		if stages, err = adaptPodComplete(stages, c.Dir, opts); err != nil {
			return c, err
		}
	}
	kwokConfig, err := c.kwokConfig(stages)
	if err != nil {
		return c, err
	}
	starts := []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{
			"--kubeconfig=" + kcmKubeconfig, "--leader-elect=false", "--secure-port=0",
			"--use-service-account-credentials=false",
			// Node lifecycle stays on: it removes the not-ready taint once KWOK reports a node
			// Ready (and KWOK's heartbeat stage keeps it so). Without kubelets, the token and
			// IPAM controllers have nothing to do.
			"--controllers=*,-serviceaccount-token,-nodeipam",
			"--concurrent-job-syncs=10", "--concurrent-gc-syncs=20",
			"--kube-api-qps=200", "--kube-api-burst=400",
		}},
		{"kube-scheduler", []string{
			"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--kube-api-qps=200", "--kube-api-burst=400",
		}},
		{"kwok", append([]string{
			"--kubeconfig=" + c.Kubeconfig, "--manage-all-nodes=true", "--config=" + kwokConfig,
			"--cidr=10.240.0.0/16", "--node-ip=127.0.0.1",
		}, kubelet.kwokArgs()...)},
	}
	for _, s := range starts {
		path, err := testenv.Binary(s.name)
		if err != nil {
			return c, err
		}
		if err := c.run(s.name, path, s.args...); err != nil {
			return c, err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range opts.Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels:      map[string]string{"type": "kwok", corev1.LabelHostname: name},
		}}
		if err := c.Client.Create(ctx, node); err != nil {
			return c, fmt.Errorf("localcluster: creating node %s: %w", name, err)
		}
		c.Nodes = append(c.Nodes, name)
	}
	if err := c.waitNodesReady(ctx); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) run(name, path string, args ...string) error {
	logFile, err := os.Create(filepath.Join(c.Dir, name+".log")) //nolint:gosec // our own directory
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...) //nolint:gosec // a pinned binary from bin/
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("localcluster: starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return nil
}

func (c *Cluster) waitNodesReady(ctx context.Context) error {
	for {
		ready := 0
		var nodes corev1.NodeList
		if err := c.Client.List(ctx, &nodes); err == nil {
			for _, n := range nodes.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		if ready >= len(c.Nodes) {
			return nil
		}
		if err := c.Exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localcluster: nodes not Ready (%d of %d): %w", ready, len(c.Nodes), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Exited returns an error naming each process of the cluster (a manager included) that exited on
// its own since it started, with its exit status and log; nil while all of them run. A manager
// killed with KillManager is not among them.
func (c *Cluster) Exited() error {
	var errs []error
	for _, p := range c.procs {
		select {
		case <-p.done:
			status := p.err
			if status == nil {
				status = errors.New("exit status 0")
			}
			errs = append(errs, fmt.Errorf("localcluster: %s exited (%w); see %s", p.name, status, filepath.Join(c.Dir, p.name+".log")))
		default:
		}
	}
	return errors.Join(errs...)
}

// StartManager builds the Custody manager from this checkout and runs it against the cluster as
// its own process, as a real install would, with the admin kubeconfig and the given flags
// (--trust-domain and --cluster-name default to test values). Its log is Dir/manager.log; Stop
// stops it first. It returns the process ID (for /proc measurements).
func (c *Cluster) StartManager(args ...string) (int, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return 0, err
	}
	bin := filepath.Join(c.Dir, "manager")
	if !c.managerBuilt {
		flags := []string{"build", "-o", bin}
		if c.race {
			flags = append(flags, "-race")
		}
		build := exec.Command("go", append(flags, ".")...) //nolint:gosec // our own directory
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("localcluster: building the manager: %w\n%s", err, out)
		}
		c.managerBuilt = true
	}
	all := make([]string, 0, 3+len(args))
	all = append(all, "--kubeconfig="+c.Kubeconfig, "--trust-domain=local.custody.test", "--cluster-name=local",
		// Admission only after EnableWebhooks installed its configurations.
		"--enable-webhooks=false")
	webhookArgs, register, err := c.managerWebhookArgs()
	if err != nil {
		return 0, err
	}
	all = append(all, webhookArgs...)
	c.managerStarts++
	name := "manager"
	if c.managerStarts > 1 {
		name = fmt.Sprintf("manager-%d", c.managerStarts)
	}
	if err := c.run(name, bin, append(all, args...)...); err != nil {
		return 0, err
	}
	pid := c.procs[len(c.procs)-1].cmd.Process.Pid
	register(pid)
	return pid, nil
}

// ManagerLog returns the log file of the manager process with the given PID ("" if unknown).
func (c *Cluster) ManagerLog(pid int) string {
	for _, p := range c.procs {
		if p.cmd.Process.Pid == pid {
			return filepath.Join(c.Dir, p.name+".log")
		}
	}
	return ""
}

// DataRaces returns an error quoting the first data race the race detector reported in a
// manager's log (Options.RaceDetector), of every manager started, killed ones included; nil if
// none. Call it before Stop, which removes a temporary directory and its logs.
func (c *Cluster) DataRaces() error {
	logs, err := filepath.Glob(filepath.Join(c.Dir, "manager*.log"))
	if err != nil {
		return err
	}
	const marker, rule = "WARNING: DATA RACE", "=================="
	for _, path := range logs {
		data, err := os.ReadFile(path) //nolint:gosec // the cluster's own log
		if err != nil {
			return err
		}
		i := bytes.Index(data, []byte(marker))
		if i < 0 {
			continue
		}
		report := data[i:]
		if end := bytes.Index(report, []byte(rule)); end > 0 {
			report = report[:end]
		}
		// Each line marked, so that a filtered log (make e2e) keeps them.
		lines := strings.Split(strings.TrimSpace(string(report)), "\n")
		return fmt.Errorf("localcluster: the race detector found %d data race(s) in %s; the first:\n  race: %s",
			bytes.Count(data, []byte(marker)), path, strings.Join(lines, "\n  race: "))
	}
	return nil
}

// KillManager kills the manager process with the given PID with SIGKILL, as a crash would, and
// waits until it is gone.
func (c *Cluster) KillManager(pid int) error {
	for i, p := range c.procs {
		if p.cmd.Process.Pid != pid {
			continue
		}
		c.webhooks.forget(pid)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
		c.procs = append(c.procs[:i], c.procs[i+1:]...)
		return nil
	}
	return fmt.Errorf("localcluster: no process %d", pid)
}

// FreeAddr returns a free 127.0.0.1 port as host:port, for a process's listen flags.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// RestConfig returns a copy of the admin rest.Config.
func (c *Cluster) RestConfig() *rest.Config { return rest.CopyConfig(c.Config) }

// Stop stops KWOK, the scheduler and the controller-manager (in that order), then the API server
// and etcd, and removes a temporary Dir.
func (c *Cluster) Stop() error {
	var errs []error
	c.webhooks.close()
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	c.procs = nil
	if c.Env != nil {
		errs = append(errs, c.Env.Stop())
	}
	if c.tempDir {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}

// adaptPodComplete writes a copy of the KWOK stages into dir in which the pod-complete stage waits
// PodRunTime; with ResultsFromEnv, writes each container's ResultsEnv value as its termination
// message; and with ExitCodeFromEnv, leaves pods that set ExitCodeEnv to a stage that fails them.
// It returns the copy's path.
func adaptPodComplete(path, dir string, opts Options) (string, error) {
	d, results := opts.PodRunTime, opts.ResultsFromEnv
	data, err := os.ReadFile(path) //nolint:gosec // bin/kwok-stages.yaml
	if err != nil {
		return "", err
	}
	docs := strings.Split(string(data), "\n---")
	found := false
	for i, doc := range docs {
		var stage map[string]any
		if err := yaml.Unmarshal([]byte(doc), &stage); err != nil {
			return "", fmt.Errorf("localcluster: %s: %w", path, err)
		}
		meta, _ := stage["metadata"].(map[string]any)
		spec, _ := stage["spec"].(map[string]any)
		if meta == nil || spec == nil || meta["name"] != "pod-complete" {
			continue
		}
		if d > 0 {
			spec["delay"] = map[string]any{"durationMilliseconds": d.Milliseconds()}
		}
		if results {
			next, _ := spec["next"].(map[string]any)
			tmpl, _ := next["statusTemplate"].(string)
			const anchor = "      reason: Completed\n"
			if next == nil || !strings.Contains(tmpl, anchor) {
				return "", fmt.Errorf("localcluster: the pod-complete stage of %s has no %q", path, strings.TrimSpace(anchor))
			}
			next["statusTemplate"] = strings.Replace(tmpl, anchor, anchor+
				"      {{ range $e := $item.env }}{{ if eq $e.name \""+ResultsEnv+"\" }}\n"+
				"      message: {{ $e.value | Quote }}\n"+
				"      {{ end }}{{ end }}\n", 1)
		}
		var fail []byte
		if opts.ExitCodeFromEnv {
			if fail, err = failStage(stage); err != nil {
				return "", err
			}
		}
		out, err := yaml.Marshal(stage)
		if err != nil {
			return "", err
		}
		docs[i], found = "\n"+string(out), true
		if fail != nil {
			docs = append(docs, "\n"+string(fail))
		}
		break
	}
	if !found {
		return "", fmt.Errorf("localcluster: no pod-complete stage in %s", path)
	}
	out := filepath.Join(dir, "kwok-stages.yaml")
	return out, os.WriteFile(out, []byte(strings.Join(docs, "\n---")), 0o600) //nolint:gosec // the cluster's own directory
}

// failStage turns the pod-complete stage into one that ends the pods whose container sets
// ExitCodeEnv as Failed, with that exit code, and keeps pod-complete from ending them.
func failStage(complete map[string]any) ([]byte, error) {
	spec, _ := complete["spec"].(map[string]any)
	sel, _ := spec["selector"].(map[string]any)
	exprs, _ := sel["matchExpressions"].([]any)
	if exprs == nil {
		return nil, errors.New("localcluster: the pod-complete stage has no selector.matchExpressions")
	}
	// Missing env is an empty list, so that the query never fails.
	key := `.spec.containers.[] | (.env // []) | .[] | select(.name == "` + ExitCodeEnv + `") | .value`
	var fail map[string]any
	raw, err := yaml.Marshal(complete)
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(raw, &fail); err != nil {
		return nil, err
	}
	sel["matchExpressions"] = append(exprs, map[string]any{"key": key, "operator": "DoesNotExist"})
	fspec := fail["spec"].(map[string]any)
	fsel := fspec["selector"].(map[string]any)
	fsel["matchExpressions"] = append(fsel["matchExpressions"].([]any), map[string]any{"key": key, "operator": "Exists"})
	fail["metadata"] = map[string]any{"name": "custody-pod-fail"}
	delete(fspec, "weightFrom")
	next := fspec["next"].(map[string]any)
	next["statusTemplate"] = `{{ $now := Now }}
containerStatuses:
{{ range $index, $item := .spec.containers }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ range $e := $item.env }}{{ if eq $e.name "` + ExitCodeEnv + `" }}{{ $e.value }}{{ end }}{{ end }}
      finishedAt: {{ $now | Quote }}
      reason: Error
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Failed
`
	return yaml.Marshal(fail)
}
