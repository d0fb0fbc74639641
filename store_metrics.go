package mcpauth

import (
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the shared store, beside metrics.go's and registered the same way: for the
// process, into each config's registry. Labels are the operation and a fixed result set.
var storeMetrics = struct {
	once     sync.Once
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	up       prometheus.Gauge
}{}

func initStoreMetrics(ctx caddy.Context) error {
	storeMetrics.once.Do(func() {
		const ns, sub = "caddy", "mcp_auth"
		storeMetrics.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "store_calls_total",
			Help: "Calls to the shared store (Redis/Valkey), by operation and result (ok or error).",
		}, []string{"op", "result"})
		storeMetrics.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "store_call_duration_seconds",
			Help:    "Latency of calls to the shared store, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"op"})
		storeMetrics.up = prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "store_up",
			Help: "1 while the shared store answers, 0 after a call failed to reach it.",
		})
		storeMetrics.up.Set(1)
	})
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{storeMetrics.calls, storeMetrics.duration, storeMetrics.up} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

func observeStore(op string, took time.Duration, err error) {
	if storeMetrics.calls == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	storeMetrics.calls.WithLabelValues(op, result).Inc()
	storeMetrics.duration.WithLabelValues(op).Observe(took.Seconds())
}

func storeHealth(up bool) {
	if storeMetrics.up == nil {
		return
	}
	if up {
		storeMetrics.up.Set(1)
	} else {
		storeMetrics.up.Set(0)
	}
}
