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
// our credentials, server_error, bad_answer, busy when no slot frees up), and each lookup of
// the remembered refusals to OnNegativeCache.
func TestIntrospectionObserved(t *testing.T) {
	var mu sync.Mutex
	var calls [][2]string
	var negHits, negMisses int
	observe := func(v *Introspection) {
		v.OnCall = func(kind, outcome string, d time.Duration) {
			mu.Lock()
			calls = append(calls, [2]string{kind, outcome})
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
	busy.once.Do(busy.setup)
	busy.slots <- struct{}{}
	before := as.calls.Load()
	_, err := busy.Verify(ctx, "good", nil)
	if ReasonOf(err) != ASUnavailable {
		t.Fatalf("no free slot: %v, want ASUnavailable", err)
	}
	if got := take(); len(got) != 1 || got[0] != [2]string{telemetry.KindIntrospection, telemetry.Busy} || as.calls.Load() != before {
		t.Errorf("no free slot: OnCall told %v (server calls %d more), want [introspection busy] and no call", got, as.calls.Load()-before)
	}
}
