// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest) from the
// binaries that hack/tools.sh builds into bin/, with Custody's CRDs installed. Every controller and
// API test uses it, so they all run against the same pinned Kubernetes version and the same
// generated CRDs that users install.
//
// A package's tests start one environment in TestMain:
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) {
//		testenv.Main(m, &env)
//	}
//
// and each test makes its own namespace with env.Namespace(t), so tests do not see each other's
// objects. When the binaries are missing, Main fails with a message that says to run `make tools`.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// Env is a running kube-apiserver and etcd with Custody's CRDs installed.
type Env struct {
	// Config is an admin rest.Config for the API server.
	Config *rest.Config
	// Client is a client for Config that knows Kubernetes' and Custody's kinds.
	Client client.Client
	// Scheme has Kubernetes' and Custody's kinds registered.
	Scheme *runtime.Scheme

	// Webhook is set when the environment was started WithWebhooks: the API server calls the
	// webhooks of config/webhook at LocalServingHost:LocalServingPort with the certificate in
	// LocalServingCertDir, where the test's manager serves them.
	Webhook *envtest.WebhookInstallOptions

	env        *envtest.Environment
	beforeStop []func()
}

// BeforeStop runs f when the environment stops, before the API server does (stop managers the
// tests started, so they do not hold the API server's connections or watch removed files).
func (e *Env) BeforeStop(f func()) { e.beforeStop = append(e.beforeStop, f) }

// Option changes how Start starts the environment.
type Option func(*envtest.Environment, string)

// WithoutCRDs starts the API server without Custody's CRDs, for tests that install them the way a
// user would (helm install, kubectl apply).
func WithoutCRDs() Option {
	return func(e *envtest.Environment, _ string) {
		e.CRDDirectoryPaths = nil
		e.ErrorIfCRDPathMissing = false
	}
}

// WithAuditLog makes the API server write an audit log (JSON lines, level Metadata: who did what
// to which resource) to path, for tests that check what a component actually does.
func WithAuditLog(path string) Option {
	return func(e *envtest.Environment, _ string) {
		policy := filepath.Join(filepath.Dir(path), "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\n"+
			"omitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o600); err != nil {
			panic(fmt.Sprintf("testenv: writing the audit policy: %v", err)) // a temp dir we own
		}
		e.ControlPlane.APIServer.Configure().Set("audit-policy-file", policy).Set("audit-log-path", path)
	}
}

// WithAPIServerFlag sets a kube-apiserver flag.
func WithAPIServerFlag(name string, values ...string) Option {
	return func(e *envtest.Environment, _ string) {
		e.ControlPlane.APIServer.Configure().Set(name, values...)
	}
}

// WithWebhooks installs Custody's webhook configurations (config/webhook), pointed at a local
// webhook server with a certificate envtest makes; Env.Webhook says where to serve.
func WithWebhooks() Option {
	return func(e *envtest.Environment, root string) {
		e.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "config", "webhook", "manifests.yaml")},
			LocalServingHost: "127.0.0.1",
		}
	}
}

// Scheme returns a new scheme with client-go's kinds and custody.dev/v1alpha1.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(custodyv1alpha1.AddToScheme(s))
	return s
}

// RepoRoot returns the root of the Custody module (the directory holding go.mod), found by
// walking up from the working directory: `go test` runs each package in its own directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod")) //nolint:gosec // walking up to the module root is the point
		if err == nil && strings.HasPrefix(string(data), "module github.com/custody-dev/custody\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: not inside the custody module " +
				"(no go.mod for github.com/custody-dev/custody above the working directory)")
		}
		dir = parent
	}
}

// BinDir returns the directory with the pinned binaries: $KUBEBUILDER_ASSETS when set (the
// Makefile sets it to bin/), otherwise <repo>/bin.
func BinDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// Binary returns the path of a pinned binary in BinDir, or an error that tells how to build it.
func Binary(name string) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("testenv: %s not found in %s: run `make tools` to build the pinned binaries", name, dir)
	}
	return path, nil
}

// Start starts kube-apiserver and etcd and installs the CRDs from config/crd/bases.
func Start(opts ...Option) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if paths[name], err = Binary(name); err != nil {
			return nil, err
		}
	}

	etcd := &envtest.Etcd{Path: paths["etcd"]}
	// The disk of a shared CI machine is slow; test data need not survive a crash.
	etcd.Configure().Set("unsafe-no-fsync", "true")
	apiServer := &envtest.APIServer{Path: paths["kube-apiserver"]}

	scheme := Scheme()
	e := &envtest.Environment{
		ControlPlane: envtest.ControlPlane{
			APIServer:   apiServer,
			Etcd:        etcd,
			KubectlPath: paths["kubectl"],
		},
		CRDDirectoryPaths:        []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	for _, o := range opts {
		o(e, root)
	}
	cfg, err := e.Start()
	if err != nil {
		return nil, fmt.Errorf("testenv: starting kube-apiserver and etcd: %w", err)
	}
	// Leave room for tests that create many objects at once.
	cfg.QPS, cfg.Burst = 200, 400
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("testenv: client: %w", err)
	}
	out := &Env{Config: cfg, Client: c, Scheme: scheme, env: e}
	if len(e.WebhookInstallOptions.Paths) > 0 {
		out.Webhook = &e.WebhookInstallOptions
	}
	return out, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	if e == nil || e.env == nil {
		return nil
	}
	for i := len(e.beforeStop) - 1; i >= 0; i-- {
		e.beforeStop[i]()
	}
	return e.env.Stop()
}

// WriteKubeconfig writes a kubeconfig for the given user and groups (client certificate) to path,
// for processes (kube-controller-manager, kube-scheduler, KWOK, the controller) that run against
// this API server.
func (e *Env) WriteKubeconfig(path, user string, groups ...string) error {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: groups}, e.Config)
	if err != nil {
		return fmt.Errorf("testenv: adding user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("testenv: kubeconfig for %s: %w", user, err)
	}
	return os.WriteFile(path, data, 0o600)
}

// Main starts an Env, stores it in *env, runs the package's tests and stops it. It exits the test
// binary with a clear message if the environment cannot start.
func Main(m *testing.M, env **Env, opts ...Option) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))
	e, err := Start(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stopping: %v\n", err)
	}
	os.Exit(code)
}

// Namespace creates a namespace with a unique name for one test and deletes it when the test ends.
// Labels are added to the namespace (for example Pod Security labels).
func (e *Env) Namespace(t testing.TB, labels ...map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-", Labels: map[string]string{}}}
	for _, l := range labels {
		for k, v := range l {
			ns.Labels[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("testenv: creating namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.Client.Delete(ctx, ns)
	})
	return ns.Name
}

// zapLevel keeps test output to errors unless CUSTODY_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// EventRecorder records Events to the test API server through client-go's events.k8s.io
// broadcaster, as the manager's recorder does (series folding included), until the test ends.
func (e *Env) EventRecorder(t testing.TB, controller string) events.EventRecorder {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	stop := make(chan struct{})
	b.StartRecordingToSink(stop)
	t.Cleanup(func() {
		close(stop)
		b.Shutdown()
	})
	return b.NewRecorder(e.Scheme, controller)
}

// Kubectl runs the pinned kubectl from bin/ against the API server as an admin (add --as to act
// as someone else) and returns what it printed.
func (e *Env) Kubectl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin, err := Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := e.WriteKubeconfig(kubeconfig, "admin", "system:masters"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", kubeconfig}, args...)...) //nolint:gosec // the pinned kubectl
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// As returns a client that makes its requests as the given user and groups, by impersonation from
// the admin config: the API server authorizes, admits and records them as that user, so RBAC and
// admission see exactly what they would for a person with a kubeconfig of their own.
func (e *Env) As(user string, groups ...string) client.Client {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	c, err := client.New(cfg, client.Options{Scheme: e.Scheme})
	if err != nil {
		panic(fmt.Sprintf("testenv: client for %s: %v", user, err)) // only a malformed config fails here
	}
	return c
}

// Track reads every file under the given directories (of the repository), so that `go test`'s
// cache knows the test depends on them: files only a subprocess (helm, kubectl kustomize) reads
// would otherwise not invalidate a cached pass.
func Track(t testing.TB, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			_, err = os.ReadFile(path) //nolint:gosec // the repository's own files
			return err
		})
		if err != nil {
			t.Fatalf("testenv: reading %s: %v", dir, err)
		}
	}
}

// WaitForAdmission waits until admission answers: a dry-run Workflow create comes back stamped
// with its creator.
func (e *Env) WaitForAdmission(ctx context.Context) error {
	wf := &custodyv1alpha1.Workflow{}
	if err := yaml.Unmarshal([]byte(`
metadata: {name: admission-probe, namespace: default}
spec:
  steps: [{name: probe, image: probe}]`), wf); err != nil {
		return err
	}
	var last error
	for {
		probe := wf.DeepCopy()
		last = e.Client.Create(ctx, probe, client.DryRunAll)
		if last == nil && probe.Annotations[custodyv1alpha1.AnnotationCreatedBy] != "" {
			return nil
		}
		if last == nil {
			last = errors.New("created without a creator record: admission did not run")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: admission not answering: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kstatus computes the kstatus of a typed object, as Argo CD's kstatus users, Flux and
// `kubectl wait` do; it fails the test if the object cannot be converted.
func Kstatus(t testing.TB, obj runtime.Object) status.Status {
	t.Helper()
	data, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: data})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}
