package mcpauth

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// denial is why a request was refused. Each has one status, one RFC 6750 error code and one
// fixed description, so a client sees the same challenge for the same failure.
type denial uint8

const (
	denyMissing denial = iota
	denyMultipleHeaders
	denyMalformedHeader
	denyTooLarge
	denyMalformed
	denySignature
	denyUnknownKey
	denyAlgorithm
	denyExpired
	denyNoExpiry
	denyNotYetValid
	denyIssuedInFuture
	denyIssuer
	denyAudience
	denyType
	denyBound
	denyInsufficientScope
	denyUnavailable
	denyBadMessage
	denyHeaderMismatch
	denyBodyUnreadable
	denyBodyTooLarge
	denyUnsupportedBody
	denyBodyNotAllowed
	denyMethodOverride
	denyUpgrade
	denyResourceURI
	denyClientNotAllowed
	denyClaimNotSatisfied
	denyInactive
	denyBadAnswer
	denyIntrospectionUnavailable
	// Sender-constrained tokens (RFC 9449, RFC 8705).
	denyDPoPProof
	denyDPoPNonce
	denyNotBound
	denyWrongKey
	denyWrongCert
	denyDPoPRequired
	denySession
	// Token exchange toward the upstream (RFC 8693).
	denyExchangeRefused
	denyExchangeUnavailable
	denyExchangeMixed
	denyNotOffered
	denyTokenInQuery
	denyStoreUnavailable
	denyExchangeTrailers
	numDenials
)

// denyNone is the denial of a request that passes: none. It is no index into denials.
const denyNone = numDenials

// RFC 6750 §3.1 error codes, and the one for 503.
const (
	codeInvalidRequest    = "invalid_request"
	codeInvalidToken      = "invalid_token"
	codeInsufficientScope = "insufficient_scope"
	codeUnavailable       = "temporarily_unavailable"
	// codeAccessDenied answers a failure no new token scope can fix (the client is not
	// allowed, a claim is missing). It is deliberately not insufficient_scope: MCP clients
	// answer that with a step-up authorization, which would loop here.
	codeAccessDenied = "access_denied"
	// RFC 9449 §7.1 and §8: only ever on the DPoP challenge.
	codeInvalidDPoPProof = "invalid_dpop_proof"
	codeUseDPoPNonce     = "use_dpop_nonce"
)

type denialInfo struct {
	status int
	code   string // "" for a request without credentials (RFC 6750 §3.1)
	desc   string // ASCII, no '"' or '\': it goes into a quoted-string as is
	label  string // outcome name for logs and {http.auth.mcp.error} details
}

var denials = [numDenials]denialInfo{
	denyMissing:           {http.StatusUnauthorized, "", "", "missing_token"},
	denyMultipleHeaders:   {http.StatusBadRequest, codeInvalidRequest, "The request has more than one Authorization header.", "multiple_authorization_headers"},
	denyMalformedHeader:   {http.StatusBadRequest, codeInvalidRequest, "The Authorization header is not a valid Bearer credential.", "malformed_authorization_header"},
	denyTooLarge:          {http.StatusUnauthorized, codeInvalidToken, "The access token is too large.", "token_too_large"},
	denyMalformed:         {http.StatusUnauthorized, codeInvalidToken, "The access token is not a well-formed JWT.", "malformed_token"},
	denySignature:         {http.StatusUnauthorized, codeInvalidToken, "The access token signature is invalid.", "bad_signature"},
	denyUnknownKey:        {http.StatusUnauthorized, codeInvalidToken, "The access token was not signed by a known key.", "unknown_key"},
	denyAlgorithm:         {http.StatusUnauthorized, codeInvalidToken, "The access token signing algorithm is not accepted.", "algorithm_not_accepted"},
	denyExpired:           {http.StatusUnauthorized, codeInvalidToken, "The access token has expired.", "expired"},
	denyNoExpiry:          {http.StatusUnauthorized, codeInvalidToken, "The access token has no expiry.", "no_expiry"},
	denyNotYetValid:       {http.StatusUnauthorized, codeInvalidToken, "The access token is not valid yet.", "not_yet_valid"},
	denyIssuedInFuture:    {http.StatusUnauthorized, codeInvalidToken, "The access token was issued in the future.", "issued_in_future"},
	denyIssuer:            {http.StatusUnauthorized, codeInvalidToken, "The access token issuer is not accepted.", "issuer_not_accepted"},
	denyAudience:          {http.StatusUnauthorized, codeInvalidToken, "The access token was not issued for this resource.", "audience_not_accepted"},
	denyType:              {http.StatusUnauthorized, codeInvalidToken, "The access token type is not at+jwt.", "type_not_accepted"},
	denyBound:             {http.StatusUnauthorized, codeInvalidToken, "The access token is bound to a key and cannot be used as a bearer token.", "bound_token"},
	denyInsufficientScope: {http.StatusForbidden, codeInsufficientScope, "The access token does not have the scope this request requires.", "insufficient_scope"},
	denyUnavailable:       {http.StatusServiceUnavailable, codeUnavailable, "The signing keys of the authorization server are not available yet.", "keys_unavailable"},

	// Reading the JSON-RPC body for the per-operation policy. A 413 or 415 is not about the
	// token, so it carries no challenge.
	denyBadMessage:      {http.StatusBadRequest, codeInvalidRequest, "The request body is not a valid JSON-RPC message.", "invalid_jsonrpc"},
	denyHeaderMismatch:  {http.StatusBadRequest, codeInvalidRequest, "The Mcp-Method or Mcp-Name header does not match the request body.", "mcp_header_mismatch"},
	denyBodyUnreadable:  {http.StatusBadRequest, codeInvalidRequest, "The request body could not be read.", "body_unreadable"},
	denyBodyTooLarge:    {http.StatusRequestEntityTooLarge, codeInvalidRequest, "The request body is larger than the server accepts.", "body_too_large"},
	denyUnsupportedBody: {http.StatusUnsupportedMediaType, codeInvalidRequest, "The request body must be UTF-8 application/json without content coding.", "unsupported_body"},
	denyBodyNotAllowed:  {http.StatusBadRequest, codeInvalidRequest, "Only POST requests may carry a body.", "body_not_allowed"},
	denyMethodOverride:  {http.StatusBadRequest, codeInvalidRequest, "Method override headers are not accepted.", "method_override"},
	denyUpgrade:         {http.StatusBadRequest, codeInvalidRequest, "Connection upgrades are not accepted.", "upgrade_not_allowed"},
	denyResourceURI:     {http.StatusBadRequest, codeInvalidRequest, "The resource URI is not in normal form.", "resource_uri_not_normal"},

	// Client and claim conditions: no scope fixes them, so the challenge names no scope.
	denyClientNotAllowed:  {http.StatusForbidden, codeAccessDenied, "The client is not allowed to access this resource.", "client_not_allowed"},
	denyClaimNotSatisfied: {http.StatusForbidden, codeAccessDenied, "The access token does not carry the claims this request requires.", "claim_not_satisfied"},
	// Token introspection (RFC 7662).
	denyInactive:                 {http.StatusUnauthorized, codeInvalidToken, "The access token is not active.", "inactive_token"},
	denyBadAnswer:                {http.StatusUnauthorized, codeInvalidToken, "The authorization server gave no usable answer about the access token.", "bad_introspection_answer"},
	denyIntrospectionUnavailable: {http.StatusServiceUnavailable, codeUnavailable, "The authorization server cannot check the access token now.", "introspection_unavailable"},
	// DPoP (RFC 9449) and certificate-bound tokens (RFC 8705).
	denyDPoPProof:    {http.StatusUnauthorized, codeInvalidDPoPProof, "The DPoP proof is invalid.", "invalid_dpop_proof"},
	denyDPoPNonce:    {http.StatusUnauthorized, codeUseDPoPNonce, "The DPoP proof must carry the nonce of the DPoP-Nonce header.", "use_dpop_nonce"},
	denyNotBound:     {http.StatusUnauthorized, codeInvalidToken, "The access token is not bound to a DPoP key.", "unbound_token_as_dpop"},
	denyWrongKey:     {http.StatusUnauthorized, codeInvalidToken, "The access token is bound to another key than the DPoP proof.", "dpop_key_mismatch"},
	denyWrongCert:    {http.StatusUnauthorized, codeInvalidToken, "The access token is bound to another client certificate.", "certificate_mismatch"},
	denyDPoPRequired: {http.StatusUnauthorized, codeInvalidToken, "This resource accepts only DPoP-bound access tokens.", "dpop_required"},
	// bind_sessions: an Mcp-Session-Id that is not the caller's is, to this caller, a session
	// that does not exist. The transport answers those with 404 (MCP Streamable HTTP,
	// "Session Management"), and the client starts a new session. No OAuth error: the token
	// is fine.
	denySession: {http.StatusNotFound, "", "", "session_not_found"},
	// Token exchange (RFC 8693): a refusal no new scope fixes (access_denied, no step-up).
	denyExchangeRefused:     {http.StatusForbidden, codeAccessDenied, "The authorization server refused a token for the upstream of this request.", "exchange_refused"},
	denyExchangeUnavailable: {http.StatusServiceUnavailable, codeUnavailable, "The authorization server cannot issue a token for the upstream now.", "exchange_unavailable"},
	denyExchangeMixed:       {http.StatusBadRequest, codeInvalidRequest, "The messages of this batch need tokens for different upstreams.", "exchange_mixed_targets"},
	// public: a GET or DELETE without a token and without an anonymous session. 405 is the
	// transport's "not offered" (MCP Streamable HTTP): no client starts a sign-in for it.
	denyNotOffered: {http.StatusMethodNotAllowed, "", "", "anonymous_stream_not_offered"},
	// public: a request without an Authorization header whose query names an access token
	// (RFC 6750 §2.3): it is not anonymous, and it never reaches a server that might read it.
	denyTokenInQuery: {http.StatusBadRequest, codeInvalidRequest, "Access tokens are accepted only in the Authorization header.", "token_in_query"},
	// The shared store (on_error closed) cannot say whether a DPoP proof was used already.
	denyStoreUnavailable: {http.StatusServiceUnavailable, codeUnavailable, "The DPoP proof cannot be checked for replay now.", "store_unavailable"},
	denyExchangeTrailers: {http.StatusBadRequest, codeInvalidRequest, "The request carries trailer fields, which would reach the upstream unchecked.", "exchange_trailers"},
}

// reasonDenials maps why a verifier refused a token to the answer.
var reasonDenials = [verify.NumReasons]denial{
	verify.Malformed:      denyMalformed,
	verify.Signature:      denySignature,
	verify.UnknownKey:     denyUnknownKey,
	verify.Algorithm:      denyAlgorithm,
	verify.Expired:        denyExpired,
	verify.NoExpiry:       denyNoExpiry,
	verify.NotYetValid:    denyNotYetValid,
	verify.IssuedInFuture: denyIssuedInFuture,
	verify.Issuer:         denyIssuer,
	verify.Audience:       denyAudience,
	verify.Type:           denyType,
	verify.OtherKind:      denyType,
	verify.Bound:          denyBound,
	verify.BadProof:       denyDPoPProof,
	verify.UseNonce:       denyDPoPNonce,
	verify.NotBound:       denyNotBound,
	verify.WrongKey:       denyWrongKey,
	verify.WrongCert:      denyWrongCert,
	verify.Unavailable:    denyUnavailable,
	verify.Inactive:       denyInactive,
	verify.BadAnswer:      denyBadAnswer,
	verify.ASUnavailable:  denyIntrospectionUnavailable,
}

// outcomeDenials maps what the policy refused a request for to the answer.
var outcomeDenials = [...]denial{
	policy.Allow:                denyNone,
	policy.InsufficientScope:    denyInsufficientScope,
	policy.ClientNotAllowed:     denyClientNotAllowed,
	policy.ClaimNotSatisfied:    denyClaimNotSatisfied,
	policy.ResourceURINotNormal: denyResourceURI,
	policy.MissingToken:         denyMissing,
}

// isAccessDenial reports a denial that no new scope can fix: its challenge names no scope.
func isAccessDenial(d denial) bool { return denials[d].code == codeAccessDenied }

// sessionNotFoundBody is the answer to an unknown session, as the SDK servers write it.
var sessionNotFoundBody = []byte(`{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}`)

// hasChallenge reports whether the answer for d carries a WWW-Authenticate challenge: every
// 400, 401 and 403 does (RFC 6750 §3); a 503, 413 or 415 is not about the credentials.
func hasChallenge(d denial) bool {
	switch denials[d].status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// denialVars are the {http.auth.mcp.error} and {http.auth.mcp.error_reason} values of each
// denial, boxed once so that setting them costs no allocation.
var denialVars = func() (v [numDenials][2]any) {
	for d, info := range denials {
		code := info.code
		switch {
		case d == int(denyMissing):
			code = "missing_token"
		case code == "":
			code = "access_denied"
		}
		v[d] = [2]any{code, info.label}
	}
	return v
}()

// scheme is an authentication scheme the resource accepts. Each one that is on adds its own
// challenge to every 400, 401 and 403, with the same error, scope and resource_metadata
// parameters and, after them, its own (params, already formatted).
type scheme struct {
	name   string
	params string
}

// bearerScheme is RFC 6750's, on unless DPoP is required.
var bearerScheme = scheme{name: "Bearer"}

// dpopScheme is RFC 9449 §7.1's, listing the proof algorithms accepted.
func dpopScheme(algs []string) scheme {
	return scheme{name: "DPoP", params: `algs="` + strings.Join(algs, " ") + `"`}
}

// dpopOnlyCode reports whether an error code belongs to the DPoP scheme alone: the Bearer
// challenge beside it then carries no error (RFC 9449 §7.1).
func dpopOnlyCode(code string) bool {
	return code == codeInvalidDPoPProof || code == codeUseDPoPNonce
}

// challenges holds, per denial, the header and body written for it, built once at Provision.
type challenges struct {
	header  [numDenials]string
	body    [numDenials][]byte
	bodyLen [numDenials]string
	metaURL string
	schemes []scheme
}

// newChallenges prepares the answers for a resource whose base policy asks for scope. The
// schemes are those that are on, in the order their challenges are sent; Bearer when none
// is given.
func newChallenges(scope []string, metaURL string, schemes ...scheme) challenges {
	var c challenges
	c.metaURL = metaURL
	c.schemes = schemes
	if len(c.schemes) == 0 {
		c.schemes = []scheme{bearerScheme}
	}
	for d := denial(0); d < numDenials; d++ {
		info := denials[d]
		switch {
		case isAccessDenial(d):
			c.header[d] = c.build(info.code, info.desc, nil)
		case hasChallenge(d):
			c.header[d] = c.build(info.code, info.desc, scope)
		}
		if info.code != "" {
			c.body[d] = errorBody(info.code, info.desc)
			c.bodyLen[d] = strconv.Itoa(len(c.body[d]))
		}
	}
	c.body[denySession] = sessionNotFoundBody
	c.bodyLen[denySession] = strconv.Itoa(len(sessionNotFoundBody))
	return c
}

// stepUp is the insufficient_scope challenge naming the scopes one request needs.
func (c *challenges) stepUp(scopes []string) string {
	return c.build(codeInsufficientScope, denials[denyInsufficientScope].desc, scopes)
}

// build writes the WWW-Authenticate value for a denial: one challenge per scheme that is on,
// comma-separated in one field value (RFC 9110 §11.6.1).
func (c *challenges) build(code, desc string, scope []string) string {
	if len(c.schemes) == 1 {
		return c.schemes[0].challenge(code, desc, scope, c.metaURL)
	}
	var b strings.Builder
	for i, s := range c.schemes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.challenge(code, desc, scope, c.metaURL))
	}
	return b.String()
}

// challenge writes this scheme's challenge with the parameters in the order error,
// error_description, scope, resource_metadata, leaving out the empty ones, then the scheme's
// own. The values are known not to need escaping: codes and descriptions are fixed, scopes
// are scope-tokens (no '"' or '\'), and the metadata URL is percent-encoded.
func (s scheme) challenge(code, desc string, scope []string, metaURL string) string {
	var b strings.Builder
	b.WriteString(s.name)
	sep := " "
	if s.name != "DPoP" && dpopOnlyCode(code) {
		code = ""
	}
	param := func(name, value string) {
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(value)
		b.WriteByte('"')
		sep = ", "
	}
	if code != "" {
		param("error", code)
		if desc != "" {
			param("error_description", desc)
		}
	}
	if len(scope) > 0 {
		param("scope", strings.Join(scope, " "))
	}
	if metaURL != "" {
		param("resource_metadata", metaURL)
	}
	if s.params != "" {
		b.WriteString(sep)
		b.WriteString(s.params)
	}
	return b.String()
}

func errorBody(code, desc string) []byte {
	return []byte(`{"error":"` + code + `","error_description":"` + desc + `"}`)
}

var retryAfter = strconv.Itoa(defaultRetryAfter)

// writeWith sends the answer for d with its challenge: the precomputed header[d], or one
// built for this request (step-up scopes).
//
// Header values are fresh slices: handlers that wrap the writer (Caddy's deferred `header`
// operations) may edit them in place, which must not reach other responses.
func (c *challenges) writeWith(w http.ResponseWriter, d denial, challenge string) {
	// One backing array for all values, each header getting its own capped slice of it: a
	// wrapper that appends to one cannot overwrite another.
	v := [6]string{challenge, "WWW-Authenticate", "no-store", retryAfter, "application/json", "0"}
	if d == denyDPoPNonce {
		v[1] = "WWW-Authenticate, DPoP-Nonce"
	}
	vals := v[:]
	one := func(i int) []string { return vals[i : i+1 : i+1] }
	h := w.Header()
	if challenge != "" {
		h["Www-Authenticate"] = one(0)
		h["Access-Control-Expose-Headers"] = one(1)
	}
	h["Cache-Control"] = one(2)
	if denials[d].status == http.StatusServiceUnavailable {
		h["Retry-After"] = one(3)
	}
	body := c.body[d]
	if body == nil {
		h["Content-Length"] = one(5)
		w.WriteHeader(denials[d].status)
		return
	}
	vals[5] = c.bodyLen[d]
	h["Content-Type"] = one(4)
	h["Content-Length"] = one(5)
	w.WriteHeader(denials[d].status)
	_, _ = w.Write(body)
}
