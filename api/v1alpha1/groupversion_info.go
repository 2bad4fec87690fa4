// Package v1alpha1 contains the custody.dev/v1alpha1 API: Workflow, one run of a DAG of steps,
// and CredentialGrant, which says which steps of which workflows may hold a credential and for how
// long.
//
// +kubebuilder:object:generate=true
// +groupName=custody.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "custody.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this API's kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this API's kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
