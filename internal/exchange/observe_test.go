package exchange

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// told records what OnCall and OnCache are told.
type told struct {
	mu    sync.Mutex
	calls []string // "kind outcome"
	hits  int
	miss  int
}

func (o *told) observe(c *Client) {
	c.OnCall = func(kind, outcome string, d time.Duration) {
		if d < 0 {
			panic("negative duration")
		}
		o.mu.Lock()
		o.calls = append(o.calls, kind+" "+outcome)
		o.mu.Unlock()
	}
	c.OnCache = func(hit bool) {
		o.mu.Lock()
		if hit {
			o.hits++
		} else {
			o.miss++
		}
		o.mu.Unlock()
	}
}

func (o *told) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.calls
	o.calls = nil
	return out
}

// refusingTransport fails every request as an unreachable server does.
type refusingTransport struct{}

func (refusingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
}

// TestExchangeObserved: each call to the token endpoint is told to OnCall with its outcome
// (ok, refused for the server refusing the token or our client, server_error, bad_answer,
// unreachable); a cached token, or a refusal remembered, makes no call and tells none; each
// lookup in the cache is told to OnCache.
func TestExchangeObserved(t *testing.T) {
	at := AccessTokenType
	cases := []struct {
		name, body string
		status     int
		outcome    string
	}{
		{"ok", ok("t", 600), 200, telemetry.OK},
		{"invalid_grant", `{"error":"invalid_grant"}`, 400, telemetry.Refused},
		{"invalid_client", `{"error":"invalid_client"}`, 401, telemetry.Refused},
		{"5xx", `oops`, 503, telemetry.ServerError},
		{"no access_token", `{"issued_token_type":"` + at + `","token_type":"Bearer"}`, 200, telemetry.BadAnswer},
		{"redirect", ``, 302, telemetry.BadAnswer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o told
			c := newClient(&fakeAS{answer: func(url.Values) (int, string) { return tc.status, tc.body }})
			o.observe(c)
			_, err := exchangeOf(c, context.Background(), "subject", time.Now().Add(time.Hour), 0)
			if got, want := o.take(), []string{"token_exchange " + tc.outcome}; !slices.Equal(got, want) {
				t.Errorf("OnCall told %v, want %v", got, want)
			}
			if got := Outcome(err); got != tc.outcome {
				t.Errorf("Outcome(%v) = %q, want %q", err, got, tc.outcome)
			}
			// Again: a cached token, or a remembered refusal, makes no call; failures that
			// are not remembered make one more.
			_, _ = exchangeOf(c, context.Background(), "subject", time.Now().Add(time.Hour), 0)
			got := o.take()
			remembered := tc.outcome == telemetry.OK || tc.name == "invalid_grant"
			if remembered && len(got) != 0 || !remembered && len(got) != 1 {
				t.Errorf("second lookup: OnCall told %v", got)
			}
			wantHits := 0
			if tc.outcome == telemetry.OK {
				wantHits = 1
			}
			if o.hits != wantHits || o.miss != 2-wantHits {
				t.Errorf("OnCache: %d hits %d misses, want %d and %d", o.hits, o.miss, wantHits, 2-wantHits)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		var o told
		c := newClient(nil)
		c.HTTP = &http.Client{Transport: refusingTransport{}}
		o.observe(c)
		if _, err := exchangeOf(c, context.Background(), "s", time.Now().Add(time.Hour), 0); Outcome(err) != telemetry.Unreachable {
			t.Errorf("Outcome(%v) = %q, want unreachable", err, Outcome(err))
		}
		if got, want := o.take(), []string{"token_exchange unreachable"}; !slices.Equal(got, want) {
			t.Errorf("OnCall told %v, want %v", got, want)
		}
	})

	t.Run("busy", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var o told
			as := &fakeAS{release: make(chan struct{}), answer: func(url.Values) (int, string) { return 200, ok("n", 600) }}
			c := newClient(as)
			c.Now, c.MaxInFlight = time.Now, 1
			o.observe(c)
			const total, admitted = 7, 1 + waitersPerSlot
			var wg sync.WaitGroup
			errs := make(chan error, total)
			for i := range total {
				wg.Go(func() {
					_, err := exchangeOf(c, context.Background(), "tok-"+string(rune('a'+i)), time.Now().Add(time.Hour), 0)
					errs <- err
				})
			}
			synctest.Wait()
			// The shed calls were told as busy, with no call made.
			if got := o.take(); len(got) != total-admitted || got[0] != "token_exchange busy" {
				t.Errorf("shed: OnCall told %v, want %d busy", got, total-admitted)
			}
			for range total - admitted {
				if err := <-errs; Outcome(err) != telemetry.Busy {
					t.Errorf("shed call: Outcome(%v) = %q, want busy", err, Outcome(err))
				}
			}
			close(as.release)
			wg.Wait()
			if got := o.take(); len(got) != admitted {
				t.Errorf("admitted: OnCall told %v, want %d ok", got, admitted)
			}
		})
	})

	t.Run("canceled", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			as := &fakeAS{release: make(chan struct{}), answer: func(url.Values) (int, string) { return 200, ok("n", 600) }}
			c := newClient(as)
			c.Now = time.Now
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := exchangeOf(c, ctx, "s", time.Now().Add(time.Hour), 0)
				errc <- err
			}()
			synctest.Wait()
			cancel()
			if err := <-errc; Outcome(err) != telemetry.Canceled {
				t.Errorf("Outcome(%v) = %q, want canceled", err, Outcome(err))
			}
			close(as.release)
		})
	})
}

// TestExchangeSpan: with a recording parent span, an exchange that calls the token endpoint
// is a child span mcp_auth.token_exchange with its outcome; a cached token starts none; and
// without a recording parent nothing is started.
func TestExchangeSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())

	body := ok("t", 600)
	c := newClient(&fakeAS{answer: func(f url.Values) (int, string) {
		if f.Get("subject_token") == "subject-refused-tok" {
			return 400, `{"error":"invalid_target"}`
		}
		return 200, body
	}})
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	for _, s := range []string{"subject-good-tok", "subject-good-tok", "subject-refused-tok"} {
		_, _ = exchangeOf(c, ctx, s, time.Now().Add(time.Hour), 0)
	}
	parent.End()
	// Not recording: the tokens a request without tracing exchanges start nothing.
	_, _ = exchangeOf(c, context.Background(), "untraced", time.Now().Add(time.Hour), 0)

	var outcomes []string
	for _, s := range rec.Ended() {
		if s.Name() == "request" {
			continue
		}
		if s.Name() != "mcp_auth.token_exchange" || s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %q (parent %v), want mcp_auth.token_exchange under the request", s.Name(), s.Parent().SpanID())
		}
		for _, a := range s.Attributes() {
			if a.Key == telemetry.OutcomeKey {
				outcomes = append(outcomes, a.Value.AsString())
			}
			for _, secret := range []string{"subject-good-tok", "subject-refused-tok", "t", "s3cret"} {
				if a.Value.String() == secret {
					t.Errorf("span attribute %s holds %q", a.Key, secret)
				}
			}
		}
	}
	if want := []string{telemetry.OK, telemetry.Refused}; !slices.Equal(outcomes, want) {
		t.Errorf("child spans' outcomes %v, want %v (the cached second call starts none)", outcomes, want)
	}
}
