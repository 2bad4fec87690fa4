// Package v1alpha1 contains the custody.dev/v1alpha1 API: Workflow, one run of a DAG of steps;
// CredentialGrant, which says which steps of which workflows may hold a credential and for how
// long; WorkflowTemplate, a reusable workflow definition; and CronWorkflow, which creates runs on a
// schedule.
//
// +kubebuilder:object:generate=true
// +groupName=custody.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "custody.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this API's kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Workflow{}, &WorkflowList{},
		&CredentialGrant{}, &CredentialGrantList{},
		&WorkflowTemplate{}, &WorkflowTemplateList{},
		&CronWorkflow{}, &CronWorkflowList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
