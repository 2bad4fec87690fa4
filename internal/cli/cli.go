// Package cli is kubectl-custody: a kubectl plugin that shows Workflows as a tree, approves,
// cancels, suspends grants, and answers "who holds what right now" (inventory). It talks to the
// API server as the user, with kubectl's own flags (k8s.io/cli-runtime): admission checks every
// approval and RBAC everything else, so the plugin never needs more than the user has.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// Options are what every command shares.
type Options struct {
	flags  *genericclioptions.ConfigFlags
	io     genericiooptions.IOStreams
	output string
	all    bool
	// newClient is replaced in tests; Now is the clock used for ages and "expires in".
	newClient func() (client.Client, error)
	// newClientset is for what the controller-runtime client cannot do: stream pod logs.
	newClientset func() (kubernetes.Interface, error)
	Now          func() time.Time
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(custodyv1alpha1.AddToScheme(s))
	return s
}

// NewCommand is `kubectl custody`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{flags: genericclioptions.NewConfigFlags(true), io: streams, Now: time.Now}
	o.newClient = func() (client.Client, error) {
		cfg, err := o.restConfig()
		if err != nil {
			return nil, err
		}
		return client.New(cfg, client.Options{Scheme: scheme()})
	}
	o.newClientset = func() (kubernetes.Interface, error) {
		cfg, err := o.restConfig()
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(cfg)
	}
	return o.command()
}

// restConfig is the kubeconfig's client config, printing the API server's warnings (admission's:
// a grant a new run would wait for, a step a rerun runs again) as kubectl does, "Warning: ..." on
// standard error, instead of dropping them.
func (o *Options) restConfig() (*rest.Config, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.WarningHandler = rest.NewWarningWriter(o.io.ErrOut, rest.WarningWriterOptions{Deduplicate: true})
	return cfg, nil
}

// NewCommandWithClient is NewCommand over a given client and clock (tests).
func NewCommandWithClient(streams genericiooptions.IOStreams, c client.Client, namespace string, now func() time.Time) *cobra.Command {
	o := &Options{flags: genericclioptions.NewConfigFlags(false), io: streams, Now: now}
	o.flags.Namespace = &namespace
	o.newClient = func() (client.Client, error) { return c, nil }
	o.newClientset = func() (kubernetes.Interface, error) {
		return nil, errors.New("reading logs needs a kubeconfig: use NewCommand")
	}
	return o.command()
}

func (o *Options) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-custody",
		Short: "Custody workflows: status trees, step logs, runs of templates, resubmits, approvals, cancel, and who holds which credential now",
		Long: "kubectl custody shows Custody Workflows as step trees with each step's SPIFFE ID and credentials " +
			"(CronWorkflows with their runs, WorkflowTemplates with what running them takes), prints their steps' logs, " +
			"starts runs of WorkflowTemplates and CronWorkflows, " +
			"runs workflows again (resubmit), approves steps and grants (admission checks that you may), suspends, resumes and " +
			"cancels workflows (saying why), pauses schedules, suspends grants, checks manifests (lint), and lists every " +
			"credential held right now (inventory).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.flags.AddFlags(root.PersistentFlags())
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "", "Output format: table (default), json or yaml.")
	root.AddCommand(o.getCommand(), o.runCommand(), o.resubmitCommand(), o.approveCommand(), o.rejectCommand(), o.cancelCommand(),
		o.revokeCommand(), o.inventoryCommand(), o.logsCommand(), o.lintCommand(), o.waitCommand(), o.resultsCommand())
	root.AddCommand(o.suspendCommands()...)
	return root
}

func (o *Options) namespace() (string, error) {
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", err
	}
	if o.flags.Namespace != nil && *o.flags.Namespace != "" {
		ns = *o.flags.Namespace
	}
	return ns, nil
}

func (o *Options) client() (client.Client, error) { return o.newClient() }

// clientIn is the client and the namespace the command works in.
func (o *Options) clientIn() (client.Client, string, error) {
	c, err := o.client()
	if err != nil {
		return nil, "", err
	}
	ns, err := o.namespace()
	return c, ns, err
}

func (o *Options) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// print writes v as JSON or YAML when asked (an object with its apiVersion and kind, as kubectl
// writes it, so that it can be applied), else calls table.
func (o *Options) print(v any, table func(io.Writer) error) error {
	if obj, ok := v.(client.Object); ok && obj.GetObjectKind().GroupVersionKind().Empty() {
		if gvk, err := apiutil.GVKForObject(obj, scheme()); err == nil {
			obj.GetObjectKind().SetGroupVersionKind(gvk)
		}
	}
	switch o.output {
	case "", "table", "wide":
		return table(o.io.Out)
	case "json":
		enc := json.NewEncoder(o.io.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = o.io.Out.Write(b)
		return err
	}
	return fmt.Errorf("unknown output format %q: use table, json or yaml", o.output)
}

// age is a short human duration: 45s, 3m, 2h5m, 4d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + age(-d)
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h := int(d.Hours())
		if m := int(d.Minutes()) % 60; m > 0 {
			return fmt.Sprintf("%dh%dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
