package mcpauth

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// ServeHTTP answers the metadata document, lets CORS preflights through, and passes on only
// requests whose bearer token is valid for this resource and meets the scope policy.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.meta.isMetadataPath(r.URL.Path) {
		h.meta.serve(w, r)
		return nil
	}
	// A CORS preflight (Fetch standard: OPTIONS with Origin and Access-Control-Request-Method)
	// never carries credentials; the MCP server or a cors handler after this one answers it.
	// Nor does it carry a body: an OPTIONS with one is an ordinary request and is
	// authenticated, else a server that reads any method's body would get it unjudged. Nor
	// does it ask to switch protocols or override its method: reverse_proxy carries an
	// Upgrade on any method, and the upstream's 101 would open a tunnel with no token. Nor
	// credentials (Fetch standard: a preflight never has them): the MCP server must not get
	// an Authorization header that nothing verified, and strip_token would not remove.
	if r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != "" && !requestHasBody(r) &&
		!asksUpgrade(r) && !hasMethodOverride(r.Header) && len(r.Header["Authorization"]) == 0 {
		if h.sessions != nil {
			// No caller proved to own a session ID a preflight carries (a browser's never
			// carries one): the MCP server must not receive it.
			dropSessionHeaders(r.Header)
		}
		return next.ServeHTTP(w, r)
	}

	raw, viaDPoP, d := bearerToken(r.Header, h.dpop != nil)
	if d != denyNone {
		if d == denyMissing && h.ops != nil && (h.Public != nil || h.inResult != nil) && isAnonymous(r) {
			return h.serveAnonymous(w, r, next)
		}
		return h.deny(w, r, d, nil)
	}
	// The token's digest, computed at most once for this request, whoever asks first. With
	// audit on it lives in the request's audit record, which names the token also when the
	// token is refused.
	var digest tokenDigest
	td := &digest
	// The record is kept for audit events and for the request's span, when Caddy's tracing
	// records it.
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var rec *auditRecord
	if span := recordingSpan(r); h.audit != nil || span != nil {
		rec = &auditRecord{span: span}
		td = &rec.digest
		if repl != nil {
			repl.Set(auditKey, rec)
		}
	}
	td.raw = raw
	if !viaDPoP && h.dpopRequired {
		return h.deny(w, r, denyDPoPRequired, nil)
	}
	c, d, err := h.authenticate(w, r, td, viaDPoP)
	if d != denyNone {
		return h.deny(w, r, d, err)
	}
	// The token is valid: the caller is known, also if the scope check refuses the request
	// (the access log then shows who was refused). The identity answers the placeholders
	// itself, so none is computed unless used.
	repl.Map(c.provider)
	if rec != nil {
		rec.caller = c
	}

	// out is what the next handler writes to; denials are written to w.
	out := w
	if h.sessions != nil {
		ok, anonymous, anonSID := h.sessions.checkCallerSession(r, c.identity, c.sessionAnchor)
		if !ok {
			return h.deny(w, r, denySession, nil)
		}
		out = &sessionWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
			binder: h.sessions, id: c.identity, anchor: c.sessionAnchor, anonymous: anonymous, anonSID: anonSID}
	}

	// The base client and claim conditions: no request of this caller can pass, whatever
	// its scopes, so nothing else is judged.
	if o := c.subject.BaseRefusal(); o != policy.Allow {
		return h.deny(w, r, outcomeDenials[o], nil)
	}

	var lf *listFilter
	target := siteTarget
	if h.ops != nil {
		// The base policy and the rules are judged together, so that a 403 names every
		// scope this request needs.
		dec := h.judgeOperation(out, r, c, rec)
		if dec.deny != denyNone {
			if h.inResultForSignedIn(w, r, c, dec.deny, dec.stepUp) {
				return nil
			}
			if dec.stepUp != nil {
				return h.denyStepUp(w, r, dec.stepUp, dec.err)
			}
			return h.deny(w, r, dec.deny, dec.err)
		}
		lf = dec.filter
		target = dec.target
	} else if !c.subject.BareAllowed() {
		v := h.policy.Decide(&c.subject, nil)
		return h.deny(w, r, outcomeDenials[v.Outcome], nil)
	}
	if h.TokenExchange != nil {
		if d, err := h.TokenExchange.exchangeFor(r, repl, rec, c, td, target); d != denyNone {
			return h.deny(w, r, d, err)
		}
	}

	h.metrics.allowed.Inc()
	if rec != nil && rec.span != nil {
		setDecisionAttributes(rec.span, r, denyNone)
	}
	if h.audit != nil {
		if ce := h.audit.Check(zap.InfoLevel, "decision"); ce != nil {
			h.writeAudit(ce, r, denyNone, rec)
		}
	}
	if h.StripToken {
		r.Header.Del("Authorization")
	}
	if lf != nil {
		out = lf
	}
	serve := func(w http.ResponseWriter, r *http.Request) error {
		err := next.ServeHTTP(w, r)
		if lf != nil {
			lf.finish()
		}
		return err
	}
	if h.CloseStreamsAtExpiry && !c.identity.Expiry.IsZero() {
		return h.serveUntilExpiry(out, r, c.identity.Expiry.Add(h.leeway), serve)
	}
	return serve(out, r)
}

// deny writes the answer for d. It is written here, not returned as an error for
// handle_errors, so that the challenge always reaches the client intact.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, d denial, err error) error {
	return h.denyWith(w, r, d, h.chall.header[d], err)
}

// denyStepUp answers insufficient_scope with a challenge naming the scopes this request
// needs (policy.Verdict.StepUp).
func (h *Handler) denyStepUp(w http.ResponseWriter, r *http.Request, scopes []string, err error) error {
	return h.denyWith(w, r, denyInsufficientScope, h.chall.stepUp(scopes), err)
}

// denyWith is deny with a challenge built for this request.
func (h *Handler) denyWith(w http.ResponseWriter, r *http.Request, d denial, challenge string, err error) error {
	h.recordDenial(r, d, err)
	h.chall.writeWith(w, d, challenge)
	return nil
}

// recordDenial counts, audits and logs the denial d, and sets its placeholders.
func (h *Handler) recordDenial(r *http.Request, d denial, err error) {
	info := denials[d]
	h.metrics.byDenial[d].Inc()
	traceDecision(r, d)
	if h.audit != nil {
		h.auditDecision(r, d)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.mcp.error", denialVars[d][0])
		repl.Set("http.auth.mcp.error_reason", denialVars[d][1])
	}
	if ce := h.logger.Check(zap.DebugLevel, "request denied"); ce != nil {
		// The resource names the site: a Caddy with several mcp_auth sites logs them all here.
		fields := []zap.Field{zap.String("resource", h.Resource), zap.String("reason", info.label), zap.Int("status", info.status)}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		ce.Write(fields...)
	}
}

// bearerToken takes the token from the one Authorization header (RFC 6750 §2.1), with the
// Bearer scheme, or the DPoP scheme when dpop is on (RFC 9449 §7.1); viaDPoP says which.
// Tokens in the query string or body are never looked at.
func bearerToken(hdr http.Header, dpop bool) (token string, viaDPoP bool, d denial) {
	vals := hdr["Authorization"]
	switch {
	case len(vals) == 0:
		return "", false, denyMissing
	case len(vals) > 1:
		return "", false, denyMultipleHeaders
	}
	v := vals[0]
	scheme, rest, _ := strings.Cut(v, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
	case dpop && strings.EqualFold(scheme, "DPoP"):
		viaDPoP = true
	default:
		// Another scheme (or none): to this resource the request has no credentials.
		return "", false, denyMissing
	}
	rest = strings.TrimLeft(rest, " ")
	if len(rest) > maxTokenBytes {
		return "", false, denyTooLarge
	}
	// The b64token grammar (the same for DPoP, RFC 9449 §7.1) is checked by authenticate,
	// after the cache: a cached token passed it already.
	return rest, viaDPoP, denyNone
}

// checkBinding checks, on every request and for cached tokens too, that a token bound to a
// key or certificate (cnf) comes with proof of possession: a DPoP proof (RFC 9449) or the TLS
// client certificate (RFC 8705). The decision itself is verify.CheckBinding's, the same for
// tokens of every mechanism. The replay check comes last, so that a request refused for
// another reason does not use up its proof.
func (h *Handler) checkBinding(w http.ResponseWriter, r *http.Request, td *tokenDigest, viaDPoP bool, cnf verify.Confirmation) (denial, error) {
	if !viaDPoP && !cnf.Present {
		return denyNone, nil // the bearer path of unbound tokens costs nothing here
	}
	p := verify.Presentation{DPoP: viaDPoP, CheckCert: h.MTLSBound}
	var proof verify.Proof
	if viaDPoP {
		v, err := dpopProof(r.Header)
		if err != nil {
			return denyDPoPProof, err
		}
		proof, err = h.dpop.Check(v, r.Method, h.DPoP.requestHTU(r), td.hash())
		if err != nil {
			if verify.ReasonOf(err) == verify.UseNonce {
				h.setDPoPNonce(w)
			}
			return reasonDenials[verify.ReasonOf(err)], err
		}
		p.ProofJKT = proof.JKT
	}
	if h.MTLSBound && cnf.X5TS256 != "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		p.Cert = r.TLS.PeerCertificates[0]
	}
	if err := verify.CheckBinding(cnf, p); err != nil {
		return reasonDenials[verify.ReasonOf(err)], err
	}
	if viaDPoP {
		if err := h.dpop.Remember(proof); err != nil {
			return denyDPoPProof, err
		}
		if h.Store != nil {
			if d, err := h.Store.claimProof(r.Context(), proof, h.leeway, h.now()); d != denyNone {
				return d, err
			}
		}
		if proof.NonceStale {
			h.setDPoPNonce(w)
		}
	}
	return denyNone, nil
}

// setDPoPNonce hands the client the current server nonce (RFC 9449 §8), in canonical form
// so that no allocation is spent on the header name.
func (h *Handler) setDPoPNonce(w http.ResponseWriter) {
	w.Header()["Dpop-Nonce"] = []string{h.dpop.Nonces.Current(h.now())}
}

// b64tokenChars marks the characters of b64token before its '=' padding.
var b64tokenChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// isB64Token checks b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// authenticate returns the caller of a valid token, from the cache when it was verified
// before, once its binding (if any) holds for this request. Only tokens that verified and
// passed the binding check once are cached; a failure is never remembered as a success, and
// the binding of a cached token is checked again on every request (proofs are per request).
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, td *tokenDigest, viaDPoP bool) (*caller, denial, error) {
	raw := td.raw
	// With introspection on, an opaque token is cached under its SHA-256, never as itself
	// (a JWT stays its own key: hashing hundreds of bytes on every request costs more than
	// the lookup). The key is built on the stack, so a cache hit costs no allocation.
	var kb [verify.OpaqueCacheKeyLen]byte
	var hashed []byte
	if h.hashKeys && !verify.MaybeJWS(raw) {
		hashed = td.hash().OpaqueCacheKey(&kb)
	}
	if h.cache != nil {
		var c *caller
		var ok bool
		if hashed != nil {
			c, ok = h.cache.GetBytes(hashed)
		} else if c, ok = h.cache.Get(raw); !ok && h.hashKeys && !verify.IsJWS(raw) {
			// Shaped like a JWS but not one (its first part is no JOSE header), so it is
			// introspected: an opaque token, cached under its SHA-256 as any other. Only a
			// miss pays for telling the two apart; a cached JWT is found as itself.
			hashed = td.hash().OpaqueCacheKey(&kb)
			c, ok = h.cache.GetBytes(hashed)
		}
		if ok {
			h.metrics.tokenCache(true)
			if d, err := h.checkBinding(w, r, td, viaDPoP, c.identity.Confirmation); d != denyNone {
				return nil, d, err
			}
			return c, denyNone, nil
		}
		h.metrics.tokenCache(false)
	}
	if !isB64Token(raw) {
		return nil, denyMalformedHeader, nil
	}
	ctx := r.Context()
	if h.hashKeys {
		// Introspection keys its calls and refusals by the digest: hand it the one computed.
		sum := *td.hash()
		ctx = verify.WithTokenHash(ctx, &sum)
	}
	id, err := h.verifier.Verify(ctx, raw, r)
	if err != nil {
		return nil, reasonDenials[verify.ReasonOf(err)], err
	}
	// A token bound to a key or certificate (cnf) passes only with its proof: a DPoP proof
	// of that key, or that client certificate (RFC 9449 §7.2, RFC 8705 §3). This holds for
	// introspected tokens too: cnf comes from the answer then.
	if d, err := h.checkBinding(w, r, td, viaDPoP, id.Confirmation); d != denyNone {
		return nil, d, err
	}
	c := newCaller(id, h.policy, h.leeway)
	if h.audit != nil && id.TokenID == "" {
		c.tokenHash = td.hash().ShortID() // once per token, not per request
	}
	if h.sessions != nil {
		c.sessionAnchor = sessionAnchor(id, td)
	}
	c.exchanged = h.TokenExchange.newSlots()
	// With a cache, the lookup above set hashed for every opaque token (JWS-shaped or not),
	// so only a JWT is kept as itself.
	if hashed != nil {
		h.cache.Put(string(hashed), c)
	} else {
		h.cache.Put(raw, c)
	}
	return c, denyNone, nil
}

// tokenDigest is the SHA-256 of the request's raw token, computed at most once per request
// and handed to whatever needs a digest of the token (verify.TokenHash says who).
type tokenDigest struct {
	raw  string
	sum  verify.TokenHash
	done bool
}

// hash returns the digest, computing it on the first call.
func (d *tokenDigest) hash() *verify.TokenHash {
	if !d.done {
		d.sum = verify.HashToken(d.raw)
		d.done = true
	}
	return &d.sum
}
