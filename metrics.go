package mcpauth

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics live for the process, registered into each config's registry, so that counts go on
// across reloads. Labels are bounded: outcomes, reasons, kinds and caches are fixed sets and
// resource comes from the config; no token, subject, client or tool name ever becomes a
// label. The names and labels are documented in docs/operations.md#metrics.
var metrics = struct {
	once      sync.Once
	decisions *prometheus.CounterVec
	refreshes *prometheus.CounterVec
	cache     prometheus.Collector // token_cache_total, kept for compatibility (tokenCacheCompat)
	lookups   *prometheus.CounterVec
	calls     *prometheus.HistogramVec
	keySets   prometheus.Collector
	stores    prometheus.Collector
}{}

// Decision outcomes, the values of the `outcome` label: allowed, or the error code the
// refusal answered with (missing_token for a request without credentials, session_not_found
// for the 404 of bind_sessions, unavailable for temporarily_unavailable). The `reason` label
// tells the refusals of one outcome apart: it is the denial's own name (denialInfo.label).
const (
	outcomeAllowed         = "allowed"
	outcomeMissingToken    = "missing_token"
	outcomeSessionNotFound = "session_not_found"
	outcomeNotOffered      = "not_offered"
	outcomeUnavailable     = "unavailable"
)

// Caches, the values of the `cache` label of cache_lookups_total.
const (
	cacheToken         = "token"         // the verified-token cache (JWTs and introspected tokens)
	cacheIntrospection = "introspection" // refusals an introspection answer decided (negative_ttl)
	// The authorization server's answers (active within cache_ttl, inactive within
	// negative_ttl), shared by the configurations that ask it alike, across reloads.
	cacheIntrospectionAnswers = "introspection_answers"
	cacheExchange             = "exchange" // exchanged tokens (token_exchange), per incoming token and target
)

// callBuckets are the bounds (seconds) of the remote-call latency histogram: a store call
// takes a fraction of a millisecond on a LAN (its time limit is 100 ms by default), a JWKS
// or introspection answer milliseconds, and up to the time limits (5 s for introspection,
// 10 s for key sets) when the server is in trouble.
var callBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func initMetrics(ctx caddy.Context) error {
	metrics.once.Do(func() {
		const ns, sub = "caddy", "mcp_auth"
		metrics.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "decisions_total",
			Help: "Requests judged by mcp_auth, by resource, outcome (allowed or the error code answered) and reason (which refusal; empty when allowed).",
		}, []string{"resource", "outcome", "reason"})
		metrics.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "key_refreshes_total",
			Help: "Fetches of remote JWK sets (with discovery), by outcome.",
		}, []string{"outcome"})
		metrics.cache = tokenCacheCompat{desc: prometheus.NewDesc(ns+"_"+sub+"_token_cache_total",
			"Lookups in the verified-token cache, by resource and result. Deprecated: caddy_mcp_auth_cache_lookups_total{cache=\"token\"} counts the same.",
			[]string{"resource", "result"}, nil)}
		metrics.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "cache_lookups_total",
			Help: "Lookups in mcp_auth's caches, by resource, cache (token, introspection, introspection_answers, exchange) and result (hit, miss).",
		}, []string{"resource", "cache", "result"})
		metrics.calls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "remote_call_duration_seconds",
			Help:    "Calls to the authorization server (discovery, jwks, introspection, token_exchange) and the store, by kind and outcome.",
			Buckets: callBuckets,
		}, []string{"kind", "outcome"})
		metrics.keySets = keySetCollector{desc: prometheus.NewDesc(ns+"_"+sub+"_key_sets",
			"Remote JWK sets in use, by state: loaded, or loading (never loaded yet: requests with a token get 503).",
			[]string{"state"}, nil)}
		metrics.stores = storeCollector{desc: prometheus.NewDesc(ns+"_"+sub+"_stores",
			"Shared stores (Redis/Valkey) in use, by state: up, or down (the last call failed; on_error decides what requests get).",
			[]string{"state"}, nil)}
	})
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.decisions, metrics.refreshes, metrics.cache,
		metrics.lookups, metrics.calls, metrics.keySets, metrics.stores} {
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
	cacheHit  prometheus.Counter // cache_lookups_total{cache="token"} (and token_cache_total)
	cacheMiss prometheus.Counter
	negHit    prometheus.Counter
	negMiss   prometheus.Counter
	ansHit    prometheus.Counter
	ansMiss   prometheus.Counter
	exHit     prometheus.Counter
	exMiss    prometheus.Counter
}

func newHandlerMetrics(resource string) *handlerMetrics {
	m := &handlerMetrics{
		allowed:   metrics.decisions.WithLabelValues(resource, outcomeAllowed, ""),
		cacheHit:  metrics.lookups.WithLabelValues(resource, cacheToken, "hit"),
		cacheMiss: metrics.lookups.WithLabelValues(resource, cacheToken, "miss"),
		negHit:    metrics.lookups.WithLabelValues(resource, cacheIntrospection, "hit"),
		negMiss:   metrics.lookups.WithLabelValues(resource, cacheIntrospection, "miss"),
		ansHit:    metrics.lookups.WithLabelValues(resource, cacheIntrospectionAnswers, "hit"),
		ansMiss:   metrics.lookups.WithLabelValues(resource, cacheIntrospectionAnswers, "miss"),
		exHit:     metrics.lookups.WithLabelValues(resource, cacheExchange, "hit"),
		exMiss:    metrics.lookups.WithLabelValues(resource, cacheExchange, "miss"),
	}
	for d := denial(0); d < numDenials; d++ {
		m.byDenial[d] = metrics.decisions.WithLabelValues(resource, denialOutcome(d), denialReason(d))
	}
	return m
}

func (m *handlerMetrics) tokenCache(hit bool) {
	if hit {
		m.cacheHit.Inc()
	} else {
		m.cacheMiss.Inc()
	}
}

// tokenCacheCompat is the deprecated caddy_mcp_auth_token_cache_total: the rows of
// cache_lookups_total{cache="token"} under their old name, read when scraped, so that a
// lookup on the request path is counted once, not twice.
type tokenCacheCompat struct{ desc *prometheus.Desc }

func (c tokenCacheCompat) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c tokenCacheCompat) Collect(ch chan<- prometheus.Metric) {
	rows := make(chan prometheus.Metric)
	go func() {
		metrics.lookups.Collect(rows)
		close(rows)
	}()
	for m := range rows {
		var pb dto.Metric
		if m.Write(&pb) != nil || pb.GetCounter() == nil {
			continue
		}
		var resource, cache, result string
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "resource":
				resource = l.GetValue()
			case "cache":
				cache = l.GetValue()
			case "result":
				result = l.GetValue()
			}
		}
		if cache == cacheToken {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, pb.GetCounter().GetValue(), resource, result)
		}
	}
}

// introspectionCache counts a lookup of the remembered introspection refusals.
func (m *handlerMetrics) introspectionCache(hit bool) {
	if hit {
		m.negHit.Inc()
	} else {
		m.negMiss.Inc()
	}
}

// introspectionAnswers counts a lookup of the authorization server's answers.
func (m *handlerMetrics) introspectionAnswers(hit bool) {
	if hit {
		m.ansHit.Inc()
	} else {
		m.ansMiss.Inc()
	}
}

// exchangeCache counts a lookup of the exchanged tokens.
func (m *handlerMetrics) exchangeCache(hit bool) {
	if hit {
		m.exHit.Inc()
	} else {
		m.exMiss.Inc()
	}
}

// denialOutcome is the outcome of a refusal: the error code it answers with, so that no
// refusal counts under another's code.
func denialOutcome(d denial) string {
	switch d {
	case denyMissing:
		return outcomeMissingToken
	case denySession:
		return outcomeSessionNotFound
	case denyNotOffered:
		return outcomeNotOffered
	}
	if code := denials[d].code; code != codeUnavailable {
		return code
	}
	return outcomeUnavailable
}

// denialReason is the refusal's own name, the `reason` label: one per denial, the same as
// the debug log's reason, the audit event's detail and {http.auth.mcp.error_reason}.
func denialReason(d denial) string { return denials[d].label }

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

// observeASCall counts one call to the authorization server or the store: kind is one of
// telemetry.Kinds, outcome one of telemetry.Outcomes (both bounded: never a URL or an error
// text). It is a telemetry.CallObserver, for the mechanisms' OnCall hooks.
func observeASCall(kind, outcome string, d time.Duration) {
	if metrics.calls == nil {
		return // no config provisioned a handler yet (unit tests of a mechanism)
	}
	metrics.calls.WithLabelValues(kind, outcome).Observe(d.Seconds())
}

var _ telemetry.CallObserver = observeASCall

// discoverer finds the member endpoint (introspection_endpoint, token_endpoint) of the
// issuer's metadata, the fetch counted as a call of kind discovery.
func discoverer(client *http.Client, issuer, member string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		start := time.Now()
		ep, err := jwks.DiscoverEndpoint(ctx, client, issuer, member, maxMetadataBytes)
		observeASCall(telemetry.KindDiscovery, telemetry.Outcome(err), time.Since(start))
		return ep, err
	}
}

// keySetCollector reports the remote key sets of keyPool by state when scraped, so that an
// alert can fire while a set has never loaded, with or without traffic.
type keySetCollector struct{ desc *prometheus.Desc }

func (c keySetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c keySetCollector) Collect(ch chan<- prometheus.Metric) {
	var loaded, loading float64
	keyPool.Range(func(_, v any) bool {
		if ps, ok := v.(pooledSet); ok {
			if ps.Keys() != nil {
				loaded++
			} else {
				loading++
			}
		}
		return true
	})
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, loaded, "loaded")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, loading, "loading")
}
