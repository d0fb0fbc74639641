package mcpauth

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/store/storetest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// storeHandler is a handler with DPoP on and, with addr, the shared store at addr.
func storeHandler(t testing.TB, k *jwttest.Key, addr string) *Handler {
	t.Helper()
	size := defaultTokenCacheSize
	js := newJWKSServer(t, k)
	h := &Handler{
		Resource:             cacheRes,
		AuthorizationServers: []string{cacheIss},
		JWKSURLs:             []string{js.URL},
		Scopes:               []string{"mcp:read"},
		TokenCacheSize:       &size,
		DPoP:                 &DPoPConfig{},
	}
	if addr != "" {
		h.Store = &StoreConfig{Redis: &RedisStore{Addresses: []string{addr}, Timeout: caddy1s}}
	}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	h.logger = zap.NewNop()
	return h
}

// caddy1s is a store timeout long enough for a busy machine: these measure, not cut.
const caddy1s = 1_000_000_000

// commandsProcessed is the server's total_commands_processed.
func commandsProcessed(t testing.TB, r *redis.Client) int64 {
	t.Helper()
	info, err := r.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO stats")
	return 0
}

// A cached bearer request touches the store not at all: no command reaches the server, and
// it allocates exactly as much as without a store.
func TestBearerWithStoreTouchesNoStore(t *testing.T) {
	srv := storetest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer admin.Close()
	asKey := jwttest.New(t, "rs", "RS256")
	tok := asKey.Token(t, testClaims(cacheIss, cacheRes, "mcp:read"), nil)
	with := storeHandler(t, asKey, srv.Addr)
	without := storeHandler(t, asKey, "")

	allocs := func(h *Handler) float64 {
		base := newBenchRequest(tok)
		w := &nopWriter{h: make(http.Header)}
		r := withReplacer(base)
		if err := h.ServeHTTP(w, r, nextOK); err != nil || w.h.Get("Www-Authenticate") != "" {
			t.Fatalf("refused: %v %s", err, w.h.Get("Www-Authenticate"))
		}
		return testing.AllocsPerRun(200, func() { _ = h.ServeHTTP(w, r, nextOK) })
	}
	base := allocs(without)
	before := commandsProcessed(t, admin)
	got := allocs(with)
	// The INFO call itself is one command.
	if after := commandsProcessed(t, admin); after != before+1 {
		t.Errorf("cached bearer requests sent %d commands to the store, want 0", after-before-1)
	}
	if got != base {
		t.Errorf("a cached bearer request allocates %v times with a store, %v without", got, base)
	}
}

// BenchmarkDPoPStore compares a DPoP request (token cached, a fresh ES256 proof each time)
// without a store and with a real local redis-server: the difference is the one SET NX PX
// round trip. bearer_cached_store shows a bearer request with a store configured: the same
// figure and allocations as without.
//
//	go test -run '^$' -bench DPoPStore -benchmem
//
// Figures need a quiet machine.
func BenchmarkDPoPStore(b *testing.B) {
	srv := storetest.Start(b)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer admin.Close()
	asKey := jwttest.New(b, "rs", "RS256")
	client := jwttest.New(b, "", "ES256")
	const htu = cacheRes // the resource: its origin and the path requested
	c := testClaims(cacheIss, cacheRes, "mcp:read")
	c["cnf"] = map[string]any{"jkt": client.Thumbprint()}
	bound := asKey.Token(b, c, nil)
	unbound := asKey.Token(b, testClaims(cacheIss, cacheRes, "mcp:read"), nil)

	pool := make([]string, 2048)
	for i := range pool {
		pool[i] = client.Proof(b, http.MethodPost, htu, bound, time.Now().Unix())
	}
	noStore := storeHandler(b, asKey, "")
	withStore := storeHandler(b, asKey, srv.Addr)

	// reset forgets every proof, here and in the store, so that each timed proof is new.
	reset := func(h *Handler) {
		h.dpop.Replay = verify.NewReplayCache(defaultDPoPReplayCache)
		if h.Store != nil {
			if err := admin.FlushAll(context.Background()).Err(); err != nil {
				b.Fatal(err)
			}
		}
	}
	run := func(b *testing.B, h *Handler) {
		base := newBenchRequest("")
		base.Header.Set("Authorization", "DPoP "+bound)
		w := &nopWriter{h: make(http.Header)}
		r := withReplacer(base)
		reset(h)
		r.Header["Dpop"] = []string{pool[0]}
		if err := h.ServeHTTP(w, r, nextOK); err != nil || w.h.Get("Www-Authenticate") != "" {
			b.Fatalf("first request refused: %v %s", err, w.h.Get("Www-Authenticate"))
		}
		reset(h)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if i%len(pool) == len(pool)-1 {
				b.StopTimer()
				reset(h)
				r = withReplacer(base)
				b.StartTimer()
			}
			r.Header["Dpop"] = pool[i%len(pool) : i%len(pool)+1]
			_ = h.ServeHTTP(w, r, nextOK)
		}
		b.StopTimer()
		if w.h.Get("Www-Authenticate") != "" {
			b.Fatalf("refused: %s", w.h.Get("Www-Authenticate"))
		}
	}
	b.Run("dpop_cached", func(b *testing.B) { run(b, noStore) })
	b.Run("dpop_cached_store", func(b *testing.B) { run(b, withStore) })
	b.Run("store_round_trip", func(b *testing.B) {
		// The bare SET NX PX of a claim, for the yardstick.
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := withStore.Store.client.ClaimProof(ctx, "bench", strconv.Itoa(i), time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bearer_cached", func(b *testing.B) { runServe(b, noStore, unbound) })
	b.Run("bearer_cached_store", func(b *testing.B) { runServe(b, withStore, unbound) })
}
