package mcpauth

import (
	"errors"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics live for the process, registered into each config's registry, so that counts go on
// across reloads. Labels are bounded: outcomes are a fixed set and resource comes from the
// config; no token, subject or client ever becomes a label.
var metrics = struct {
	once      sync.Once
	decisions *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	cache     *prometheus.CounterVec
}{}

// Decision outcomes, the values of the `outcome` label.
const (
	outcomeAllowed           = "allowed"
	outcomeMissingToken      = "missing_token"
	outcomeInvalidToken      = "invalid_token"
	outcomeInsufficientScope = "insufficient_scope"
	outcomeInvalidRequest    = "invalid_request"
	outcomeUnavailable       = "unavailable"
)

func initMetrics(ctx caddy.Context) error {
	metrics.once.Do(func() {
		const ns, sub = "caddy", "mcp_auth"
		metrics.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "decisions_total",
			Help: "Requests judged by mcp_auth, by resource and outcome.",
		}, []string{"resource", "outcome"})
		metrics.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "key_refreshes_total",
			Help: "Fetches of remote JWK sets (with discovery), by outcome.",
		}, []string{"outcome"})
		metrics.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "token_cache_total",
			Help: "Lookups in the verified-token cache, by resource and result.",
		}, []string{"resource", "result"})
	})
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.decisions, metrics.refreshes, metrics.cache} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// handlerMetrics are one handler's counters, resolved at Provision so that counting on the
// request path is one atomic add.
type handlerMetrics struct {
	byDenial  [numDenials]prometheus.Counter
	allowed   prometheus.Counter
	cacheHit  prometheus.Counter
	cacheMiss prometheus.Counter
}

func newHandlerMetrics(resource string) *handlerMetrics {
	m := &handlerMetrics{
		allowed:   metrics.decisions.WithLabelValues(resource, outcomeAllowed),
		cacheHit:  metrics.cache.WithLabelValues(resource, "hit"),
		cacheMiss: metrics.cache.WithLabelValues(resource, "miss"),
	}
	for d := denial(0); d < numDenials; d++ {
		m.byDenial[d] = metrics.decisions.WithLabelValues(resource, denialOutcome(d))
	}
	return m
}

func denialOutcome(d denial) string {
	switch denials[d].code {
	case "":
		return outcomeMissingToken
	case codeInvalidRequest:
		return outcomeInvalidRequest
	case codeInsufficientScope:
		return outcomeInsufficientScope
	case codeUnavailable:
		return outcomeUnavailable
	}
	return outcomeInvalidToken
}

func countRefresh(err error) {
	if metrics.refreshes == nil {
		return
	}
	if err != nil {
		metrics.refreshes.WithLabelValues("failure").Inc()
	} else {
		metrics.refreshes.WithLabelValues("success").Inc()
	}
}
