package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestWellFormedToken: every opaque token shape seen in the wild passes; only what can never
// be a token is refused before a call.
func TestWellFormedToken(t *testing.T) {
	for _, tok := range []string{
		"Zk3vQ9mB7nR4tL1pW8sZ3yH6cF0jD5gAxxxxxxxxxxx",                              // oidc-provider, Doorkeeper: 32 bytes base64url
		"ory_at_Zk3vQ9mB7nR4tL1pW8sZ3yH6cF0jD5gA.Zk3vQ9mB7nR4tL1pW8sZ3yH6cF0jD5gA", // Hydra
		"eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..aXY.Y2lwaGVy.dGFn",               // Auth0 JWE
		"9f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b",                                     // WSO2 UUID
		"gho_16C7e42F292c6912E7710c838347Ae178B4a",                                 // GitHub
		"ya29.a0AfH6SMBx-ab_cd~ef",                                                 // Google
		"dGhpcyBpcyBiYXNlNjQ+/w==",                                                 // base64 with + / and padding
		"opaque-1",                                                                 // 8 characters
	} {
		if !WellFormedToken(tok, MinTokenLen) {
			t.Errorf("%q refused, want it sent to introspection", tok)
		}
	}
	for _, tok := range []string{
		"", "short", "=", "=====", "abc=def", "has space", "has,comma", "quo\"te", "semi;colon",
		"non-ascii-é-token", "tab\there", "x" + strings.Repeat("a", MaxTokenLen),
	} {
		if WellFormedToken(tok, MinTokenLen) {
			t.Errorf("%q accepted, want it refused before any call", tok)
		}
	}
	if !WellFormedToken(strings.Repeat("a", MaxTokenLen), MinTokenLen) {
		t.Error("a token of MaxTokenLen refused")
	}
}

// TestClientPrefix: IPv4 addresses count alone (mapped or not), IPv6 by /64.
func TestClientPrefix(t *testing.T) {
	p := func(s string) netip.Prefix { return ClientPrefix(netip.MustParseAddr(s)) }
	if p("192.0.2.1") != p("::ffff:192.0.2.1") || p("192.0.2.1") == p("192.0.2.2") {
		t.Error("IPv4: mapped and plain differ, or two addresses share a share")
	}
	if p("2001:db8:1:2::1") != p("2001:db8:1:2:ffff::9") || p("2001:db8:1:2::1") == p("2001:db8:1:3::1") {
		t.Error("IPv6: one /64 counts as several, or two /64 as one")
	}
	if p("fe80::1%eth0") != p("fe80::2") {
		t.Error("IPv6 zone splits a /64")
	}
	if ClientPrefix(netip.Addr{}).IsValid() {
		t.Error("unknown address has a prefix")
	}
}

// TestLimiter: one address holds at most its share of slots and waiters, and of the rate;
// the excess is shed at once; waiters are capped; the total rate is bounded; buckets refill
// with time; proven calls skip the shares.
func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := ClientPrefix(netip.MustParseAddr("203.0.113.7"))
		b := ClientPrefix(netip.MustParseAddr("198.51.100.1"))
		l := newLimiter(8, 20, time.Second) // per address: 2 slots, 5 a second after a burst of 20
		now := time.Now()
		var held []func()
		for range 2 {
			rel, err := l.admit(a, false, now)
			if err != nil {
				t.Fatalf("first calls of an address: %v", err)
			}
			held = append(held, rel)
		}
		if _, err := l.admit(a, false, now); !errors.Is(err, errShedClientShare) {
			t.Fatalf("third call of one address: %v, want shed at its share", err)
		}
		// Another address is served at once.
		rel, err := l.admit(b, false, now)
		if err != nil {
			t.Fatalf("another address: %v", err)
		}
		held = append(held, rel)
		for _, r := range held {
			r()
		}
		// Rate: a's bucket holds one second of the total (20) and refills at a quarter (5 a
		// second). a has taken 2: 18 more pass, the next is shed.
		for i := range 18 {
			rel, err := l.admit(a, false, now)
			if err != nil {
				t.Fatalf("call %d within the address's burst: %v", i, err)
			}
			rel()
		}
		if _, err := l.admit(a, false, now); !errors.Is(err, errShedClientRate) {
			t.Fatalf("call over the address's rate: %v", err)
		}
		// The total bucket holds two seconds: one address's burst leaves room for others.
		rel, err = l.admit(b, false, now)
		if err != nil {
			t.Fatalf("another address after one address's burst: %v", err)
		}
		rel()
		// A second later, a has 5 more, not 20.
		now = now.Add(time.Second)
		for i := range 5 {
			rel, err := l.admit(a, false, now)
			if err != nil {
				t.Fatalf("call %d a second later: %v", i, err)
			}
			rel()
		}
		if _, err := l.admit(a, false, now); !errors.Is(err, errShedClientRate) {
			t.Fatalf("sixth call a second later: %v, want shed", err)
		}
		// Total: 40 - 22 = 18, plus 20 refilled (cap 40) = 38, minus 5 = 33 left: 33 other
		// addresses take one each, the next is shed at the total rate.
		for i := range 33 {
			c := ClientPrefix(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
			rel, err := l.admit(c, false, now)
			if err != nil {
				t.Fatalf("address %d within the total rate: %v", i, err)
			}
			rel()
		}
		if _, err := l.admit(ClientPrefix(netip.MustParseAddr("10.1.1.1")), false, now); !errors.Is(err, errShedRate) {
			t.Fatalf("over the total rate: %v", err)
		}
		// Proven calls skip the rates: all 8 slots, then 32 waiters, then shed at once.
		var proven []func()
		for range 8 {
			rel, err := l.admit(netip.Prefix{}, true, now)
			if err != nil {
				t.Fatalf("proven call: %v", err)
			}
			proven = append(proven, rel)
		}
		errs := make(chan error, 32)
		for range 32 {
			go func() {
				rel, err := l.admit(netip.Prefix{}, true, now)
				if err == nil {
					rel()
				}
				errs <- err
			}()
		}
		synctest.Wait() // all 32 wait for a slot
		if _, err := l.admit(netip.Prefix{}, true, now); !errors.Is(err, errShedWaiters) {
			t.Fatalf("33rd waiter: %v, want shed at once", err)
		}
		for _, r := range proven {
			r()
		}
		for range 32 {
			if err := <-errs; err != nil {
				t.Fatalf("waiter: %v", err)
			}
		}
	})
}

// TestIntrospectionFailureLog: an outage is said once with what failed, then counted every
// minute, and its end is said once; a hundred failed calls are not a hundred lines.
func TestIntrospectionFailureLog(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		break_     func(as *fakeAS) (heal func())
	}{
		{"connection refused", "connection refused", func(as *fakeAS) func() {
			as.srv.Close()
			return nil // the port stays closed: the end of a run is checked with the others
		}},
		{"status 5xx", "status 5xx", func(as *fakeAS) func() {
			as.mu.Lock()
			as.status = http.StatusBadGateway
			as.mu.Unlock()
			return func() { as.mu.Lock(); as.status = http.StatusOK; as.mu.Unlock() }
		}},
		{"credentials refused", "credentials refused (4xx)", func(as *fakeAS) func() {
			as.mu.Lock()
			as.status = http.StatusUnauthorized // what a server answers to wrong credentials
			as.mu.Unlock()
			return func() { as.mu.Lock(); as.status = http.StatusOK; as.mu.Unlock() }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			as := newFakeAS(t, AuthClientSecretBasic)
			clk := &clock{t: testNow}
			v := newIntrospection(as, clk, zap.New(core))
			v.MaxRate = 1e6
			mustStart(t, v)
			heal := tc.break_(as)
			for i := range 100 {
				if _, err := v.Verify(context.Background(), fmt.Sprintf("made-up-token-%03d", i), nil); ReasonOf(err) != ASUnavailable {
					t.Fatalf("call %d: %v, want ASUnavailable", i, err)
				}
			}
			first := logs.FilterMessageSnippet("introspection failing").All()
			if len(first) != 1 || first[0].Level != zap.WarnLevel || first[0].ContextMap()["failure"] != tc.kind {
				t.Fatalf("want one warning naming %q, got %v", tc.kind, logs.All())
			}
			if n := logs.FilterMessageSnippet("still failing").Len(); n != 0 {
				t.Fatalf("%d summaries within the minute, want 0", n)
			}
			clk.add(time.Minute)
			_, _ = v.Verify(context.Background(), "made-up-token-last", nil)
			still := logs.FilterMessageSnippet("introspection still failing").All()
			if len(still) != 1 {
				t.Fatalf("want one summary after a minute, got %v", logs.All())
			}
			m := still[0].ContextMap()
			if m["calls"] != int64(100) || fmt.Sprint(m["by_failure"]) != fmt.Sprintf("map[%s:100]", tc.kind) {
				t.Fatalf("summary counts %v by %v, want 100 calls of %s", m["calls"], m["by_failure"], tc.kind)
			}
			if heal == nil {
				return // the closed listener stays closed
			}
			heal()
			as.answer("real-token-1", active(""))
			if _, err := v.Verify(context.Background(), "real-token-1", nil); err != nil {
				t.Fatalf("after healing: %v", err)
			}
			over := logs.FilterMessageSnippet("introspection answering again").All()
			if len(over) != 1 || over[0].ContextMap()["failed_calls"] != int64(101) {
				t.Fatalf("want one line saying the failures ended after 101 calls, got %v", logs.All())
			}
			if n := logs.FilterLevelExact(zap.WarnLevel).Len(); n != 2 {
				t.Fatalf("%d warnings for 101 failed calls, want 2", n)
			}
		})
	}
}

// TestIntrospectionFailureLogTimeout: a call that times out is named a timeout, not
// "unreachable".
func TestIntrospectionFailureLogTimeout(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	as := newFakeAS(t, AuthClientSecretBasic)
	as.hold = make(chan struct{})
	t.Cleanup(func() { close(as.hold) })
	v := newIntrospection(as, &clock{t: testNow}, zap.New(core))
	v.Timeout = 50 * time.Millisecond
	mustStart(t, v)
	if _, err := v.Verify(context.Background(), "made-up-token-1", nil); ReasonOf(err) != ASUnavailable {
		t.Fatalf("%v, want ASUnavailable", err)
	}
	first := logs.FilterMessageSnippet("introspection failing").All()
	if len(first) != 1 || first[0].ContextMap()["failure"] != "timeout" {
		t.Fatalf("want one warning naming a timeout, got %v", logs.All())
	}
}

// TestAnswerCacheSharedAndJudgedAgain: two verifiers (a config and the one that replaces it)
// share an AnswerCache. The second gets the answer without a call, even with the server
// gone, and judges it with its own configuration: one that no longer accepts the audience
// refuses the token; a shorter cache_ttl applies from when the answer arrived.
func TestAnswerCacheSharedAndJudgedAgain(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("real-token-1", active(""))
	clk := &clock{t: testNow}
	shared := NewAnswerCache(100, clk.now)
	first := newIntrospection(as, clk, nil)
	first.Answers = shared
	mustStart(t, first)
	if _, err := first.Verify(context.Background(), "real-token-1", nil); err != nil {
		t.Fatal(err)
	}
	as.srv.Close()

	second := newIntrospection(as, clk, nil)
	second.Answers = shared
	mustStart(t, second)
	clk.add(time.Minute)
	id, err := second.Verify(context.Background(), "real-token-1", nil)
	if err != nil || id.Subject != "alice" {
		t.Fatalf("second config, server gone: %v", err)
	}
	if n := as.calls.Load(); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
	other := newIntrospection(as, clk, nil)
	other.Answers = shared
	other.Audiences = []string{"https://other.example/mcp"}
	mustStart(t, other)
	if _, err := other.Verify(context.Background(), "real-token-1", nil); ReasonOf(err) != Audience {
		t.Fatalf("config with another audience: %v, want Audience", err)
	}
	short := newIntrospection(as, clk, nil)
	short.Answers = shared
	short.CacheTTL = 30 * time.Second // the answer arrived a minute ago
	mustStart(t, short)
	if _, err := short.Verify(context.Background(), "real-token-1", nil); ReasonOf(err) != ASUnavailable {
		t.Fatalf("config with a cache_ttl shorter than the answer's age: %v, want a new call (server gone: ASUnavailable)", err)
	}
}

// TestLimiterSuspect: an address whose call got an inactive answer may use only the upper
// half of the total bucket, and never waits for a slot; a clean address may use all of it,
// and waits.
func TestLimiterSuspect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(2, 20, time.Second) // total bucket 40, floor for suspects 20
		now := time.Now()
		bad := make([]netip.Prefix, 30)
		for i := range bad {
			bad[i] = ClientPrefix(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}))
			rel, err := l.admit(bad[i], false, now)
			if err != nil {
				t.Fatalf("first call of address %d: %v", i, err)
			}
			rel()
			l.suspect(bad[i], now) // its token was made up
		}
		// 10 tokens left, below the floor: suspects are shed, a clean address is served.
		for i, p := range bad {
			if _, err := l.admit(p, false, now); !errors.Is(err, errShedRate) {
				t.Fatalf("suspect %d below the floor: %v, want shed", i, err)
			}
		}
		clean := ClientPrefix(netip.MustParseAddr("192.0.2.50"))
		rel, err := l.admit(clean, false, now)
		if err != nil {
			t.Fatalf("clean address with the bucket below the floor: %v", err)
		}
		// Refilled past the floor, a suspect gets a free slot; with none free it is shed at
		// once, while a clean address waits for one.
		now = now.Add(2 * time.Second)
		relBad, err := l.admit(bad[0], false, now)
		if err != nil {
			t.Fatalf("suspect with a free slot above the floor: %v", err)
		}
		if _, err := l.admit(bad[1], false, now); !errors.Is(err, errShedWaiters) {
			t.Fatalf("suspect without a free slot: %v, want shed at once", err)
		}
		got := make(chan error, 1)
		go func() {
			r, err := l.admit(ClientPrefix(netip.MustParseAddr("192.0.2.51")), false, now)
			if err == nil {
				r()
			}
			got <- err
		}()
		synctest.Wait() // the clean request waits for a slot
		relBad()
		if err := <-got; err != nil {
			t.Fatalf("clean address waiting for a slot: %v", err)
		}
		rel()
		// A minute later the mark is gone.
		now = now.Add(suspectFor)
		if _, err := l.admit(bad[2], false, now); err != nil {
			t.Fatalf("address a minute after its made-up token: %v", err)
		}
	})
}

// TestLimiterClientsBounded: the per-address state holds at most maxClients addresses; a new
// one beyond is shed until the idle ones can be forgotten.
func TestLimiterClientsBounded(t *testing.T) {
	l := newLimiter(16, 1e9, time.Second) // a total rate that never binds here
	now := time.Now()
	for i := range maxClients {
		p := ClientPrefix(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		rel, err := l.admit(p, false, now)
		if err != nil {
			t.Fatalf("address %d: %v", i, err)
		}
		rel()
	}
	fresh := ClientPrefix(netip.MustParseAddr("192.0.2.1"))
	l.lastSweep = now // a sweep just ran: the next is a second away
	if _, err := l.admit(fresh, false, now); !errors.Is(err, errShedClients) {
		t.Fatalf("address beyond the bound: %v, want shed", err)
	}
	// A second later the sweep may run, and the idle addresses are forgotten.
	now = now.Add(time.Second)
	rel, err := l.admit(fresh, false, now)
	if err != nil {
		t.Fatalf("address once the others are idle: %v", err)
	}
	rel()
	if n := len(l.clients); n != 1 {
		t.Fatalf("%d addresses held after the sweep, want 1", n)
	}
}

// TestLimiterSuspectIPv6Wide: fresh /64s of one /48 are suspect once two of its /64s are
// (each marked once, however often): the third fresh /64 meets the floor; /64s of another
// /48 and IPv4 addresses do not; the mark ends with the minute.
func TestLimiterSuspectIPv6Wide(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(16, 4, time.Second) // total bucket 8, floor for suspects 4
		now := time.Now()
		p := func(s string) netip.Prefix { return ClientPrefix(netip.MustParseAddr(s)) }
		take := func(c netip.Prefix) error {
			rel, err := l.admit(c, false, now)
			if err == nil {
				rel()
			}
			return err
		}
		first := p("2001:db8:77:1::1")
		for range 3 { // one /64 marked three times counts once
			if err := take(first); err != nil {
				t.Fatal(err)
			}
			l.suspect(first, now)
		}
		if l.wideSuspect(p("2001:db8:77:2::1"), now) {
			t.Fatal("one suspect /64 made its /48 suspect")
		}
		if err := take(p("2001:db8:77:2::1")); err != nil {
			t.Fatal(err)
		}
		l.suspect(p("2001:db8:77:2::1"), now)
		// 8-4 = 4 tokens left: at the floor, a fresh /64 of the /48 is shed, others are not.
		if err := take(p("2001:db8:77:3::1")); !errors.Is(err, errShedRate) {
			t.Fatalf("fresh /64 of a suspect /48: %v, want shed", err)
		}
		if err := take(p("2001:db8:78:3::1")); err != nil {
			t.Fatalf("/64 of another /48: %v", err)
		}
		if err := take(p("192.0.2.7")); err != nil {
			t.Fatalf("IPv4 address: %v", err)
		}
		now = now.Add(suspectFor + 2*time.Second)
		if err := take(p("2001:db8:77:4::1")); err != nil {
			t.Fatalf("fresh /64 a minute later: %v", err)
		}
	})
}
