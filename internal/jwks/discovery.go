package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
)

// ErrDowngrade is returned for an http endpoint named by metadata served over https, and
// for a redirect from https to http when a document is fetched.
var ErrDowngrade = errors.New("an http URL in metadata served over https: refused, the endpoint must use https too")

// ErrNotURL is returned for an issuer, or a jwks_uri, that is not an absolute http or https URL.
var ErrNotURL = errors.New("not an absolute http or https URL")

// ErrURIChars refuses characters RFC 3986 allows nowhere in a URI; url.Parse lets some
// through (a '"' in the host), and these URLs end up in quoted-strings of challenges.
var ErrURIChars = errors.New("contains a character not allowed in a URI (space, control, '\"', '<', '>', '\\', '^', '`', '{', '|', '}' or non-ASCII); use punycode and percent-encoding")

// CheckHTTPURL refuses what is not an absolute http or https URL made of characters a URI
// may hold: the check of every URL in the configuration (issuers, key sets, endpoints).
func CheckHTTPURL(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7F || strings.ContainsRune("\"<>\\^`{|}", r)
	}) {
		return ErrURIChars
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ErrNotURL
	}
	return nil
}

// DiscoveryURLs are the metadata locations tried for an issuer, in order: RFC 8414 with the
// well-known segment inserted before the path, then OpenID Connect Discovery inserted, then
// appended (the form Keycloak realms and Entra's /v2.0 issuers use). An issuer that is not an
// http or https URL cannot be discovered: the error wraps ErrNotURL.
func DiscoveryURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("issuer %q: %w", issuer, ErrNotURL)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	base := u.Scheme + "://" + u.Host
	cands := []string{
		base + "/.well-known/oauth-authorization-server" + path,
		base + "/.well-known/openid-configuration" + path,
	}
	if path != "" {
		cands = append(cands, base+path+"/.well-known/openid-configuration")
	}
	return cands, nil
}

// discoverJWKSURLAt finds the issuer's jwks_uri with the metadata looked for at base (""
// for the issuer itself); the document must still name issuer.
func discoverJWKSURLAt(ctx context.Context, client *http.Client, base, issuer string, limit int64) (string, error) {
	u, err := DiscoverEndpointAt(ctx, client, base, issuer, "jwks_uri", limit)
	if err != nil {
		return "", fmt.Errorf("discovering the JWKS of issuer %s: %w", issuer, err)
	}
	return u, nil
}

// DiscoverEndpoint finds the URL member (jwks_uri, introspection_endpoint) of the issuer's
// metadata, trying the DiscoveryURLs in order. A document whose issuer differs from the
// configured one is refused (RFC 8414 §3.3), and so is one without the member, and the next
// location is tried.
func DiscoverEndpoint(ctx context.Context, client *http.Client, issuer, member string, limit int64) (string, error) {
	return DiscoverEndpointAt(ctx, client, "", issuer, member, limit)
}

// DiscoverEndpointAt is DiscoverEndpoint with the metadata looked for at base ("" for the
// issuer itself: an Entra {tenantid} issuer is found at its authorization server).
func DiscoverEndpointAt(ctx context.Context, client *http.Client, base, issuer, member string, limit int64) (string, error) {
	if base == "" {
		base = issuer
	}
	cands, err := DiscoveryURLs(base)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, c := range cands {
		raw, err := getDoc(ctx, client, c, limit)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var md map[string]any
		if err := json.Unmarshal(raw, &md); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		iss, _ := md["issuer"].(string)
		if iss != issuer {
			errs = append(errs, fmt.Errorf("%s: issuer %q does not match the configured %q", c, iss, issuer))
			continue
		}
		u, _ := md[member].(string)
		if err := CheckHTTPURL(u); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %q: %w", c, member, u, err))
			continue
		}
		if strings.HasPrefix(c, "https:") && !strings.HasPrefix(strings.ToLower(u), "https:") {
			// Metadata read over TLS that sends us to plain HTTP: keys fetched there could be
			// anyone's, and client credentials and tokens sent there would travel in clear
			// (RFC 8414 §6: the metadata is trusted because TLS protected it).
			errs = append(errs, fmt.Errorf("%s: %s %q: %w", c, member, u, ErrDowngrade))
			continue
		}
		return u, nil
	}
	return "", errors.Join(errs...)
}

// noDowngrade is client refusing a redirect from https to anything else (ErrDowngrade),
// before the request is sent: a document asked for over TLS (metadata, a key set) is never
// read in clear, as a member of metadata read over TLS may not name an http URL. Other
// redirects are client's to judge, as before.
func noDowngrade(client *http.Client) *http.Client {
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return ErrDowngrade
		}
		if client.CheckRedirect != nil {
			return client.CheckRedirect(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// getDoc GETs a JSON document of at most limit bytes.
func getDoc(ctx context.Context, client *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := noDowngrade(client).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &telemetry.StatusError{Code: resp.StatusCode}
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("document larger than %d bytes", limit)
	}
	return raw, nil
}
