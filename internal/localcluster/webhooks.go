package localcluster

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/custody-dev/custody/internal/testenv"
)

// webhooks is Custody's admission on the local cluster: the configurations of config/webhook,
// pointed at a local TCP proxy that forwards each connection to a live manager (what a Service
// does in front of replicas), and the serving certificate every manager uses.
type webhooks struct {
	certDir  string
	listener net.Listener

	mu       sync.Mutex
	backends map[int]string // manager PID -> its webhook server address
}

// EnableWebhooks installs Custody's mutating and validating webhook configurations, with
// failurePolicy Fail as in a real install, and makes every manager started afterwards serve them
// (with --webhook-cert-management=external and a certificate made here). Until a manager serves,
// Workflow and CredentialGrant writes are refused; WaitForAdmission waits for one.
func (c *Cluster) EnableWebhooks() error {
	opts, err := c.serveWebhooks()
	if err != nil {
		return err
	}
	if err := opts.Install(c.Config); err != nil {
		return fmt.Errorf("localcluster: installing the webhook configurations: %w", err)
	}
	return nil
}

// ServeWebhooks makes every manager started afterwards serve admission behind a local proxy,
// without installing configurations: whoever installs them (a Helm chart under test) points them
// at the returned client config, as its Service would.
func (c *Cluster) ServeWebhooks() (url string, caBundle []byte, err error) {
	opts, err := c.serveWebhooks()
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("https://127.0.0.1:%d", opts.LocalServingPort), opts.LocalServingCAData, nil
}

// serveWebhooks starts the proxy and makes the serving certificate.
func (c *Cluster) serveWebhooks() (*envtest.WebhookInstallOptions, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &webhooks{listener: l, backends: map[int]string{}, certDir: filepath.Join(c.Dir, "webhook-certs")}
	go w.serve()
	opts := &envtest.WebhookInstallOptions{
		Paths:            []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
		LocalServingHost: "127.0.0.1",
		LocalServingPort: l.Addr().(*net.TCPAddr).Port,
	}
	fail := func(err error) (*envtest.WebhookInstallOptions, error) {
		_ = l.Close()
		return nil, err
	}
	if err := opts.PrepWithoutInstalling(); err != nil {
		return fail(fmt.Errorf("localcluster: webhook certificate: %w", err))
	}
	// Keep the certificate with the cluster's state, not in envtest's temporary directory.
	defer func() { _ = opts.Cleanup() }()
	if err := os.MkdirAll(w.certDir, 0o700); err != nil {
		return fail(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		data, err := os.ReadFile(filepath.Join(opts.LocalServingCertDir, f)) //nolint:gosec // envtest's own directory
		if err == nil {
			err = os.WriteFile(filepath.Join(w.certDir, f), data, 0o600) //nolint:gosec // fixed names in the cluster's own directory
		}
		if err != nil {
			return fail(err)
		}
	}
	c.webhooks = w
	return opts, nil
}

// managerWebhookArgs are the flags of a manager that serves the cluster's webhooks on a port of
// its own, and remember it as a backend once started (register).
func (c *Cluster) managerWebhookArgs() (args []string, register func(pid int), err error) {
	if c.webhooks == nil {
		return nil, func(int) {}, nil
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	args = []string{"--enable-webhooks=true", "--webhook-cert-management=external", "--webhook-cert-dir=" + c.webhooks.certDir,
		"--webhook-host=127.0.0.1", "--webhook-port=" + port}
	return args, func(pid int) {
		c.webhooks.mu.Lock()
		defer c.webhooks.mu.Unlock()
		c.webhooks.backends[pid] = addr
	}, nil
}

func (w *webhooks) forget(pid int) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.backends, pid)
}

// serve forwards each connection to the first manager that accepts it.
func (w *webhooks) serve() {
	for {
		conn, err := w.listener.Accept()
		if err != nil {
			return // closed
		}
		go w.forward(conn)
	}
}

func (w *webhooks) forward(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	w.mu.Lock()
	addrs := make([]string, 0, len(w.backends))
	for _, a := range w.backends {
		addrs = append(addrs, a)
	}
	w.mu.Unlock()
	for _, a := range addrs {
		backend, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			continue
		}
		defer func() { _ = backend.Close() }()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(backend, conn); done <- struct{}{} }()
		go func() { _, _ = io.Copy(conn, backend); done <- struct{}{} }()
		<-done
		return
	}
}

func (w *webhooks) close() {
	if w != nil {
		_ = w.listener.Close()
	}
}
