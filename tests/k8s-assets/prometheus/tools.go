//go:build tools

// Package tools pins Prometheus's promtool main package so that `go mod tidy` keeps every
// requirement needed to build the rule checker the alert-rule tests run
// (`promtool check rules`, `promtool test rules`).
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
