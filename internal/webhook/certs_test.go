package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/internal/webhook"
)

// TestControllerManagedCertificates runs the webhook with --webhook-cert-management=controller:
// the controller makes the CA and serving certificate, keeps them in the Secret and writes the CA
// into both webhook configurations; the API server then calls the webhook with that CA. The test
// plays kubelet, copying the Secret into the cert dir as a secret volume would.
func TestControllerManagedCertificates(t *testing.T) {
	serve(t) // the package's webhook answers everywhere else
	ns := env.Namespace(t, map[string]string{"custody-cert-test": "true"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	// Webhook configurations as config/webhook installs them, but for this namespace only and
	// reaching the server by URL (no Service in envtest); no caBundle yet.
	mutName, valName := "cert-test-mutating", "cert-test-validating"
	scope := &metav1.LabelSelector{MatchLabels: map[string]string{"custody-cert-test": "true"}}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"custody.dev"}, APIVersions: []string{"v1alpha1"},
			Resources: []string{"workflows", "credentialgrants"}},
	}}
	url := func(path string) *string { return ptr.To("https://localhost:" + strconv.Itoa(port) + path) }
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	create(t, env.Client, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mutName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "mutate.custody.dev", Rules: rules, NamespaceSelector: scope,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: url(webhook.PathMutate)},
			SideEffects:  &none, FailurePolicy: &fail, AdmissionReviewVersions: []string{"v1"}}},
	})
	create(t, env.Client, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: valName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "validate.custody.dev", Rules: rules, NamespaceSelector: scope,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: url(webhook.PathValidate)},
			SideEffects:  &none, FailurePolicy: &fail, AdmissionReviewVersions: []string{"v1"}}},
	})
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mutName}})
		_ = env.Client.Delete(context.Background(), &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: valName}})
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custody-webhook-server-cert"}}
	create(t, env.Client, secret) // empty, as config/webhook ships it

	// Without its certificate, the configuration's failurePolicy refuses writes: fail closed.
	probe := mustWorkflow(t, ns, `
metadata: {generateName: probe-}
spec:
  steps: [{name: a, image: busybox}]`)
	refused(t, "create before the webhook has a certificate", env.Client.Create(ctx, probe.DeepCopy()), "failed calling webhook")

	certDir := t.TempDir()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:        env.Scheme,
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ready, err := webhook.Serve(mgr, webhook.ServeOptions{
		CertManagement: webhook.CertsController, CertDir: certDir, Namespace: ns,
		SecretName: secret.Name, ServiceName: "custody-webhook-service",
		MutatingConfiguration: mutName, ValidatingConfiguration: valName, ExtraDNSNames: []string{"localhost"},
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(mctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	defer func() { stop(); <-done }()

	if err := ready(httptest.NewRequest("GET", "/readyz", nil)); err == nil {
		t.Error("ready before the certificate exists")
	}
	// kubelet: project the Secret into the cert dir once it has data.
	eventually(t, "the controller writes the serving certificate into the Secret", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
			return err
		}
		for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
			if len(secret.Data[k]) == 0 {
				return fmt.Errorf("no %s yet", k)
			}
		}
		for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
			if err := os.WriteFile(filepath.Join(certDir, k), secret.Data[k], 0o600); err != nil {
				return err
			}
		}
		return nil
	})
	eventually(t, "the CA is written into both webhook configurations", func() error {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: mutName}, m); err != nil {
			return err
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: valName}, v); err != nil {
			return err
		}
		if !bytes.Equal(m.Webhooks[0].ClientConfig.CABundle, secret.Data["ca.crt"]) ||
			!bytes.Equal(v.Webhooks[0].ClientConfig.CABundle, secret.Data["ca.crt"]) {
			return fmt.Errorf("caBundle not the Secret's CA yet")
		}
		return nil
	})
	eventually(t, "the webhook reports ready", func() error { return ready(httptest.NewRequest("GET", "/readyz", nil)) })
	eventually(t, "the API server admits through the controller-managed certificate", func() error {
		wf := probe.DeepCopy()
		if err := env.As("cert-tester", "system:masters").Create(ctx, wf); err != nil {
			return err
		}
		if wf.Annotations[custodyv1alpha1.AnnotationCreatedBy] != "cert-tester" {
			return fmt.Errorf("created-by %q", wf.Annotations[custodyv1alpha1.AnnotationCreatedBy])
		}
		return nil
	})
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
