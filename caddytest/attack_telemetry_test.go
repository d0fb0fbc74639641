package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// boundedTracingConfig is a traced site, jwt.localhost, whose delete_* tools need
// mcp:admin.
func boundedTracingConfig(f *fixture) string {
	return caddyfileOf("", siteAt("http://jwt.localhost:9080", "tracing",
		mcpAuthDirective(f.usualBlock("scopes mcp:read\ntool delete_* {\nscopes mcp:admin\n}")), f.proxyDirective()))
}

// The names a request carries (the method, the tool, prompt or resource it names) are the
// client's: a tool name of half a megabyte must not become a span attribute of half a
// megabyte, exported with every span of its batch (a collector refuses batches above its
// message limit, 4 MiB by default for OTLP/gRPC, so a few such calls would drop every other
// request's spans with them). Each such attribute is cut to at most 256 bytes, on a
// character boundary, whatever the decision.
func TestTracingBoundsClientNames(t *testing.T) {
	rcv := sharedOTLPReceiver(t)

	f := newFixture(t, server{newTracedUpstream(t)})
	tc := f.start(t, boundedTracingConfig(f), "caddyfile")
	read := f.token(t, "mcp:read", nil)

	// 'é' is two bytes: a cut at an odd byte would split one.
	long := "get_" + strings.Repeat("é", 300<<10)
	cases := []struct {
		name, body, attr string
		code             int
	}{
		{"allowed tool", rpc("tools/call", `{"name":"`+long+`"}`), "gen_ai.tool.name", http.StatusOK},
		{"refused tool", rpc("tools/call", `{"name":"delete_`+long+`"}`), "gen_ai.tool.name", http.StatusForbidden},
		{"prompt", rpc("prompts/get", `{"name":"`+long+`"}`), "gen_ai.prompt.name", http.StatusOK},
		{"resource", rpc("resources/read", `{"uri":"file:///`+long+`"}`), "mcp.resource.uri", http.StatusOK},
		{"method", rpc("x/"+long, `{}`), "mcp.method.name", 0},
	}
	for _, c := range cases {
		id, code, _ := tracedPost(t, tc, "jwt.localhost", read, "", c.body)
		if c.code != 0 && code != c.code {
			t.Fatalf("%s: status %d, want %d", c.name, code, c.code)
		}
		spans := rcv.waitTrace(t, id, c.name+" decision span", func(s []*tracepb.Span) bool { return decisionSpan(s) != nil })
		got, ok := attrs(decisionSpan(spans))[c.attr]
		if !ok {
			t.Errorf("%s: no attribute %s", c.name, c.attr)
			continue
		}
		if len(got) > 256 || !utf8.ValidString(got) || len(got) < 200 {
			t.Errorf("%s: attribute %s has %d bytes (valid UTF-8: %v); want a valid prefix of at most 256", c.name, c.attr, len(got), utf8.ValidString(got))
		}
		for _, s := range spans {
			for k, v := range attrs(s) {
				if len(v) > 4096 {
					t.Errorf("%s: span %s attribute %s has %d bytes", c.name, s.GetName(), k, len(v))
				}
			}
		}
	}
}

// Label values are bounded under attack: tool names, subjects and client IDs an attacker
// picks never become labels, so /metrics has the same series after 1,000 calls with
// distinct tools, subjects and clients (allowed and refused) as after the first ten.
func TestMetricsCardinalityUnderDistinctNames(t *testing.T) {
	t.Setenv("MCPAUTH_TRACE_SESSION_KEY", traceSessionKey)
	f := newFixture(t, server{newTracedUpstream(t)})
	f.start(t, metricsConfig(f), "caddyfile")
	const host = "metrics.localhost"
	series := func() (int, string) {
		resp, err := http.Get(adminURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "caddy_mcp_auth_") {
				n++
			}
		}
		return n, string(b)
	}
	send := func(i int) {
		tok := f.token(t, "mcp:read", map[string]any{"aud": metricsResource,
			"sub": fmt.Sprintf("attacker-sub-%d", i), "client_id": fmt.Sprintf("attacker-client-%d", i)})
		tool := fmt.Sprintf("attacker_tool_%d", i)
		if i%2 == 1 {
			tool = fmt.Sprintf("delete_attacker_%d", i) // refused: insufficient_scope
		}
		code, _, _ := f.doAt(t, host, attackReq{auth: []string{bearer(tok)}, body: rpc("tools/call", `{"name":"`+tool+`"}`)})
		if code != http.StatusOK && code != http.StatusForbidden {
			t.Fatalf("call %d: status %d", i, code)
		}
		// An unknown method name too.
		f.doAt(t, host, attackReq{auth: []string{bearer(tok)}, body: rpc(fmt.Sprintf("attacker/method-%d", i), `{}`)})
	}
	for i := range 10 {
		send(i)
	}
	first, _ := series()
	for i := 10; i < 1000; i++ {
		send(i)
	}
	after, page := series()
	if after != first {
		t.Errorf("caddy_mcp_auth_ series: %d after 10 distinct callers, %d after 1,000", first, after)
	}
	for _, s := range []string{"attacker_tool", "delete_attacker", "attacker-sub", "attacker-client", "attacker/method"} {
		if strings.Contains(page, s) {
			t.Errorf("/metrics holds a value the request chose (%s)", s)
		}
	}
}

// A token sent where the module never reads one (the query string, RFC 6750 §2.3; a second
// Authorization header; a DPoP header) reaches no attribute of any span, Caddy's own
// included.
func TestTracingNoTokenFromQueryOrHeaders(t *testing.T) {
	rcv := sharedOTLPReceiver(t)
	f := newFixture(t, server{newTracedUpstream(t)})
	f.start(t, boundedTracingConfig(f), "caddyfile")
	read := f.token(t, "mcp:read", nil)
	const traceID = "72743232717565727900000000000001"
	code, _, _ := f.doAt(t, "jwt.localhost", attackReq{
		target: "/mcp?access_token=" + read + "&x=QUERYSECRET",
		auth:   []string{"Bearer " + read, "Bearer HEADERSECRET"},
		header: []string{"Traceparent: 00-" + traceID + "-00f067aa0ba902b7-01"},
		body:   rpc("tools/list", `{}`),
	})
	if code != http.StatusBadRequest {
		t.Fatalf("two Authorization headers: status %d, want 400", code)
	}
	spans := rcv.waitTrace(t, traceID, "decision span", func(s []*tracepb.Span) bool { return decisionSpan(s) != nil })
	for _, s := range spans {
		for k, v := range attrs(s) {
			for _, secret := range []string{read, "QUERYSECRET", "HEADERSECRET"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %s: attribute %s holds %.12s...", s.GetName(), k, secret)
				}
			}
		}
	}
}
