package mcpauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
)

// wellKnownPRM is the RFC 9728 §3 well-known URI suffix.
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// prmMaxAge is how long clients may cache the metadata document.
const prmMaxAge = 3600

// metadataDoc is the RFC 9728 protected resource metadata document, rendered once.
type metadataDoc struct {
	path string // request path it is served at, without trailing slash
	url  string // absolute URL, for resource_metadata in challenges
	body []byte
}

// prm is the document's JSON shape. Empty members are omitted (RFC 9728 §3.2).
type prm struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	ResourceDocumentation  string   `json:"resource_documentation,omitempty"`
	// RFC 9728 §2 members for sender-constrained tokens (RFC 9449, RFC 8705).
	DPoPAlgs        []string `json:"dpop_signing_alg_values_supported,omitempty"`
	DPoPRequired    bool     `json:"dpop_bound_access_tokens_required,omitempty"`
	CertBoundTokens bool     `json:"tls_client_certificate_bound_access_tokens,omitempty"`
}

func newMetadataDoc(h *Handler) (metadataDoc, error) {
	path, abs, err := metadataLocation(h.Resource)
	if err != nil {
		return metadataDoc{}, fmt.Errorf("resource %q: %w", h.Resource, err)
	}
	doc := prm{
		Resource:               h.Resource,
		AuthorizationServers:   h.AuthorizationServers,
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        h.ScopesSupported,
		ResourceName:           h.ResourceName,
		ResourceDocumentation:  h.ResourceDocumentation,
		CertBoundTokens:        h.MTLSBound,
	}
	if h.DPoP != nil {
		doc.DPoPAlgs = h.DPoP.Algorithms
		doc.DPoPRequired = h.DPoP.Required
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return metadataDoc{}, err
	}
	return metadataDoc{path: path, url: abs, body: body}, nil
}

// metadataLocation derives where the metadata of a resource lives (RFC 9728 §3.1): the
// well-known segment goes between the host and the resource's path, so
// https://h/mcp is described at https://h/.well-known/oauth-protected-resource/mcp and a
// resource without a path at the root well-known URI. A query stays at the end of the URL.
// path is the request path to serve, without a trailing slash.
func metadataLocation(resource string) (path, abs string, err error) {
	u, err := url.Parse(resource)
	if err != nil {
		return "", "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", jwks.ErrNotURL
	}
	rp := strings.TrimSuffix(u.EscapedPath(), "/")
	m := &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: escapeLoose(u.RawQuery)}
	m.Path = wellKnownPRM + strings.TrimSuffix(u.Path, "/")
	m.RawPath = wellKnownPRM + rp
	path = wellKnownPRM + strings.TrimSuffix(u.Path, "/")
	return path, m.String(), nil
}

// isMetadataPath reports whether a request path names the document, with or without a
// trailing slash.
func (m *metadataDoc) isMetadataPath(p string) bool {
	if len(p) > len(m.path) && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p == m.path
}

var (
	prmMethods   = "GET, HEAD, OPTIONS"
	prmCacheCtrl = "public, max-age=" + strconv.Itoa(prmMaxAge)
)

// serve answers a request for the metadata document. No credentials are needed.
func (m *metadataDoc) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Access-Control-Allow-Origin"] = []string{"*"}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{prmCacheCtrl}
		h["Content-Length"] = []string{strconv.Itoa(len(m.body))}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(m.body)
		}
	case http.MethodOptions:
		h["Access-Control-Allow-Methods"] = []string{prmMethods}
		h["Access-Control-Allow-Headers"] = []string{"MCP-Protocol-Version, Content-Type"}
		h["Access-Control-Max-Age"] = []string{"86400"}
		w.WriteHeader(http.StatusNoContent)
	default:
		h["Allow"] = []string{prmMethods}
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// escapeLoose percent-encodes what url.Parse lets through in a query but a quoted-string
// (the challenge's resource_metadata) or a URL must not hold: controls, space, '"', '\', and
// non-ASCII bytes. Valid escapes stay as they are.
func escapeLoose(q string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= 0x20 || c == '"' || c == '\\' || c >= 0x7F {
			if b.Len() == 0 {
				b.WriteString(q[:i])
			}
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return q
	}
	return b.String()
}
