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

// Source reads a secret grant's source Secret. cached is the manager's cache, which holds only
// Secrets labelled custody.dev/grantable=true; when the source is not there, api reads the
// Secret's metadata only, to tell a Secret that did not opt in from one that does not exist. It
// returns the source if it is grantable, and whether a Secret of that name exists at all. This is
// the package's only read, and never of a value that did not opt in.
func Source(ctx context.Context, cached, api client.Reader, g *custodyv1alpha1.CredentialGrant) (*corev1.Secret, bool, error) {
	key := client.ObjectKey{Namespace: g.Namespace, Name: g.Spec.Credential.Secret.Name}
	src := &corev1.Secret{}
	err := cached.Get(ctx, key, src)
	switch {
	case err == nil && src.Labels[custodyv1alpha1.LabelGrantable] == "true":
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
