package exchange

import (
	"context"
	"crypto/sha256"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/store"
	"github.com/mcpauth/caddy-mcp-auth/internal/store/storetest"
	"github.com/redis/go-redis/v9"
)

// sealedTokens is SharedTokens on a real store's sealed cache, as the module wires it.
type sealedTokens struct{ s *store.Sealed }

func (s sealedTokens) Get(ctx context.Context, key [32]byte) ([]byte, bool) {
	v, ok, err := s.s.Get(ctx, "exchange", key)
	return v, ok && err == nil
}

func (s sealedTokens) Set(ctx context.Context, key [32]byte, val []byte, ttl time.Duration) {
	_ = s.s.Set(ctx, "exchange", key, val, ttl)
}

func sealedOn(t *testing.T, addr, secret string) sealedTokens {
	t.Helper()
	c, err := store.New(store.Options{Addrs: []string{addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := c.Sealed([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return sealedTokens{s}
}

// TestSharedThroughRealStore: against a real redis-server, a token exchanged by one client
// is served by another (another instance) without a call and without a slot; the entry is
// sealed, keyed by a hash, and expires when the token stops being served (cache_ttl, the new
// token's exp less the leeway, the incoming token's exp); the reader never serves it longer
// than its own cache_ttl or the incoming exp; refusals, other targets and another
// encryption key are misses; the store down, the token endpoint is asked.
func TestSharedThroughRealStore(t *testing.T) {
	srv := storetest.Start(t) // skips without redis-server (fails with MCPAUTH_STORE=1)
	const secret = "0123456789abcdef0123456789abcdef-exchange"
	r := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	t.Cleanup(func() { r.Close() })
	ctx := context.Background()

	answer := func(f url.Values) (int, string) {
		if f.Get("subject_token") == "refused-subject" {
			return 400, `{"error":"invalid_grant"}`
		}
		return 200, ok("new-token-for-"+f.Get("subject_token"), 600)
	}
	asA, asB := &fakeAS{answer: answer}, &fakeAS{answer: answer}
	a, b := newClient(asA), newClient(asB)
	a.Shared, b.Shared = sealedOn(t, srv.Addr, secret), sealedOn(t, srv.Addr, secret)
	b.CacheTTL = time.Minute

	hour := time.Now().Add(time.Hour)
	ta, err := exchangeOf(a, ctx, "subject-one", hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := r.Keys(ctx, "*").Result()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "mcp_auth:exchange:") {
		t.Fatalf("keys %v, want one under mcp_auth:exchange:", keys)
	}
	val, _ := r.Get(ctx, keys[0]).Bytes()
	for _, s := range []string{"subject-one", "new-token", "Bearer"} {
		if strings.Contains(keys[0], s) || strings.Contains(string(val), s) {
			t.Errorf("the store holds %q in clear", s)
		}
	}
	// Served by a for cache_ttl (5m): the token's exp (600s less 30s leeway) and the
	// incoming exp are later.
	if ttl := r.PTTL(ctx, keys[0]).Val(); ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Errorf("PTTL %v, want the entry's lifetime, cache_ttl 5m", ttl)
	}

	// b: every slot taken and every waiter's place too, so that a call would be shed: the
	// store's token needs neither.
	b.once.Do(b.setup)
	for range cap(b.slots) {
		b.slots <- struct{}{}
	}
	b.waiting.Store(b.maxWait)
	tb, err := exchangeOf(b, ctx, "subject-one", hour, 0)
	if err != nil {
		t.Fatalf("b, the token a exchanged: %v", err)
	}
	if tb.Value() != ta.Value() || tb.Value() != "Bearer new-token-for-subject-one" {
		t.Errorf("b serves %q, a %q", tb.Value(), ta.Value())
	}
	if n := asB.calls.Load(); n != 0 {
		t.Errorf("b called its token endpoint %d times, want 0", n)
	}
	// Never longer than b's own cache_ttl (1m).
	if until := time.Until(tb.Until()); until > time.Minute || until <= 0 {
		t.Errorf("b serves it for %v, want at most its cache_ttl 1m", until)
	}
	// Another target of the same token: a miss, shed here since b has no slot.
	if _, err := exchangeOf(b, ctx, "subject-one", hour, 1); Outcome(err) != "busy" {
		t.Errorf("another target: %v, want a miss (then shed: no slot)", err)
	}
	for range cap(b.slots) {
		<-b.slots
	}
	b.waiting.Store(0)

	// The incoming token expiring in 90s: the entry expires with it.
	if _, err := exchangeOf(a, ctx, "subject-two", time.Now().Add(90*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	k2 := a.Shared.(sealedTokens).s.Key("exchange", a.sharedKey(digestOf("subject-two"), 0))
	if ttl := r.PTTL(ctx, k2).Val(); ttl <= 0 || ttl > 90*time.Second {
		t.Errorf("PTTL %v, want at most the incoming token's 90s", ttl)
	}

	// A refusal is not shared.
	if _, err := exchangeOf(a, ctx, "refused-subject", hour, 0); KindOf(err) != Refused {
		t.Fatalf("refused: %v", err)
	}
	before := asB.calls.Load()
	if _, err := exchangeOf(b, ctx, "refused-subject", hour, 0); KindOf(err) != Refused || asB.calls.Load() != before+1 {
		t.Errorf("b, a token a saw refused: %v, %d calls, want b to ask its server", err, asB.calls.Load()-before)
	}
	if n := len(r.Keys(ctx, "*").Val()); n != 2 {
		t.Errorf("%d keys, want 2 (no refusal stored)", n)
	}

	// Another encryption key: the value does not open, a miss, the server is asked.
	asC := &fakeAS{answer: answer}
	c := newClient(asC)
	c.Shared = sealedOn(t, srv.Addr, secret+"-other")
	if _, err := exchangeOf(c, ctx, "subject-one", hour, 0); err != nil || asC.calls.Load() != 1 {
		t.Errorf("another key: %v, %d calls, want one call", err, asC.calls.Load())
	}

	// The store down: the token endpoint answers.
	srv.Stop()
	asD := &fakeAS{answer: answer}
	d := newClient(asD)
	d.Shared = sealedOn(t, srv.Addr, secret)
	if tok, err := exchangeOf(d, ctx, "subject-one", hour, 0); err != nil || asD.calls.Load() != 1 || tok.Value() != "Bearer new-token-for-subject-one" {
		t.Errorf("store down: %v, %d calls, want a token from the server", err, asD.calls.Load())
	}
}

func digestOf(s string) *[32]byte {
	sum := sha256Sum(s)
	return &sum
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }
