/*
Copyright 2026 The Custody Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command manager runs the Custody controllers: manager wiring and flags only.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // CronWorkflow time zones, also in images without zoneinfo

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
	"github.com/custody-dev/custody/controllers/credentialgrant"
	"github.com/custody-dev/custody/controllers/cronworkflow"
	"github.com/custody-dev/custody/controllers/workflow"
	"github.com/custody-dev/custody/controllers/workflowtemplate"
	"github.com/custody-dev/custody/internal/credentials"
	"github.com/custody-dev/custody/internal/identity"
	"github.com/custody-dev/custody/internal/identity/spire"
	"github.com/custody-dev/custody/internal/jobspec"
	"github.com/custody-dev/custody/internal/metrics"
	custodywebhook "github.com/custody-dev/custody/internal/webhook"
)

// options are the manager's command-line settings.
type options struct {
	metricsAddr          string
	secureMetrics        bool
	probeAddr            string
	pprofAddr            string
	enableHTTP2          bool
	leaderElect          bool
	leaderElectionNS     string
	trustDomain          string
	clusterName          string
	zap                  zap.Options
	metricsCertDir       string
	leaderElectionID     string
	gracefulShutdownSecs int
	workflowConcurrency  int
	defaultTTL           time.Duration
	grantUnusedAfter     time.Duration

	spireAddress      string
	spireServerID     string
	spireWorkloadAPI  string
	entryIDPrefix     string
	parentID          string
	x509SVIDTTL       time.Duration
	jwtSVIDTTL        time.Duration
	maxSVIDTTL        time.Duration
	maxEntryLifetime  time.Duration
	workloadAPISocket string
	csiDriver         string
	userNamespaces    bool
	sweepInterval     time.Duration
	watchNamespaces   []string

	enableWebhooks bool
	webhookHost    string
	webhookPort    int
	webhook        custodywebhook.ServeOptions
}

func (o *options) bindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443",
		"Address the metrics endpoint binds to (HTTPS unless --metrics-secure=false). Use 0 to disable it.")
	fs.BoolVar(&o.secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS and only to callers allowed `get` on the /metrics non-resource URL "+
			"(checked with TokenReview and SubjectAccessReview).")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "",
		"Directory with tls.crt and tls.key for the metrics endpoint; a self-signed certificate is generated when empty.")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", "",
		"Address Go's profiling endpoints (/debug/pprof/) bind to, e.g. 127.0.0.1:6060; off when empty. Unauthenticated: keep it on loopback.")
	fs.BoolVar(&o.enableHTTP2, "enable-http2", false,
		"Serve metrics over HTTP/2 as well. Off by default: HTTP/2 Rapid Reset and Stream Cancellation (CVE-2023-44487, CVE-2023-39325).")
	fs.BoolVar(&o.leaderElect, "leader-elect", false,
		"Elect a leader so that only one of several replicas reconciles at a time.")
	fs.StringVar(&o.leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader election Lease; defaults to the namespace the manager runs in.")
	fs.StringVar(&o.leaderElectionID, "leader-election-id", "leader.custody.dev", "Name of the leader election Lease.")
	fs.StringVar(&o.trustDomain, "trust-domain", "",
		"SPIFFE trust domain of step identities, as configured in the SPIRE server (for example example.org). Required.")
	fs.StringVar(&o.clusterName, "cluster-name", "",
		"Cluster name used in SPIRE agent IDs (spiffe://<trust-domain>/spire/agent/k8s_psat/<cluster-name>/<node-uid>). Required.")
	fs.IntVar(&o.gracefulShutdownSecs, "graceful-shutdown-seconds", 30,
		"How long running reconciles may take to finish when the manager stops.")
	fs.IntVar(&o.workflowConcurrency, "workflow-concurrency", 8, "How many Workflows are reconciled at once.")
	fs.DurationVar(&o.defaultTTL, "default-ttl-after-finished", 0,
		"How long a finished Workflow without its own spec.ttlAfterFinished is kept before it is deleted with everything it "+
			"owns (0: kept until someone deletes it).")
	fs.DurationVar(&o.grantUnusedAfter, "grant-unused-after", 90*24*time.Hour,
		"How long a CredentialGrant without its own spec.unusedAfter may issue nothing, since it was created, approved or "+
			"last issued, before its condition Unused turns True (0: only grants that set their own are checked).")
	fs.BoolVar(&o.webhook.Policy.BroadRolesNeedApproval, "broad-roles-need-approval", false,
		"Ask, in every namespace not labelled custody.dev/broad-roles-need-approval=false, that a CredentialGrant whose role "+
			"reaches beyond the step (reads or changes Secrets, runs pods, gets tokens, grants access through RBAC) require an "+
			"approval: admission refuses one that does not, and one whose role widened later issues nothing (without the "+
			"flag, only namespaces labelled custody.dev/broad-roles-need-approval=true ask it).")
	fs.StringVar((*string)(&o.webhook.Policy.DefaultOnRevoke), "grant-on-revoke", string(custodyv1alpha1.RevokeContinue),
		"What a revocation before a step ends does to the step, for CredentialGrants without their own spec.onRevoke: "+
			"Continue (the step runs on without the credential) or StopStep (the attempt is stopped and fails with reason "+
			"CredentialRevoked). Each grant's status.onRevoke says which is in force.")
	fs.StringVar(&o.spireAddress, "spire-server-address", "",
		"SPIRE server Entry API: unix:///path/to/api.sock (the admin socket) or host:port (mutual TLS with the "+
			"controller's own SVID, which must be an admin entry). Empty: steps run without SPIFFE identity.")
	fs.StringVar(&o.spireServerID, "spire-server-id", "",
		"SPIFFE ID the SPIRE server presents over TCP (default spiffe://<trust-domain>/spire/server).")
	fs.StringVar(&o.spireWorkloadAPI, "spire-workload-api-socket", "",
		"Workload API the controller gets its own SVID from over TCP, as unix:///path (default $SPIFFE_ENDPOINT_SOCKET).")
	fs.StringVar(&o.entryIDPrefix, "spire-entry-id-prefix", identity.DefaultEntryIDPrefix,
		"Prefix of the ID of every SPIRE entry Custody creates; reserved for Custody (spire-controller-manager must use another).")
	fs.StringVar(&o.parentID, "spire-parent-id", "",
		"Parent ID of every step entry (a node alias); default: the SPIRE agent of the pod's node "+
			"(spiffe://<trust-domain>/spire/agent/k8s_psat/<cluster-name>/<node-uid>).")
	fs.DurationVar(&o.x509SVIDTTL, "svid-x509-ttl", 5*time.Minute, "TTL of the X.509 SVIDs of step attempts.")
	fs.DurationVar(&o.jwtSVIDTTL, "svid-jwt-ttl", 5*time.Minute, "TTL of the JWT SVIDs of step attempts.")
	fs.DurationVar(&o.maxSVIDTTL, "svid-max-ttl", time.Hour,
		"Cap on every SVID TTL, from flags or CredentialGrants: SPIRE cannot revoke an issued SVID, so this bounds exposure.")
	fs.DurationVar(&o.maxEntryLifetime, "identity-max-entry-lifetime", 24*time.Hour,
		"Expiry of the entry of an attempt with no step or workflow timeout (a backstop; entries are deleted when attempts end).")
	fs.StringVar(&o.workloadAPISocket, "workload-api-socket-path", "/spiffe-workload-api/spire-agent.sock",
		"Path of the Workload API socket in step containers; its directory is where the SPIFFE CSI driver volume is mounted.")
	fs.StringVar(&o.csiDriver, "spiffe-csi-driver", jobspec.DefaultCSIDriver,
		"Name of the SPIFFE CSI driver that mounts the Workload API socket into step containers.")
	fs.BoolVar(&o.userNamespaces, "step-user-namespaces", false,
		"Run every step pod in a user namespace of its own (hostUsers: false): the step's users, root included, are "+
			"unprivileged users of the node, so a process that escapes its container is nobody there. Needs nodes that "+
			"support user namespaces (Kubernetes 1.33 or later, containerd 2 or CRI-O 1.25, Linux 6.3); elsewhere step pods "+
			"do not start, and their steps say why (ContainerCannotStart).")
	fs.Func("watch-namespaces", "Comma-separated namespaces whose Workflows and grants this manager runs "+
		"(its RBAC can then be Roles in those namespaces); all namespaces when unset.", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.watchNamespaces = append(o.watchNamespaces, ns)
			}
		}
		return nil
	})
	fs.DurationVar(&o.sweepInterval, "identity-sweep-interval", time.Minute,
		"How often SPIRE entries with Custody's prefix that belong to no running attempt are deleted (also at start-up).")
	fs.BoolVar(&o.enableWebhooks, "enable-webhooks", true,
		"Serve the admission webhooks (creator records, approvals, escalation checks, deep validation). "+
			"Turn off only where the webhook configurations are not installed.")
	fs.StringVar(&o.webhookHost, "webhook-host", "", "Address the webhook server listens on (all when empty).")
	fs.IntVar(&o.webhookPort, "webhook-port", 9443, "Port the webhook server listens on.")
	fs.StringVar(&o.webhook.CertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs",
		"Directory with the webhook's tls.crt and tls.key (the mounted Secret).")
	fs.StringVar(&o.webhook.CertManagement, "webhook-cert-management", custodywebhook.CertsController,
		"Who makes the webhook's serving certificate: \"controller\" (a self-managed CA in the Secret, injected into the "+
			"webhook configurations, renewed before expiry) or \"external\" (cert-manager or similar writes the cert dir and CA bundle).")
	podNS := os.Getenv("POD_NAMESPACE")
	if podNS == "" {
		podNS = "custody-system"
	}
	fs.StringVar(&o.webhook.Namespace, "webhook-namespace", podNS,
		"Namespace of the webhook Service and serving Secret (default $POD_NAMESPACE, else custody-system).")
	fs.StringVar(&o.webhook.SecretName, "webhook-secret-name", "custody-webhook-server-cert",
		"Secret that holds the webhook's CA and serving certificate (controller-managed certificates).")
	fs.StringVar(&o.webhook.ServiceName, "webhook-service-name", "custody-webhook-service",
		"Service in front of the webhook server; the certificate is issued for <service>.<namespace>.svc.")
	fs.StringVar(&o.webhook.MutatingConfiguration, "mutating-webhook-configuration", "custody-mutating-webhook-configuration",
		"MutatingWebhookConfiguration whose CA bundle the controller keeps current.")
	fs.StringVar(&o.webhook.ValidatingConfiguration, "validating-webhook-configuration", "custody-validating-webhook-configuration",
		"ValidatingWebhookConfiguration whose CA bundle the controller keeps current.")
	o.zap.BindFlags(fs)
}

// identityConfig returns the validated identity settings (without a registrar).
func (o *options) identityConfig() (*identity.Config, error) {
	scheme, err := identity.NewScheme(o.trustDomain, o.clusterName, o.entryIDPrefix)
	if err != nil {
		return nil, fmt.Errorf("--spire-entry-id-prefix: %w", err)
	}
	cfg := &identity.Config{Scheme: scheme, X509SVIDTTL: o.x509SVIDTTL, JWTSVIDTTL: o.jwtSVIDTTL,
		MaxSVIDTTL: o.maxSVIDTTL, MaxEntryLifetime: o.maxEntryLifetime, SocketPath: o.workloadAPISocket,
		CSIDriver: o.csiDriver, SweepInterval: o.sweepInterval}
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("identity flags (--svid-*, --identity-max-entry-lifetime, --workload-api-socket-path): %w", err))
	}
	if o.parentID != "" {
		id, err := spiffeid.FromString(o.parentID)
		if err != nil || !id.MemberOf(scheme.TrustDomain) {
			errs = append(errs, fmt.Errorf("--spire-parent-id %q must be a SPIFFE ID in trust domain %s", o.parentID, scheme.TrustDomain))
		}
		cfg.ParentID = &id
	}
	if msgs := validation.IsDNS1123Subdomain(o.csiDriver); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--spiffe-csi-driver %q: %s", o.csiDriver, strings.Join(msgs, "; ")))
	}
	for _, ns := range o.watchNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--watch-namespaces: %q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
		}
	}
	if o.sweepInterval < 10*time.Second {
		errs = append(errs, fmt.Errorf("--identity-sweep-interval %s must be at least 10s", o.sweepInterval))
	}
	return cfg, errors.Join(errs...)
}

// spireOptions returns how to reach the SPIRE server.
func (o *options) spireOptions(td spiffeid.TrustDomain) (spire.Options, error) {
	opts := spire.Options{Address: o.spireAddress, WorkloadAPISocket: o.spireWorkloadAPI, Observe: func(rpc string, code codes.Code) {
		if code != codes.OK {
			metrics.SPIREErrors.WithLabelValues(rpc, code.String()).Inc()
		}
	}}
	serverID := o.spireServerID
	if serverID == "" {
		serverID = td.IDString() + "/spire/server"
	}
	id, err := spiffeid.FromString(serverID)
	if err != nil {
		return opts, fmt.Errorf("--spire-server-id %q: %w", serverID, err)
	}
	opts.ServerID = id
	return opts, nil
}

// clusterNameRE matches what SPIRE's k8s_psat attestor accepts as a path segment of an agent ID.
var clusterNameRE = regexp.MustCompile(`^[a-zA-Z0-9][-a-zA-Z0-9_.]{0,62}$`)

// validate checks the settings and returns every problem at once.
func (o *options) validate() error {
	var errs []error
	if o.trustDomain == "" {
		errs = append(errs, errors.New("--trust-domain is required"))
	} else if td, err := spiffeid.TrustDomainFromString(o.trustDomain); err != nil {
		errs = append(errs, fmt.Errorf("--trust-domain %q is not a SPIFFE trust domain name: %w", o.trustDomain, err))
	} else if td.Name() != o.trustDomain {
		errs = append(errs, fmt.Errorf("--trust-domain %q must be a bare name such as %q, not a SPIFFE ID", o.trustDomain, td.Name()))
	}
	if o.clusterName == "" {
		errs = append(errs, errors.New("--cluster-name is required"))
	} else if !clusterNameRE.MatchString(o.clusterName) {
		errs = append(errs, fmt.Errorf(
			"--cluster-name %q must be 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit", o.clusterName))
	}
	if o.workflowConcurrency < 1 {
		errs = append(errs, errors.New("--workflow-concurrency must be at least 1"))
	}
	if o.defaultTTL < 0 {
		errs = append(errs, errors.New("--default-ttl-after-finished must not be negative"))
	}
	if o.grantUnusedAfter < 0 {
		errs = append(errs, errors.New("--grant-unused-after must not be negative"))
	}
	if p := o.webhook.Policy.DefaultOnRevoke; p != custodyv1alpha1.RevokeContinue && p != custodyv1alpha1.RevokeStopStep {
		errs = append(errs, fmt.Errorf("--grant-on-revoke must be %s or %s, not %q", custodyv1alpha1.RevokeContinue,
			custodyv1alpha1.RevokeStopStep, p))
	}
	if o.gracefulShutdownSecs < 0 {
		errs = append(errs, errors.New("--graceful-shutdown-seconds must not be negative"))
	}
	if o.enableWebhooks {
		if err := o.webhook.Validate(); err != nil {
			errs = append(errs, err)
		}
		if o.webhookPort < 1 || o.webhookPort > 65535 {
			errs = append(errs, fmt.Errorf("--webhook-port %d is not a port", o.webhookPort))
		}
	}
	if len(errs) == 0 {
		if _, err := o.identityConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(custodyv1alpha1.AddToScheme(s))
	return s
}

// newManager builds the controller-runtime manager: scheme, metrics, probes and leader election.
// Reconcilers are registered on it by their packages.
func newManager(cfg *rest.Config, o *options) (ctrl.Manager, error) {
	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.secureMetrics,
		TLSOpts:       tlsOpts,
		CertDir:       o.metricsCertDir,
	}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	shutdown := time.Duration(o.gracefulShutdownSecs) * time.Second
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: newScheme(),
		Cache:  cacheOptions(o.watchNamespaces),
		// Reads from the cache wait until it has seen this manager's own earlier writes, so a
		// reconcile never starts from a copy older than the status it just saved (fewer
		// conflicts and no create-again of an attempt's Job). Experimental in controller-runtime
		// v0.25; the status patch keeps its optimistic lock as the safety net.
		Client:                        client.Options{Cache: &client.CacheOptions{EnableReadYourWritesConsistency: ptr.To(true)}},
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &shutdown,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: o.webhookHost, Port: o.webhookPort, CertDir: o.webhook.CertDir, TLSOpts: tlsOpts}),
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding ready check: %w", err)
	}
	if o.enableWebhooks {
		ready, err := custodywebhook.Serve(mgr, o.webhook)
		if err != nil {
			return nil, fmt.Errorf("setting up the admission webhooks: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook", ready); err != nil {
			return nil, fmt.Errorf("adding webhook ready check: %w", err)
		}
	}
	return mgr, nil
}

// cacheOptions keeps only Custody's own Jobs, pods and ServiceAccounts in the cache (and of roles,
// their names; of namespaces, their names and custody.dev labels), so the controller's memory
// follows the number of steps, not the size of the cluster; with namespaces, only theirs (nodes and
// ClusterRoles stay cluster-wide).
func cacheOptions(namespaces []string) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{jobspec.LabelManagedBy: jobspec.ManagedByValue})
	var defaults map[string]cache.Config
	if len(namespaces) > 0 {
		defaults = map[string]cache.Config{}
		for _, ns := range namespaces {
			defaults[ns] = cache.Config{}
		}
	}
	return cache.Options{DefaultNamespaces: defaults, ByObject: map[client.Object]cache.ByObject{
		&batchv1.Job{}:           {Label: managed},
		&corev1.Pod{}:            {Label: managed},
		&corev1.ServiceAccount{}: {Label: managed},
		&rbacv1.RoleBinding{}:    {Label: managed},
		// Only Secrets that opted in to being handed out by a CredentialGrant, never all of them.
		&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{custodyv1alpha1.LabelGrantable: "true"})},
		// Roles are watched by their metadata only, to hear of a change of a grant's role; only
		// their names are kept.
		&rbacv1.Role{}:        {Transform: credentials.RoleMetadata},
		&rbacv1.ClusterRole{}: {Transform: credentials.RoleMetadata},
		// Namespaces likewise, keeping their custody.dev labels (when every namespace is watched;
		// with --watch-namespaces, the grant controller watches each of them by name).
		&corev1.Namespace{}: {Transform: credentials.NamespaceMetadata},
	}}
}

// setupControllers registers Custody's reconcilers and metrics on the manager.
func setupControllers(mgr ctrl.Manager, o *options) error {
	if err := metrics.Register(metrics.Registry, mgr.GetCache()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	idCfg, err := o.identityConfig()
	if err != nil {
		return err
	}
	if o.spireAddress != "" {
		opts, err := o.spireOptions(idCfg.Scheme.TrustDomain)
		if err != nil {
			return err
		}
		// Over TCP, Dial waits for the controller's own SVID; give up rather than hang.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		registrar, err := spire.Dial(ctx, opts)
		cancel()
		if err != nil {
			return fmt.Errorf("connecting to the SPIRE server: %w", err)
		}
		idCfg.Registrar = registrar
	}
	wf := &workflow.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(workflow.ControllerName),
		Identity:  idCfg,

		MaxConcurrentReconciles: o.workflowConcurrency,
		DefaultTTLAfterFinished: o.defaultTTL,
		BroadRolesNeedApproval:  o.webhook.Policy.BroadRolesNeedApproval,
		DefaultOnRevoke:         o.webhook.Policy.DefaultOnRevoke,
		UserNamespaces:          o.userNamespaces,
	}
	if err := wf.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Workflow controller: %w", err)
	}
	grants := &credentialgrant.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder(credentialgrant.ControllerName), UnusedAfter: o.grantUnusedAfter,
		DefaultOnRevoke: o.webhook.Policy.DefaultOnRevoke,
		// With --watch-namespaces, their labels are watched each by name (what RBAC's
		// resourceNames can allow); otherwise every namespace's.
		BroadRolesNeedApproval: o.webhook.Policy.BroadRolesNeedApproval, NamespacesByName: o.watchNamespaces}
	if err := grants.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the CredentialGrant controller: %w", err)
	}
	templates := &workflowtemplate.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder(workflowtemplate.ControllerName)}
	if err := templates.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the WorkflowTemplate controller: %w", err)
	}
	// SubjectAccessReviews are created, never cached: a client outside the manager's cache.
	authz, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("authorization client: %w", err)
	}
	crons := &cronworkflow.Reconciler{Client: mgr.GetClient(), Authz: authz, Recorder: mgr.GetEventRecorder(cronworkflow.ControllerName)}
	if err := crons.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the CronWorkflow controller: %w", err)
	}
	return nil
}

func main() {
	var o options
	o.bindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
	log := ctrl.Log.WithName("setup")

	if err := o.validate(); err != nil {
		log.Error(err, "Invalid flags")
		os.Exit(2)
	}
	mgr, err := newManager(ctrl.GetConfigOrDie(), &o)
	if err == nil {
		err = setupControllers(mgr, &o)
	}
	if err != nil {
		log.Error(err, "Unable to set up the manager")
		os.Exit(1)
	}
	log.Info("Starting manager", "trustDomain", o.trustDomain, "clusterName", o.clusterName, "leaderElection", o.leaderElect,
		"spireServer", o.spireAddress, "stepIdentity", o.spireAddress != "",
		"webhooks", o.enableWebhooks, "webhookCerts", o.webhook.CertManagement)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}
