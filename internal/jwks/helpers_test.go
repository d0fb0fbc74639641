package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeNet is an in-memory network: requests go straight to the handler of their host. Tests
// run in a synctest bubble, where time only moves once every goroutine is durably blocked,
// which a goroutine waiting on a real socket is not. A host nobody serves refuses.
type fakeNet struct {
	mu    sync.Mutex
	hosts map[string]http.Handler
}

var errRefused = errors.New("connection refused")

func newFakeNet() *fakeNet { return &fakeNet{hosts: map[string]http.Handler{}} }

func (n *fakeNet) handle(host string, h http.Handler) {
	n.mu.Lock()
	n.hosts[host] = h
	n.mu.Unlock()
}

func (n *fakeNet) RoundTrip(r *http.Request) (*http.Response, error) {
	n.mu.Lock()
	h := n.hosts[r.URL.Host]
	n.mu.Unlock()
	if h == nil {
		return nil, errRefused
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err // as a real transport does when the request is cancelled
	}
	return rec.Result(), nil
}

// options are the defaults of a set, on the fake network.
func (n *fakeNet) options() Options {
	return Options{Client: &http.Client{Transport: n}}
}

// keyServer is an authorization server on the fake network: RFC 8414 metadata naming its own
// URL as issuer, and a JWKS whose requests it counts. It can be down (503 everywhere), and
// can hold JWKS answers at a gate.
type keyServer struct {
	URL     string
	mu      sync.Mutex
	jwks    []byte
	gate    chan struct{} // when set, JWKS requests wait for it to close
	arrived chan struct{} // gets a value when a JWKS request waits at the gate
	down    atomic.Bool
	fetches atomic.Int64 // JWKS requests, answered or not
}

func (n *fakeNet) newKeyServer(host string, keys ...*jwttest.Key) *keyServer {
	ks := &keyServer{URL: "https://" + host, jwks: jwttest.JWKS(keys...), arrived: make(chan struct{}, 1)}
	n.handle(host, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			ks.fetches.Add(1)
		}
		if ks.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": ks.URL, "jwks_uri": ks.URL + "/jwks"})
		case "/jwks":
			ks.mu.Lock()
			body, gate := ks.jwks, ks.gate
			ks.mu.Unlock()
			if gate != nil {
				select {
				case ks.arrived <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-r.Context().Done():
				}
			}
			_, _ = w.Write(body)
		default:
			http.NotFound(w, r)
		}
	}))
	return ks
}

func (ks *keyServer) setKeys(keys ...*jwttest.Key) {
	b := jwttest.JWKS(keys...)
	ks.mu.Lock()
	ks.jwks = b
	ks.mu.Unlock()
}

// hold makes JWKS requests wait until the returned function is called.
func (ks *keyServer) hold() (release func()) {
	gate := make(chan struct{})
	ks.mu.Lock()
	ks.gate = gate
	ks.mu.Unlock()
	return sync.OnceFunc(func() { close(gate) })
}

// startSet starts a remote set (discovered when issuer is true), closed at the end of the test.
func startSet(t *testing.T, src string, issuer bool, opts Options) *Remote {
	t.Helper()
	var r *Remote
	if issuer {
		r = NewDiscovered(src, opts)
	} else {
		r = NewRemote(src, opts)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// observe makes opts log into an observer.
func observe(opts *Options) *observer.ObservedLogs {
	core, logs := observer.New(zap.DebugLevel)
	l := zap.New(core)
	opts.Logger = func() *zap.Logger { return l }
	return logs
}

// logFor returns the entries with this message (a part of it) and key_set field.
func logFor(logs *observer.ObservedLogs, msg, keySet string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterMessageSnippet(msg).All() {
		if e.ContextMap()["key_set"] == keySet {
			out = append(out, e)
		}
	}
	return out
}

// lookup is Sources.Lookup for one key's kid and alg, with a background context.
func lookup(s *Sources, iss string, k *jwttest.Key, kid string) ([]*Key, error) {
	return s.Lookup(context.Background(), iss, kid, k.Alg)
}

// holds reports whether keys hold k's public key.
func holds(keys []*Key, k *jwttest.Key) bool {
	for _, x := range keys {
		if sameKey(x.Public(), k.Signer.Public()) {
			return true
		}
	}
	return false
}

// httpHandlerFunc is a handler that only waits: f gets the request's context and returns when
// it wants the 404 answer sent.
type httpHandlerFunc func(ctx context.Context)

func (f httpHandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f(r.Context())
	http.NotFound(w, r)
}
