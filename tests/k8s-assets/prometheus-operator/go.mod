// Pins prometheus-operator only for its ServiceMonitor CRD (example/prometheus-operator-crd/),
// which the chart tests install so the chart's ServiceMonitor is validated by the real schema.
// Nothing is compiled from it.
module originstack.dev/k8s-assets/prometheus-operator

go 1.24

require github.com/prometheus-operator/prometheus-operator v0.85.0
