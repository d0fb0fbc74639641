package mcpauth

import (
	"net/http"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Tracing: with Caddy's `tracing` handler before mcp_auth, the request's span (Caddy's, from
// otelhttp) gets what mcp_auth decided, in the names of the OpenTelemetry semantic
// conventions for MCP and GenAI (open-telemetry/semantic-conventions-genai v0.1.0,
// docs/gen-ai/mcp.md, status Development) and mcp_auth.* for the rest. The values are the
// audit event's. Calls to the authorization server a request waits for are child spans
// (internal/telemetry.StartSpan). Nothing here runs unless the span records.
//
// Never an attribute: the token, a secret, the Mcp-Session-Id or its tag, a claim value.

// Attribute keys.
const (
	attrMCPMethod      = attribute.Key("mcp.method.name")
	attrGenAIOperation = attribute.Key("gen_ai.operation.name")
	attrGenAITool      = attribute.Key("gen_ai.tool.name")
	attrGenAIPrompt    = attribute.Key("gen_ai.prompt.name")
	attrMCPResourceURI = attribute.Key("mcp.resource.uri")
	attrEndUser        = attribute.Key("enduser.id")
	attrClientID       = attribute.Key("mcp_auth.client_id")
	attrDecision       = attribute.Key("mcp_auth.decision")
	attrReason         = attribute.Key("mcp_auth.reason")
	attrDetail         = attribute.Key("mcp_auth.detail")
	attrRule           = attribute.Key("mcp_auth.rule")
)

// recordingSpan returns the request's span when it records, else nil: only then is
// anything computed for it. Without `tracing` the span is the no-op one, and this is one
// context lookup (a passed request makes it once: its record keeps the answer).
func recordingSpan(r *http.Request) trace.Span {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		return span
	}
	return nil
}

// traceDecision puts the decision d on r (denyNone: allowed) on the request's span when it
// records.
func traceDecision(r *http.Request, d denial) {
	if span := recordingSpan(r); span != nil {
		setDecisionAttributes(span, r, d)
	}
}

// setDecisionAttributes writes the attributes; kept apart so that the request path of an
// unrecorded request has none of its cost.
func setDecisionAttributes(span trace.Span, r *http.Request, d denial) {
	attrs := make([]attribute.KeyValue, 0, 10)
	if d == denyNone {
		attrs = append(attrs, attrDecision.String("allow"))
	} else {
		reason := denials[d].code
		if reason == "" {
			reason = "access_denied" // as the audit event says it
		}
		attrs = append(attrs, attrDecision.String("deny"), attrReason.String(reason),
			attrDetail.String(denials[d].label))
	}
	rec := auditRecordOf(r)
	if rec != nil && rec.caller != nil {
		id := rec.caller.identity
		if id.Subject != "" {
			attrs = append(attrs, attrEndUser.String(id.Subject))
		}
		if id.ClientID != "" {
			attrs = append(attrs, attrClientID.String(id.ClientID))
		}
	}
	// The rule that decided: the label of the policy verdict's Rule, as the audit event has it.
	if rec != nil && rec.rule != "" {
		attrs = append(attrs, attrRule.String(rec.rule))
	}
	// The operation, once the body was read (per-operation rules, list filters or audit):
	// from the placeholders, set whatever the decision.
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		method, _ := repl.GetString(methodPlaceholder)
		if method != "" {
			attrs = append(attrs, attrMCPMethod.String(boundAttr(method)))
			name, _ := repl.GetString(namePlaceholder)
			attrs = appendOperationName(attrs, method, boundAttr(name))
		}
	}
	span.SetAttributes(attrs...)
}

// maxNameAttrBytes bounds the attributes whose value the client chose (the method and the
// name of the tool, prompt or resource): the body may hold a name of a megabyte, and a span
// carrying it makes the exporter's batch too large for a collector (OTLP/gRPC receivers
// refuse messages above 4 MiB by default), dropping every other span of that batch.
const maxNameAttrBytes = 256

// boundAttr cuts s to at most maxNameAttrBytes, on a UTF-8 boundary (the body's strings are
// valid UTF-8: mcpjson refuses the others).
func boundAttr(s string) string {
	if len(s) <= maxNameAttrBytes {
		return s
	}
	i := maxNameAttrBytes
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// appendOperationName names what the method acts on, in the key the conventions give it.
func appendOperationName(attrs []attribute.KeyValue, method, name string) []attribute.KeyValue {
	switch method {
	case "tools/call":
		attrs = append(attrs, attrGenAIOperation.String("execute_tool"))
		if name != "" {
			attrs = append(attrs, attrGenAITool.String(name))
		}
	case "prompts/get":
		if name != "" {
			attrs = append(attrs, attrGenAIPrompt.String(name))
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if name != "" {
			attrs = append(attrs, attrMCPResourceURI.String(name))
		}
	}
	return attrs
}
