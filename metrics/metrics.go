// Package metrics exposes the gate's state over HTTP: a health check, a
// JSON status and Prometheus metrics.
package metrics

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
)
