package credentials

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custodyv1alpha1 "github.com/custody-dev/custody/api/v1alpha1"
)

// labelOn is the value of an opt-in label (custody.dev/grantable, custody.dev/image-pull, ...).
const labelOn = "true"

// Source reads a secret grant's source Secret. cached is the manager's cache, which holds only
// Secrets labelled custody.dev/grantable=true; when the source is not there, api reads the
// Secret's metadata only, to tell a Secret that did not opt in from one that does not exist. It
// returns the source if it is grantable, and whether a Secret of that name exists at all. It never
// reads a value that did not opt in.
func Source(ctx context.Context, cached, api client.Reader, g *custodyv1alpha1.CredentialGrant) (*corev1.Secret, bool, error) {
	key := client.ObjectKey{Namespace: g.Namespace, Name: g.Spec.Credential.Secret.Name}
	src := &corev1.Secret{}
	err := cached.Get(ctx, key, src)
	switch {
	case err == nil && src.Labels[custodyv1alpha1.LabelGrantable] == labelOn:
		return src, true, nil
	case err != nil && !apierrors.IsNotFound(err):
		return nil, false, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	md := &metav1.PartialObjectMetadata{}
	md.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err = api.Get(ctx, key, md)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the metadata of Secret %s: %w", key, err)
	}
	return nil, true, nil
}

// PullSecretsRefusal says why a run cannot pull its steps' images with its imagePullSecrets: one
// that does not exist in ns, or that no namespace admin opted in (label custody.dev/image-pull=true).
// A registry credential lets its user pull images nobody else may, so a Workflow may name only
// Secrets meant for it. Read from api (uncached) as metadata only: the manager keeps no other
// Secrets, and never reads their data. nil when every Secret is usable.
func PullSecretsRefusal(ctx context.Context, api client.Reader, ns string, secrets []custodyv1alpha1.ImagePullSecret) (*Refusal, error) {
	for _, ps := range secrets {
		secret := &metav1.PartialObjectMetadata{}
		secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := api.Get(ctx, client.ObjectKey{Namespace: ns, Name: ps.Name}, secret)
		switch {
		case apierrors.IsNotFound(err):
			return &Refusal{Reason: custodyv1alpha1.ReasonImagePullSecretNotUsable,
				Message: fmt.Sprintf("imagePullSecret %s does not exist in namespace %s", ps.Name, ns)}, nil
		case err != nil:
			return nil, fmt.Errorf("reading imagePullSecret %s: %w", ps.Name, err)
		case secret.Labels[custodyv1alpha1.LabelImagePull] != labelOn:
			return &Refusal{Reason: custodyv1alpha1.ReasonImagePullSecretNotUsable,
				Message: fmt.Sprintf("imagePullSecret %s is not labelled %s=true: a namespace admin opts a Secret in before "+
					"workflows may pull with it", ps.Name, custodyv1alpha1.LabelImagePull)}, nil
		}
	}
	return nil, nil
}
