//go:build tools

// Package tools pins CoreDNS's main package so that `go mod tidy` keeps every requirement
// needed to build the cluster DNS of the one-node test cluster.
package tools

import _ "github.com/coredns/coredns"
