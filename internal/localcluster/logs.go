package localcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/custody-dev/custody/internal/testenv"
)

// Container logs. KWOK serves the kubelet's API of its nodes (--server-address, --node-port: the
// port its nodes report as their kubelet endpoint), so `kubectl logs` and anything else that reads
// pods/log goes through kube-apiserver to KWOK as it would go to a kubelet, over TLS that
// kube-apiserver verifies. No container runs on a KWOK node: every container's log is the one line
// of DefaultContainerLog, unless a test gives a pod a log of its own (SetContainerLog, with KWOK's
// Logs API).

// DefaultContainerLog is the log of every container on a KWOK node that has no log of its own.
const DefaultContainerLog = "KWOK plays this node's kubelet and runs no container: this line stands in for the container's output"

// kubeletServer is where KWOK serves its nodes' kubelet API.
type kubeletServer struct {
	addr, port, cert, key string
}

// newKubeletServer picks a port and writes a serving certificate for 127.0.0.1 into dir.
func newKubeletServer(dir string) (*kubeletServer, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	crt, key, err := cert.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return nil, fmt.Errorf("localcluster: a serving certificate for KWOK: %w", err)
	}
	k := &kubeletServer{addr: addr, port: port,
		cert: filepath.Join(dir, "kwok-serving.crt"), key: filepath.Join(dir, "kwok-serving.key")}
	if err := os.WriteFile(k.cert, crt, 0o600); err != nil {
		return nil, err
	}
	return k, os.WriteFile(k.key, key, 0o600)
}

// apiServerOptions make kube-apiserver reach kubelets at their InternalIP (KWOK's nodes also
// report their name as Hostname, which resolves nowhere) and verify KWOK's certificate.
func (k *kubeletServer) apiServerOptions() []testenv.Option {
	return []testenv.Option{
		testenv.WithAPIServerFlag("kubelet-preferred-address-types", "InternalIP"),
		testenv.WithAPIServerFlag("kubelet-certificate-authority", k.cert),
	}
}

func (k *kubeletServer) kwokArgs() []string {
	return []string{"--server-address=" + k.addr, "--node-port=" + k.port,
		"--tls-cert-file=" + k.cert, "--tls-private-key-file=" + k.key, "--enable-crds=Logs"}
}

// kwokConfig writes KWOK's configuration into dir: the stages, and a ClusterLogs that gives every
// container the default log. It installs KWOK's Logs CRD (bin/kwok-crds.yaml), which KWOK
// watches for pods' own logs.
func (c *Cluster) kwokConfig(stages string) (string, error) {
	crds, err := testenv.Binary("kwok-crds.yaml")
	if err != nil {
		return "", err
	}
	if _, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true}); err != nil {
		return "", fmt.Errorf("localcluster: installing KWOK's Logs CRD: %w", err)
	}
	defaultLog := filepath.Join(c.Dir, "container.log")
	if err := writeCRILog(defaultLog, DefaultContainerLog); err != nil {
		return "", err
	}
	data, err := os.ReadFile(stages) //nolint:gosec // bin/kwok-stages.yaml or our copy of it
	if err != nil {
		return "", err
	}
	config := string(data) + "\n---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: default\n" +
		"spec:\n  logs:\n  - logsFile: " + defaultLog + "\n"
	out := filepath.Join(c.Dir, "kwok-config.yaml")
	return out, os.WriteFile(out, []byte(config), 0o600) //nolint:gosec // the cluster's own directory
}

// writeCRILog writes lines as a container runtime writes a container's log file (CRI format).
func writeCRILog(path string, lines ...string) error {
	var b strings.Builder
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	for _, l := range lines {
		b.WriteString(ts + " stdout F " + l + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// SetContainerLog gives a pod's containers a log of their own: lines, as if its container had
// written them. KWOK serves it from the moment it sees the Logs object.
func (c *Cluster) SetContainerLog(ctx context.Context, namespace, pod string, lines ...string) error {
	path := filepath.Join(c.Dir, "logs", namespace+"_"+pod+".log")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	if err := writeCRILog(path, lines...); err != nil {
		return err
	}
	logs := &unstructured.Unstructured{}
	logs.SetGroupVersionKind(schema.GroupVersionKind{Group: "kwok.x-k8s.io", Version: "v1alpha1", Kind: "Logs"})
	logs.SetNamespace(namespace)
	logs.SetName(pod)
	logs.Object["spec"] = map[string]any{"logs": []any{map[string]any{"logsFile": path}}}
	if err := c.Client.Create(ctx, logs); err != nil {
		return fmt.Errorf("localcluster: the log of pod %s/%s: %w", namespace, pod, err)
	}
	return nil
}
