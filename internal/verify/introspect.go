package verify

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/clientauth"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"github.com/mcpauth/caddy-mcp-auth/internal/tokencache"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Client authentication methods at the introspection endpoint (RFC 7662 §2.1 asks for one;
// the names are those of the OAuth Token Endpoint Authentication Methods registry).
const (
	AuthClientSecretBasic = clientauth.ClientSecretBasic
	AuthClientSecretPost  = clientauth.ClientSecretPost
	AuthPrivateKeyJWT     = clientauth.PrivateKeyJWT
)

// MaxAnswerBytes bounds an introspection answer; a larger one is refused unread.
const MaxAnswerBytes = 64 << 10

// refusalLogEvery is the least time between two error logs for refused credentials.
const refusalLogEvery = 10 * time.Second

var (
	errBusy          = errors.New("every slot for calls to the introspection endpoint stayed busy")
	errNotB64Token   = errors.New("not a token of any authorization server's format (RFC 6750 b64token, up to 8192 characters, not shorter than any real one)")
	errActiveType    = errors.New("active is not a JSON boolean")
	errAnswerTooBig  = fmt.Errorf("introspection answer larger than %d bytes", MaxAnswerBytes)
	errAnswerNotJSON = errors.New("introspection answer is not a JSON object")
)

// Introspection verifies tokens by asking the authorization server about them (RFC 7662):
// opaque tokens, and JWTs too when revocation must take effect before exp. Set the fields,
// then call Verify; the fields must not change after the first call.
//
// Calls to the authorization server are bounded: one per new token however many requests
// carry it (singleflight by the token's SHA-256), at most MaxInFlight at once and MaxRate
// a second, with a share per client address and four waiters per slot, at most Timeout
// (introspect_limits.go; the excess gets ASUnavailable at once), and refusals the answer
// decides (inactive, refresh token, other audience) are remembered for NegativeTTL. Active
// answers are remembered by the caller's cache: the Identity says how long (min(exp,
// CacheTTL)). The token itself is never kept, logged or put in an error.
type Introspection struct {
	// Endpoint is the introspection endpoint URL. When empty, Discover finds it.
	Endpoint string
	// Discover finds the endpoint (introspection_endpoint of the issuer's RFC 8414
	// metadata); called on first use and again after a failure, at most every 10s.
	Discover func(ctx context.Context) (string, error)

	ClientID     string
	ClientSecret string
	// AuthMethod is one of AuthClientSecretBasic (default), AuthClientSecretPost,
	// AuthPrivateKeyJWT.
	AuthMethod string
	// PrivateKey signs the private_key_jwt client assertion (RSA: RS256, P-256/384/521:
	// ES256/384/512, Ed25519: EdDSA).
	PrivateKey crypto.Signer
	// AssertionAudience is the aud of the client assertion: the authorization server's
	// issuer identifier (RFC 7523 §3). Empty: the endpoint URL.
	AssertionAudience string

	Issuers   []string
	Audiences []string
	// AnyAudience skips the audience check (allow_any_audience).
	AnyAudience bool
	// AllowMissingAudience, when set, is asked about an answer without `aud` or `resource`
	// for the answer's client_id; nil refuses every such answer. (Hook for the
	// allow_missing_audience_for policy.)
	AllowMissingAudience func(clientID string) bool
	// ScopeClaims name the claims holding scopes, as JWT.ScopeClaims.
	ScopeClaims []string
	// Tenants limit the tid of an answer whose iss matched a {tenantid} issuer, as
	// JWT.Tenants.
	Tenants []string
	Leeway  time.Duration

	CacheTTL    time.Duration
	NegativeTTL time.Duration
	Timeout     time.Duration
	MaxInFlight int
	// NegativeCacheSize bounds the remembered refusals; 0 remembers none.
	NegativeCacheSize int
	// MaxRate bounds the uncached calls per second, in total (DefaultMaxRate when 0); each
	// client address gets a quarter of it, and of MaxInFlight (see introspect_limits.go).
	MaxRate float64
	// MinTokenLen: shorter tokens are refused before any call (MinTokenLen is the
	// module's; 0 refuses only the empty token).
	MinTokenLen int
	// ClientAddress returns the client's address of a request ("ip" or "ip:port"), as the
	// server determined it (behind trusted proxies, the forwarded one). By default the
	// connection's RemoteAddr.
	ClientAddress func(r *http.Request) string
	// Answers, when set, holds the server's answers, shared with other verifiers that ask
	// the same server the same way (across configuration reloads).
	Answers *AnswerCache

	Client *http.Client
	Logger *zap.Logger
	Now    func() time.Time
	// OnCall, when set, is told of each introspection call (telemetry.KindIntrospection)
	// with its outcome and duration; a call never made because the limits shed it (no slot
	// free in time, a rate, a share or the waiters at their bound) is told as
	// telemetry.Busy. For metrics.
	OnCall telemetry.CallObserver
	// OnNegativeCache, when set, is told of each lookup in the cache of refusals this
	// configuration decided from an answer (negative_ttl): hit or not. For metrics.
	OnNegativeCache func(hit bool)
	// OnAnswerCache, when set, is told of each lookup in Answers (the server's answers,
	// shared across reloads): hit or not. For metrics.
	OnAnswerCache func(hit bool)
	// Shared, when set, holds active answers for the other instances (introspect_shared.go),
	// consulted behind Answers and before the limits.
	Shared SharedAnswers

	limits  *limiter
	calls   *failureLog // failing calls, logged once then counted
	shedLog *failureLog // shed calls, the same way
	flight  singleflight.Group
	neg     *tokencache.Cache[negative]

	// lastRefusalLog rate-limits the error logged when the server refuses our credentials:
	// every new token meets the same refusal.
	lastRefusalLog atomic.Int64

	endpoint clientauth.Endpoint
}

// negative is a remembered refusal.
type negative struct {
	reason Reason
	until  time.Time
}

func (n negative) StillValid(now time.Time) bool { return now.Before(n.until) }

// errIntrospectionSetup refuses to Start an Introspection whose configuration lacks what
// it needs: the caller sets every default (the handler's introspection group does).
var errIntrospectionSetup = errors.New("introspection: MaxInFlight, Timeout, Client and Logger must be set before Start")

// errIntrospectionNotStarted refuses every token of an Introspection whose Start was not
// called.
var errIntrospectionNotStarted = errors.New("introspection: Verify before Start")

// Start builds the state of a configured Introspection. It is called once, before the first
// Verify; the exported fields must not change after.
func (v *Introspection) Start() error {
	if v.MaxInFlight <= 0 || v.Timeout <= 0 || v.Client == nil || v.Logger == nil {
		return errIntrospectionSetup
	}
	if v.Now == nil {
		v.Now = time.Now
	}
	if v.MaxRate <= 0 {
		v.MaxRate = DefaultMaxRate
	}
	v.limits = newLimiter(v.MaxInFlight, v.MaxRate, v.Timeout)
	v.calls, v.shedLog = callFailures(), shedCalls()
	if v.NegativeTTL > 0 {
		v.neg = tokencache.New[negative](v.NegativeCacheSize, v.now)
	}
	v.endpoint = clientauth.Endpoint{Group: "introspection", Name: "introspection endpoint",
		Fix:      "set introspection endpoint, or publish introspection_endpoint in the issuer's metadata",
		Discover: v.Discover, Now: v.now, Logger: v.Logger}
	v.endpoint.Set(v.Endpoint)
	return nil
}

// NewIntrospectionClient is an HTTP client for the introspection endpoint: bounded by
// timeout, and never following a redirect, which would carry the token (and, to the same
// host, the credentials) to where the configuration did not say.
func NewIntrospectionClient(timeout time.Duration) *http.Client {
	return clientauth.NewHTTPClient(timeout)
}

func (v *Introspection) now() time.Time { return v.Now() }

// answer is an introspection response, read strictly.
type answer struct {
	registered // aud holds aud and resource together
	active     bool
	tokenType  string
	raw        []byte
	received   time.Time // when the server gave it (to this instance or, shared, to another)
}

// Verify introspects an opaque token and returns the caller the answer describes.
func (v *Introspection) Verify(ctx context.Context, token string, r *http.Request) (*Identity, error) {
	a, key, err := v.askFor(ctx, token, r, false)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if err := v.judge(a, now, nil); err != nil {
		v.remember(key, err, now)
		return nil, err
	}
	id := Identity{
		Issuer:       a.iss,
		Subject:      a.sub,
		ClientID:     a.clientID,
		TokenID:      a.jti,
		Scopes:       a.grantedScopes(len(v.ScopeClaims)),
		Confirmation: a.cnf,
	}
	if id.Issuer == "" && len(v.Issuers) == 1 {
		// The answer comes from the one authorization server this resource trusts (never a
		// {tenantid} template: checkIssuer refused such an answer).
		id.Issuer = v.Issuers[0]
	}
	id.servedUntil = v.servedUntil(a, now)
	id.Expiry = id.servedUntil
	if a.hasExp {
		id.Expiry = numericTime(a.exp)
	}
	return id.WithClaims(a.raw), nil
}

// Recheck introspects a JWT that verified locally (jwt_too): the authorization server must
// still call it active. The local identity is returned, served no longer than the answer
// allows; a cnf in the answer binds it too.
func (v *Introspection) Recheck(ctx context.Context, token string, local *Identity) (*Identity, error) {
	a, key, err := v.ask(ctx, token)
	if err != nil {
		return nil, err
	}
	now := v.now()
	if err := v.judge(a, now, local); err != nil {
		v.remember(key, err, now)
		return nil, err
	}
	id := *local
	id.servedUntil = v.servedUntil(a, now)
	if a.cnf.Present && !id.Confirmation.Present {
		id.Confirmation = a.cnf
	}
	return &id, nil
}

// servedUntil is how long an active answer may be trusted: CacheTTL from its arrival, never
// past exp.
func (v *Introspection) servedUntil(a *answer, now time.Time) time.Time {
	if !a.received.IsZero() {
		now = a.received
	}
	t := now.Add(v.CacheTTL)
	if a.hasExp {
		if exp := numericTime(a.exp); exp.Before(t) {
			t = exp
		}
	}
	return t
}

// remember keeps a refusal that the answer decided, so that a token presented again is
// refused without a call. A refusal that time may lift (nbf) is not kept.
func (v *Introspection) remember(key string, err error, now time.Time) {
	switch r := ReasonOf(err); r {
	case Inactive, Expired, OtherKind, Issuer, Audience:
		v.neg.Put(key, negative{reason: r, until: now.Add(v.NegativeTTL)})
	}
}

// ask returns the answer about a token that proved itself already (a JWT that verified
// locally): it is not held to the per-client shares and rates.
func (v *Introspection) ask(ctx context.Context, token string) (*answer, string, error) {
	return v.askFor(ctx, token, nil, true)
}

// askFor returns the answer about token: one call per token at a time, bounded in number
// and rate (introspect_limits.go). r is the request, for its client address.
func (v *Introspection) askFor(ctx context.Context, token string, r *http.Request, proven bool) (*answer, string, error) {
	if v.limits == nil {
		// Fail closed, and say why, rather than use state that was never built.
		return nil, "", failWith(ASUnavailable, errIntrospectionNotStarted)
	}
	if !proven && !WellFormedToken(token, v.MinTokenLen) {
		// Nothing that can never be a token is sent to the server (no key: not remembered).
		return nil, "", failWith(Malformed, errNotB64Token)
	}
	sum := tokenHashOf(ctx, token)
	key := string(sum[:])
	if v.neg != nil {
		n, ok := v.neg.Get(key)
		if v.OnNegativeCache != nil {
			v.OnNegativeCache(ok)
		}
		if ok {
			return nil, key, fail(n.reason)
		}
	}
	if v.Answers != nil {
		a, ok := v.cached(key, v.now())
		if v.OnAnswerCache != nil {
			v.OnAnswerCache(ok)
		}
		if ok {
			return a, key, nil
		}
	}
	client := v.clientOf(r)
	// The request waits for the answer: a child span of its own shows it, with the call's
	// outcome (the call itself is shared by every request with this token); a store lookup
	// the call makes first is a child of it.
	sctx, span := telemetry.StartSpan(ctx, telemetry.SpanIntrospect)
	ch := v.flight.DoChan(key, func() (any, error) { return v.fetch(sctx, token, key, client, proven) })
	select {
	case res := <-ch:
		span.End(callOutcome(res.Err))
		if res.Err != nil {
			return nil, key, res.Err
		}
		return res.Val.(*answer), key, nil
	case <-ctx.Done():
		span.End(telemetry.Canceled)
		return nil, key, failWith(ASUnavailable, ctx.Err())
	}
}

// callOutcome classifies the error of call.
func callOutcome(err error) string {
	switch {
	case err == nil:
		return telemetry.OK
	case shed(err):
		return telemetry.Busy
	case ReasonOf(err) == BadAnswer:
		return telemetry.BadAnswer
	}
	return telemetry.Outcome(err)
}

// call asks the authorization server. It runs in a flight shared by every request with the
// same token, so it does not use any one request's context.
//
// Failures are logged once when they start, then counted (introspect_log.go): one line per
// failed call would flood the log during an outage, in proportion to traffic.
func (v *Introspection) call(token string) (*answer, error) {
	start := time.Now()
	a, err := v.callEndpoint(token)
	if !errors.Is(err, errNoEndpoint) {
		v.OnCall.Observe(telemetry.KindIntrospection, callOutcome(err), time.Since(start))
	}
	return a, err
}

// errNoEndpoint wraps a failure to find the endpoint: no introspection call was made (the
// discovery call is observed on its own).
var errNoEndpoint = errors.New("finding the introspection endpoint")

// callEndpoint makes the introspection call, in a slot.
func (v *Introspection) callEndpoint(token string) (*answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), v.Timeout)
	defer cancel()
	endpoint, err := v.endpoint.Get(ctx)
	if err != nil {
		return nil, failWith(ASUnavailable, fmt.Errorf("%w: %w", errNoEndpoint, err))
	}
	req, err := v.request(ctx, endpoint, token)
	if err != nil {
		// Only a broken private key gets here; the error names no secret.
		v.Logger.Error("introspection: cannot build the request", zap.Error(err))
		return nil, failWith(ASUnavailable, err)
	}
	resp, err := v.Client.Do(req)
	if err != nil {
		v.calls.failed(v.Logger, v.now(), failureKind(err), zap.String("endpoint", endpoint), zap.Error(err))
		return nil, failWith(ASUnavailable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		v.calls.failed(v.Logger, v.now(), "status 5xx", zap.String("endpoint", endpoint), zap.Int("status", resp.StatusCode))
		return nil, failWith(ASUnavailable, fmt.Errorf("introspection endpoint: %w", &telemetry.StatusError{Code: resp.StatusCode}))
	case resp.StatusCode != http.StatusOK:
		// RFC 7662 §2.3: 401 means our client authentication failed. Nothing the caller can
		// do about it; the operator must fix the configuration.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		v.calls.failed(v.Logger, v.now(), "credentials refused (4xx)", zap.String("endpoint", endpoint), zap.Int("status", resp.StatusCode))
		if now, last := v.now().UnixNano(), v.lastRefusalLog.Load(); now-last >= int64(refusalLogEvery) &&
			v.lastRefusalLog.CompareAndSwap(last, now) {
			v.Logger.Error("introspection: the authorization server refused the request; "+
				"check introspection client_id, client_secret or private_key, and auth_method "+
				"against the client registered at the authorization server",
				zap.String("endpoint", endpoint), zap.Int("status", resp.StatusCode),
				zap.String("client_id", v.ClientID), zap.String("auth_method", v.authMethod()))
		}
		return nil, failWith(ASUnavailable, fmt.Errorf("introspection endpoint: %w", &telemetry.StatusError{Code: resp.StatusCode}))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		v.calls.failed(v.Logger, v.now(), failureKind(err), zap.String("endpoint", endpoint), zap.Error(err))
		return nil, failWith(ASUnavailable, fmt.Errorf("reading the introspection answer: %w", err))
	}
	v.calls.succeeded(v.Logger, v.now())
	a, err := parseAnswer(raw, v.ScopeClaims)
	if err != nil {
		if ce := v.Logger.Check(zap.WarnLevel, "introspection: unusable answer, token refused"); ce != nil {
			ce.Write(zap.String("endpoint", endpoint), zap.Error(err))
		}
		return nil, failWith(BadAnswer, err)
	}
	a.received = v.now()
	return a, nil
}

func (v *Introspection) authMethod() string {
	if v.AuthMethod == "" {
		return AuthClientSecretBasic
	}
	return v.AuthMethod
}

// request builds the RFC 7662 §2.1 POST with the client authentication.
func (v *Introspection) request(ctx context.Context, endpoint, token string) (*http.Request, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	cred := clientauth.Credentials{
		ClientID: v.ClientID, ClientSecret: v.ClientSecret, Method: v.AuthMethod,
		PrivateKey: v.PrivateKey, AssertionAudience: v.AssertionAudience, Now: v.now,
	}
	return cred.NewRequest(ctx, endpoint, form)
}

// SigningMethodFor picks the JWS algorithm for a private key: RS256 for RSA, ES256/384/512
// by curve, EdDSA for Ed25519.
func SigningMethodFor(k crypto.Signer) (jwt.SigningMethod, error) {
	return clientauth.SigningMethodFor(k)
}

// parseAnswer reads an introspection response (RFC 7662 §2.2). Members this module acts on
// must have their registered types, and appear once; `active` must be the JSON true or
// false, not a string.
func parseAnswer(raw []byte, scopeClaims []string) (*answer, error) {
	if len(raw) > MaxAnswerBytes {
		return nil, errAnswerTooBig
	}
	if !json.Valid(raw) {
		return nil, errAnswerNotJSON
	}
	a := &answer{raw: raw}
	var seen uint32
	hasActive := false
	err := members(raw, func(name string, val []byte) error {
		known, err := a.read(name, val, scopeClaims, &seen)
		if !known {
			switch name {
			case "active":
				switch string(val) {
				case "true":
					a.active = true
				case "false":
				default:
					return errActiveType
				}
				hasActive = true
				err = mark(&seen, bitFree)
			case "resource":
				a.aud, err = stringOrStrings(val, a.aud)
				a.hasAud = true
				if err == nil {
					err = mark(&seen, bitFree<<1)
				}
			case "token_type":
				a.tokenType, err = jsonString(val)
				if err == nil {
					err = mark(&seen, bitFree<<2)
				}
			default:
				return nil
			}
		}
		if err != nil {
			return fmt.Errorf("member %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errNotObject) {
			return nil, errAnswerNotJSON
		}
		return nil, err
	}
	if !hasActive {
		// RFC 7662 §2.2: active is REQUIRED. An answer without it vouches for nothing.
		return nil, errors.New("member active: missing")
	}
	if strings.EqualFold(a.tokenType, "DPoP") {
		// RFC 9449 §6.2: the answer about a DPoP-bound token names its key in cnf.jkt. One
		// that says DPoP without naming the key describes a binding that cannot be checked:
		// the token is bound (never a bearer token), to no key a proof can match.
		a.cnf.Present = true
	}
	return a, nil
}

// judge applies the checks an active answer must pass. For a JWT that verified locally
// (local), the token's own aud was checked already; an aud in the answer must still match.
func (v *Introspection) judge(a *answer, now time.Time, local *Identity) error {
	if !a.active {
		return fail(Inactive)
	}
	if a.hasExp && !now.Before(numericTime(a.exp).Add(v.Leeway)) {
		return fail(Expired)
	}
	if a.hasIat && now.Add(v.Leeway).Before(numericTime(a.iat)) {
		return fail(IssuedInFuture)
	}
	if a.hasNbf && now.Add(v.Leeway).Before(numericTime(a.nbf)) {
		return fail(NotYetValid)
	}
	if err := v.checkIssuer(a, local); err != nil {
		return err
	}
	// A refresh token is never an access token, even though the authorization server calls
	// it active (RFC 7662 §2.2 token_type; RFC 6749 §1.5).
	if a.tokenType != "" && !strings.EqualFold(a.tokenType, "Bearer") && !strings.EqualFold(a.tokenType, "DPoP") {
		return fail(OtherKind)
	}
	if !v.AnyAudience {
		switch {
		case a.hasAud && len(a.aud) > 0:
			if !audienceOK(a.aud, v.Audiences) {
				return fail(Audience)
			}
		case local != nil:
		case v.AllowMissingAudience != nil && v.AllowMissingAudience(a.clientID):
		default:
			return failWith(Audience, errors.New("the answer has no aud or resource"))
		}
	}
	return nil
}
