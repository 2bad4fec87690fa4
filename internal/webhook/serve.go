package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// Certificate management modes.
const (
	// CertsController: the controller makes a CA and a serving certificate, keeps them in a Secret
	// (mounted into its pod at the cert dir) and writes the CA into both webhook configurations,
	// renewing them before they expire (github.com/open-policy-agent/cert-controller).
	CertsController = "controller"
	// CertsExternal: something else (cert-manager and its CA injector, or a test) puts tls.crt and
	// tls.key into the cert dir and the CA into the configurations; the server reloads them.
	CertsExternal = "external"
)

// The cert-controller writes into these; the Secret, Service and configurations in config/ carry
// the same names.
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=update,resourceNames=custody-mutating-webhook-configuration;custody-validating-webhook-configuration
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,verbs=get;list;watch;update

// ServeOptions says how the webhook server gets its certificate.
type ServeOptions struct {
	// CertManagement is CertsController or CertsExternal.
	CertManagement string
	// CertDir holds tls.crt and tls.key.
	CertDir string
	// Namespace, SecretName and ServiceName locate the serving Secret and the Service in front of
	// the webhook (CertsController).
	Namespace, SecretName, ServiceName string
	// MutatingConfiguration and ValidatingConfiguration are the names of the webhook
	// configurations whose CA bundle the controller keeps (CertsController).
	MutatingConfiguration, ValidatingConfiguration string
	// ExtraDNSNames are added to the serving certificate besides the Service's names.
	ExtraDNSNames []string
	// Policy is what admission enforces in every namespace.
	Policy Policy
}

// Validate checks the options.
func (o ServeOptions) Validate() error {
	switch o.CertManagement {
	case CertsController:
		if o.Namespace == "" || o.SecretName == "" || o.ServiceName == "" ||
			o.MutatingConfiguration == "" || o.ValidatingConfiguration == "" {
			return errors.New("webhook certificates managed by the controller need its namespace, the Secret, " +
				"Service and both webhook configuration names")
		}
	case CertsExternal:
	default:
		return fmt.Errorf("--webhook-cert-management must be %q or %q, not %q", CertsController, CertsExternal, o.CertManagement)
	}
	if o.CertDir == "" {
		return errors.New("--webhook-cert-dir must be set")
	}
	return nil
}

// Serve sets up the webhooks on the manager. With CertsController it first makes sure the
// certificate exists (the webhook server starts once it is mounted); the returned readiness
// check fails until the server serves, so no request reaches a replica that cannot answer.
func Serve(mgr ctrl.Manager, o ServeOptions) (healthz.Checker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.CertManagement == CertsExternal {
		if err := Setup(mgr, o.Policy); err != nil {
			return nil, err
		}
		return mgr.GetWebhookServer().StartedChecker(), nil
	}
	ready := make(chan struct{})
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: o.Namespace, Name: o.SecretName},
		CertDir:        o.CertDir,
		CAName:         "custody-webhook-ca",
		CAOrganization: "custody",
		DNSName:        fmt.Sprintf("%s.%s.svc", o.ServiceName, o.Namespace),
		ExtraDNSNames:  append([]string{fmt.Sprintf("%s.%s.svc.cluster.local", o.ServiceName, o.Namespace)}, o.ExtraDNSNames...),
		IsReady:        ready,
		Webhooks: []rotator.WebhookInfo{
			{Name: o.MutatingConfiguration, Type: rotator.Mutating},
			{Name: o.ValidatingConfiguration, Type: rotator.Validating},
		},
		// Every replica serves admission, so every replica keeps its certificate current.
		RequireLeaderElection: false,
		EnableReadinessCheck:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("webhook certificates: %w", err)
	}
	started := make(chan struct{})
	go func() {
		<-ready
		if err := Setup(mgr, o.Policy); err != nil {
			ctrl.Log.Error(err, "setting up the admission webhooks")
			return
		}
		close(started)
	}()
	return func(req *http.Request) error {
		select {
		case <-started:
			return mgr.GetWebhookServer().StartedChecker()(req)
		default:
			if _, err := os.Stat(filepath.Join(o.CertDir, "tls.crt")); err != nil {
				return errors.New("waiting for the webhook serving certificate to be mounted")
			}
			return errors.New("waiting for the webhook CA to be written into the webhook configurations")
		}
	}, nil
}
