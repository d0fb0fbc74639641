package mcpauth

import (
	"errors"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the shared store, beside metrics.go's and registered the same way: for the
// process, into each config's registry. Each call is counted twice: in
// caddy_mcp_auth_remote_call_duration_seconds{kind="store",outcome} with the other remote
// calls (its latency, and what the dashboard and alerts use), and here by operation, which
// the histogram does not tell apart. The stores' health is caddy_mcp_auth_stores{state}
// (metrics.go registers it for every config, so an alert on it always has a series).
var storeMetrics = struct {
	once  sync.Once
	calls *prometheus.CounterVec
}{}

func initStoreMetrics(ctx caddy.Context) error {
	storeMetrics.once.Do(func() {
		const ns, sub = "caddy", "mcp_auth"
		storeMetrics.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "store_calls_total",
			Help: "Calls to the shared store (Redis/Valkey), by operation (claim, get, set, ping) and outcome (as remote_call_duration_seconds).",
		}, []string{"op", "outcome"})
	})
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := reg.Register(storeMetrics.calls); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

// observeStore counts one store call: op is one of a fixed set, outcome one of
// telemetry.Outcomes. It is the store client's Observe hook.
func observeStore(op, outcome string, took time.Duration) {
	if storeMetrics.calls != nil {
		storeMetrics.calls.WithLabelValues(op, outcome).Inc()
	}
	observeASCall(telemetry.KindStore, outcome, took)
}

// storeCollector reports the stores of storePool by state when scraped: up while the last
// call reached the store, down after one failed (until a call or the client's probe, every
// second, reaches it again). Both states always have a series, 0 without a store.
type storeCollector struct{ desc *prometheus.Desc }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	var up, down float64
	storePool.Range(func(_, v any) bool {
		if ps, ok := v.(pooledStore); ok {
			if ps.Up() {
				up++
			} else {
				down++
			}
		}
		return true
	})
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, up, "up")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, down, "down")
}
