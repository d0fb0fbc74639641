package integration

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodAS is an introspection endpoint that knows one real token and answers it at once;
// every other token's call is held until the test releases it (or answers after delay, for
// the figures), so that a flood of made-up tokens holds whatever slots it gets.
type floodAS struct {
	*httptest.Server
	mu       sync.Mutex
	real     map[string]bool // the tokens it calls active
	gate     chan struct{}   // closed to release the held calls
	arrived  chan struct{}   // one value per held call
	delay    atomic.Int64    // when > 0, calls are answered after it instead of held
	down     atomic.Bool
	calls    atomic.Int64 // calls received
	realSeen atomic.Int64 // of which for the real token
}

func newFloodAS(t *testing.T, real string) *floodAS {
	t.Helper()
	as := &floodAS{real: map[string]bool{real: true}, gate: make(chan struct{}), arrived: make(chan struct{}, 10000)}
	as.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/introspect" || r.ParseForm() != nil {
			http.NotFound(w, r)
			return
		}
		as.calls.Add(1)
		if as.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		tok := r.PostForm.Get("token")
		w.Header().Set("Content-Type", "application/json")
		if d := as.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d)) // the figures' slow server, not a synchronisation
		}
		as.mu.Lock()
		isReal := as.real[tok]
		as.mu.Unlock()
		if isReal {
			as.realSeen.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"active": true, "iss": as.URL, "aud": resource, "sub": "real-user", "scope": "mcp:read",
				"token_type": "Bearer", "exp": time.Now().Add(time.Hour).Unix(),
			})
			return
		}
		if as.delay.Load() == 0 {
			as.arrived <- struct{}{}
			select {
			case <-as.gate:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte(`{"active":false}`))
	}))
	t.Cleanup(as.Close)
	t.Cleanup(as.release)
	return as
}

var releaseOnce sync.Map

func (as *floodAS) release() {
	if _, done := releaseOnce.LoadOrStore(as, true); !done {
		close(as.gate)
	}
}

// floodConfig is the site the flood tests run: the loopback is a trusted proxy, so that a
// test speaks for several client addresses (X-Forwarded-For); opaque tokens are introspected
// at as with max_in_flight 4 and timeout; the site answers body and the caller's id, and its
// resource_name names body, so that a reload can be waited for.
func floodConfig(f *fixture, as, timeout, body string) string {
	return caddyfileOf(trustLoopback, siteAt(":9080",
		mcpAuthDirective(introspected(resource, as, `resource_name "Flood `+body+`"`, "max_in_flight 4\ntimeout "+timeout)),
		`respond "`+body+` {http.auth.user.id}"`))
}

// randomToken is a made-up opaque token of the usual shape (32 random bytes, base64url).
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// fromAddr is a POST of token as a bearer token from client address addr (X-Forwarded-For,
// which a trusted proxy speaks), or from the connection's own address when addr is "".
func fromAddr(token, addr string) attackReq {
	if addr == "" {
		return bearerReq(token)
	}
	return bearerReq(token, "X-Forwarded-For: "+addr)
}

// TestIntrospectionFloodDoesNotStarveRealTokens: three client addresses flood the resource
// with made-up opaque tokens (40 concurrent requests each) against an authorization server
// that holds every call about them. Each address gets its share of the four slots (one), the
// rest of its flood is shed at once with 503 and Retry-After, and the flood reaches the
// server three times, not 120. A real token's first request, from a fourth address, is then
// served (200) while the flood still holds its slots. Before the limits, the flood took
// every slot and queued behind them, and the real token waited out the timeout for a 503.
func TestIntrospectionFloodDoesNotStarveRealTokens(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	f := &fixture{}
	f.start(t, floodConfig(f, as.URL, "10s", "ok"), "caddyfile")

	flooders := []string{"203.0.113.7", "198.51.100.1", "2001:db8:1:2::1"}
	const perAddress = 40
	type result struct {
		code  int
		retry string
	}
	results := make(chan result, len(flooders)*perAddress)
	var wg sync.WaitGroup
	for _, from := range flooders {
		for range perAddress {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, hdr, _, _ := f.try(fromAddr(randomToken(), from))
				results <- result{code, hdr.Get("Retry-After")}
			}()
		}
	}
	// Wait for the events: one held call per flooding address, and every other flood
	// request answered. A bound guards against a hang, not a timing.
	guard := time.After(2 * time.Minute)
	for range flooders {
		select {
		case <-as.arrived:
		case <-guard:
			t.Fatalf("the flood did not reach the authorization server")
		}
	}
	shed := 0
	for range len(flooders)*perAddress - len(flooders) {
		select {
		case r := <-results:
			if r.code != http.StatusServiceUnavailable || r.retry == "" {
				t.Fatalf("flood request answered %d (Retry-After %q) while the server holds its calls, want 503 with Retry-After", r.code, r.retry)
			}
			shed++
		case <-guard:
			t.Fatalf("only %d flood requests answered; the rest wait (no shedding)", shed)
		}
	}
	if n := as.calls.Load(); n != int64(len(flooders)) {
		t.Fatalf("%d calls reached the authorization server during the flood, want %d (one per address)", n, len(flooders))
	}

	// The real token's first request, from another address, while the flood holds 3 slots.
	start := time.Now()
	code, _, body := f.do(t, fromAddr(real, "192.0.2.50"))
	took := time.Since(start)
	t.Logf("flood of %d made-up tokens from %d addresses: %d shed at once (503), %d calls at the server; real token's first request: %d in %s",
		len(flooders)*perAddress, len(flooders), shed, as.calls.Load()-1, code, took.Round(time.Millisecond))
	if code != http.StatusOK || !strings.Contains(string(body), "real-user") {
		t.Fatalf("real token's first request during the flood: %d %q, want 200 for real-user", code, body)
	}
	if as.realSeen.Load() != 1 {
		t.Fatalf("real token asked about %d times, want 1", as.realSeen.Load())
	}

	as.release()
	wg.Wait()
	close(results)
	for r := range results {
		if r.code != http.StatusUnauthorized {
			t.Errorf("held flood request: %d once released, want 401 (inactive)", r.code)
		}
	}
}

// TestIntrospectionCacheSurvivesReload: an opaque token accepted once keeps passing after
// a config reload, also with the authorization server stopped, and a reload sends no token
// back to it.
func TestIntrospectionCacheSurvivesReload(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	f := &fixture{}
	f.start(t, floodConfig(f, as.URL, "2s", "first"), "caddyfile", "Flood first")
	if code, _, body := f.do(t, fromAddr(real, "")); code != http.StatusOK || string(body) != "first real-user" {
		t.Fatalf("real token: %d %q", code, body)
	}
	if n := as.realSeen.Load(); n != 1 {
		t.Fatalf("%d calls for the real token, want 1", n)
	}

	// A reload that changes the response: the handler is provisioned again.
	f.start(t, floodConfig(f, as.URL, "2s", "second"), "caddyfile", "Flood second")
	code, _, body := f.do(t, fromAddr(real, ""))
	if code != http.StatusOK || string(body) != "second real-user" {
		t.Fatalf("real token after the reload: %d %q, want 200 from the new config", code, body)
	}
	if n := as.realSeen.Load(); n != 1 {
		t.Fatalf("the reload sent the token back to the authorization server: %d calls, want 1", n)
	}

	// The server stops, the config is reloaded again: the token still passes.
	as.Close()
	f.start(t, floodConfig(f, as.URL, "2s", "third"), "caddyfile", "Flood third")
	code, _, body = f.do(t, fromAddr(real, ""))
	if code != http.StatusOK || string(body) != "third real-user" {
		t.Fatalf("real token after a reload with the authorization server down: %d %q, want 200 from the new config", code, body)
	}
	if n := as.calls.Load(); n != 1 {
		t.Fatalf("%d calls at the authorization server, want still 1", n)
	}
}

// figuresSend sends one request as client address addr (X-Forwarded-For) on client's
// kept-alive connections and returns its status and Retry-After; status 0 on a connection
// error. Only the figures use it: their bursts of thousands of requests a second would run
// out of ports with a connection each, and their figures are measured on kept-alive
// connections.
func figuresSend(client *http.Client, token, addr string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/mcp", nil)
	req.Header.Set("Authorization", bearer(token))
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// TestIntrospectionFloodFigures measures, for the closing note, what a flood does (run it
// with MCP_ITEST_FIGURES=1 on a quiet machine; its figures are logged, and it fails only
// on a wrong answer, never on a time):
//   - max_in_flight 4, a server that answers in 400 ms, 40 concurrent made-up tokens and one
//     real token: the real token's status and latency;
//   - a server that answers at once, 10 s of made-up tokens from 32 goroutines, from one
//     address and from 64: how many calls reach the server, and a real token's status
//     during it.
func TestIntrospectionFloodFigures(t *testing.T) {
	if os.Getenv("MCP_ITEST_FIGURES") == "" {
		t.Skip("figures: set MCP_ITEST_FIGURES=1 (takes about 25 s; run on a quiet machine)")
	}
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	real := randomToken()
	as := newFloodAS(t, real)
	as.delay.Store(int64(400 * time.Millisecond))
	f := &fixture{}
	f.start(t, floodConfig(f, as.URL, "5s", "ok"), "caddyfile")
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 500}}
	defer client.CloseIdleConnections()

	// Part 1: 40 concurrent made-up tokens (one address, no X-Forwarded-For), then the real
	// token from another address.
	var wg sync.WaitGroup
	var codes sync.Map
	before := as.calls.Load()
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := figuresSend(client, randomToken(), "203.0.113.7")
			n, _ := codes.LoadOrStore(code, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}()
	}
	// The flood arrives first: its calls are at the server.
	eventually(t, "the flood's first call at the server", func() bool { return as.calls.Load() > before })
	start := time.Now()
	code, _ := figuresSend(client, real, "192.0.2.50")
	took := time.Since(start)
	wg.Wait()
	summary := func() string {
		var parts []string
		codes.Range(func(k, v any) bool {
			parts = append(parts, fmt.Sprintf("%d×%d", v.(*atomic.Int64).Load(), k))
			return true
		})
		return strings.Join(parts, " ")
	}
	t.Logf("FIGURE 1: max_in_flight 4, 400 ms server, 40 made-up tokens (%s) + 1 real: real token %d in %s; %d calls at the server",
		summary(), code, took.Round(time.Millisecond), as.calls.Load())
	if code != http.StatusOK {
		t.Errorf("real token during the flood: %d, want 200", code)
	}
	// Part 1b: the same, with the real token from the flooding address itself (as when
	// everyone comes through one proxy without trusted_proxies): it meets that address's
	// share, and is shed at once.
	codes = sync.Map{}
	before = as.calls.Load()
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := figuresSend(client, randomToken(), "203.0.113.8")
			n, _ := codes.LoadOrStore(code, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}()
	}
	eventually(t, "the flood's first call at the server", func() bool { return as.calls.Load() > before })
	fresh := randomToken()
	as.mu.Lock()
	as.real[fresh] = true
	as.mu.Unlock()
	start = time.Now()
	code, retry := figuresSend(client, fresh, "203.0.113.8")
	took = time.Since(start)
	wg.Wait()
	t.Logf("FIGURE 1b: the same, real token from the flooding address: %d (Retry-After %q) in %s; flood %s",
		code, retry, took.Round(time.Millisecond), summary())

	// Part 2: a fast server, 10 s of made-up tokens from 32 goroutines.
	as.delay.Store(int64(time.Microsecond))
	for _, addrs := range []int{1, 64} {
		before := as.calls.Load()
		var sent, shed, let atomic.Int64
		stop := time.Now().Add(10 * time.Second)
		var fw sync.WaitGroup
		for g := range 32 {
			fw.Add(1)
			go func() {
				defer fw.Done()
				for i := 0; time.Now().Before(stop); i++ {
					from := fmt.Sprintf("198.51.%d.%d", (g+i)%addrs/250, (g+i)%addrs%250+1)
					c, _ := figuresSend(client, randomToken(), from)
					sent.Add(1)
					switch c {
					case http.StatusServiceUnavailable:
						shed.Add(1)
					case http.StatusOK:
						let.Add(1)
					}
				}
			}()
		}
		time.Sleep(5 * time.Second) // mid-burst: a measurement
		fresh := randomToken()
		as.mu.Lock()
		as.real[fresh] = true
		as.mu.Unlock()
		start := time.Now()
		code, _ := figuresSend(client, fresh, "192.0.2.51")
		took := time.Since(start)
		fw.Wait()
		t.Logf("FIGURE 2: 10 s burst from 32 goroutines, %d address(es): %d requests, %d shed (503), %d calls reached the server; real token mid-burst: %d in %s",
			addrs, sent.Load(), shed.Load(), as.calls.Load()-before, code, took.Round(time.Millisecond))
		if let.Load() != 0 {
			t.Errorf("%d made-up tokens let through", let.Load())
		}
		// From one address its share leaves the rest; from many, each is suspect after its
		// first made-up token and cannot touch the half of the total kept for clean ones.
		if code != http.StatusOK {
			t.Errorf("real token during the burst from %d address(es): %d, want 200", addrs, code)
		}
	}
}

// heldAS is an introspection endpoint whose calls about made-up tokens are each held until
// the test releases one (release), or answered at once while open is set; the real tokens
// it knows are answered at once.
type heldAS struct {
	*httptest.Server
	mu      sync.Mutex
	real    map[string]bool
	open    atomic.Bool
	held    chan chan struct{} // one per held call, for the test to close
	calls   atomic.Int64
	realHit atomic.Int64
}

func newHeldAS(t *testing.T) *heldAS {
	t.Helper()
	as := &heldAS{real: map[string]bool{}, held: make(chan chan struct{}, 10000)}
	done := make(chan struct{})
	as.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/introspect" || r.ParseForm() != nil {
			http.NotFound(w, r)
			return
		}
		as.calls.Add(1)
		tok := r.PostForm.Get("token")
		as.mu.Lock()
		isReal := as.real[tok]
		as.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if isReal {
			as.realHit.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"active": true, "iss": as.URL, "aud": resource, "sub": "real-user", "scope": "mcp:read",
				"token_type": "Bearer", "exp": time.Now().Add(time.Hour).Unix(),
			})
			return
		}
		if !as.open.Load() {
			gate := make(chan struct{})
			as.held <- gate
			select {
			case <-gate:
			case <-done:
			case <-r.Context().Done():
			}
		}
		_, _ = w.Write([]byte(`{"active":false}`))
	}))
	t.Cleanup(as.Close)
	t.Cleanup(func() { close(done) })
	return as
}

// TestIntrospectionFloodFromManyAddresses: eight addresses flood (more than four, so their
// shares together cover every slot and the whole rate). Each first sends one made-up token
// that comes back inactive, which makes it suspect; then each floods with 40 more, against a
// server that holds every call. Suspect addresses take free slots but never wait: the four
// slots are held, the rest of the flood (316 requests) is shed at once with 503, and only 4
// calls reach the server. A real token's first request from a ninth address, while the
// flood goes on and held calls end one at a time, is served (200). (That a waiting real
// token gets the next free slot before any suspect is TestLimiterSuspect's, in
// internal/verify, where the order can be seen.)
func TestIntrospectionFloodFromManyAddresses(t *testing.T) {
	t.Setenv("MCP_ITEST_RS_SECRET", rsClientSecret)
	as := newHeldAS(t)
	f := &fixture{}
	f.start(t, floodConfig(f, as.URL, "30s", "ok"), "caddyfile")

	var flooders []string
	for i := range 8 {
		flooders = append(flooders, fmt.Sprintf("203.0.113.%d", 10+i))
	}
	as.open.Store(true)
	for _, from := range flooders {
		if code, _, _ := f.do(t, fromAddr(randomToken(), from)); code != http.StatusUnauthorized {
			t.Fatalf("first made-up token from %s: %d, want 401", from, code)
		}
	}
	as.open.Store(false)
	before := as.calls.Load()

	results := make(chan int, len(flooders)*40)
	var wg sync.WaitGroup
	for _, from := range flooders {
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, _, _ := f.try(fromAddr(randomToken(), from))
				results <- code
			}()
		}
	}
	guard := time.After(2 * time.Minute)
	var gates []chan struct{}
	for range 4 { // every slot held by the flood
		select {
		case g := <-as.held:
			gates = append(gates, g)
		case <-guard:
			t.Fatal("the flood did not take the slots")
		}
	}
	for i := range len(flooders)*40 - 4 {
		select {
		case code := <-results:
			if code != http.StatusServiceUnavailable {
				t.Fatalf("flood request %d: %d while every slot is held, want 503 at once", i, code)
			}
		case <-guard:
			t.Fatalf("only %d flood requests answered; the rest wait", i)
		}
	}
	if n := as.calls.Load() - before; n != 4 {
		t.Fatalf("%d calls reached the server during the flood, want 4 (the slots)", n)
	}

	// The real token's first request, from a ninth address: it waits for a slot. A flood
	// that keeps going takes whatever slot is free when it asks, so the test keeps the flood
	// going and frees one held call at a time: the real token gets the first freed slot
	// after it started waiting.
	real := randomToken()
	as.mu.Lock()
	as.real[real] = true
	as.mu.Unlock()
	realDone := make(chan int, 1)
	go func() {
		code, _, _, _ := f.try(fromAddr(real, "192.0.2.50"))
		realDone <- code
	}()
	released := 0
	var code int
	for code == 0 {
		select {
		case code = <-realDone:
		case g := <-as.held: // a flood request took a freed slot before the real one waited
			gates = append(gates, g)
		case <-guard:
			t.Fatal("the real token was not served")
		default:
			if len(gates) > 0 && released < 1000 {
				close(gates[0])
				gates = gates[1:]
				released++
				// Keep the flood on: one more made-up token per freed slot.
				from := flooders[released%len(flooders)]
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, _, _, _ := f.try(fromAddr(randomToken(), from))
					results <- c
				}()
			} else {
				select {
				case code = <-realDone:
				case g := <-as.held:
					gates = append(gates, g)
				case <-guard:
					t.Fatal("the real token was not served")
				}
			}
		}
	}
	t.Logf("8 addresses × 41 made-up tokens, every slot held: the real token's first request got %d after %d held call(s) ended; %d calls at the server",
		code, released, as.calls.Load())
	if code != http.StatusOK || as.realHit.Load() != 1 {
		t.Fatalf("real token's first request during a flood from 8 addresses: %d (%d calls for it), want 200 after one call", code, as.realHit.Load())
	}
	stopDrain := make(chan struct{})
	go func() {
		for {
			select {
			case g := <-as.held:
				close(g)
			case <-stopDrain:
				return
			}
		}
	}()
	for _, g := range gates {
		close(g)
	}
	wg.Wait()
	close(stopDrain)
}
