// Package telemetry is what the mechanisms of mcp_auth (key sets, introspection, token
// exchange, the store) need to be observed, without knowing of Caddy or Prometheus: the
// bounded vocabulary of remote calls (kind, outcome) that the metrics count, and child spans
// of the request's span that cost nothing when that span is not recording.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Kinds of remote call: the `kind` label of caddy_mcp_auth_remote_call_duration_seconds. A
// fixed set, so that the number of series is too.
const (
	KindDiscovery     = "discovery"      // RFC 8414 / OpenID Connect metadata
	KindJWKS          = "jwks"           // a JWK set
	KindIntrospection = "introspection"  // RFC 7662
	KindTokenExchange = "token_exchange" // RFC 8693
	KindStore         = "store"          // Redis / Valkey
)

// Kinds lists every kind, for documentation and tests.
var Kinds = []string{KindDiscovery, KindJWKS, KindIntrospection, KindTokenExchange, KindStore}

// Outcomes of a remote call: the `outcome` label, and the mcp_auth.outcome attribute of a
// child span.
const (
	OK          = "ok"           // the call answered as expected
	Unreachable = "unreachable"  // no HTTP answer: connection refused, DNS, TLS, time limit
	ServerError = "server_error" // a 5xx answer
	Refused     = "refused"      // another non-success status (e.g. 401: our credentials)
	BadAnswer   = "bad_answer"   // an answer that could not be used (not JSON, no usable key)
	Busy        = "busy"         // no call made: shed by the limits (no slot free in time, a rate or share at its bound)
	Canceled    = "canceled"     // the request that waited went away first
)

// Outcomes lists every outcome, for documentation and tests.
var Outcomes = []string{OK, Unreachable, ServerError, Refused, BadAnswer, Busy, Canceled}

// CallObserver is told of each remote call once it ended: its kind, its outcome and how long
// it took. The root package counts them; nil observes nothing.
type CallObserver func(kind, outcome string, d time.Duration)

// Observe calls o when it is set.
func (o CallObserver) Observe(kind, outcome string, d time.Duration) {
	if o != nil {
		o(kind, outcome, d)
	}
}

// StatusError is an HTTP answer with a status other than the one expected. Its message is
// only the status: it may end up in logs and must not carry the answer's body.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("status %d", e.Code) }

// Outcome classifies the error of a remote call: nil is OK; a network error (a net.Error:
// net/http wraps every transport error in *url.Error, a store client returns *net.OpError)
// or an exceeded time limit is Unreachable; a StatusError is ServerError or Refused; anything
// else (the answer could not be used) is BadAnswer.
func Outcome(err error) string {
	if err == nil {
		return OK
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return Unreachable
	}
	if errors.Is(err, context.Canceled) {
		return Canceled
	}
	var se *StatusError
	if errors.As(err, &se) {
		if se.Code >= 500 {
			return ServerError
		}
		return Refused
	}
	return BadAnswer
}

// Names of the child spans (and of the spans other mechanisms add the same way).
const (
	SpanJWKSFetch     = "mcp_auth.jwks_fetch"
	SpanIntrospect    = "mcp_auth.introspect"
	SpanTokenExchange = "mcp_auth.token_exchange"
	SpanStore         = "mcp_auth.store"
)

// OutcomeKey is the attribute holding a child span's outcome.
const OutcomeKey = attribute.Key("mcp_auth.outcome")

// tracerName is the instrumentation scope of the spans this module starts.
const tracerName = "github.com/mcpauth/caddy-mcp-auth"

// Span is a child span of a request's span, or nothing at all when the request's span is
// not recording (no `tracing` in the config, or the trace not sampled): then starting and
// ending it cost a context lookup and no allocation.
type Span struct{ s trace.Span }

// StartSpan starts the child span name of ctx's span, as a client span (a call out of the
// process), and returns the context carrying it. Use it around a call that a request waits
// for, and End it with the call's outcome:
//
//	ctx, span := telemetry.StartSpan(ctx, telemetry.SpanStore)
//	err := store.Do(ctx, ...)
//	span.End(telemetry.Outcome(err))
//
// Never give a span a token, a secret or a session tag: attributes are exported as they are.
func StartSpan(ctx context.Context, name string) (context.Context, Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, Span{}
	}
	// The parent's provider, not the global one: Caddy's tracing module has a provider of its
	// own and never installs it globally.
	ctx, s := parent.TracerProvider().Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	return ctx, Span{s}
}

// Recording reports whether the span records: attributes worth computing only for it can be
// skipped otherwise.
func (s Span) Recording() bool { return s.s != nil && s.s.IsRecording() }

// SetAttributes adds attributes to a recording span.
func (s Span) SetAttributes(kv ...attribute.KeyValue) {
	if s.s != nil {
		s.s.SetAttributes(kv...)
	}
}

// End ends the span with its outcome (one of the outcome constants); any but OK marks the
// span as failed. The outcome, not the error's text, is recorded: an error may name a URL
// with credentials in it.
func (s Span) End(outcome string) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(OutcomeKey.String(outcome))
	if outcome != OK {
		s.s.SetStatus(codes.Error, outcome)
	}
	s.s.End()
}
