package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, &env)
}

func parseOptions(t *testing.T, args ...string) *options {
	t.Helper()
	var o options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	o.bindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parsing %v: %v", args, err)
	}
	return &o
}

func TestOptions_validate(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string // substrings of the error; none means valid
	}{
		{name: "valid", args: []string{"--trust-domain=example.org", "--cluster-name=prod-eu"}},
		{name: "nothing set", args: nil, want: []string{"--trust-domain is required", "--cluster-name is required"}},
		{
			name: "trust domain given as a SPIFFE ID",
			args: []string{"--trust-domain=spiffe://example.org", "--cluster-name=prod"},
			want: []string{`must be a bare name such as "example.org"`},
		},
		{
			name: "trust domain with capitals",
			args: []string{"--trust-domain=Example.org", "--cluster-name=prod"},
			want: []string{`--trust-domain "Example.org" is not a SPIFFE trust domain name`},
		},
		{
			name: "cluster name with a slash",
			args: []string{"--trust-domain=example.org", "--cluster-name=eu/prod"},
			want: []string{`--cluster-name "eu/prod" must be`},
		},
		{
			name: "negative shutdown timeout",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--graceful-shutdown-seconds=-1"},
			want: []string{"--graceful-shutdown-seconds must not be negative"},
		},
		{
			name: "negative default TTL",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--default-ttl-after-finished=-1h"},
			want: []string{"--default-ttl-after-finished must not be negative"},
		},
		{
			name: "a revoke policy that is not one",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--grant-on-revoke=stop"},
			want: []string{`--grant-on-revoke must be Continue or StopStep, not "stop"`},
		},
		{
			name: "identity settings",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--svid-x509-ttl=2h", "--svid-max-ttl=1h",
				"--workload-api-socket-path=agent.sock", "--spire-parent-id=spiffe://other.org/node", "--identity-sweep-interval=1s"},
			want: []string{"X.509 SVID TTL 2h0m0s must be between 1s and the cap 1h0m0s", `socket path "agent.sock"`,
				`--spire-parent-id "spiffe://other.org/node" must be a SPIFFE ID in trust domain example.org`,
				"--identity-sweep-interval 1s must be at least 10s"},
		},
		{
			name: "entry ID prefix",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--spire-entry-id-prefix=bad prefix"},
			want: []string{`--spire-entry-id-prefix: entry ID prefix "bad prefix" must be`},
		},
		{
			name: "webhook settings",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--webhook-cert-management=self-signed",
				"--webhook-port=0"},
			want: []string{`--webhook-cert-management must be "controller" or "external", not "self-signed"`, "--webhook-port 0 is not a port"},
		},
		{
			name: "namespaces and CSI driver",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--watch-namespaces=payments,Team_B",
				"--spiffe-csi-driver=CSI SPIFFE"},
			want: []string{`--watch-namespaces: "Team_B" is not a namespace name`, `--spiffe-csi-driver "CSI SPIFFE"`},
		},
		{
			name: "webhook certificates from cert-manager",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--webhook-cert-management=external",
				"--webhook-cert-dir=/certs"},
		},
		{
			name: "SPIRE over TCP",
			args: []string{"--trust-domain=example.org", "--cluster-name=prod", "--spire-server-address=spire-server.spire:8081",
				"--spire-parent-id=spiffe://example.org/k8s-nodes"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := parseOptions(t, tc.args...).validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got none", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// startManager starts the manager with its probes and metrics on free ports and waits until the
// probes answer. A port found free can be taken by another test process before the manager binds
// it (go test runs packages side by side): then it tries again on other ports.
func startManager(t *testing.T) (mgr ctrl.Manager, metricsAddr string) {
	t.Helper()
	for try := 1; ; try++ {
		probeAddr := freePort(t)
		metricsAddr = freePort(t)
		o := parseOptions(t, "--trust-domain=example.org", "--cluster-name=test",
			"--health-probe-bind-address="+probeAddr, "--metrics-bind-address="+metricsAddr,
			"--enable-webhooks=false") // internal/webhook tests serving admission
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		var err error
		mgr, err = newManager(env.Config, o)
		if err != nil {
			if try < 5 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- mgr.Start(ctx) }()
		err = waitForProbes(probeAddr, done)
		if err != nil && try < 5 && strings.Contains(err.Error(), "address already in use") {
			cancel()
			continue
		}
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager stopped with an error: %v", err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return mgr, metricsAddr
	}
}

// waitForProbes waits until the probes at addr answer OK and the manager still runs a second
// later (its servers bind their ports as it starts), or returns why not: the manager's error if
// it stopped.
func waitForProbes(addr string, done chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	stopped := func(wait time.Duration) error {
		select {
		case err := <-done:
			done <- err // for the cleanup
			return fmt.Errorf("the manager stopped: %w", err)
		case <-time.After(wait):
			return nil
		}
	}
	for {
		if err := stopped(0); err != nil {
			return err
		}
		err := probesOK(addr)
		if err == nil {
			return stopped(time.Second)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func probesOK(addr string) error {
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr + p) //nolint:noctx // a test's loopback probe
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", p, resp.StatusCode)
		}
	}
	return nil
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// TestManager_servesProbesAndGuardsMetrics starts the manager against a real API server and checks
// what an operator relies on: the probes answer, and the metrics endpoint serves HTTPS only to
// callers that RBAC allows to read /metrics.
func TestManager_servesProbesAndGuardsMetrics(t *testing.T) {
	_, metricsAddr := startManager(t)

	// A ServiceAccount allowed to read /metrics (what Prometheus would run as), and one that is not.
	ns := env.Namespace(t)
	allowed, denied := serviceAccountToken(t, ns, "scraper", true), serviceAccountToken(t, ns, "nosy", false)

	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed test certificate
	}}
	get := func(token string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	waitFor(t, func() error {
		code, body, err := get(allowed)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_") {
			return fmt.Errorf("allowed caller got %d", code)
		}
		return nil
	})
	if code, _, err := get(""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("anonymous caller got %d (err %v), want 401", code, err)
	}
	if code, _, err := get(denied); err != nil || code != http.StatusForbidden {
		t.Errorf("caller without RBAC got %d (err %v), want 403", code, err)
	}
}

// serviceAccountToken creates a ServiceAccount, optionally allowed to get /metrics, and returns a
// short-lived token for it.
func serviceAccountToken(t *testing.T, ns, name string, allowMetrics bool) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := env.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if allowMetrics {
		role := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
			Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
		}
		if err := env.Client.Create(ctx, role); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, binding); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = env.Client.Delete(context.Background(), binding)
			_ = env.Client.Delete(context.Background(), role)
		})
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	expiry := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for %s: %v", name, err)
	}
	return tr.Status.Token
}

// TestManager_keepsOnlyRoleNames: the manager watches every Role and ClusterRole it may see, to
// hear of a change of a grant's role at once, and keeps of them only what names them: not their
// labels, annotations (kubectl's last-applied-configuration holds the whole role) or managed fields.
func TestManager_keepsOnlyRoleNames(t *testing.T) {
	mgr, _ := startManager(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer", Namespace: ns,
		Labels:      map[string]string{"team": "payments"},
		Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)}},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get"}}}}
	if err := env.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() error {
		var roles metav1.PartialObjectMetadataList
		roles.SetGroupVersionKind(rbacv1.SchemeGroupVersion.WithKind("RoleList"))
		if err := mgr.GetCache().List(ctx, &roles, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(roles.Items) != 1 {
			return fmt.Errorf("%d roles in the cache of namespace %s, want 1", len(roles.Items), ns)
		}
		m := roles.Items[0].ObjectMeta
		if m.Name != role.Name || m.ResourceVersion == "" {
			return fmt.Errorf("cached role %q at resourceVersion %q", m.Name, m.ResourceVersion)
		}
		if m.Labels != nil || m.Annotations != nil || m.ManagedFields != nil {
			t.Fatalf("the cache keeps more of a role than its name: labels %v, %d annotations, %d managed fields",
				m.Labels, len(m.Annotations), len(m.ManagedFields))
		}
		return nil
	})
}

func waitFor(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("gave up after 30s: %v", err)
}

// TestManager_keepsOnlyNamespacePolicy: the manager watches every namespace by its metadata, to hear
// of a change of its custody.dev labels, and its cache keeps their names and those labels only.
func TestManager_keepsOnlyNamespacePolicy(t *testing.T) {
	mgr, _ := startManager(t)
	ns := env.Namespace(t, map[string]string{custodyv1alpha1.LabelProtectStepPods: "true", "team": "payments"})
	ctx := context.Background()
	namespace := &corev1.Namespace{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		t.Fatal(err)
	}
	namespace.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)}
	if err := env.Client.Update(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() error {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
		if err := mgr.GetCache().Get(ctx, client.ObjectKey{Name: ns}, m); err != nil {
			return err
		}
		if m.ResourceVersion != namespace.ResourceVersion {
			return fmt.Errorf("cached namespace at resourceVersion %q, want %q", m.ResourceVersion, namespace.ResourceVersion)
		}
		if want := map[string]string{custodyv1alpha1.LabelProtectStepPods: "true"}; !maps.Equal(m.Labels, want) ||
			m.Annotations != nil || m.ManagedFields != nil {
			t.Fatalf("the cache keeps more of a namespace than its custody.dev labels: labels %v, %d annotations, %d managed fields",
				m.Labels, len(m.Annotations), len(m.ManagedFields))
		}
		return nil
	})
}
