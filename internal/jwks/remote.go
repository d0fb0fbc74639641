package jwks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Defaults of Options.
const (
	DefaultRefresh            = time.Hour
	DefaultUnknownKIDInterval = time.Minute
	DefaultFetchTimeout       = 10 * time.Second
	DefaultRetryMin           = time.Second
	DefaultRetryMax           = 15 * time.Second
	DefaultMaxDocBytes        = 1 << 20
)

// Options tune a remote set. A zero field takes its default.
type Options struct {
	// Refresh is how often the set is fetched again once loaded.
	Refresh time.Duration
	// UnknownKIDInterval is the least time between two fetches caused by tokens whose kid is
	// not in the set: a flood of made-up kids makes at most one request per interval. A
	// negative value turns the limit off.
	UnknownKIDInterval time.Duration
	// FetchTimeout bounds one fetch: discovery and the JWKS request together.
	FetchTimeout time.Duration
	// RetryMin and RetryMax bound the back-off, doubling from RetryMin, while the set has
	// never been loaded.
	RetryMin, RetryMax time.Duration
	// MaxDocBytes bounds a JWKS or metadata document.
	MaxDocBytes int64
	// Client makes the requests. By default a client of its own (a clone of
	// http.DefaultTransport, with FetchTimeout), whose idle connections Close closes.
	Client *http.Client
	// Logger returns the logger to write to. It is asked on every entry, not once: a set may
	// outlive the configuration that created it, and must then log where the running one
	// says. By default nothing is logged.
	Logger func() *zap.Logger
	// OnFetch, when set, is called after every fetch with its error (nil on success), except
	// for fetches cut short by Close. For metrics.
	OnFetch func(error)
	// OnCall, when set, is told of each call to the authorization server: the discovery of
	// the JWKS URL (telemetry.KindDiscovery) and the JWKS request (telemetry.KindJWKS), with
	// their outcome and duration. Calls cut short by Close are not told. For metrics.
	OnCall telemetry.CallObserver
	// Now is the clock of the unknown-kid rate limit. By default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Refresh, DefaultRefresh)
	def(&o.UnknownKIDInterval, DefaultUnknownKIDInterval)
	def(&o.FetchTimeout, DefaultFetchTimeout)
	def(&o.RetryMin, DefaultRetryMin)
	def(&o.RetryMax, DefaultRetryMax)
	if o.MaxDocBytes == 0 {
		o.MaxDocBytes = DefaultMaxDocBytes
	}
	if o.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		o.Client = &http.Client{Transport: tr, Timeout: o.FetchTimeout}
	}
	if o.Logger == nil {
		nop := zap.NewNop()
		o.Logger = func() *zap.Logger { return nop }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// errClosed answers a fetch asked of a set that Close has stopped.
var errClosed = errors.New("key set closed")

// Remote is a JWK set fetched over HTTP, from a fixed URL or from the jwks_uri of an issuer's
// metadata, and refreshed in the background until Close. It has a context of its own, not a
// caller's: a set shared across configuration reloads outlives the configuration that
// created it.
type Remote struct {
	issuer  string // set when the JWKS URL is discovered from this issuer's metadata
	jwksURL string // fixed URL; "" for discovered sets
	opts    Options

	ctx      context.Context
	cancel   context.CancelFunc
	loopDone chan struct{} // closed when run returns
	stopped  chan struct{} // closed when Close has returned
	loaded   chan struct{} // closed when the first keys are in
	close    sync.Once

	keys atomic.Pointer[Set]

	// One fetch at a time per set: callers join the flight in flight instead of starting
	// their own. Starting and joining happen under mu, and a flight leaves the group under
	// mu, so that flying says exactly whether there is one to join.
	group    singleflight.Group
	mu       sync.Mutex
	flying   bool
	flights  uint64 // flights started, numbering them
	closed   bool
	fetchers sync.WaitGroup // running flights, waited for by Close
	// nextOnDemand is when a token with an unknown kid may make the set fetch again. A
	// fetch that succeeded spends the budget (UnknownKIDInterval); one that failed does not:
	// the next is allowed after onDemandBackoff, doubling from RetryMin, so that a key
	// rotated in during an outage is found within seconds of the server's return rather
	// than a whole interval later (a 401 for a brand-new token sends clients to sign in).
	nextOnDemand    time.Time
	onDemandBackoff time.Duration
	discovered      string // the jwks_uri found by discovery, until a fetch from it fails
	metaBase        string // where the issuer's metadata is looked for, when not at the issuer

	fetches atomic.Int64 // JWKS requests made, for tests
}

const flightKey = "fetch"

// NewRemote starts a set loaded from a fixed JWKS URL.
func NewRemote(jwksURL string, opts Options) *Remote {
	return start(&Remote{jwksURL: jwksURL}, opts)
}

// NewDiscovered starts a set whose JWKS URL is the jwks_uri of the issuer's RFC 8414 or
// OpenID Connect Discovery metadata (see DiscoveryURLs).
func NewDiscovered(issuer string, opts Options) *Remote {
	return start(&Remote{issuer: issuer}, opts)
}

// NewDiscoveredAt is NewDiscovered for an issuer whose metadata is not at its own
// well-known location: the metadata of base is read, and must name issuer. Entra's
// multi-tenant issuer `https://login.microsoftonline.com/{tenantid}/v2.0` is such a one: it
// is a template, published by the metadata of `.../organizations/v2.0` or `.../common/v2.0`.
func NewDiscoveredAt(base, issuer string, opts Options) *Remote {
	return start(&Remote{issuer: issuer, metaBase: base}, opts)
}

func start(r *Remote, opts Options) *Remote {
	r.opts = opts.withDefaults()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.loopDone = make(chan struct{})
	r.stopped = make(chan struct{})
	r.loaded = make(chan struct{})
	go r.run()
	return r
}

// URL is the fixed JWKS URL, "" for a discovered set.
func (r *Remote) URL() string { return r.jwksURL }

// Keys is the set loaded last, nil while none ever was.
func (r *Remote) Keys() *Set { return r.keys.Load() }

// Done is closed once Close has stopped the set.
func (r *Remote) Done() <-chan struct{} { return r.stopped }

// Loaded is closed once the set holds keys for the first time, so that a caller waits for
// the event rather than polling Keys.
func (r *Remote) Loaded() <-chan struct{} { return r.loaded }

func (r *Remote) name() string {
	if r.issuer != "" {
		return "issuer " + r.issuer
	}
	return r.jwksURL
}

// run loads the set, retrying with back-off until the first success, then refreshes it
// every Refresh. It ends at Close.
func (r *Remote) run() {
	defer close(r.loopDone)
	wait := r.opts.RetryMin
	for {
		r.mu.Lock()
		ch := r.flightLocked()
		r.mu.Unlock()
		err := (<-ch).Err
		var next time.Duration
		switch {
		case err == nil || r.Keys() != nil:
			next, wait = r.opts.Refresh, r.opts.RetryMin
		default:
			next, wait = wait, min(wait*2, r.opts.RetryMax)
		}
		t := time.NewTimer(next)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Close stops the background refresh, cancels and waits for the fetch in flight, and closes
// the client's idle connections. Later lookups start no fetch. It is safe to call twice.
func (r *Remote) Close() error {
	r.close.Do(func() {
		r.cancel()
		// After closed is set no flight starts, so the Wait below covers every one: a fetch
		// that ended after CloseIdleConnections would otherwise park its connection for good.
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		<-r.loopDone
		r.fetchers.Wait()
		r.opts.Client.CloseIdleConnections()
		close(r.stopped)
	})
	return nil
}

// flightLocked joins the flight in flight, or starts one. Called with mu held.
func (r *Remote) flightLocked() <-chan singleflight.Result {
	if !r.flying {
		if r.closed {
			ch := make(chan singleflight.Result, 1)
			ch <- singleflight.Result{Err: errClosed}
			return ch
		}
		r.flying = true
		r.flights++
		r.fetchers.Add(1)
	}
	n := r.flights
	return r.group.DoChan(flightKey, func() (any, error) {
		// Runs for the caller that started the flight only; joiners get its result.
		defer r.fetchers.Done()
		err := r.fetch()
		r.mu.Lock()
		r.flying = false
		r.group.Forget(flightKey)
		r.mu.Unlock()
		return n, err
	})
}

// Refresh fetches the set now and returns the fetch's error. A flight already in flight is
// waited for, then another one started: the keys are those published after the call.
func (r *Remote) Refresh(ctx context.Context) error {
	r.mu.Lock()
	before := r.flights
	r.mu.Unlock()
	for {
		r.mu.Lock()
		ch := r.flightLocked()
		r.mu.Unlock()
		select {
		case res := <-ch:
			if n, ok := res.Val.(uint64); !ok || n > before {
				return res.Err // a flight started after the call, or errClosed
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// refreshForUnknownKID fetches the set again, at most once per UnknownKIDInterval after a
// fetch that succeeded, and after a short back-off (RetryMin doubling, at most
// min(RetryMax, UnknownKIDInterval)) after one that failed. Callers that arrive while a
// fetch is in flight wait for it instead of starting their own, as long as ctx lives.
func (r *Remote) refreshForUnknownKID(ctx context.Context) {
	r.mu.Lock()
	started := false
	if !r.flying {
		now := r.opts.Now()
		if now.Before(r.nextOnDemand) {
			r.mu.Unlock()
			return
		}
		// Until the fetch ends, nobody else may start one: the flight is joined instead.
		r.nextOnDemand = now.Add(r.opts.UnknownKIDInterval)
		started = true
	}
	ch := r.flightLocked()
	if started {
		// The outcome is recorded even when ctx ends first, from a channel of its own (a
		// second DoChan joins the same flight): the next caller's allowance depends on it.
		go r.recordOnDemand(r.flightLocked())
	}
	r.mu.Unlock()
	// The request waits for this fetch: a child span of its own shows it, with the fetch's
	// outcome (the fetch itself runs on the set's context, shared by every waiter).
	_, span := telemetry.StartSpan(ctx, telemetry.SpanJWKSFetch)
	select {
	case res := <-ch:
		span.End(telemetry.Outcome(res.Err))
	case <-ctx.Done():
		span.End(telemetry.Canceled)
	}
}

// recordOnDemand sets the next on-demand allowance from the outcome of the fetch in ch.
func (r *Remote) recordOnDemand(ch <-chan singleflight.Result) {
	res := <-ch
	r.mu.Lock()
	defer r.mu.Unlock()
	if res.Err == nil {
		r.onDemandBackoff = 0
		return // the budget is spent: nextOnDemand stays one interval after the start
	}
	if errors.Is(res.Err, errClosed) {
		return
	}
	limit := min(r.opts.RetryMax, r.opts.UnknownKIDInterval)
	switch {
	case r.onDemandBackoff == 0:
		r.onDemandBackoff = r.opts.RetryMin
	default:
		r.onDemandBackoff = min(r.onDemandBackoff*2, limit)
	}
	r.onDemandBackoff = min(r.onDemandBackoff, limit)
	r.nextOnDemand = r.opts.Now().Add(r.onDemandBackoff)
}

// fetch loads the JWKS once. A failure keeps the keys already loaded and is logged as a
// warning.
func (r *Remote) fetch() error {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.FetchTimeout)
	defer cancel()
	err := r.fetchOnce(ctx)
	if err != nil && r.ctx.Err() != nil {
		return err // the set is being closed; not a failure of the server
	}
	if r.opts.OnFetch != nil {
		r.opts.OnFetch(err)
	}
	if err != nil {
		// Before the first keys load there are none to keep: say so, and what requests get.
		if kept := r.Keys(); kept == nil {
			r.opts.Logger().Warn("loading signing keys failed; no keys loaded yet, requests with a token get 503 until they load",
				zap.String("key_set", r.name()), zap.Error(err))
		} else {
			r.opts.Logger().Warn("refreshing signing keys failed; keeping the last good keys",
				zap.String("key_set", r.name()), zap.Int("keys_kept", kept.Len()), zap.Error(err))
		}
	}
	return err
}

func (r *Remote) fetchOnce(ctx context.Context) error {
	u := r.jwksURL
	if r.issuer != "" {
		r.mu.Lock()
		u = r.discovered
		r.mu.Unlock()
		if u == "" {
			var err error
			start := time.Now()
			u, err = discoverJWKSURLAt(ctx, r.opts.Client, r.metaBase, r.issuer, r.opts.MaxDocBytes)
			r.observe(telemetry.KindDiscovery, err, start)
			if err != nil {
				return err
			}
			r.mu.Lock()
			r.discovered = u
			r.mu.Unlock()
		}
	}
	r.fetches.Add(1)
	start := time.Now()
	s, skipped, err := r.getSet(ctx, u)
	r.observe(telemetry.KindJWKS, err, start)
	if err != nil {
		return err
	}
	// Flights never overlap, so nothing swaps the set between this Load and the Swap.
	s = carryOver(r.Keys(), s)
	first := r.keys.Swap(s) == nil
	log := r.opts.Logger()
	if first {
		close(r.loaded)
		log.Info("signing keys loaded", zap.String("key_set", r.name()),
			zap.String("jwks_url", u), zap.Int("keys", s.Len()), zap.Int("skipped", skipped))
	} else if ce := log.Check(zap.DebugLevel, "signing keys refreshed"); ce != nil {
		ce.Write(zap.String("key_set", r.name()), zap.Int("keys", s.Len()), zap.Int("skipped", skipped))
	}
	return nil
}

// getSet fetches and parses the JWKS at u.
func (r *Remote) getSet(ctx context.Context, u string) (*Set, int, error) {
	raw, err := getDoc(ctx, r.opts.Client, u, r.opts.MaxDocBytes)
	if err != nil {
		if r.issuer != "" {
			// The jwks_uri may have moved: discover again next time.
			r.mu.Lock()
			r.discovered = ""
			r.mu.Unlock()
		}
		return nil, 0, fmt.Errorf("loading key set %s: %w", u, err)
	}
	s, skipped, err := Parse(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("loading key set %s: %w", u, err)
	}
	if s.Len() == 0 {
		return nil, 0, fmt.Errorf("loading key set %s: no usable signing key (%d skipped)", u, skipped)
	}
	return s, skipped, nil
}

// observe tells OnCall of a call that started at start, unless Close cut it short.
func (r *Remote) observe(kind string, err error, start time.Time) {
	if r.opts.OnCall == nil || (err != nil && r.ctx.Err() != nil) {
		return
	}
	r.opts.OnCall(kind, telemetry.Outcome(err), time.Since(start))
}
