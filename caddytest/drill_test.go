package integration

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReloadsUnderLoad is the reload drill: 50 config loads through the admin API while
// clients keep sending requests (GET and POST) with a valid token. Every HTTP answer must be
// 200 (no 401 or 503 because a key set was being swapped), the key set must not be fetched
// again, and the goroutines must come back to their baseline.
func TestReloadsUnderLoad(t *testing.T) {
	s := newSetup(t)
	tc := startCaddy(t, drillConfig(s, 0), "caddyfile")
	tok := s.token(t, "mcp:read", nil)
	if code, _, _ := s.do(t, attackReq{auth: []string{bearer(tok)}}); code != http.StatusOK {
		t.Fatalf("before the drill: status %d", code)
	}
	fetches := s.jwks.fetches.Load()
	tc.Client.CloseIdleConnections()
	baseline := settledGoroutines()

	var (
		stop            atomic.Bool
		wg              sync.WaitGroup
		ok              atomic.Int64
		badStatus       atomic.Int64
		freshErrors     atomic.Int64
		keepAliveErrors atomic.Int64
		firstBad        atomic.Value
		firstErr        atomic.Value
		answered        = make(chan struct{}, 1) // receives after a 200 (dropped when full)
	)
	// Clients 0 and 1 open a connection per request; 2 and 3 keep connections alive. At each
	// load Caddy opens a new listening socket beside the old one (SO_REUSEPORT) and closes the
	// old one: a connection still queued on the old socket is reset, and a request sent on a
	// kept-alive connection as the old server closes it fails (HTTP/1.1's keep-alive race).
	// Those failures happen before any handler runs, with or without mcp_auth; they are
	// counted and reported, not asserted. What mcp_auth answers is asserted: always 200.
	clients := make([]*http.Client, 4)
	for i := range clients {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = i < 2
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: tr}
		method := http.MethodGet
		if i%2 == 1 {
			method = http.MethodPost
		}
		keepAlive := !tr.DisableKeepAlives
		wg.Add(1)
		go func(c *http.Client, method string, keepAlive bool) {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest(method, baseURL+"/mcp", nil)
				req.Header.Set("Authorization", bearer(tok))
				resp, err := c.Do(req)
				if err != nil {
					if keepAlive {
						keepAliveErrors.Add(1)
					} else {
						freshErrors.Add(1)
					}
					firstErr.CompareAndSwap(nil, method+": "+err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
					select {
					case answered <- struct{}{}:
					default:
					}
				} else {
					badStatus.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s", method, resp.StatusCode, resp.Header.Get("WWW-Authenticate")))
				}
			}
		}(clients[i], method, keepAlive)
	}

	for i := range 50 {
		mustLoad(t, drillConfig(s, i+1), "text/caddyfile", false)
	}
	// Let the last config serve: wait for a few answers after its load.
	for len(answered) > 0 {
		<-answered
	}
	for range 4 {
		select {
		case <-answered:
		case <-time.After(30 * time.Second):
			t.Fatal("no answer within 30s of the last load")
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, c := range clients {
		c.CloseIdleConnections()
	}

	t.Logf("during 50 reloads: %d answers 200, %d other answers; transport failures: %d on fresh connections, %d on kept-alive ones (first: %v)",
		ok.Load(), badStatus.Load(), freshErrors.Load(), keepAliveErrors.Load(), firstErr.Load())
	if ok.Load() == 0 {
		t.Fatal("no request succeeded during the drill")
	}
	if n := badStatus.Load(); n != 0 {
		t.Errorf("%d answers were not 200, first: %v", n, firstBad.Load())
	}
	if n := s.jwks.fetches.Load() - fetches; n != 0 {
		t.Errorf("the key set was fetched %d more times across 50 reloads, want 0 (shared pool)", n)
	}

	// Old configs stop in the background; wait (bounded) for their goroutines to end.
	// Each look waits for whole garbage collections, during which the ending goroutines run.
	var after int
	for deadline := time.Now().Add(10 * time.Second); ; {
		tc.Client.CloseIdleConnections()
		if after = settledGoroutines(); after <= baseline+5 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("goroutines: %d before the drill, %d after", baseline, after)
	if after > baseline+5 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d before, %d after 50 reloads (want within 5)\n%s", baseline, after, buf[:n])
	}
}

// drillConfig is mcp_auth in front of respond (no reverse_proxy, whose transports keep their
// own connections), with a real grace period as in production. n changes the config.
func drillConfig(s *setup, n int) string {
	cfg := s.caddyfile(fmt.Sprintf("resource_name \"Drill %d\"\nscopes mcp:read", n), fmt.Sprintf(`respond "ok %d"`, n))
	return strings.Replace(cfg, "grace_period 1ns", "grace_period 5s", 1)
}

// settledGoroutines is the number of goroutines once it no longer changes across a garbage
// collection (which runs finalizers and lets goroutines that are ending end), bounded.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 20 {
		runtime.GC()
		runtime.Gosched()
		m := runtime.NumGoroutine()
		if m == n {
			return m
		}
		n = m
	}
	return n
}
