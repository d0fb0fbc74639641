package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/store"
	"github.com/mcpauth/caddy-mcp-auth/internal/store/storetest"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// observed records what Observe is told.
type observed struct {
	mu    sync.Mutex
	calls [][2]string
}

func (o *observed) observe(op, outcome string, took time.Duration) {
	if took < 0 {
		panic("negative duration")
	}
	o.mu.Lock()
	o.calls = append(o.calls, [2]string{op, outcome})
	o.mu.Unlock()
}

func (o *observed) take() [][2]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.calls
	o.calls = nil
	return out
}

// TestObserveOutcomes: every call is told to Observe with telemetry's outcome for it: a
// claim, a claim of a key already there and a miss are ok; a refused password is refused;
// an answer held past the timeout, and a stopped server, are unreachable; a caller that gave
// up is not told at all.
func TestObserveOutcomes(t *testing.T) {
	srv := storetest.Start(t, "--user", "default", "off",
		"--user", "mcp", "on", ">s3cret-pass", "~mcp_auth:*", "resetchannels", "-@all", "+set", "+get", "+ping", "+auth", "+select")
	ctx := context.Background()
	var o observed
	c, _ := newClient(t, srv.Addr, store.Options{Username: "mcp", Password: "s3cret-pass", Observe: o.observe})
	s, err := c.Sealed([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.ClaimProof(ctx, "k", "j", time.Minute)
	_, _ = c.ClaimProof(ctx, "k", "j", time.Minute)
	_, _, _ = s.Get(ctx, "ns", [32]byte{9})
	want := [][2]string{{"claim", telemetry.OK}, {"claim", telemetry.OK}, {"get", telemetry.OK}}
	if got := o.take(); !equalCalls(got, want) {
		t.Errorf("claim, claim again, miss: told %v, want %v", got, want)
	}

	bad, _ := newClient(t, srv.Addr, store.Options{Username: "mcp", Password: "wrong", Observe: o.observe})
	_, _ = bad.ClaimProof(ctx, "k", "x", time.Minute)
	if got := o.take(); len(got) == 0 || got[0] != [2]string{"claim", telemetry.Refused} {
		t.Errorf("wrong password: told %v, want [claim refused] first", got)
	}

	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = c.ClaimProof(gone, "k", "gone", time.Minute)
	if got := o.take(); len(got) != 0 {
		t.Errorf("a caller that gave up: told %v, want nothing", got)
	}

	px := storetest.NewProxy(t, srv.Addr)
	slow, _ := newClient(t, px.Addr, store.Options{Username: "mcp", Password: "s3cret-pass", Timeout: 50 * time.Millisecond, Observe: o.observe})
	if _, err := slow.ClaimProof(ctx, "k", "warm", time.Minute); err != nil {
		t.Fatal(err)
	}
	o.take()
	px.Hold()
	_, _ = slow.ClaimProof(ctx, "k", "held", time.Minute)
	if got := o.take(); len(got) == 0 || got[0] != [2]string{"claim", telemetry.Unreachable} {
		t.Errorf("answer held past the timeout: told %v, want [claim unreachable] first", got)
	}
	px.Release()

	srv.Stop()
	_, _ = c.ClaimProof(ctx, "k", "down", time.Minute)
	if got := o.take(); len(got) == 0 || got[0] != [2]string{"claim", telemetry.Unreachable} {
		t.Errorf("stopped server: told %v, want [claim unreachable] first", got)
	}
}

func equalCalls(a, b [][2]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStoreSpans: a call made for a request whose span records is a child span
// mcp_auth.store with the operation and the outcome, and no key or value in any attribute;
// without a recording span there is none.
func TestStoreSpans(t *testing.T) {
	srv := storetest.Start(t)
	c, _ := newClient(t, srv.Addr, store.Options{})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	_, _ = c.ClaimProof(context.Background(), "thumb", "jti-plain", time.Minute)
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans without a recording parent, want 0", n)
	}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	_, _ = c.ClaimProof(ctx, "thumb", "jti-secret", time.Minute)
	s, _ := c.Sealed([]byte(strings.Repeat("k", 32)))
	_ = s.Set(ctx, "ns", [32]byte{1}, []byte("value-secret"), time.Minute)
	parent.End()

	var got []string
	for _, sp := range rec.Ended() {
		if sp.Name() == "request" {
			continue
		}
		if sp.Name() != telemetry.SpanStore || sp.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q (parent %v), want %s under the request", sp.Name(), sp.Parent().SpanID(), telemetry.SpanStore)
		}
		attrs := map[string]string{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
			if v := kv.Value.String(); strings.Contains(v, "secret") || strings.Contains(v, "thumb") || strings.Contains(v, c.Prefix()) {
				t.Errorf("span attribute %s = %q holds a key or a value", kv.Key, v)
			}
		}
		got = append(got, attrs["mcp_auth.store.operation"]+" "+attrs[string(telemetry.OutcomeKey)])
	}
	if strings.Join(got, ",") != "claim ok,set ok" {
		t.Errorf("store spans %v, want [claim ok, set ok]", got)
	}
}
