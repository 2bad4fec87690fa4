// Package crd embeds Custody's CustomResourceDefinitions, as controller-gen writes them into
// bases/, for tools that check manifests without a cluster (kubectl custody lint).
package crd

import "embed"

// Bases holds bases/*.yaml.
//
//go:embed bases/*.yaml
var Bases embed.FS
