package jwks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
)

// callLog records what OnCall is told.
type callLog struct {
	mu    sync.Mutex
	calls [][2]string
	told  chan struct{} // one per call told
}

func (l *callLog) observe(kind, outcome string, d time.Duration) {
	if d < 0 {
		panic("negative duration")
	}
	l.mu.Lock()
	l.calls = append(l.calls, [2]string{kind, outcome})
	l.mu.Unlock()
	l.told <- struct{}{}
}

// wait waits until n calls were told, and returns them.
func (l *callLog) wait(t *testing.T, n int) [][2]string {
	t.Helper()
	limit := time.NewTimer(30 * time.Second)
	defer limit.Stop()
	for range n {
		select {
		case <-l.told:
		case <-limit.C:
			t.Fatalf("OnCall told %v, want %d calls", l.take(), n)
		}
	}
	return l.take()
}

func (l *callLog) take() [][2]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	return out
}

// TestOnCallToldOfEachCall: every JWKS request and every discovery is told to OnCall with
// an outcome that says what went wrong.
func TestOnCallToldOfEachCall(t *testing.T) {
	k := jwttest.New(t, "k1", "ES256")
	good := jwttest.JWKS(k)
	var mode atomic.Value
	mode.Store("ok")
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/oauth-authorization-server" {
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
			return
		}
		switch mode.Load() {
		case "ok":
			_, _ = w.Write(good)
		case "503":
			http.Error(w, "down", http.StatusServiceUnavailable)
		case "404":
			http.NotFound(w, r)
		case "junk":
			_, _ = w.Write([]byte("<html>"))
		}
	}))
	defer srv.Close()

	log := callLog{told: make(chan struct{}, 100)}
	// Sets that fetch once at start and then wait an hour, whatever the outcome: each
	// Refresh below is the only call in flight.
	opts := Options{OnCall: log.observe, RetryMin: time.Hour, RetryMax: time.Hour, UnknownKIDInterval: -1}
	r := NewRemote(srv.URL+"/jwks", opts)
	defer r.Close()
	log.wait(t, 1) // the start-up fetch
	ctx := context.Background()
	for _, c := range []struct {
		mode, outcome string
	}{
		{"ok", telemetry.OK}, {"503", telemetry.ServerError}, {"404", telemetry.Refused}, {"junk", telemetry.BadAnswer},
	} {
		mode.Store(c.mode)
		_ = r.Refresh(ctx)
		got := log.wait(t, 1)
		if len(got) != 1 || got[0] != [2]string{telemetry.KindJWKS, c.outcome} {
			t.Errorf("JWKS answering %s: OnCall told %v, want [jwks %s]", c.mode, got, c.outcome)
		}
	}

	// A discovered set: the metadata, then the JWKS.
	mode.Store("ok")
	_ = r.Close()
	d := NewDiscovered(srv.URL, opts)
	seen := map[[2]string]bool{}
	for _, c := range log.wait(t, 2) {
		seen[c] = true
	}
	_ = d.Close()
	if !seen[[2]string{telemetry.KindDiscovery, telemetry.OK}] || !seen[[2]string{telemetry.KindJWKS, telemetry.OK}] || len(seen) != 2 {
		t.Errorf("discovered set: OnCall told %v, want discovery ok and jwks ok", seen)
	}

	// Unreachable: nobody listens any more.
	srv.Close()
	d2 := NewDiscovered(srv.URL, opts)
	defer d2.Close()
	got := log.wait(t, 1)
	if len(got) != 1 || got[0] != [2]string{telemetry.KindDiscovery, telemetry.Unreachable} {
		t.Errorf("unreachable issuer: OnCall told %v, want [discovery unreachable]", got)
	}
}
