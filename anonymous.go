package mcpauth

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"go.uber.org/zap"
)

// anonymousPlaceholder answers the identity placeholders of a request without a token: the
// caller's ({http.auth.user.id}, client_id, scope, iss) and every claim, all empty.
func anonymousPlaceholder(key string) (any, bool) {
	rest, ok := strings.CutPrefix(key, "http.auth.")
	if !ok {
		return nil, false
	}
	switch rest {
	case "user.id", "user.client_id", "user.scope", "user.iss":
		return "", true
	}
	if strings.HasPrefix(rest, "mcp.claim.") {
		return "", true
	}
	return nil, false
}

// isAnonymous reports a request that carries no Authorization header at all. A header that is
// present, even empty or with another scheme, is a credential attempt: it is never downgraded
// to anonymous, and is answered as without `public` (401, or 400 for a malformed Bearer).
func isAnonymous(r *http.Request) bool {
	_, present := r.Header["Authorization"]
	return !present
}

// serveAnonymous judges a request without an Authorization header, with `public` or
// `challenge_in_result` on. Only the POSTs whose every message is lifecycle, discovery or a
// public operation pass, judged by every guard a signed-in request's body meets; any other
// gets the 401 that names what its messages need. No identity placeholder is set.
func (h *Handler) serveAnonymous(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// The identity placeholders are empty, not unknown: Caddy leaves an unknown
		// placeholder as its own text ("{http.auth.user.id}"), which a server reading a
		// header_up value would take for a user name.
		repl.Map(anonymousPlaceholder)
		if h.audit != nil {
			repl.Set(auditKey, &auditRecord{anonymous: true})
		}
	}
	if tokenInQuery(r.URL.RawQuery) {
		return h.deny(w, r, denyTokenInQuery, nil)
	}
	if x := h.TokenExchange; x != nil {
		if d := x.clearAnonymous(r); d != denyNone {
			return h.deny(w, r, d, nil)
		}
	}
	if h.Public == nil {
		// challenge_in_result alone: nothing is allowed without a token and every answer
		// is today's 401, but a matched client's single tools/call gets it in a result.
		return h.inResultWithoutPublic(w, r)
	}
	if d := unjudgeable(r); d != denyNone {
		return h.deny(w, r, d, nil)
	}
	switch r.Method {
	case http.MethodPost:
		return h.serveAnonymousPost(w, r, next)
	case http.MethodGet, http.MethodDelete:
		return h.serveAnonymousStream(w, r, next)
	}
	return h.deny(w, r, denyMissing, nil)
}

// tokenInQuery reports a query that names an access token (RFC 6750 §2.3, which the MCP
// authorization specification forbids clients to use). A request without an Authorization
// header that carries one is a credential attempt this resource does not judge: passed as
// anonymous, it would reach a server that may accept such tokens, expired or for another
// audience. Matched loosely (percent-decoded, any case, anywhere in the query), since
// frameworks split and decode queries differently; no MCP client sends such a query.
func tokenInQuery(raw string) bool {
	if raw == "" {
		return false
	}
	if dec, err := url.QueryUnescape(raw); err == nil {
		raw = dec
	}
	const name = "access_token"
	for i := 0; i+len(name) <= len(raw); i++ {
		if strings.EqualFold(raw[i:i+len(name)], name) {
			return true
		}
	}
	return false
}

// serveAnonymousStream: a GET (event stream) or DELETE (end of session) without a token
// passes only on a session opened without one (bind_sessions); on a session bound to a
// caller it is 404, as for anyone else not its owner; otherwise 405, the transport's "not
// offered", so that no client starts a sign-in for its background stream.
func (h *Handler) serveAnonymousStream(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.sessions == nil {
		return h.denyNotOffered(w, r)
	}
	present, ok := h.sessions.checkAnonymousSession(r)
	switch {
	case !present:
		return h.denyNotOffered(w, r)
	case !ok:
		return h.deny(w, r, denySession, nil)
	}
	var out http.ResponseWriter = &sessionWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		binder: h.sessions, anonymous: true}
	var lf *listFilter
	if r.Method == http.MethodGet && h.ops.lists != 0 {
		// A resumed POST stream may replay a list result here: rewritten as on the POST.
		r.Header.Del("Accept-Encoding")
		lf = h.anonymousListWriter(out)
		lf.sseOnly = true
		out = lf
	}
	return h.passAnonymous(out, r, next, lf)
}

// denyNotOffered answers 405 with the one method the transport always offers.
func (h *Handler) denyNotOffered(w http.ResponseWriter, r *http.Request) error {
	w.Header()["Allow"] = []string{http.MethodPost}
	return h.deny(w, r, denyNotOffered, nil)
}

// serveAnonymousPost reads and judges the body of a POST without a token.
func (h *Handler) serveAnonymousPost(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ops := h.ops
	body, err := readBody(r, ops.maxBody)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return h.deny(w, r, denyBodyTooLarge, nil)
		}
		return h.deny(w, r, denyBodyUnreadable, err)
	}
	setBody(r, body)
	var buf [4]mcpjson.Message
	msgs, batch, err := mcpjson.ReadRPC(body, buf[:0])
	if err != nil {
		return h.deny(w, r, denyBadMessage, err)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set(methodPlaceholder, msgs[0].Method)
		repl.Set(namePlaceholder, msgs[0].Name)
	}
	if rec := auditRecordOf(r); rec != nil {
		rec.method, rec.name = msgs[0].Method, msgs[0].Name
	}
	if err := mcpjson.CheckMCPHeaders(r.Header["Mcp-Method"], r.Header["Mcp-Name"], msgs, batch); err != nil {
		return h.deny(w, r, denyHeaderMismatch, err)
	}
	v := h.policy.DecideAnonymous(msgs)
	switch v.Outcome {
	case policy.Allow:
	case policy.ResourceURINotNormal:
		return h.deny(w, r, denyResourceURI, v.Err)
	default: // MissingToken: no other refusal is made without a token

		// The 401 names what these messages need (RFC 6750 §3: no error code without
		// credentials), so a client asks for enough in one sign-in.
		challenge := h.chall.build("", "", v.StepUp)
		if ce := h.logger.Check(zap.DebugLevel, "anonymous request refused"); ce != nil {
			ce.Write(zap.String("method", msgs[0].Method), zap.Int("messages", len(msgs)))
		}
		if h.inResult != nil && !batch && h.inResult.matches(r, nil) {
			if done := h.answerInResult(w, r, msgs, body, denyMissing, challenge); done {
				return nil
			}
		}
		return h.denyWith(w, r, denyMissing, challenge, nil)
	}

	var out http.ResponseWriter = w
	if h.sessions != nil {
		present, ok := h.sessions.checkAnonymousSession(r)
		if present && !ok {
			return h.deny(w, r, denySession, nil)
		}
		out = &sessionWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
			binder: h.sessions, anonymous: true}
	}
	var lf *listFilter
	for i := range msgs {
		if k, ok := mcpjson.ListKindOf(msgs[i].Method); ok && ops.lists.Has(k) {
			r.Header.Del("Accept-Encoding")
			lf = h.anonymousListWriter(out)
			out = lf
			break
		}
	}
	return h.passAnonymous(out, r, next, lf)
}

// passAnonymous hands an allowed anonymous request to the next handler.
func (h *Handler) passAnonymous(out http.ResponseWriter, r *http.Request, next caddyhttp.Handler, lf *listFilter) error {
	h.metrics.allowed.Inc()
	if h.audit != nil {
		h.auditDecision(r, denyNone)
	}
	err := next.ServeHTTP(out, r)
	if lf != nil {
		lf.finish()
	}
	return err
}

// anonymousListWriter is the list writer for a caller without a token: every tool carries
// its securitySchemes; with filter_lists (filter_tools_list, for tools) only the public
// entries and those a plain sign-in unlocks stay.
func (h *Handler) anonymousListWriter(w http.ResponseWriter) *listFilter {
	allowed := h.policy.EntryVisibleAnonymous
	if !h.Public.filterTools {
		allowed = keepTools(allowed)
	}
	lf := newEntryFilter(w, h.ops.lists, allowed)
	lf.lists.Schemes = h.policy.ToolSchemes
	return lf
}

// inResultWithoutPublic answers a request without a token when challenge_in_result is on and
// public is not: as without either (401 with the base challenge), except that a matched
// client's single tools/call, read with every body guard, gets that challenge in a result.
func (h *Handler) inResultWithoutPublic(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost || unjudgeable(r) != denyNone || !h.inResult.matches(r, nil) {
		return h.deny(w, r, denyMissing, nil)
	}
	body, err := readBody(r, h.ops.maxBody)
	if err != nil {
		return h.deny(w, r, denyMissing, nil)
	}
	setBody(r, body)
	var buf [1]mcpjson.Message
	msgs, batch, err := mcpjson.ReadRPC(body, buf[:0])
	if err != nil || batch || mcpjson.CheckMCPHeaders(r.Header["Mcp-Method"], r.Header["Mcp-Name"], msgs, batch) != nil {
		return h.deny(w, r, denyMissing, nil)
	}
	if h.answerInResult(w, r, msgs, body, denyMissing, h.chall.header[denyMissing]) {
		return nil
	}
	return h.deny(w, r, denyMissing, nil)
}
