package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver (protobuf), as a collector would be: Caddy's
// tracing exports its batches here.
type otlpReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	spans   map[string][]*tracepb.Span // by trace ID, hex
	changed chan struct{}              // signalled after each batch
}

// sharedOTLPReceiver is the one receiver of the test process, set as the exporter's endpoint
// for every test that traces: Caddy keeps one tracer provider while any config uses
// `tracing`, and the caddytest instance loads each test's config over the previous one, so
// the exporter made for the first test is the one every later test exports through. Spans
// are kept by trace ID, so the tests do not see each other's.
func sharedOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	sharedReceiverOnce.Do(func() { sharedReceiver = newOTLPReceiver(nil) })
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sharedReceiver.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50") // ms: batches leave soon, the test waits for them
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	return sharedReceiver
}

var (
	sharedReceiverOnce sync.Once
	sharedReceiver     *otlpReceiver
)

// newOTLPReceiver starts a receiver, closed at t's end (t nil: with the process).
func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rcv := &otlpReceiver{spans: map[string][]*tracepb.Span{}, changed: make(chan struct{}, 1)}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/traces", http.StatusUnsupportedMediaType)
			return
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					id := fmt.Sprintf("%x", s.GetTraceId())
					rcv.spans[id] = append(rcv.spans[id], s)
				}
			}
		}
		rcv.mu.Unlock()
		select {
		case rcv.changed <- struct{}{}:
		default:
		}
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	if t != nil {
		t.Cleanup(rcv.Close)
	}
	return rcv
}

// waitTrace waits until the trace holds spans that satisfy done, and returns them. It waits
// for batches to arrive, not for time; the limit only bounds a failing run.
func (rcv *otlpReceiver) waitTrace(t *testing.T, traceID string, what string, done func([]*tracepb.Span) bool) []*tracepb.Span {
	t.Helper()
	limit := time.NewTimer(60 * time.Second)
	defer limit.Stop()
	for {
		rcv.mu.Lock()
		spans := append([]*tracepb.Span(nil), rcv.spans[traceID]...)
		rcv.mu.Unlock()
		if done(spans) {
			return spans
		}
		select {
		case <-rcv.changed:
		case <-limit.C:
			t.Fatalf("trace %s: %s never arrived; spans: %s", traceID, what, describeSpans(spans))
		}
	}
}

func (rcv *otlpReceiver) all() []*tracepb.Span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range rcv.spans {
		out = append(out, s...)
	}
	return out
}

func describeSpans(spans []*tracepb.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %v", s.GetName(), attrs(s))
	}
	return b.String()
}

// attrs are a span's string, int and bool attributes, formatted.
func attrs(s *tracepb.Span) map[string]string {
	out := map[string]string{}
	for _, kv := range s.GetAttributes() {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			out[kv.GetKey()] = v.GetStringValue()
		default:
			out[kv.GetKey()] = fmt.Sprint(v.GetIntValue(), v.GetBoolValue())
		}
	}
	return out
}

// decisionSpan is the span that carries mcp_auth's decision: Caddy's server span.
func decisionSpan(spans []*tracepb.Span) *tracepb.Span {
	for _, s := range spans {
		if _, ok := attrs(s)["mcp_auth.decision"]; ok {
			return s
		}
	}
	return nil
}

func spanNamed(spans []*tracepb.Span, name string) *tracepb.Span {
	for _, s := range spans {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// swappableJWKS serves a JWK set that the test can change (a key rotation).
type swappableJWKS struct {
	*httptest.Server
	body atomic.Pointer[[]byte]
}

func newSwappableJWKS(t *testing.T, keys ...*jwttest.Key) *swappableJWKS {
	t.Helper()
	js := &swappableJWKS{}
	js.set(keys...)
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*js.body.Load())
	}))
	t.Cleanup(js.Close)
	return js
}

func (js *swappableJWKS) set(keys ...*jwttest.Key) {
	b := jwttest.JWKS(keys...)
	js.body.Store(&b)
}

// newTracedUpstream answers every JSON-RPC POST with an empty result and hands out a session ID,
// as an MCP server does on initialize.
func newTracedUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Mcp-Session-Id", "srv-session-1")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(s.Close)
	return s
}

// tracingConfig is three traced sites before the fixture's upstream: jwt.localhost (keys at
// jwks, delete_* tools and secret_* prompts need mcp:admin, sessions bound),
// opaque.localhost (https://opaque.example.com/mcp, tokens introspected at as) and
// exchange.localhost (keys at jwks, tokens exchanged at the token endpoint of xas, per tool
// for github_*).
func tracingConfig(f *fixture, jwks, as, xas string) string {
	return caddyfileOf("",
		siteAt("http://jwt.localhost:9080", "tracing {\nspan mcp\n}", mcpAuthDirective("resource "+resource+
			"\nauthorization_servers "+issuer+"\njwks_url "+jwks+"\nscopes mcp:read\ntool delete_* {\nscopes mcp:admin\n}"+
			"\nprompt secret_* {\nscopes mcp:admin\n}\nbind_sessions {env.MCPAUTH_TRACE_SESSION_KEY}"), f.proxyDirective()),
		siteAt("http://opaque.localhost:9080", "tracing",
			mcpAuthDirective(introspected("https://opaque.example.com/mcp", as, "", "")), f.proxyDirective()),
		siteAt("http://exchange.localhost:9080", "tracing", mcpAuthDirective(exchangeBlock(issuer, jwks, "endpoint "+xas+"/token",
			"tool github_* {\nexchange {\naudience https://github.example.com\n}\n}")), f.proxyDirective()))
}

const traceSessionKey = "trace-test-session-key-0123456789abcdef"

// traceCounter numbers the traces the test starts.
var traceCounter atomic.Uint64

// tracedPost sends a JSON-RPC POST in a trace of its own (the client's traceparent, sampled)
// and returns the trace ID, the status and the response header.
func tracedPost(t *testing.T, tc *caddytest.Tester, host, token, session, body string) (string, int, http.Header) {
	t.Helper()
	traceID := fmt.Sprintf("%016x%016x", uint64(0x6d63705f61757468), traceCounter.Add(1))
	req, err := http.NewRequest(http.MethodPost, baseURL+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := tc.Client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", host, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return traceID, resp.StatusCode, resp.Header
}

func rpc(method, params string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":` + params + `}`
}

// TestTracingThroughCaddy runs a real Caddy with `tracing` before mcp_auth, exporting OTLP
// over HTTP to a receiver of the test: the request span carries the MCP / GenAI attributes
// and the decision per method and outcome, a key rotation and an introspection are child
// spans with their outcome, and no attribute of any span holds a token, a secret or a
// session tag.
func TestTracingThroughCaddy(t *testing.T) {
	// Caddy's tracing builds its exporter from the standard environment (autoexport).
	rcv := sharedOTLPReceiver(t)
	t.Setenv("MCPAUTH_TRACE_SESSION_KEY", traceSessionKey)
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)

	f := newFixture(t, server{newTracedUpstream(t)})
	k2 := jwttest.New(t, "trace-k2", "ES256")
	js := newSwappableJWKS(t, f.key) // the sites' keys, rotated below
	as := newIntrospectionAS(t, f.key)
	xas := newExchangeAS(t)
	tc := f.start(t, tracingConfig(f, js.URL, as.issuer, xas.URL), "caddyfile")

	const jwtHost, opaqueHost, exchangeHost = "jwt.localhost", "opaque.localhost", "exchange.localhost"
	read := f.token(t, "mcp:read", nil)
	var secrets = []string{read, traceSessionKey, rsClientSecret, gwClientSecret}

	// initialize: allowed; the upstream's session ID comes back tagged.
	traceInit, code, hdr := tracedPost(t, tc, jwtHost, read, "", rpc("initialize", `{}`))
	session := hdr.Get("Mcp-Session-Id")
	if code != http.StatusOK || !strings.HasPrefix(session, "srv-session-1.") {
		t.Fatalf("initialize: status %d, Mcp-Session-Id %q; want 200 and a tagged session", code, session)
	}
	secrets = append(secrets, session, strings.TrimPrefix(session, "srv-session-1."))

	type want struct {
		name  string
		trace string
		attrs map[string]string // "" : must be absent
	}
	var cases []want
	cases = append(cases, want{"initialize allowed", traceInit, map[string]string{
		"mcp_auth.decision": "allow", "mcp.method.name": "initialize", "enduser.id": "user-1",
		"mcp_auth.client_id": "client-1", "mcp_auth.rule": "base", "gen_ai.operation.name": "",
		"gen_ai.tool.name": "", "mcp_auth.reason": "",
	}})

	id, code, _ := tracedPost(t, tc, jwtHost, read, session, rpc("tools/call", `{"name":"get_weather","arguments":{}}`))
	if code != http.StatusOK {
		t.Fatalf("tools/call get_weather: status %d, want 200", code)
	}
	cases = append(cases, want{"tools/call allowed", id, map[string]string{
		"mcp_auth.decision": "allow", "mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
		"gen_ai.tool.name": "get_weather", "enduser.id": "user-1", "mcp_auth.client_id": "client-1",
		"mcp_auth.rule": "base",
	}})

	id, code, _ = tracedPost(t, tc, jwtHost, read, session, rpc("tools/call", `{"name":"delete_file","arguments":{}}`))
	if code != http.StatusForbidden {
		t.Fatalf("tools/call delete_file: status %d, want 403", code)
	}
	cases = append(cases, want{"tools/call refused by a rule", id, map[string]string{
		"mcp_auth.decision": "deny", "mcp_auth.reason": "insufficient_scope", "mcp_auth.detail": "insufficient_scope",
		"mcp_auth.rule": "tool delete_*", "mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
		"gen_ai.tool.name": "delete_file", "enduser.id": "user-1", "mcp_auth.client_id": "client-1",
	}})

	id, code, _ = tracedPost(t, tc, jwtHost, read, session, rpc("prompts/get", `{"name":"secret_plan"}`))
	if code != http.StatusForbidden {
		t.Fatalf("prompts/get secret_plan: status %d, want 403", code)
	}
	cases = append(cases, want{"prompts/get refused", id, map[string]string{
		"mcp_auth.decision": "deny", "mcp.method.name": "prompts/get", "gen_ai.prompt.name": "secret_plan",
		"mcp_auth.rule": "prompt secret_*", "gen_ai.operation.name": "", "gen_ai.tool.name": "",
	}})

	id, code, _ = tracedPost(t, tc, jwtHost, "", "", rpc("tools/call", `{"name":"get_weather"}`))
	if code != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", code)
	}
	cases = append(cases, want{"no token", id, map[string]string{
		"mcp_auth.decision": "deny", "mcp_auth.reason": "access_denied", "mcp_auth.detail": "missing_token",
		"enduser.id": "", "mcp.method.name": "", "mcp_auth.rule": "",
	}})

	expiredTok := f.token(t, "mcp:read", map[string]any{"exp": time.Now().Add(-time.Hour).Unix(),
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "nbf": time.Now().Add(-2 * time.Hour).Unix()})
	secrets = append(secrets, expiredTok)
	id, code, _ = tracedPost(t, tc, jwtHost, expiredTok, "", rpc("tools/call", `{"name":"get_weather"}`))
	if code != http.StatusUnauthorized {
		t.Fatalf("expired token: status %d, want 401", code)
	}
	cases = append(cases, want{"expired token", id, map[string]string{
		"mcp_auth.decision": "deny", "mcp_auth.reason": "invalid_token", "mcp_auth.detail": "expired", "enduser.id": "",
	}})

	// A session tag of another caller: 404, and the tag never reaches the span.
	other := f.token(t, "mcp:read", map[string]any{"sub": "user-2"})
	secrets = append(secrets, other)
	id, code, _ = tracedPost(t, tc, jwtHost, other, session, rpc("tools/call", `{"name":"get_weather"}`))
	if code != http.StatusNotFound {
		t.Fatalf("another caller's session: status %d, want 404", code)
	}
	cases = append(cases, want{"session of another caller", id, map[string]string{
		"mcp_auth.decision": "deny", "mcp_auth.reason": "access_denied", "mcp_auth.detail": "session_not_found",
		"enduser.id": "user-2",
	}})

	// A key rotation: a token signed by a key the set does not list yet makes the request
	// fetch the set again, a child span of the request's.
	js.set(f.key, k2)
	rotated := k2.Token(t, f.claims("mcp:read", nil), nil)
	secrets = append(secrets, rotated)
	jwksTrace, code, _ := tracedPost(t, tc, jwtHost, rotated, "", rpc("tools/list", `{}`))
	if code != http.StatusOK {
		t.Fatalf("token of a rotated-in key: status %d, want 200", code)
	}

	// An opaque token: introspected, a child span of the request's.
	as.issue("opaque-trace-token", "https://opaque.example.com/mcp", "mcp:read", nil)
	secrets = append(secrets, "opaque-trace-token")
	introTrace, code, _ := tracedPost(t, tc, opaqueHost, "opaque-trace-token", "", rpc("tools/list", `{}`))
	if code != http.StatusOK {
		t.Fatalf("opaque token: status %d, want 200", code)
	}

	// Token exchange: the first tools/call of a token exchanges it (a child span, ok); the
	// second is served from the cache (no child span); a token the authorization server
	// refuses to exchange is a child span with outcome refused, and the request a 403.
	exchTok := f.token(t, "mcp:read", map[string]any{"jti": "exchange-1"}) // RS256 is deterministic: not read
	secrets = append(secrets, exchTok)
	exchTrace, code, _ := tracedPost(t, tc, exchangeHost, exchTok, "", rpc("tools/call", `{"name":"github_search","arguments":{}}`))
	if code != http.StatusOK || xas.calls.Load() != 1 {
		t.Fatalf("exchanged tools/call: status %d, %d exchanges; want 200 and 1", code, xas.calls.Load())
	}
	cachedExchTrace, code, _ := tracedPost(t, tc, exchangeHost, exchTok, "", rpc("tools/call", `{"name":"github_search","arguments":{}}`))
	if code != http.StatusOK || xas.calls.Load() != 1 {
		t.Fatalf("second exchanged tools/call: status %d, %d exchanges; want 200 and still 1", code, xas.calls.Load())
	}
	refusedTok := f.token(t, "mcp:read", map[string]any{"sub": "user-refused"})
	secrets = append(secrets, refusedTok)
	xas.set(refusedTok, `400 {"error":"invalid_target"}`)
	refusedExchTrace, code, _ := tracedPost(t, tc, exchangeHost, refusedTok, "", rpc("tools/call", `{"name":"github_search","arguments":{}}`))
	if code != http.StatusForbidden {
		t.Fatalf("refused exchange: status %d, want 403", code)
	}
	xas.mu.Lock()
	for issued := range xas.issued {
		secrets = append(secrets, issued)
	}
	xas.mu.Unlock()

	for _, c := range cases {
		spans := rcv.waitTrace(t, c.trace, c.name+" decision span", func(s []*tracepb.Span) bool { return decisionSpan(s) != nil })
		got := attrs(decisionSpan(spans))
		for k, v := range c.attrs {
			if g, ok := got[k]; v == "" && ok {
				t.Errorf("%s: attribute %s = %q, want none", c.name, k, g)
			} else if v != "" && g != v {
				t.Errorf("%s: attribute %s = %q, want %q", c.name, k, g, v)
			}
		}
	}

	childWith := func(name, trace, wantName, outcome string, wantAttrs map[string]string) {
		spans := rcv.waitTrace(t, trace, name, func(s []*tracepb.Span) bool {
			return decisionSpan(s) != nil && spanNamed(s, wantName) != nil
		})
		parent, child := decisionSpan(spans), spanNamed(spans, wantName)
		if string(child.GetParentSpanId()) != string(parent.GetSpanId()) {
			t.Errorf("%s: span %s is not a child of the request's span", name, wantName)
		}
		if child.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("%s: span %s has kind %v, want client", name, wantName, child.GetKind())
		}
		if got := attrs(child)["mcp_auth.outcome"]; got != outcome {
			t.Errorf("%s: span %s outcome %q, want %s", name, wantName, got, outcome)
		}
		for k, v := range wantAttrs {
			if g := attrs(parent)[k]; g != v {
				t.Errorf("%s: request span attribute %s = %q, want %q", name, k, g, v)
			}
		}
	}
	childOf := func(name, trace, wantName string, wantAttrs map[string]string) {
		childWith(name, trace, wantName, "ok", wantAttrs)
	}
	childOf("key rotation", jwksTrace, "mcp_auth.jwks_fetch", map[string]string{
		"mcp_auth.decision": "allow", "mcp.method.name": "tools/list", "enduser.id": "user-1"})
	childOf("introspection", introTrace, "mcp_auth.introspect", map[string]string{
		"mcp_auth.decision": "allow", "enduser.id": "opaque-user", "mcp_auth.client_id": "opaque-client"})
	childOf("token exchange", exchTrace, "mcp_auth.token_exchange", map[string]string{
		"mcp_auth.decision": "allow", "gen_ai.tool.name": "github_search", "enduser.id": "user-1"})
	childWith("refused token exchange", refusedExchTrace, "mcp_auth.token_exchange", "refused", map[string]string{
		"mcp_auth.decision": "deny", "enduser.id": "user-refused"})
	// The cached exchange starts no child span: its trace has the request's span alone.
	cached := rcv.waitTrace(t, cachedExchTrace, "cached exchange", func(s []*tracepb.Span) bool { return decisionSpan(s) != nil })
	if sp := spanNamed(cached, "mcp_auth.token_exchange"); sp != nil {
		t.Errorf("cached exchange: a %s span, want none (%s)", sp.GetName(), describeSpans(cached))
	}

	// Nothing sensitive in any attribute of any span received.
	all := rcv.all()
	if len(all) < len(cases)+4 {
		t.Fatalf("%d spans received, want at least %d", len(all), len(cases)+4)
	}
	for _, s := range all {
		for k, v := range attrs(s) {
			for _, secret := range secrets {
				if strings.Contains(v, secret) || strings.Contains(k, secret) {
					t.Errorf("span %s: attribute %s holds a token, a secret or a session tag", s.GetName(), k)
				}
			}
		}
		if strings.Contains(s.GetStatus().GetMessage(), "srv-session-1.") {
			t.Errorf("span %s: status message holds the session ID", s.GetName())
		}
	}
}
