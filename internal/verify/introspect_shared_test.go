package verify

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// mapShared is an in-process SharedAnswers, standing for a store shared by two instances.
type mapShared struct {
	mu   sync.Mutex
	vals map[[32]byte][]byte
	ttls map[[32]byte]time.Duration
}

func newMapShared() *mapShared {
	return &mapShared{vals: map[[32]byte][]byte{}, ttls: map[[32]byte]time.Duration{}}
}

func (m *mapShared) Get(_ context.Context, k [32]byte) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[k]
	return v, ok
}

func (m *mapShared) Set(_ context.Context, k [32]byte, v []byte, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[k], m.ttls[k] = v, ttl
}

// Two instances sharing answers: the second serves the first's answer without a call, no
// longer than the first may (CacheTTL from when the authorization server answered); an
// inactive answer is not shared; a value that does not parse is a miss.
func TestIntrospectionSharedAnswers(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("tok-a", active(""))
	as.answer("tok-off", `{"active":false}`)
	clk := &clock{t: testNow}
	shared := newMapShared()
	a := newIntrospection(as, clk, zap.NewNop())
	b := newIntrospection(as, clk, zap.NewNop())
	a.Shared, b.Shared = shared, shared
	mustStart(t, a)
	mustStart(t, b)
	ctx := context.Background()

	if _, err := a.Verify(ctx, "tok-a", nil); err != nil {
		t.Fatal(err)
	}
	if len(shared.vals) != 1 {
		t.Fatalf("%d shared entries, want 1", len(shared.vals))
	}
	for _, ttl := range shared.ttls {
		if ttl != a.CacheTTL {
			t.Errorf("shared for %v, want cache_ttl %v", ttl, a.CacheTTL)
		}
	}
	clk.add(4 * time.Minute)
	id, err := b.Verify(ctx, "tok-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := as.calls.Load(); n != 1 {
		t.Errorf("authorization server calls = %d, want 1 (B used A's answer)", n)
	}
	if id.Subject != "alice" {
		t.Errorf("subject %q", id.Subject)
	}
	// Served until A's fetch + CacheTTL, not B's read + CacheTTL.
	if !id.StillValid(clk.now(), 0) {
		t.Error("not valid right after the shared read")
	}
	if id.StillValid(testNow.Add(a.CacheTTL), 0) {
		t.Error("the shared answer is served past its fetch time + cache_ttl")
	}

	if _, err := a.Verify(ctx, "tok-off", nil); ReasonOf(err) != Inactive {
		t.Fatalf("inactive: %v", err)
	}
	if len(shared.vals) != 1 {
		t.Errorf("an inactive answer was shared")
	}

	// A shared value that is not an answer: a miss, the authorization server answers.
	for k := range shared.vals {
		shared.vals[k] = []byte("12345678not json")
	}
	calls := as.calls.Load()
	c := newIntrospection(as, clk, zap.NewNop())
	c.Shared = shared
	mustStart(t, c)
	if _, err := c.Verify(ctx, "tok-a", nil); err != nil {
		t.Fatal(err)
	}
	if as.calls.Load() != calls+1 {
		t.Error("a broken shared value was used instead of asking the authorization server")
	}
}

// A store hit costs the authorization server nothing, so it takes no slot and no share of
// the rate: with the one slot held and the address's rate spent, an answer another instance
// shared is still served; a token the store does not hold is an uncached call, shed by the
// limits without a call.
func TestIntrospectionSharedOutsideLimits(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("tok-a", active(""))
	as.answer("tok-b", active(""))
	as.answer("tok-c", active(""))
	clk := &clock{t: testNow}
	shared := newMapShared()
	a := newIntrospection(as, clk, zap.NewNop())
	a.Shared = shared
	mustStart(t, a)
	ctx := context.Background()
	if _, err := a.Verify(ctx, "tok-a", nil); err != nil {
		t.Fatal(err)
	}

	b := newIntrospection(as, clk, zap.NewNop())
	b.Shared = shared
	b.MaxRate, b.MaxInFlight = 1, 1
	mustStart(t, b)
	if _, err := b.Verify(ctx, "tok-b", nil); err != nil {
		t.Fatal(err) // spends the address's rate (one a second, the clock stands still)
	}
	b.limits.slots <- struct{}{} // and the one slot, as a call that never ends would
	defer func() { <-b.limits.slots }()
	calls := as.calls.Load()
	if _, err := b.Verify(ctx, "tok-a", nil); err != nil {
		t.Errorf("shared answer with no slot and no rate left: %v, want it served", err)
	}
	if _, err := b.Verify(ctx, "tok-c", nil); ReasonOf(err) != ASUnavailable {
		t.Errorf("token the store does not hold, rate spent: %v, want ASUnavailable", err)
	}
	if n := as.calls.Load() - calls; n != 0 {
		t.Errorf("%d calls to the authorization server, want 0", n)
	}
}

// A shared answer is as old as its fetch time says, whatever the store does with its TTL:
// one that has outlived CacheTTL (a store that kept it past PX, or one who can write to the
// store putting back a sealed value it copied earlier: sealing stops forging, not replaying)
// is a miss, and the authorization server's answer of now decides: a token revoked since is
// refused. One stamped in the future (a writer whose clock runs ahead) is served no longer
// than an answer fetched now.
func TestIntrospectionSharedAnswerTooOld(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("tok-a", active(""))
	clk := &clock{t: testNow}
	shared := newMapShared()
	a := newIntrospection(as, clk, zap.NewNop())
	a.Shared = shared
	mustStart(t, a)
	ctx := context.Background()
	if _, err := a.Verify(ctx, "tok-a", nil); err != nil {
		t.Fatal(err)
	}
	// Revoked at the authorization server; the store still hands out the old answer.
	as.answer("tok-a", `{"active":false}`)
	clk.add(a.CacheTTL + time.Minute)
	b := newIntrospection(as, clk, zap.NewNop())
	b.Shared = shared
	mustStart(t, b)
	calls := as.calls.Load()
	if _, err := b.Verify(ctx, "tok-a", nil); ReasonOf(err) != Inactive {
		t.Errorf("a shared answer older than cache_ttl: %v, want the authorization server's Inactive", err)
	}
	if as.calls.Load() != calls+1 {
		t.Error("the authorization server was not asked")
	}

	// A value stamped an hour ahead: served until now + CacheTTL at most.
	as.answer("tok-f", active(""))
	f := newIntrospection(as, clk, zap.NewNop())
	f.Shared = shared
	mustStart(t, f)
	if _, err := f.Verify(ctx, "tok-f", nil); err != nil {
		t.Fatal(err)
	}
	for k, v := range shared.vals {
		if len(v) > 8 && string(v[8:]) != "" {
			stamp := clk.now().Add(time.Hour).UnixNano()
			nv := append([]byte(nil), v...)
			for i := range 8 {
				nv[i] = byte(uint64(stamp) >> (56 - 8*i))
			}
			shared.vals[k] = nv
		}
	}
	g := newIntrospection(as, clk, zap.NewNop())
	g.Shared = shared
	mustStart(t, g)
	id, err := g.Verify(ctx, "tok-f", nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.StillValid(clk.now().Add(g.CacheTTL+time.Second), 0) {
		t.Error("an answer stamped in the future is served past now + cache_ttl")
	}
}
