package jwks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

const testIssuer = "https://as.example.com"

// TestUnknownKIDFlood looks up 1000 made-up kids: the first makes the key set fetch again,
// the other 999 within the minute make no request at all.
func TestUnknownKIDFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		key := jwttest.New(t, "k1", "ES256")
		ks := n.newKeyServer("keys.example", key)
		src := &Sources{URLs: []*Remote{startSet(t, ks.URL+"/jwks", false, n.options())}}
		synctest.Wait()
		before := ks.fetches.Load()

		for i := range 1000 {
			if _, err := lookup(src, testIssuer, key, fmt.Sprintf("made-up-%d", i)); !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("made-up kid %d: error %v, want ErrUnknownKey", i, err)
			}
		}
		extra := ks.fetches.Load() - before
		t.Logf("1000 made-up kids: %d extra JWKS fetch(es)", extra)
		if extra != 1 {
			t.Fatalf("%d extra JWKS fetches, want exactly 1 (one refresh per minute)", extra)
		}
		// The known key is still found, without a fetch.
		if keys, err := lookup(src, testIssuer, key, key.KID); err != nil || !holds(keys, key) {
			t.Fatalf("known kid: %v", err)
		}
		if n := ks.fetches.Load() - before; n != 1 {
			t.Fatalf("%d extra fetches after a known kid, want still 1", n)
		}
		// A minute later, an unknown kid may fetch again.
		time.Sleep(DefaultUnknownKIDInterval)
		_, _ = lookup(src, testIssuer, key, "made-up-again")
		if n := ks.fetches.Load() - before; n != 2 {
			t.Fatalf("%d extra fetches a minute later, want 2", n)
		}
	})
}

// TestUnknownKIDConcurrentShareOneFetch rotates in a new key, then looks it up from 100
// goroutines while the JWKS answer is held: none returns before the fetch does, all find the
// key, and the server saw exactly one request.
func TestUnknownKIDConcurrentShareOneFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		oldKey, newKey := jwttest.New(t, "old", "ES256"), jwttest.New(t, "new", "ES256")
		ks := n.newKeyServer("as.example", oldKey)
		src := &Sources{Issuers: map[string]*Remote{ks.URL: startSet(t, ks.URL, true, n.options())}}
		synctest.Wait()
		before := ks.fetches.Load()

		release := ks.hold()
		ks.setKeys(oldKey, newKey)
		var done atomic.Int64
		var wg sync.WaitGroup
		found := make([]bool, 100)
		for i := range found {
			wg.Go(func() {
				keys, err := lookup(src, ks.URL, newKey, newKey.KID)
				found[i] = err == nil && holds(keys, newKey)
				done.Add(1)
			})
		}
		<-ks.arrived    // the one fetch reached the server and is held
		synctest.Wait() // every lookup is waiting
		if n := done.Load(); n != 0 {
			t.Fatalf("%d lookups returned while the fetch was held; want all of them to wait", n)
		}
		release()
		wg.Wait()
		for i, ok := range found {
			if !ok {
				t.Fatalf("lookup %d did not find the new key", i)
			}
		}
		extra := ks.fetches.Load() - before
		t.Logf("100 concurrent lookups of a new kid: %d JWKS fetch(es)", extra)
		if extra != 1 {
			t.Fatalf("%d JWKS fetches, want 1 shared fetch", extra)
		}
	})
}

// TestRotation publishes a new key next to the old one: the new kid is found at once, through
// the unknown-kid refresh (on a set whose background refresh is an hour away). Then the old
// key is removed: it is still found until the set's next refresh, and not after it
// (background refresh of a 50ms set; an explicit Refresh of the hourly one). Keys handed out
// before report Retired once their set dropped them.
func TestRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		k1, k2 := jwttest.New(t, "2025", "RS256"), jwttest.New(t, "2026", "RS256")
		ks := n.newKeyServer("keys.example", k1)
		fastOpts := n.options()
		fastOpts.Refresh = 50 * time.Millisecond
		hourlySet := startSet(t, ks.URL+"/jwks", false, n.options())
		fastSet := startSet(t, ks.URL+"/jwks", false, fastOpts)
		hourly, fast := &Sources{URLs: []*Remote{hourlySet}}, &Sources{URLs: []*Remote{fastSet}}
		synctest.Wait()
		handedOut, err := lookup(hourly, testIssuer, k1, k1.KID)
		if err != nil || !holds(handedOut, k1) {
			t.Fatalf("k1 before rotation: %v", err)
		}

		ks.setKeys(k1, k2)
		before := hourlySet.fetches.Load()
		for _, k := range []*jwttest.Key{k2, k1} {
			if keys, err := lookup(hourly, testIssuer, k, k.KID); err != nil || !holds(keys, k) {
				t.Fatalf("kid %s after it was published: %v", k.KID, err)
			}
		}
		if n := hourlySet.fetches.Load() - before; n != 1 {
			t.Fatalf("new kid: %d fetches of the hourly set, want 1 (unknown-kid refresh)", n)
		}

		ks.setKeys(k2)
		time.Sleep(60 * time.Millisecond) // past the fast set's next refresh
		synctest.Wait()
		if _, err := lookup(fast, testIssuer, k1, k1.KID); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("removed kid on the fast set: %v, want ErrUnknownKey", err)
		}
		if keys, err := lookup(fast, testIssuer, k2, k2.KID); err != nil || !holds(keys, k2) {
			t.Fatalf("kept kid on the fast set: %v", err)
		}

		// The hourly set has not refreshed since: the removed key is still found there.
		if keys, err := lookup(hourly, testIssuer, k1, k1.KID); err != nil || !holds(keys, k1) {
			t.Fatalf("removed kid before the hourly refresh: %v", err)
		}
		if handedOut[0].Retired() {
			t.Fatal("key retired before its set dropped it")
		}
		if err := hourlySet.Refresh(context.Background()); err != nil { // what its next background refresh does
			t.Fatal(err)
		}
		if _, err := lookup(hourly, testIssuer, k1, k1.KID); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("removed kid after the hourly refresh: %v, want ErrUnknownKey", err)
		}
		if !handedOut[0].Retired() {
			t.Fatal("key dropped by its set does not report Retired")
		}
		if keys, err := lookup(hourly, testIssuer, k2, k2.KID); err != nil || !holds(keys, k2) || keys[0].Retired() {
			t.Fatalf("kept kid after the hourly refresh: %v", err)
		}
	})
}

// TestRefreshWaitsForNewerFetch: Refresh called while a fetch is held at the server does not
// settle for that fetch's (older) answer; it fetches again and sees the keys published after
// the call.
func TestRefreshWaitsForNewerFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		k1, k2 := jwttest.New(t, "k1", "EdDSA"), jwttest.New(t, "k2", "EdDSA")
		ks := n.newKeyServer("keys.example", k1)
		opts := n.options()
		opts.UnknownKIDInterval = -1
		r := startSet(t, ks.URL+"/jwks", false, opts)
		src := &Sources{URLs: []*Remote{r}}
		synctest.Wait()

		release := ks.hold()
		go func() { _, _ = lookup(src, testIssuer, k2, k2.KID) }()
		<-ks.arrived // a fetch is in flight, holding the old set
		ks.setKeys(k1, k2)
		refreshed := make(chan error, 1)
		go func() { refreshed <- r.Refresh(context.Background()) }()
		synctest.Wait()
		release()
		if err := <-refreshed; err != nil {
			t.Fatal(err)
		}
		if r.Keys().byKID["k2"] == nil {
			t.Fatal("Refresh returned with the answer of a fetch started before it")
		}
		if got := ks.fetches.Load(); got != 3 {
			t.Fatalf("%d fetches, want 3 (load, held fetch, Refresh's own)", got)
		}
	})
}

// TestOutageAtStart: the JWKS cannot be loaded when the set starts. A lookup gets
// ErrKeysUnavailable (the server's fault, not the token's), also when repeated within the
// rate limit; once the server answers, the set loads within the back-off and the key is found.
func TestOutageAtStart(t *testing.T) {
	for _, mode := range []string{"connection refused", "503 from JWKS URL", "503 from discovery"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet()
				key := jwttest.New(t, "k1", "RS256")
				var src *Sources
				var up func()
				iss := testIssuer
				switch mode {
				case "connection refused":
					src = &Sources{URLs: []*Remote{startSet(t, "https://later.example/jwks", false, n.options())}}
					up = func() { n.newKeyServer("later.example", key) }
				case "503 from JWKS URL":
					ks := n.newKeyServer("keys.example", key)
					ks.down.Store(true)
					src = &Sources{URLs: []*Remote{startSet(t, ks.URL+"/jwks", false, n.options())}}
					up = func() { ks.down.Store(false) }
				case "503 from discovery":
					ks := n.newKeyServer("as.example", key)
					ks.down.Store(true)
					iss = ks.URL
					src = &Sources{Issuers: map[string]*Remote{iss: startSet(t, iss, true, n.options())}}
					up = func() { ks.down.Store(false) }
				}
				synctest.Wait()
				for range 3 { // the first lookup tries a fetch itself, the next are rate-limited
					if _, err := lookup(src, iss, key, key.KID); !errors.Is(err, ErrKeysUnavailable) {
						t.Fatalf("lookup during outage: %v, want ErrKeysUnavailable", err)
					}
				}
				up()
				time.Sleep(DefaultRetryMax) // the longest back-off step
				synctest.Wait()
				if keys, err := lookup(src, iss, key, key.KID); err != nil || !holds(keys, key) {
					t.Fatalf("lookup after the server came up: %v", err)
				}
			})
		})
	}
}

// TestBackOff: while a set has never loaded, it retries after 1s, 2s, 4s, 8s, then every 15s;
// once loaded, it refreshes every Refresh, and a failed refresh waits for the next one.
func TestBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		key := jwttest.New(t, "k1", "ES256")
		ks := n.newKeyServer("keys.example", key)
		ks.down.Store(true)
		var mu sync.Mutex
		var got []string
		start := time.Now()
		opts := n.options()
		opts.OnFetch = func(err error) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%v %v", time.Since(start), err == nil))
			mu.Unlock()
		}
		startSet(t, ks.URL+"/jwks", false, opts)
		time.Sleep(61 * time.Second)
		ks.down.Store(false)
		time.Sleep(2 * time.Hour)
		ks.down.Store(true)
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		want := []string{"0s false", "1s false", "3s false", "7s false", "15s false", // doubling
			"30s false", "45s false", "1m0s false", // capped at 15s
			"1m15s true",                     // loaded
			"1h1m15s true",                   // refreshed
			"2h1m15s false", "3h1m15s false"} // failed refreshes wait for the next refresh
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("fetches (time since start, success)\n%q\nwant\n%q", got, want)
		}
	})
}

// TestFailedRefreshKeepsKeys: the JWKS server fails after the first load; the refreshes fail,
// each logged as a warning and counted, and the last good keys are still found.
func TestFailedRefreshKeepsKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		key := jwttest.New(t, "k1", "RS256")
		ks := n.newKeyServer("keys.example", key)
		opts := n.options()
		opts.Refresh = 20 * time.Millisecond
		logs := observe(&opts)
		var ok, failed atomic.Int64
		opts.OnFetch = func(err error) {
			if err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}
		url := ks.URL + "/jwks"
		r := startSet(t, url, false, opts)
		src := &Sources{URLs: []*Remote{r}}
		synctest.Wait()
		if len(logFor(logs, "signing keys loaded", url)) != 1 {
			t.Fatalf("no load logged: %v", logs.All())
		}

		ks.down.Store(true)
		time.Sleep(70 * time.Millisecond) // three refreshes
		synctest.Wait()
		warns := logFor(logs, "refreshing signing keys failed", url)
		if len(warns) != 3 || failed.Load() != 3 || ok.Load() != 1 {
			t.Fatalf("%d warnings, %d failures and %d successes counted; want 3, 3, 1", len(warns), failed.Load(), ok.Load())
		}
		if e := warns[0]; e.Level.String() != "warn" || e.ContextMap()["keys_kept"] != int64(1) {
			t.Fatalf("failed refresh logged at %s with keys_kept %v, want warn and 1", e.Level, e.ContextMap()["keys_kept"])
		}
		if n := r.Keys().Len(); n != 1 {
			t.Fatalf("%d keys after failed refreshes, want the last good 1", n)
		}
		if keys, err := lookup(src, testIssuer, key, key.KID); err != nil || !holds(keys, key) {
			t.Fatalf("last good key: %v", err)
		}
		// An unknown kid during the outage is a bad token (keys are loaded), not unavailable.
		if _, err := lookup(src, testIssuer, key, "other"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid during the outage: %v, want ErrUnknownKey", err)
		}
	})
}

// TestCrossIssuerConfusion: two issuers, each discovered with its own key. Looking up A's
// key for a token claiming issuer B finds nothing of A's, also when both keys share a kid.
func TestCrossIssuerConfusion(t *testing.T) {
	for _, sameKID := range []bool{false, true} {
		t.Run(fmt.Sprintf("same kid %v", sameKID), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet()
				keyA, keyB := jwttest.New(t, "a", "RS256"), jwttest.New(t, "b", "ES256")
				if sameKID {
					keyB = jwttest.New(t, "a", "RS256")
				}
				asA, asB := n.newKeyServer("a.example", keyA), n.newKeyServer("b.example", keyB)
				src := &Sources{Issuers: map[string]*Remote{
					asA.URL: startSet(t, asA.URL, true, n.options()),
					asB.URL: startSet(t, asB.URL, true, n.options()),
				}}
				synctest.Wait()
				for _, tc := range []struct {
					key *jwttest.Key
					iss string
					own bool
				}{{keyA, asA.URL, true}, {keyB, asB.URL, true}, {keyA, asB.URL, false}, {keyB, asA.URL, false}} {
					keys, err := lookup(src, tc.iss, tc.key, tc.key.KID)
					if got := holds(keys, tc.key); got != tc.own {
						t.Errorf("key %s for issuer %s: found %v (error %v), want %v", tc.key.KID, tc.iss, got, err, tc.own)
					}
				}
				if _, err := lookup(src, "https://c.example", keyA, keyA.KID); !errors.Is(err, ErrKeysUnavailable) {
					t.Errorf("issuer without a set: %v, want ErrKeysUnavailable", err)
				}
			})
		})
	}
}

// TestCloseDuringFetch: Close comes while an unknown-kid fetch is held at the server. It
// cancels the fetch and waits for it; afterwards a lookup starts no fetch, the set reports
// Done, and no goroutine is left (synctest.Test fails otherwise).
func TestCloseDuringFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		key := jwttest.New(t, "k1", "ES256")
		ks := n.newKeyServer("as.example", key)
		opts := n.options()
		opts.UnknownKIDInterval = -1 // so that only Close can stop a fetch below
		r := NewDiscovered(ks.URL, opts)
		src := &Sources{Issuers: map[string]*Remote{ks.URL: r}}
		synctest.Wait()

		defer ks.hold()()
		unknown := jwttest.New(t, "k2", "ES256")
		errs := make(chan error, 1)
		go func() {
			_, err := lookup(src, ks.URL, unknown, unknown.KID)
			errs <- err
		}()
		<-ks.arrived

		select {
		case <-r.Done():
			t.Fatal("Done before Close")
		default:
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		<-r.Done()
		if err := <-errs; !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("lookup whose fetch was cancelled: %v, want ErrUnknownKey", err)
		}
		r.mu.Lock()
		flying := r.flying
		r.mu.Unlock()
		if flying {
			t.Fatal("a fetch is still in flight after Close returned")
		}
		fetches := ks.fetches.Load()
		if _, err := lookup(src, ks.URL, unknown, unknown.KID); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("lookup after Close: %v", err)
		}
		if err := r.Refresh(context.Background()); !errors.Is(err, errClosed) {
			t.Fatalf("Refresh after Close: %v", err)
		}
		if n := ks.fetches.Load(); n != fetches {
			t.Fatalf("%d fetches after Close", n-fetches)
		}
		_ = r.Close() // a second Close is harmless
	})
}

// TestDiscoveryDoesNotBlockStart starts a set whose issuer never answers: NewDiscovered
// returns while the discovery request is pending (FetchTimeout is an hour here), and a lookup
// meanwhile is unavailable once its own context ends. A second set with a short FetchTimeout
// ends its hanging discovery and logs it as a failed load naming the timeout.
func TestDiscoveryDoesNotBlockStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		release := make(chan struct{})
		defer close(release)
		arrived := make(chan struct{}, 16)
		n.handle("hangs.example", httpHandlerFunc(func(ctx context.Context) {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
		}))
		iss := "https://hangs.example"
		opts := n.options()
		opts.FetchTimeout = time.Hour
		logs := observe(&opts)
		src := &Sources{Issuers: map[string]*Remote{iss: startSet(t, iss, true, opts)}}
		<-arrived // the background discovery reached the server; NewDiscovered has returned

		key := jwttest.New(t, "k1", "ES256")
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := src.Lookup(ctx, iss, key.KID, key.Alg); !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("lookup while discovery pending: %v, want ErrKeysUnavailable", err)
		}

		opts.FetchTimeout = 200 * time.Millisecond
		startSet(t, iss+"/slow", true, opts)
		time.Sleep(time.Second)
		synctest.Wait()
		warns := logFor(logs, "loading signing keys failed; no keys loaded yet", "issuer "+iss+"/slow")
		if len(warns) == 0 {
			t.Fatalf("no failed load logged: %v", logs.All())
		}
		if msg := warns[0].ContextMap()["error"].(string); !strings.Contains(msg, "deadline exceeded") {
			t.Errorf("failed load error %q does not name the timeout", msg)
		}
	})
}

// TestOutageAtStartLogs: while no key was ever loaded, a failed fetch says that none is
// loaded and what requests get, not that last good keys are kept.
func TestOutageAtStartLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		key := jwttest.New(t, "k1", "RS256")
		ks := n.newKeyServer("keys.example", key)
		ks.down.Store(true)
		opts := n.options()
		logs := observe(&opts)
		url := ks.URL + "/jwks"
		startSet(t, url, false, opts)
		synctest.Wait()
		if got := logFor(logs, "loading signing keys failed; no keys loaded yet", url); len(got) == 0 {
			t.Fatalf("no 'no keys loaded yet' warning: %v", logs.All())
		}
		if got := logFor(logs, "refreshing signing keys failed; keeping the last good keys", url); len(got) != 0 {
			t.Fatalf("claims to keep keys it never had: %v", got)
		}
	})
}

// TestUnknownKIDAfterOutage: a key rotated in while the key server is down is looked up
// during the outage (the fetch fails), and again soon after the server is back: a failed
// fetch does not spend the once-a-minute budget for unknown kids, so the key is found
// within seconds, not a minute later. During the outage, retries back off (1s, 2s, 4s…),
// and once a fetch succeeds the budget applies again.
func TestUnknownKIDAfterOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		k1 := jwttest.New(t, "k1", "ES256")
		k2 := jwttest.New(t, "k2", "ES256")
		ks := n.newKeyServer("keys.example", k1)
		src := &Sources{URLs: []*Remote{startSet(t, ks.URL+"/jwks", false, n.options())}}
		synctest.Wait()
		base := ks.fetches.Load()

		ks.down.Store(true)
		ks.setKeys(k1, k2)
		if _, err := lookup(src, testIssuer, k2, k2.KID); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("new kid during the outage: %v, want ErrUnknownKey", err)
		}
		synctest.Wait() // the outcome of the failed fetch is recorded
		// A flood of lookups for 10 seconds of the outage: fetches back off.
		for range 100 {
			_, _ = lookup(src, testIssuer, k2, k2.KID)
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		during := ks.fetches.Load() - base
		// At 0s, then 1s, 3s (after 2s), 7s (after 4s) later: 4 fetches in 10s, never 100.
		if during != 4 {
			t.Fatalf("%d fetches in 10s of outage with a lookup every 100ms, want 4 (backing off 1s, 2s, 4s)", during)
		}

		ks.down.Store(false)
		// The next allowance is at most 8s away (the back-off doubles to 8s); well within
		// the minute the budget would have cost.
		time.Sleep(8 * time.Second)
		keys, err := lookup(src, testIssuer, k2, k2.KID)
		if err != nil || !holds(keys, k2) {
			t.Fatalf("new kid after the server's return: %v, want the key found", err)
		}
		synctest.Wait()
		// The fetch succeeded: the budget is spent again, made-up kids fetch nothing.
		after := ks.fetches.Load()
		for i := range 50 {
			_, _ = lookup(src, testIssuer, k1, fmt.Sprintf("made-up-%d", i))
			time.Sleep(time.Second)
		}
		if extra := ks.fetches.Load() - after; extra != 0 {
			t.Fatalf("%d fetches for made-up kids within the minute after a successful fetch, want 0", extra)
		}
	})
}

// TestUnknownKIDRetrySoonAfterFailure: with the server back one second after a failed
// on-demand fetch, the new kid is found two seconds later.
func TestUnknownKIDRetrySoonAfterFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet()
		k1 := jwttest.New(t, "k1", "ES256")
		k2 := jwttest.New(t, "k2", "ES256")
		ks := n.newKeyServer("keys.example", k1)
		src := &Sources{URLs: []*Remote{startSet(t, ks.URL+"/jwks", false, n.options())}}
		synctest.Wait()
		ks.down.Store(true)
		ks.setKeys(k1, k2)
		if _, err := lookup(src, testIssuer, k2, k2.KID); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("new kid during the outage: %v, want ErrUnknownKey", err)
		}
		synctest.Wait()
		ks.down.Store(false)
		time.Sleep(2 * time.Second)
		if keys, err := lookup(src, testIssuer, k2, k2.KID); err != nil || !holds(keys, k2) {
			t.Fatalf("new kid 2s after the server's return: %v, want the key found (before the fix: a minute later)", err)
		}
	})
}
