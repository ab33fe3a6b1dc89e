// Package k8s holds playgate's Kubernetes manifests (YAML beside this
// file) and the test that validates them. It has no code of its own.
package k8s
