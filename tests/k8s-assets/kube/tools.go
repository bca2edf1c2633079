//go:build tools

// Package tools pins the main packages built from this module so that `go mod tidy`
// keeps every requirement needed to build them: the API server for the API-only tests, and
// the rest of a one-node cluster (node agent, controllers, scheduler, service proxy, CLI).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
