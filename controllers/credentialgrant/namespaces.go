package credentialgrant

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/custody-dev/custody/internal/credentials"
)

// namespaceCaches watch the metadata of some namespaces by name, each with a cache of its own that
// lists and watches that one namespace (a metadata.name field selector), keeping only their
// custody.dev labels (credentials.NamespaceMetadata). RBAC limits a list or a watch to
// resourceNames only through such a selector, one name at a time: so a manager that watches some
// namespaces (--watch-namespaces) needs list and watch of those namespaces only, not of all.
type namespaceCaches map[string]cache.Cache

// newNamespaceCaches makes a cache for each namespace and adds it to the manager, which starts it.
func newNamespaceCaches(mgr ctrl.Manager, names []string) (namespaceCaches, error) {
	caches := namespaceCaches{}
	for _, name := range names {
		c, err := cache.New(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
			ByObject: map[client.Object]cache.ByObject{&corev1.Namespace{}: {
				Field: fields.OneTermEqualSelector("metadata.name", name), Transform: credentials.NamespaceMetadata}}})
		if err != nil {
			return nil, fmt.Errorf("a cache of namespace %s: %w", name, err)
		}
		if err := mgr.Add(c); err != nil {
			return nil, err
		}
		caches[name] = c
	}
	return caches, nil
}

// sources are the watches of the namespaces, one per cache.
func (n namespaceCaches) sources(h handler.EventHandler, p predicate.Predicate) []source.Source {
	out := make([]source.Source, 0, len(n))
	for _, c := range n {
		out = append(out, source.Kind[client.Object](c, namespaceMetadata(), h, p))
	}
	return out
}

// Get reads a watched namespace's metadata from its cache.
func (n namespaceCaches) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c, ok := n[key.Name]
	if !ok {
		return fmt.Errorf("namespace %s is not among the watched namespaces (--watch-namespaces)", key.Name)
	}
	return c.Get(ctx, key, obj, opts...)
}

// List is not supported: each cache holds one namespace.
func (namespaceCaches) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("the caches of watched namespaces are read by name only")
}

func namespaceMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return m
}
