// Package exchange gets, for a verified incoming access token, a token of its own for an
// upstream API: the client side of OAuth 2.0 Token Exchange (RFC 8693) at the authorization
// server's token endpoint. Results are cached by the SHA-256 of the incoming token and the
// target (never by a token), calls are one per key at a time and bounded in number, and an
// answer that is not a well-formed RFC 8693 response is never handed on. It knows nothing
// of Caddy.
package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/clientauth"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"github.com/mcpauth/caddy-mcp-auth/internal/tokencache"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// RFC 8693 §2.1 and §3 identifiers.
const (
	GrantType       = "urn:ietf:params:oauth:grant-type:token-exchange"
	AccessTokenType = "urn:ietf:params:oauth:token-type:access_token"
)

// MaxAnswerBytes bounds a token endpoint answer; a larger one is refused unread.
const MaxAnswerBytes = 64 << 10

// errorLogEvery is the least time between two error logs of the same kind: every token
// meets the same misconfiguration.
const errorLogEvery = 10 * time.Second

// waitersPerSlot bounds the exchanges waiting for a slot, as for introspection: a burst of
// first calls waits its turn, but a queue without a bound would make every new token wait
// behind a flood (and hold a goroutine and a connection each), and a token endpoint slower
// than Timeout/4 would not serve more in time anyway. The excess is shed at once.
const waitersPerSlot = 4

// DefaultNegativeTTL is how long a refusal of the authorization server is remembered for
// one incoming token and target: a client retrying a refused call does not make a call to
// the token endpoint each time, and an authorization server that changes its mind (a grant
// added) is heard within it.
const DefaultNegativeTTL = 30 * time.Second

// Target is what a token is asked for: the upstream's audience(s) (RFC 8693 §2.1
// `audience`), its resource (RFC 8707 `resource`), and scopes.
type Target struct {
	Audiences []string
	Resource  string
	Scopes    []string
}

// Token is an exchanged token, ready for the upstream request. It never appears in a log or
// an error.
type Token struct {
	// value is the value of the upstream header: "Bearer <token>" or the bare token. A
	// string, not a header's []string: every request served from this entry gets it, and a
	// slice shared among them would be rewritten in place by any handler that edits request
	// headers (Caddy's request_header replacements do), for every one of them at once.
	value string
	// raw is the token alone, for the shared store.
	raw string
	// JTI is the new token's jti when it is a JWT, for the audit event.
	JTI string
	// until is when the entry stops being served.
	until time.Time
}

// Value is the value of the upstream header.
func (t *Token) Value() string { return t.value }

// StillValid reports whether the token may still be served at now.
func (t *Token) StillValid(now time.Time) bool { return now.Before(t.until) }

// Until is when the token stops being served.
func (t *Token) Until() time.Time { return t.until }

// Client exchanges tokens. Set the fields, then call Exchange; the fields must not change
// after the first call.
type Client struct {
	// Endpoint is the token endpoint. When empty, Discover finds it.
	Endpoint string
	// Discover finds the endpoint (token_endpoint of the issuer's RFC 8414 metadata); called
	// on first use and again after a failure, at most every 10s.
	Discover func(ctx context.Context) (string, error)

	Credentials clientauth.Credentials
	// Targets are the targets by id: Exchange takes an index.
	Targets []Target
	// Bearer puts "Bearer " before the token in the header value (for Authorization).
	Bearer bool

	// CacheTTL bounds how long an exchanged token is served; Leeway is taken off its exp.
	CacheTTL time.Duration
	Leeway   time.Duration
	// Timeout bounds each call, and the wait for a slot among MaxInFlight.
	Timeout     time.Duration
	MaxInFlight int
	// CacheSize bounds the cached tokens, and apart the remembered refusals; 0 caches none.
	CacheSize int
	// NegativeTTL is how long a refusal (Kind Refused) is remembered per incoming token and
	// target, never past the incoming token's exp; 0 is DefaultNegativeTTL.
	NegativeTTL time.Duration

	HTTP   *http.Client
	Logger *zap.Logger
	Now    func() time.Time

	// OnCall, when set, is told of each call to the token endpoint
	// (telemetry.KindTokenExchange) with its outcome and duration; a call never made because
	// no slot was free in time, or the waiters were at their bound, is told as
	// telemetry.Busy. For metrics.
	OnCall telemetry.CallObserver
	// OnCache, when set, is told of each lookup in the cache of exchanged tokens: hit or
	// not. For metrics.
	OnCache func(hit bool)
	// Shared, when set, holds exchanged tokens for the other instances (shared.go),
	// consulted on a miss of the in-process cache, before a slot is taken.
	Shared SharedTokens

	once     sync.Once
	slots    chan struct{}
	waiting  atomic.Int64 // exchanges waiting for a slot, at most maxWait
	maxWait  int64
	flight   singleflight.Group
	cache    *tokencache.Cache[*Token]
	refusals *tokencache.Cache[*refusal]
	forms    []url.Values        // per target, the parameters other than the subject token
	ids      [][sha256.Size]byte // per target, what it asks for, hashed (shared.go)

	lastClientLog atomic.Int64
	lastAnswerLog atomic.Int64
	lastBusyLog   atomic.Int64
	busySinceLog  atomic.Int64 // calls shed or timed out since the last busy log

	endpoint clientauth.Endpoint

	calls atomic.Int64
}

func (c *Client) setup() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 16
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.HTTP == nil {
		c.HTTP = clientauth.NewHTTPClient(c.Timeout)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	c.slots = make(chan struct{}, c.MaxInFlight)
	c.maxWait = int64(waitersPerSlot * c.MaxInFlight)
	c.cache = tokencache.New[*Token](c.CacheSize, c.now)
	c.refusals = tokencache.New[*refusal](c.CacheSize, c.now)
	c.endpoint = clientauth.Endpoint{Group: "token exchange", Name: "token endpoint",
		Fix:      "set token_exchange endpoint, or publish token_endpoint in the issuer's metadata",
		Discover: c.Discover, Now: c.now, Logger: c.Logger}
	c.endpoint.Set(c.Endpoint)
	c.forms = make([]url.Values, len(c.Targets))
	for i, t := range c.Targets {
		f := url.Values{
			"grant_type":           {GrantType},
			"subject_token_type":   {AccessTokenType},
			"requested_token_type": {AccessTokenType},
		}
		if len(t.Audiences) > 0 {
			f["audience"] = t.Audiences
		}
		if t.Resource != "" {
			f.Set("resource", t.Resource)
		}
		if len(t.Scopes) > 0 {
			f.Set("scope", strings.Join(t.Scopes, " "))
		}
		c.forms[i] = f
	}
	c.ids = targetIDs(c.Targets)
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Calls counts the calls made to the token endpoint (for tests and metrics).
func (c *Client) Calls() int64 { return c.calls.Load() }

// keyLen is the length of a cache key: the SHA-256 of the incoming token, then the target.
const keyLen = sha256.Size + 2

// Exchange returns a token for target (an index into Targets) in exchange for subject, the
// verified incoming access token, whose SHA-256 is digest (the caller's, computed once per
// request: it keys the cache, so the token is not hashed again here) and which expires at
// subjectExp (zero: unknown). The result is cached until the earliest of its own exp minus
// Leeway, CacheTTL and subjectExp.
func (c *Client) Exchange(ctx context.Context, subject string, digest *[sha256.Size]byte, subjectExp time.Time, target int) (*Token, error) {
	c.once.Do(c.setup)
	if target < 0 || target >= len(c.Targets) {
		return nil, &Error{Kind: Unavailable, Err: fmt.Errorf("no target %d", target)}
	}
	var kb [keyLen]byte
	copy(kb[:], digest[:])
	binary.BigEndian.PutUint16(kb[sha256.Size:], uint16(target))
	t, ok := c.cache.GetBytes(kb[:])
	if c.OnCache != nil {
		c.OnCache(ok)
	}
	if ok {
		return t, nil
	}
	if r, ok := c.refusals.GetBytes(kb[:]); ok {
		return nil, r.err
	}
	key := string(kb[:])
	// The request waits for the exchange: a child span of its own shows it, with the
	// outcome (the call itself is shared by every request with this token and target); the
	// store lookup it makes first is a child of it. Nothing is started when the request's
	// span does not record.
	sctx, span := telemetry.StartSpan(ctx, telemetry.SpanTokenExchange)
	ch := c.flight.DoChan(key, func() (any, error) {
		// Another flight may have just stored it.
		if t, ok := c.cache.Get(key); ok {
			return t, nil
		}
		if r, ok := c.refusals.Get(key); ok {
			return nil, r.err
		}
		// The flight serves every request with this key: no one request's end cancels it.
		fctx := context.WithoutCancel(sctx)
		// The digest is read back from the key: the closure must not capture the caller's
		// pointer, which would make every request's digest escape to the heap, cached or not.
		var d [sha256.Size]byte
		copy(d[:], key)
		if t, ok := c.sharedGet(fctx, &d, subjectExp, target); ok {
			c.cache.Put(key, t)
			return t, nil
		}
		t, err := c.call(subject, subjectExp, target)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Kind == Refused {
				c.refusals.Put(key, c.refusalOf(e, subjectExp))
			}
			return nil, err
		}
		c.cache.Put(key, t)
		c.sharedSet(fctx, &d, target, t)
		return t, nil
	})
	select {
	case res := <-ch:
		span.End(Outcome(res.Err))
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Token), nil
	case <-ctx.Done():
		span.End(telemetry.Canceled)
		return nil, &Error{Kind: Unavailable, Err: ctx.Err()}
	}
}

// refusal is a remembered refusal of one incoming token for one target.
type refusal struct {
	err   *Error
	until time.Time
}

func (r *refusal) StillValid(now time.Time) bool { return now.Before(r.until) }

// refusalOf makes the entry of a refusal received now: remembered for NegativeTTL, never
// past the incoming token's exp.
func (c *Client) refusalOf(e *Error, subjectExp time.Time) *refusal {
	until := c.now().Add(c.NegativeTTL)
	if !subjectExp.IsZero() && subjectExp.Before(until) {
		until = subjectExp
	}
	return &refusal{err: e, until: until}
}

// acquire takes a slot for a call: a free one at once, else a place among the waiters
// until one frees within Timeout. With every waiter's place taken it sheds the call at
// once.
func (c *Client) acquire() error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	for {
		n := c.waiting.Load()
		if n >= c.maxWait {
			c.logBusy("token exchange: as many calls as allowed wait for a slot, answering 503 at once", errShed)
			return &Error{Kind: Unavailable, Err: errShed}
		}
		if c.waiting.CompareAndSwap(n, n+1) {
			break
		}
	}
	defer c.waiting.Add(-1)
	// A sender blocked on a full channel gets the next free slot before any later
	// non-blocking attempt: waiters are served in order, not overtaken.
	wait := time.NewTimer(c.Timeout)
	defer wait.Stop()
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-wait.C:
		c.logBusy("token exchange: every slot busy, answering 503", errBusy)
		return &Error{Kind: Unavailable, Err: errBusy}
	}
}

// logBusy warns of calls shed or timed out, at most every errorLogEvery, with how many
// there were since the last warning: a flood is one line every few seconds, not one a call.
func (c *Client) logBusy(msg string, err error) {
	n := c.busySinceLog.Add(1)
	if now, last := c.now().UnixNano(), c.lastBusyLog.Load(); now-last >= int64(errorLogEvery) &&
		c.lastBusyLog.CompareAndSwap(last, now) {
		c.busySinceLog.Add(-n)
		c.Logger.Warn(msg, zap.Int("max_in_flight", c.MaxInFlight), zap.Int64("waiters_max", c.maxWait),
			zap.Duration("timeout", c.Timeout), zap.Int64("calls_refused", n), zap.NamedError("reason", err))
	}
}

// call asks the token endpoint. It runs in a flight shared by every request with the same
// key, so it does not use any one request's context.
func (c *Client) call(subject string, subjectExp time.Time, target int) (*Token, error) {
	start := time.Now()
	if err := c.acquire(); err != nil {
		// No call was made: told as busy, with the time spent waiting for a slot.
		c.OnCall.Observe(telemetry.KindTokenExchange, telemetry.Busy, time.Since(start))
		return nil, err
	}
	defer func() { <-c.slots }()
	return c.callEndpoint(subject, subjectExp, target)
}

// callEndpoint makes the call in a slot; each call made is observed with its outcome.
func (c *Client) callEndpoint(subject string, subjectExp time.Time, target int) (tok *Token, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	endpoint, err := c.endpoint.Get(ctx)
	if err != nil {
		return nil, &Error{Kind: Unavailable, Err: err}
	}
	form := make(url.Values, len(c.forms[target])+6)
	for k, v := range c.forms[target] {
		form[k] = v
	}
	form.Set("subject_token", subject)
	req, err := c.Credentials.NewRequest(ctx, endpoint, form)
	if err != nil {
		// Only a broken private key gets here; the error names no secret.
		c.Logger.Error("token exchange: cannot build the request", zap.Error(err))
		return nil, &Error{Kind: Unavailable, Err: err}
	}
	c.calls.Add(1)
	defer func(start time.Time) {
		c.OnCall.Observe(telemetry.KindTokenExchange, Outcome(err), time.Since(start))
	}(time.Now())
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ce := c.Logger.Check(zap.WarnLevel, "token endpoint unreachable"); ce != nil {
			// A url.Error names the URL only: the form (with the token) is in the body.
			ce.Write(zap.String("endpoint", endpoint), zap.Error(err))
		}
		return nil, &Error{Kind: Unavailable, Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, &Error{Kind: Unavailable, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	now := c.now()
	switch {
	case resp.StatusCode >= 500:
		if ce := c.Logger.Check(zap.WarnLevel, "token endpoint failed"); ce != nil {
			ce.Write(zap.String("endpoint", endpoint), zap.Int("status", resp.StatusCode))
		}
		return nil, &Error{Kind: Unavailable, Err: fmt.Errorf("token endpoint: %w", &telemetry.StatusError{Code: resp.StatusCode})}
	case resp.StatusCode == http.StatusOK:
		a, err := parseAnswer(raw)
		if err != nil {
			c.logAnswer(endpoint, resp.StatusCode, err)
			return nil, &Error{Kind: BadAnswer, Err: err}
		}
		return c.token(a, now, subjectExp), nil
	case resp.StatusCode >= 400:
		code := errorCode(raw)
		switch code {
		case "invalid_grant", "invalid_target", "invalid_scope", "unauthorized_client", "invalid_request":
			if ce := c.Logger.Check(zap.DebugLevel, "token exchange refused"); ce != nil {
				ce.Write(zap.String("error", code), zap.Int("target", target))
			}
			return nil, &Error{Kind: Refused, Code: code}
		}
		c.logClient(endpoint, resp.StatusCode, code)
		return nil, &Error{Kind: ClientRefused, Code: code, Err: fmt.Errorf("token endpoint status %d", resp.StatusCode)}
	default:
		// 1xx, other 2xx, 3xx (redirects are not followed): not an RFC 6749 §5 answer.
		err := fmt.Errorf("status %d is not an answer of a token endpoint", resp.StatusCode)
		c.logAnswer(endpoint, resp.StatusCode, err)
		return nil, &Error{Kind: BadAnswer, Err: err}
	}
}

// token makes the cache entry of an answer received at now.
func (c *Client) token(a *answer, now, subjectExp time.Time) *Token {
	until := now.Add(c.CacheTTL)
	if a.hasExpiresIn {
		if t := now.Add(time.Duration(a.expiresIn) * time.Second).Add(-c.Leeway); t.Before(until) {
			until = t
		}
	}
	if !a.jwtExp.IsZero() {
		if t := a.jwtExp.Add(-c.Leeway); t.Before(until) {
			until = t
		}
	}
	// The incoming token's exp without leeway: one inside its leeway is exchanged again.
	if !subjectExp.IsZero() && subjectExp.Before(until) {
		until = subjectExp
	}
	return c.newToken(a.accessToken, a.jti, until)
}

// newToken makes an entry served until until.
func (c *Client) newToken(raw, jti string, until time.Time) *Token {
	v := raw
	if c.Bearer {
		v = "Bearer " + v
	}
	return &Token{value: v, raw: raw, JTI: jti, until: until}
}

func (c *Client) logClient(endpoint string, status int, code string) {
	if now, last := c.now().UnixNano(), c.lastClientLog.Load(); now-last >= int64(errorLogEvery) &&
		c.lastClientLog.CompareAndSwap(last, now) {
		c.Logger.Error("token exchange: the authorization server refused our client; check token_exchange "+
			"client_id, client_secret or private_key and auth_method against the client registered at the "+
			"authorization server, and that this client may use the token-exchange grant "+
			"("+GrantType+")",
			zap.String("endpoint", endpoint), zap.Int("status", status), zap.String("error", code),
			zap.String("client_id", c.Credentials.ClientID), zap.String("auth_method", c.Credentials.MethodName()))
	}
}

func (c *Client) logAnswer(endpoint string, status int, err error) {
	if now, last := c.now().UnixNano(), c.lastAnswerLog.Load(); now-last >= int64(errorLogEvery) &&
		c.lastAnswerLog.CompareAndSwap(last, now) {
		c.Logger.Error("token exchange: the token endpoint's answer is not a well-formed RFC 8693 response; "+
			"nothing was passed on (check the endpoint, and that the authorization server issues access tokens "+
			"for token exchange)",
			zap.String("endpoint", endpoint), zap.Int("status", status), zap.Error(err))
	}
}
