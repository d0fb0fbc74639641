package mcpauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// warnIfMisplaced logs, at start and in `caddy validate`, a handler placed where its metadata
// document cannot be served (see misplacement).
func (h *Handler) warnIfMisplaced(ctx caddy.Context) {
	m := h.misplacement(ctx)
	if m == "" {
		return
	}
	h.logger.Warn("metadata document unreachable: a matcher around mcp_auth keeps its path out, "+
		"so MCP clients get 401 but never find the authorization server and no login starts",
		zap.String("resource", h.Resource),
		zap.String("metadata_path", h.meta.path),
		zap.String("matcher", m),
		zap.String("fix", "put mcp_auth directly in the site block, not inside handle /mcp* "+
			"or behind a matcher of its own, or let the matcher include "+h.meta.path))
}

// misplacement reports whether the routes leading to this handler let a request for the
// protected resource through but not the GET for its metadata document, the usual result of
// `handle /mcp* { mcp_auth … }` or `mcp_auth /mcp* { … }`. The document lives under
// /.well-known/oauth-protected-resource (RFC 9728 §3.1), outside such a matcher, so MCP
// clients get the 401 but never learn which authorization server to ask, and no login starts.
//
// It runs in Provision, where Caddy's context knows the modules above this one (the http app,
// then the subroutes the handler is nested in) and the matchers of the route being
// provisioned at each level are already loaded. It returns the matchers that keep the
// document out, or "" when the placement is fine or cannot be judged (JSON configs that
// nest the handler in other modules, several servers that could hold it, a matcher that fails
// or panics on a synthetic request). Request rewrites before the handler are not replayed,
// so this is a warning, never a refusal.
func (h *Handler) misplacement(ctx caddy.Context) (blocking string) {
	defer func() {
		if recover() != nil { // a third-party matcher that cannot judge a synthetic request
			blocking = ""
		}
	}()
	mods := ctx.Modules()
	if len(mods) < 2 || mods[len(mods)-1] != caddy.Module(h) {
		return ""
	}
	appAt := -1
	for i, m := range mods {
		if _, ok := m.(*caddyhttp.App); ok {
			appAt = i
		}
	}
	if appAt < 0 || appAt == len(mods)-1 {
		return ""
	}
	app := mods[appAt].(*caddyhttp.App)

	// The route at each level that holds the next module down. Within a subroute, routes
	// are provisioned in order and Caddy drops a route's raw handlers once they are loaded,
	// so the route being provisioned is the first one that still has them.
	var levels []caddyhttp.MatcherSets
	var srv *caddyhttp.Server
	top := caddy.GetModuleName(mods[appAt+1])
	found := 0
	for _, s := range app.Servers {
		if r := routeInProgress(s.Routes); r != nil && holds(r, top) {
			found++
			srv = s
			levels = append(levels, r.MatcherSets)
		}
	}
	if found != 1 { // servers not provisioned yet look the same: judge only the inner levels
		levels, srv = nil, nil
	}
	for _, m := range mods[appAt+1 : len(mods)-1] {
		sr, ok := m.(*caddyhttp.Subroute)
		if !ok {
			return ""
		}
		r := routeInProgress(sr.Routes)
		if r == nil {
			return ""
		}
		levels = append(levels, r.MatcherSets)
	}

	res, err := url.Parse(h.Resource)
	if err != nil {
		return ""
	}
	resourcePath := res.Path
	if resourcePath == "" {
		resourcePath = "/"
	}
	for _, ms := range levels {
		toResource, err1 := matches(ms, srv, http.MethodPost, res.Host, resourcePath)
		toMetadata, err2 := matches(ms, srv, http.MethodGet, res.Host, h.meta.path)
		if err1 != nil || err2 != nil {
			return ""
		}
		if !toResource {
			continue // neither reaches: a host matcher for another name, say; nothing to compare
		}
		if !toMetadata {
			return describeMatchers(ms)
		}
	}
	return ""
}

// routeInProgress is the first route whose handlers are still raw, nil if none.
func routeInProgress(routes caddyhttp.RouteList) *caddyhttp.Route {
	for i := range routes {
		if len(routes[i].HandlersRaw) > 0 {
			return &routes[i]
		}
	}
	return nil
}

// holds reports whether one of the route's raw handlers is the module named name.
func holds(r *caddyhttp.Route, name string) bool {
	for _, raw := range r.HandlersRaw {
		var probe struct {
			Handler string `json:"handler"`
		}
		if json.Unmarshal(raw, &probe) == nil && probe.Handler == name {
			return true
		}
	}
	return false
}

// matches runs the matcher sets on a synthetic request prepared as Caddy prepares real ones.
func matches(ms caddyhttp.MatcherSets, srv *caddyhttp.Server, method, host, path string) (bool, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, "http://placeholder"+path, nil)
	if err != nil {
		return false, err
	}
	req.Host = host
	req.RemoteAddr = "127.0.0.1:1"
	req.RequestURI = path
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), discardWriter{}, srv)
	return ms.AnyMatchWithError(req)
}

// describeMatchers names the matchers of a route for the log, e.g. "path /mcp*".
func describeMatchers(ms caddyhttp.MatcherSets) string {
	var sets []string
	for _, set := range ms {
		var parts []string
		for _, m := range set {
			switch p := m.(type) {
			case caddyhttp.MatchPath:
				parts = append(parts, "path "+strings.Join(p, " "))
				continue
			case *caddyhttp.MatchPath:
				parts = append(parts, "path "+strings.Join(*p, " "))
				continue
			}
			name := fmt.Sprintf("%T", m)
			if mod, ok := m.(caddy.Module); ok {
				name = mod.CaddyModule().ID.Name()
			}
			parts = append(parts, name)
		}
		sets = append(sets, strings.Join(parts, " and "))
	}
	return strings.Join(sets, " or ")
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
