//go:build tools

// Package tools pins Flux's kustomize-controller, which the coexistence test runs as a peer of enbi,
// and source-controller, whose CRDs it needs, so go.mod and go.sum list exactly what build-flux.sh uses.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
)
