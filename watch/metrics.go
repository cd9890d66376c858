package watch

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"poolbot/integrations/registry"
)

// Metrics are the watch's Prometheus metrics. Every label value comes from
// the configuration (service, host, instance, datacenter) or from the
// registry package's fixed set of probe codes, so series stay bounded.
type Metrics struct {
	probeOK       *prometheus.GaugeVec
	probeFailures *prometheus.CounterVec
	probeDuration *prometheus.HistogramVec
	probeSkipped  *prometheus.CounterVec
	drifts        *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg; a nil reg
// leaves them unregistered (they still count, for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		probeOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "poolbot", Name: "registry_probe_ok",
			Help: "1 if the registry instance (of a host, or the balancer) passed its part of the latest periodic write-then-read probe across hosts, 0 if it failed.",
		}, []string{"service", "instance", "host"}),
		probeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "poolbot", Name: "registry_probe_failures_total",
			Help: "Failed periodic registry probes, by failure code (a registry error code such as BLOB_UPLOAD_UNKNOWN, or network, timeout, http_5xx, ...).",
		}, []string{"service", "instance", "host", "code"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "poolbot", Name: "registry_probe_duration_seconds",
			Help:    "Duration of periodic write-then-read registry probes, passed or failed.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "instance", "host"}),
		probeSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "poolbot", Name: "registry_probe_skipped_total",
			Help: "Periodic registry probes of a host skipped, or their failure dropped, because a poolbot request was restarting it.",
		}, []string{"service", "host"}),
		drifts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "poolbot", Name: "drift_total",
			Help: "Pooled-state changes of a managed service made outside poolbot (datacenter \"other\" for one not in the config).",
		}, []string{"service", "datacenter"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.probeOK, m.probeFailures, m.probeDuration, m.probeSkipped, m.drifts} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("watch: metrics: %w", err)
	}
	return m, nil
}

// metricCode bounds a probe code for the code label: the codes the
// registry package defines, anything else "other".
func metricCode(code string) string {
	switch code {
	case registry.CodeUnknown, registry.CodeUnsupported, registry.CodeUnauthorized, registry.CodeDenied,
		registry.CodeUnavailable, registry.CodeTooManyRequests, registry.CodeDigestInvalid, registry.CodeSizeInvalid,
		registry.CodeRangeInvalid, registry.CodeNameInvalid, registry.CodeTagInvalid, registry.CodeNameUnknown,
		registry.CodeManifestUnknown, registry.CodeManifestInvalid, registry.CodeManifestUnverified,
		registry.CodeManifestBlobUnknown, registry.CodeBlobUnknown, registry.CodeBlobUploadUnknown,
		registry.CodeBlobUploadInvalid, registry.CodePaginationNumberInvalid,
		registry.CodeOK, registry.CodeNetwork, registry.CodeTimeout, registry.CodeCanceled, registry.CodeHTTP4xx,
		registry.CodeHTTP5xx, registry.CodeUnexpectedStatus, registry.CodeBadResponse, registry.CodeBlobMismatch,
		registry.CodeInvalidRepository, registry.CodeInternal:
		return code
	}
	return "other"
}
