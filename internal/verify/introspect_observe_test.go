package verify

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"go.uber.org/zap"
)

// TestIntrospectionObserved: each call is told to OnCall with its outcome (ok, refused for
// our credentials, server_error, bad_answer, busy when no slot frees up or a rate sheds it),
// each lookup of the remembered refusals to OnNegativeCache, and each lookup of the shared
// answers to OnAnswerCache.
func TestIntrospectionObserved(t *testing.T) {
	var mu sync.Mutex
	var calls [][2]string
	var negHits, negMisses, ansHits, ansMisses int
	observe := func(v *Introspection) {
		v.OnCall = func(kind, outcome string, d time.Duration) {
			mu.Lock()
			calls = append(calls, [2]string{kind, outcome})
			mu.Unlock()
		}
		v.OnAnswerCache = func(hit bool) {
			mu.Lock()
			if hit {
				ansHits++
			} else {
				ansMisses++
			}
			mu.Unlock()
		}
		v.OnNegativeCache = func(hit bool) {
			mu.Lock()
			if hit {
				negHits++
			} else {
				negMisses++
			}
			mu.Unlock()
		}
		mustStart(t, v) // once configured: Start builds the limits from MaxInFlight and MaxRate
	}
	take := func() [][2]string {
		mu.Lock()
		defer mu.Unlock()
		out := calls
		calls = nil
		return out
	}

	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("good", active(""))
	as.answer("junk", `{"active":`)
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	observe(v)
	ctx := context.Background()
	for _, c := range []struct {
		token   string
		status  int
		outcome string
	}{
		{"good", http.StatusOK, telemetry.OK},
		{"junk", http.StatusOK, telemetry.BadAnswer},
		{"other", http.StatusServiceUnavailable, telemetry.ServerError},
	} {
		as.mu.Lock()
		as.status = c.status
		as.mu.Unlock()
		_, _ = v.Verify(ctx, c.token, nil)
		if got := take(); len(got) != 1 || got[0] != [2]string{telemetry.KindIntrospection, c.outcome} {
			t.Errorf("token %q, status %d: OnCall told %v, want [introspection %s]", c.token, c.status, got, c.outcome)
		}
	}

	// Wrong credentials: refused.
	bad := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	bad.ClientSecret = "wrong"
	observe(bad)
	as.mu.Lock()
	as.status = http.StatusOK
	as.mu.Unlock()
	_, _ = bad.Verify(ctx, "good", nil)
	if got := take(); len(got) != 1 || got[0] != [2]string{telemetry.KindIntrospection, telemetry.Refused} {
		t.Errorf("wrong credentials: OnCall told %v, want [introspection refused]", got)
	}

	// An inactive token is remembered: the second lookup hits, and makes no call.
	negHits, negMisses = 0, 0
	_, _ = v.Verify(ctx, "inactive", nil)
	_, _ = v.Verify(ctx, "inactive", nil)
	if got := take(); len(got) != 1 || negHits != 1 || negMisses != 1 {
		t.Errorf("inactive twice: calls %v, negative cache %d hits %d misses; want one call, 1 hit, 1 miss", got, negHits, negMisses)
	}

	// No free slot within Timeout: busy, and no call made. The one slot is taken here, as a
	// call that never ends would hold it.
	busy := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	busy.MaxInFlight = 1
	busy.Timeout = 10 * time.Millisecond
	observe(busy)
	busy.limits.slots <- struct{}{}
	before := as.calls.Load()
	_, err := busy.Verify(ctx, "good", nil)
	if ReasonOf(err) != ASUnavailable {
		t.Fatalf("no free slot: %v, want ASUnavailable", err)
	}
	if got := take(); len(got) != 1 || got[0] != [2]string{telemetry.KindIntrospection, telemetry.Busy} || as.calls.Load() != before {
		t.Errorf("no free slot: OnCall told %v (server calls %d more), want [introspection busy] and no call", got, as.calls.Load()-before)
	}

	// The rate sheds a second new token from the same address at once: busy, no call.
	rated := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	rated.MaxRate = 1
	observe(rated)
	if _, err := rated.Verify(ctx, "good", nil); err != nil {
		t.Fatalf("first token under max_rate 1: %v", err)
	}
	take()
	before = as.calls.Load()
	if _, err := rated.Verify(ctx, "good-too", nil); ReasonOf(err) != ASUnavailable {
		t.Fatalf("second new token within the second: %v, want ASUnavailable", err)
	}
	if got := take(); len(got) != 1 || got[0] != [2]string{telemetry.KindIntrospection, telemetry.Busy} || as.calls.Load() != before {
		t.Errorf("shed by the rate: OnCall told %v (server calls %d more), want [introspection busy] and no call", got, as.calls.Load()-before)
	}

	// The shared answers: a miss and a call, then a hit and no call.
	clk := &clock{t: testNow}
	shared := newIntrospection(as, clk, zap.NewNop())
	shared.Answers = NewAnswerCache(10, clk.now)
	observe(shared)
	before = as.calls.Load()
	for range 2 {
		if _, err := shared.Verify(ctx, "good", nil); err != nil {
			t.Fatalf("good token: %v", err)
		}
	}
	if got := take(); len(got) != 1 || ansHits != 1 || ansMisses != 1 || as.calls.Load() != before+1 {
		t.Errorf("good twice with shared answers: calls told %v, server calls %d, answers %d hits %d misses; want one call, 1 hit, 1 miss",
			got, as.calls.Load()-before, ansHits, ansMisses)
	}
}
