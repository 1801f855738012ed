//go:build tools

// Package tools pins the Kubernetes commands the test cluster runs, so go.mod and go.sum
// list exactly what `build-kube.sh` compiles.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
