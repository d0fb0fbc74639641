package clientauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestEndpointDiscovery: a failed discovery is answered from memory for DiscoveryRetry, then
// tried again; a found or configured endpoint is kept and never discovered again.
func TestEndpointDiscovery(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	calls := 0
	fail := true
	e := &Endpoint{Group: "introspection", Name: "introspection endpoint", Fix: "set it",
		Now: func() time.Time { return now }, Logger: zap.NewNop(),
		Discover: func(context.Context) (string, error) {
			calls++
			if fail {
				return "", errors.New("metadata has no introspection_endpoint")
			}
			return "https://as.example/introspect", nil
		}}
	ctx := context.Background()
	if _, err := e.Get(ctx); err == nil || calls != 1 {
		t.Fatalf("first Get: err %v, %d calls; want an error after 1 call", err, calls)
	}
	now = now.Add(DiscoveryRetry - time.Second)
	if _, err := e.Get(ctx); err == nil || calls != 1 {
		t.Fatalf("within the retry pause: err %v, %d calls; want the remembered error, no call", err, calls)
	}
	fail = false
	now = now.Add(time.Second)
	if u, err := e.Get(ctx); err != nil || u != "https://as.example/introspect" || calls != 2 {
		t.Fatalf("after the pause: %q %v, %d calls", u, err, calls)
	}
	if u, err := e.Get(ctx); err != nil || u != "https://as.example/introspect" || calls != 2 {
		t.Fatalf("once found: %q %v, %d calls; want no new call", u, err, calls)
	}

	configured := &Endpoint{Name: "token endpoint", Now: time.Now, Logger: zap.NewNop(),
		Discover: func(context.Context) (string, error) { t.Fatal("discovered a configured endpoint"); return "", nil }}
	configured.Set("https://as.example/token")
	if u, err := configured.Get(ctx); err != nil || u != "https://as.example/token" {
		t.Fatalf("configured: %q %v", u, err)
	}
	none := &Endpoint{Name: "token endpoint", Now: time.Now, Logger: zap.NewNop()}
	if _, err := none.Get(ctx); err == nil || err.Error() != "no token endpoint" {
		t.Fatalf("without Discover: %v, want \"no token endpoint\"", err)
	}
}
