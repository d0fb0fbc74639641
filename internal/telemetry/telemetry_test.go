package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestOutcome(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, OK},
		{&url.Error{Op: "Get", URL: "http://as", Err: errors.New("connection refused")}, Unreachable},
		{fmt.Errorf("loading: %w", context.DeadlineExceeded), Unreachable},
		{fmt.Errorf("store: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), Unreachable},
		{context.Canceled, Canceled},
		{fmt.Errorf("loading key set: %w", &StatusError{Code: 503}), ServerError},
		{&StatusError{Code: 401}, Refused},
		{errors.Join(&StatusError{Code: 404}, &url.Error{Op: "Get", URL: "http://as", Err: errors.New("x")}), Unreachable},
		{errors.New("invalid character '<'"), BadAnswer},
	} {
		if got := Outcome(c.err); got != c.want {
			t.Errorf("Outcome(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestStartSpanWithoutRecordingParent: no span, or one that does not record, starts nothing
// and allocates nothing.
func TestStartSpanWithoutRecordingParent(t *testing.T) {
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
	}))
	for name, ctx := range map[string]context.Context{"none": context.Background(), "unsampled": unsampled} {
		if n := testing.AllocsPerRun(100, func() {
			c, s := StartSpan(ctx, SpanStore)
			if c != ctx || s.Recording() {
				t.Fatalf("%s: a span was started", name)
			}
			s.End(OK)
		}); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}
