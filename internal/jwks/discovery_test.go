package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestDiscoveryURLs(t *testing.T) {
	tests := []struct {
		issuer string
		want   []string
	}{
		{"https://as.example.com", []string{
			"https://as.example.com/.well-known/oauth-authorization-server",
			"https://as.example.com/.well-known/openid-configuration",
		}},
		{"https://as.example.com/", []string{
			"https://as.example.com/.well-known/oauth-authorization-server",
			"https://as.example.com/.well-known/openid-configuration",
		}},
		{"https://kc.example.com/realms/mcp", []string{
			"https://kc.example.com/.well-known/oauth-authorization-server/realms/mcp",
			"https://kc.example.com/.well-known/openid-configuration/realms/mcp",
			"https://kc.example.com/realms/mcp/.well-known/openid-configuration",
		}},
		{"https://kc.example.com/realms/mcp/", []string{
			"https://kc.example.com/.well-known/oauth-authorization-server/realms/mcp",
			"https://kc.example.com/.well-known/openid-configuration/realms/mcp",
			"https://kc.example.com/realms/mcp/.well-known/openid-configuration",
		}},
		{"https://login.microsoftonline.com/tenant-id/v2.0", []string{
			"https://login.microsoftonline.com/.well-known/oauth-authorization-server/tenant-id/v2.0",
			"https://login.microsoftonline.com/.well-known/openid-configuration/tenant-id/v2.0",
			"https://login.microsoftonline.com/tenant-id/v2.0/.well-known/openid-configuration",
		}},
		{"http://127.0.0.1:8080/t", []string{
			"http://127.0.0.1:8080/.well-known/oauth-authorization-server/t",
			"http://127.0.0.1:8080/.well-known/openid-configuration/t",
			"http://127.0.0.1:8080/t/.well-known/openid-configuration",
		}},
		{"https://[::1]:8443", []string{
			"https://[::1]:8443/.well-known/oauth-authorization-server",
			"https://[::1]:8443/.well-known/openid-configuration",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.issuer, func(t *testing.T) {
			got, err := DiscoveryURLs(tt.issuer)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "urn:example:issuer", "ftp://as.example.com", "as.example.com", "https://"} {
		if got, err := DiscoveryURLs(bad); !errors.Is(err, ErrNotURL) {
			t.Errorf("DiscoveryURLs(%q) = %q, %v; want ErrNotURL", bad, got, err)
		}
	}
}

// metaServer is an authorization server that answers metadata documents only at the paths a
// test gives, each naming the issuer the test chooses, and records the paths asked for.
type metaServer struct {
	*httptest.Server
	mu    sync.Mutex
	docs  map[string]string // path -> issuer claimed by the document there
	asked []string
}

func newMetaServer(t *testing.T) *metaServer {
	t.Helper()
	ms := &metaServer{docs: map[string]string{}}
	ms.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms.mu.Lock()
		ms.asked = append(ms.asked, r.URL.Path)
		iss, ok := ms.docs[r.URL.Path]
		ms.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": ms.URL + "/jwks" + r.URL.Path})
	}))
	t.Cleanup(ms.Close)
	return ms
}

func TestDiscoverJWKSURL(t *testing.T) {
	const (
		as8414 = "/.well-known/oauth-authorization-server"
		oidc   = "/.well-known/openid-configuration"
	)
	// Each case: the issuer's path (appended to the server URL), the documents served
	// (path -> issuer, where "ISS" stands for the configured issuer), the document expected
	// to be used ("" for a failure), and the paths expected to be asked for, in order.
	tests := []struct {
		name      string
		issPath   string
		docs      map[string]string
		wantDoc   string
		wantAsked []string
	}{
		{
			name:      "RFC 8414 at the root",
			docs:      map[string]string{as8414: "ISS", oidc: "ISS"},
			wantDoc:   as8414,
			wantAsked: []string{as8414},
		},
		{
			name:      "RFC 8414 with path insertion",
			issPath:   "/tenant",
			docs:      map[string]string{as8414 + "/tenant": "ISS"},
			wantDoc:   as8414 + "/tenant",
			wantAsked: []string{as8414 + "/tenant"},
		},
		{
			name:      "8414 404, OIDC inserted",
			issPath:   "/tenant",
			docs:      map[string]string{oidc + "/tenant": "ISS"},
			wantDoc:   oidc + "/tenant",
			wantAsked: []string{as8414 + "/tenant", oidc + "/tenant"},
		},
		{
			name:      "8414 and OIDC inserted 404, OIDC appended (Keycloak realm)",
			issPath:   "/realms/mcp",
			docs:      map[string]string{"/realms/mcp" + oidc: "ISS"},
			wantDoc:   "/realms/mcp" + oidc,
			wantAsked: []string{as8414 + "/realms/mcp", oidc + "/realms/mcp", "/realms/mcp" + oidc},
		},
		{
			name:      "OIDC appended for an Entra-style /v2.0 issuer",
			issPath:   "/tenant-id/v2.0",
			docs:      map[string]string{"/tenant-id/v2.0" + oidc: "ISS"},
			wantDoc:   "/tenant-id/v2.0" + oidc,
			wantAsked: []string{as8414 + "/tenant-id/v2.0", oidc + "/tenant-id/v2.0", "/tenant-id/v2.0" + oidc},
		},
		{
			name:      "OIDC at the root for an issuer without path",
			docs:      map[string]string{oidc: "ISS"},
			wantDoc:   oidc,
			wantAsked: []string{as8414, oidc},
		},
		{
			name:    "issuer mismatch refused, next document used",
			issPath: "/realms/mcp",
			docs: map[string]string{
				as8414 + "/realms/mcp": "https://evil.example.com/realms/mcp",
				oidc + "/realms/mcp":   "ISS/",
				"/realms/mcp" + oidc:   "ISS",
			},
			wantDoc:   "/realms/mcp" + oidc,
			wantAsked: []string{as8414 + "/realms/mcp", oidc + "/realms/mcp", "/realms/mcp" + oidc},
		},
		{
			name:      "every document names another issuer: refused",
			issPath:   "/t",
			docs:      map[string]string{as8414 + "/t": "ISSx", oidc + "/t": "https://other.example.com/t", "/t" + oidc: ""},
			wantAsked: []string{as8414 + "/t", oidc + "/t", "/t" + oidc},
		},
		{
			name:      "issuer with trailing slash: slash dropped for the well-known paths, kept in the comparison",
			issPath:   "/realms/mcp/",
			docs:      map[string]string{as8414 + "/realms/mcp": "ISS"},
			wantDoc:   as8414 + "/realms/mcp",
			wantAsked: []string{as8414 + "/realms/mcp"},
		},
		{
			name:      "issuer with trailing slash, metadata without it: refused",
			issPath:   "/realms/mcp/",
			docs:      map[string]string{as8414 + "/realms/mcp": "ISS-noslash", "/realms/mcp" + oidc: "ISS"},
			wantDoc:   "/realms/mcp" + oidc,
			wantAsked: []string{as8414 + "/realms/mcp", oidc + "/realms/mcp", "/realms/mcp" + oidc},
		},
		{
			name:      "issuer at the root with trailing slash",
			issPath:   "/",
			docs:      map[string]string{as8414: "ISS"},
			wantDoc:   as8414,
			wantAsked: []string{as8414},
		},
		{
			name:      "same host, another port in the metadata issuer: refused",
			issPath:   "/t",
			docs:      map[string]string{as8414 + "/t": "PORT"},
			wantAsked: []string{as8414 + "/t", oidc + "/t", "/t" + oidc},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := newMetaServer(t)
			issuer := ms.URL + tt.issPath
			for p, iss := range tt.docs {
				switch iss {
				case "ISS":
					iss = issuer
				case "ISS/":
					iss = issuer + "/"
				case "ISSx":
					iss = issuer + "x"
				case "ISS-noslash":
					iss = strings.TrimSuffix(issuer, "/")
				case "PORT":
					iss = "http://127.0.0.1:1" + tt.issPath
				}
				ms.docs[p] = iss
			}
			got, err := discoverJWKSURL(context.Background(), http.DefaultClient, issuer, DefaultMaxDocBytes)
			ms.mu.Lock()
			asked := slices.Clone(ms.asked)
			ms.mu.Unlock()
			if !slices.Equal(asked, tt.wantAsked) {
				t.Errorf("asked %q\nwant  %q", asked, tt.wantAsked)
			}
			if tt.wantDoc == "" {
				if err == nil {
					t.Fatalf("got jwks_uri %q, want an error", got)
				}
				if !strings.Contains(err.Error(), "does not match the configured") {
					t.Errorf("error %q does not say the issuer did not match", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := ms.URL + "/jwks" + tt.wantDoc; got != want {
				t.Errorf("jwks_uri %q, want %q (from %s)", got, want, tt.wantDoc)
			}
		})
	}
}

func TestDiscoveryRefusesBadJWKSURI(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": "file:///etc/passwd"})
		case "/.well-known/openid-configuration":
			_, _ = w.Write([]byte(`not json`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if got, err := discoverJWKSURL(context.Background(), http.DefaultClient, srv.URL, DefaultMaxDocBytes); err == nil {
		t.Fatalf("got jwks_uri %q, want an error", got)
	}
}

// discoverJWKSURL finds the issuer's jwks_uri at the issuer itself; only tests call it.
func discoverJWKSURL(ctx context.Context, client *http.Client, issuer string, limit int64) (string, error) {
	return discoverJWKSURLAt(ctx, client, "", issuer, limit)
}

// TestDiscoveryRefusesDowngrade: metadata read over https that names an http endpoint
// (jwks_uri, introspection_endpoint, token_endpoint) is refused; an https one passes, and an
// http issuer (a test or lab setup) may name http endpoints.
func TestDiscoveryRefusesDowngrade(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL,
			"jwks_uri":               "http://" + strings.TrimPrefix(srv.URL, "https://") + "/jwks",
			"introspection_endpoint": "HTTP://as.example/introspect",
			"token_endpoint":         srv.URL + "/token"})
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, member := range []string{"jwks_uri", "introspection_endpoint"} {
		if got, err := DiscoverEndpoint(ctx, srv.Client(), srv.URL, member, DefaultMaxDocBytes); !errors.Is(err, ErrDowngrade) {
			t.Errorf("%s: got %q, %v; want ErrDowngrade", member, got, err)
		}
	}
	if got, err := DiscoverEndpoint(ctx, srv.Client(), srv.URL, "token_endpoint", DefaultMaxDocBytes); err != nil || got != srv.URL+"/token" {
		t.Errorf("token_endpoint over https: %q, %v", got, err)
	}

	var plain *httptest.Server
	plain = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": plain.URL, "jwks_uri": plain.URL + "/jwks"})
	}))
	defer plain.Close()
	if got, err := DiscoverEndpoint(ctx, plain.Client(), plain.URL, "jwks_uri", DefaultMaxDocBytes); err != nil || got != plain.URL+"/jwks" {
		t.Errorf("http issuer, http jwks_uri: %q, %v", got, err)
	}
}

// TestDiscoveryRedirectToHTTPRefused: the downgrade refused in a member is refused in a
// redirect too. An https issuer whose metadata location answers with a redirect to plain
// HTTP (a proxy that terminates TLS in front of a server writing absolute http redirects)
// would otherwise have the document read in clear, and a key set behind an https jwks_uri
// fetched in clear: anyone on that path could name the keys.
func TestDiscoveryRedirectToHTTPRefused(t *testing.T) {
	var srv *httptest.Server
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
	}))
	defer plain.Close()
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	ctx := context.Background()
	if got, err := DiscoverEndpoint(ctx, srv.Client(), srv.URL, "jwks_uri", DefaultMaxDocBytes); !errors.Is(err, ErrDowngrade) {
		t.Errorf("metadata redirected to http: got %q, %v; want ErrDowngrade", got, err)
	}
	if _, err := getDoc(ctx, srv.Client(), srv.URL+"/jwks", DefaultMaxDocBytes); !errors.Is(err, ErrDowngrade) {
		t.Errorf("key set redirected to http: %v, want ErrDowngrade", err)
	}
	// An https location that redirects to https is followed as before.
	var other *httptest.Server
	other = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/.well-known/oauth-authorization-server", http.StatusFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": other.URL, "jwks_uri": other.URL + "/jwks"})
	}))
	defer other.Close()
	if raw, err := getDoc(ctx, other.Client(), other.URL+"/moved", DefaultMaxDocBytes); err != nil || len(raw) == 0 {
		t.Errorf("https redirected to https: %q, %v", raw, err)
	}
}
