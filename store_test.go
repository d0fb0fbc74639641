package mcpauth

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// Store configuration errors are refused at load, naming the field; the secret is never
// repeated in the error.
func TestStoreConfigErrors(t *testing.T) {
	t.Setenv("MCPAUTH_TEST_SHORT_KEY", "short-secret-value")
	t.Setenv("MCPAUTH_TEST_REDIS_URL", "rediss://default:short-secret-value@redis.internal:6380/0")
	tests := []struct {
		name string
		s    RedisStore
		want string
	}{
		{"no address", RedisStore{}, "store address: required"},
		{"short encryption_key", RedisStore{Addresses: []string{"127.0.0.1:1"}, EncryptionKey: "short-secret-value"}, "store encryption_key: shorter than 32 bytes"},
		{"short encryption_key from env", RedisStore{Addresses: []string{"127.0.0.1:1"}, EncryptionKey: "{env.MCPAUTH_TEST_SHORT_KEY}"}, "store encryption_key: shorter than 32 bytes"},
		{"unset env encryption_key", RedisStore{Addresses: []string{"127.0.0.1:1"}, EncryptionKey: "{env.MCPAUTH_TEST_UNSET_KEY}"}, "store encryption_key: a placeholder in it has no value"},
		{"unknown on_error", RedisStore{Addresses: []string{"127.0.0.1:1"}, OnError: "ignore"}, `store on_error "ignore": not closed or open`},
		{"negative db", RedisStore{Addresses: []string{"127.0.0.1:1"}, DB: -1}, "store db: -1 is negative"},
		{"db on a cluster", RedisStore{Addresses: []string{"a:1", "b:1"}, DB: 2}, "store db: a Cluster has only database 0"},
		// A URL holds the password, and addresses are logged: refused, without repeating it.
		{"address as a URL", RedisStore{Addresses: []string{"redis://default:short-secret-value@127.0.0.1:6379"}}, "store address 1 of 1: not host:port"},
		{"address with user", RedisStore{Addresses: []string{"127.0.0.1:1", "default:short-secret-value@127.0.0.1:6379"}}, "store address 2 of 2: not host:port"},
		{"address without port", RedisStore{Addresses: []string{"redis.internal"}}, "store address 1 of 1: not host:port"},
		{"address from env as a URL", RedisStore{Addresses: []string{"{env.MCPAUTH_TEST_REDIS_URL}"}}, "store address 1 of 1: not host:port"},
		{"missing ca", RedisStore{Addresses: []string{"127.0.0.1:1"}, TLS: &StoreTLS{CA: "/nonexistent/ca.pem"}}, "store tls ca:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s
			h := &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer}, Scopes: []string{"a"},
				JWKSFile: writeJWKSFile(t, jwttest.New(t, "k", "ES256")), Store: &StoreConfig{Redis: &s}}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Provision: %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "short-secret-value") {
				t.Errorf("the error repeats the secret: %v", err)
			}
			if err := h.Cleanup(); err != nil {
				t.Fatal(err)
			}
			if n := storePoolLen(); n != 0 {
				t.Errorf("%d pool entries left after a failed Provision and Cleanup", n)
			}
		})
	}
}

func TestStoreCaddyfileErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`store`, "store: name the backend"},
		{`store memcached {
		}`, `store "memcached": unknown backend`},
		{`store redis {
			on_error maybe
		}`, `store on_error "maybe": not closed or open`},
		{`store redis {
			address 127.0.0.1:6379
			encryption_key 0123456789
		}`, "store encryption_key: shorter than 32 bytes"},
		{`store redis {
			address 127.0.0.1:6379
			timeout soon
		}`, `store timeout: "soon" is not a positive duration`},
		{`store redis {
			address 127.0.0.1:6379
			tls ca
		}`, "store tls: takes nothing, or ca <file>"},
		{`store redis {
			address 127.0.0.1:6379
			db x
		}`, `store db: "x" is not a whole number`},
		{`store redis {
			address 127.0.0.1:6379
			address 127.0.0.1:6380
		}`, "store address: given more than once"},
		{`store redis {
			adress 127.0.0.1:6379
		}`, `store: unrecognized subdirective "adress"`},
		{`store redis {
		}`, "store address: required"},
	}
	for _, tt := range tests {
		_, err := parseTestCaddyfile("mcp_auth {\n\t\tresource https://mcp.example.com/mcp\n\t\t" + tt.in + "\n\t}")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\n err = %v, want %q", tt.in, err, tt.want)
		}
	}
}

// Handlers with the same store config share one client, kept while any uses it.
func TestStorePoolSharesOneClient(t *testing.T) {
	mk := func() *Handler {
		h := &Handler{Resource: testResource, AuthorizationServers: []string{testIssuer}, Scopes: []string{"a"},
			JWKSFile: writeJWKSFile(t, jwttest.New(t, "k", "ES256")), Store: &StoreConfig{Redis: &RedisStore{Addresses: []string{"127.0.0.1:1"}}}}
		provisionHandler(t, h)
		return h
	}
	a, b := mk(), mk()
	if a.Store.client != b.Store.client {
		t.Fatal("two handlers with the same store config got two clients")
	}
	if n := storePoolLen(); n != 1 {
		t.Fatalf("pool entries = %d, want 1", n)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := storePoolLen(); n != 1 {
		t.Fatalf("pool entries after one Cleanup = %d, want 1 (b still uses it)", n)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n := storePoolLen(); n != 0 {
		t.Fatalf("pool entries after both Cleanups = %d, want 0", n)
	}
}

func storePoolLen() int {
	n := 0
	storePool.Range(func(any, any) bool { n++; return true })
	return n
}
