package verify

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"go.uber.org/zap"
)

// Uncached introspection calls cost the authorization server a lookup each, and anyone can
// make them: a made-up opaque token is refused only after the server has been asked. So the
// calls that no cache answers are bounded in four ways, each against one way a flood of
// made-up tokens could hurt:
//
//   - concurrency (MaxInFlight) and the rate in total (MaxRate, a token bucket): the server
//     never sees more than the configured load, however many tokens arrive — a bound on
//     concurrency alone still lets a fast server receive one call per made-up token;
//   - waiters are capped (four per slot: a burst of real tokens waits its turn, and a
//     server slower than Timeout/4 would not serve more in time anyway) and the excess is
//     shed at once, with 503 and Retry-After: a queue without a bound would make every new
//     token wait behind the flood, and hold a goroutine and a connection for each;
//   - each client address (IPv4 /32, IPv6 /64) gets a bounded share of the slots and
//     waiters together (a quarter of MaxInFlight) and of the rate (a quarter of MaxRate,
//     with a burst of one second of MaxRate, while the total bucket holds two): one address
//     alone can never take every slot or drain the total bucket, so a real token's first
//     request from anywhere else is still served while that address floods;
//   - an address whose call got an inactive answer (a made-up token) is suspect for a
//     minute, and may use only the upper half of the total bucket: a flood from many
//     addresses cannot use up the lower half, kept for addresses whose tokens were real.
//     To drain it an attacker needs fresh addresses at half of MaxRate a second (1,500 a
//     minute by default), each spent on one made-up token. A suspect address does not wait
//     for a slot either: it takes a free one or gets 503, so a real token waiting for a
//     slot gets the next one. Fresh IPv6 /64s are cheap (a tunnel broker routes a /48,
//     65,536 of them, to anyone for free), so once two /64s of one /48 are suspect, the
//     whole /48 is: its other /64s may use only the upper half too;
//   - a token that cannot be one of the server's format (not an RFC 6750 b64token, or of a
//     length no authorization server issues) is refused before any call, as invalid_token.
//
// Tokens that proved themselves already (JWTs that verified locally, with jwt_too) are not
// counted against the rates or the shares: nobody can make them up. They still take a slot.
const (
	// DefaultMaxRate is the default bound on uncached calls per second, in total.
	DefaultMaxRate = 50
	// clientShare: each client address may hold 1/clientShare of the slots (with its
	// waiters) and of the rate.
	clientShare = 4
	// waitersPerSlot bounds the requests waiting for a slot.
	waitersPerSlot = 4
	// maxClients bounds the per-address state (about 100 bytes each); beyond it, addresses
	// idle long enough to have a full bucket are forgotten, and if none is, the request is
	// shed.
	maxClients = 1 << 16
	// MinTokenLen and MaxTokenLen bound the tokens sent to introspection. RFC 6749 §10.10
	// requires access tokens that cannot be guessed (2^-128), which no token of a handful
	// of characters meets; the shortest in the wild are UUIDs (36, WSO2), 30 (Django OAuth
	// Toolkit), 43 (oidc-provider, Doorkeeper, Authlete: 32 random bytes in base64url).
	// The bound is kept well below that, at 8, so that hand-made test servers still work
	// (the caller sets it: Introspection.MinTokenLen). The longest opaque tokens are Auth0's JWE (about 1 KB) and Google's (up to 2 KB);
	// 8 KiB is above any real one, and below what a proxy accepts as a header line.
	MinTokenLen = 8
	MaxTokenLen = 8 << 10
)

// Why an uncached call was shed (the error detail, and the kind in the shedding log).
var (
	errShedClientShare = errors.New("this client address already has its share of calls in flight")
	errShedClientRate  = errors.New("this client address made its share of new calls this second")
	errShedRate        = errors.New("the rate of new calls to the introspection endpoint is at its bound")
	errShedWaiters     = errors.New("four calls per slot wait for a slot already")
	errShedClients     = errors.New("too many client addresses are calling at once")
)

// WellFormedToken reports whether token can be an access token of some authorization
// server: an RFC 6750 §2.1 b64token (ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/",
// then "=" padding only at the end), of minLen (at least 1) to MaxTokenLen characters. Every
// opaque token format seen in the wild passes: base64url (oidc-provider, Doorkeeper),
// Hydra's `ory_at_…` (base64url parts joined by '.'), JWE (Auth0), UUIDs (WSO2), base64 with
// '+' and '/' (ZITADEL), prefixed ones (GitHub `gho_…`, Google `ya29.…`).
func WellFormedToken(token string, minLen int) bool {
	if len(token) < minLen || len(token) > MaxTokenLen {
		return false
	}
	i := 0
	for ; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false // a b64token has at least one character before any padding
	}
	for ; i < len(token); i++ {
		if token[i] != '=' {
			return false
		}
	}
	return true
}

// ClientPrefix groups a client address for the per-address shares: an IPv4 address alone,
// an IPv6 address by its /64 (the least a subscriber or a host is given, so one attacker
// holds at least 2^64 addresses of it). The zero Prefix stands for an unknown address.
func ClientPrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		return netip.PrefixFrom(addr, 32)
	case addr.Is6():
		p, _ := addr.WithZone("").Prefix(64)
		return p
	}
	return netip.Prefix{}
}

// bucket is a token bucket: rate tokens a second, at most burst kept.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	return b.takeAbove(now, rate, burst, 0)
}

// takeAbove takes a token if floor tokens remain after it.
func (b *bucket) takeAbove(now time.Time, rate, burst, floor float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
	}
	b.last = now
	if b.tokens-1 < floor {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket would be full at now (its client has been idle).
func (b *bucket) full(now time.Time, rate, burst float64) bool {
	return b.tokens+now.Sub(b.last).Seconds()*rate >= burst
}

type clientState struct {
	active int // calls in flight or waiting for a slot
	rate   bucket
	// suspectUntil: a call from this address got an inactive answer lately (a made-up,
	// revoked or expired token). Until then it may use only the upper half of the total
	// bucket: the lower half is kept for addresses whose tokens were all real, so that a
	// flood from many addresses — each of which is marked by its first made-up token —
	// cannot use up what a real token's first request needs.
	suspectUntil time.Time
	// marks, in the entry of an IPv6 /48, counts its /64s made suspect until marksUntil.
	marks      int
	marksUntil time.Time
}

// suspectFor is how long an inactive answer marks its client address.
const suspectFor = time.Minute

// wideMarks suspect IPv6 /64s make their /48 suspect.
const wideMarks = 2

// widePrefix is the IPv6 /48 of a /64 client prefix; false for an IPv4 or unknown address.
func widePrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() || !p.Addr().Is6() || p.Bits() != 64 {
		return netip.Prefix{}, false
	}
	w, _ := p.Addr().Prefix(48)
	return w, true
}

// wideSuspect reports whether the /48 of client is suspect. Called with mu held.
func (l *limiter) wideSuspect(client netip.Prefix, now time.Time) bool {
	w, ok := widePrefix(client)
	if !ok {
		return false
	}
	c := l.clients[w]
	return c != nil && now.Before(c.suspectUntil)
}

// limiter admits uncached calls. Counters live under one mutex: an admission is a few
// comparisons, far cheaper than the call it admits.
type limiter struct {
	slots      chan struct{}
	maxWaiting int
	rate       float64 // per second, in total
	burst      float64 // the total bucket's size: two seconds of rate
	perSlots   int     // slots with waiters, per client address
	perRate    float64 // per second, per client address
	perBurst   float64 // a client's bucket size: one second of rate, half the total
	timeout    time.Duration

	mu        sync.Mutex
	waiting   int
	total     bucket
	clients   map[netip.Prefix]*clientState
	lastSweep time.Time
}

func newLimiter(maxInFlight int, rate float64, timeout time.Duration) *limiter {
	return &limiter{
		slots:      make(chan struct{}, maxInFlight),
		maxWaiting: waitersPerSlot * maxInFlight,
		rate:       rate,
		burst:      max(1, 2*rate),
		perSlots:   max(1, maxInFlight/clientShare),
		perRate:    max(1, rate/clientShare),
		perBurst:   max(1, rate),
		timeout:    timeout,
		clients:    make(map[netip.Prefix]*clientState),
	}
}

// admit waits for a slot for one uncached call from client (the zero Prefix when the
// address is unknown, which then shares one allowance), or sheds it. proven calls skip the
// rates and shares. The returned release frees the slot.
func (l *limiter) admit(client netip.Prefix, proven bool, now time.Time) (release func(), err error) {
	l.mu.Lock()
	var c *clientState
	suspect := false
	if !proven {
		if c = l.client(client, now); c == nil {
			l.mu.Unlock()
			return nil, errShedClients
		}
		if c.active >= l.perSlots {
			l.mu.Unlock()
			return nil, errShedClientShare
		}
		if !c.rate.take(now, l.perRate, l.perBurst) {
			l.mu.Unlock()
			return nil, errShedClientRate
		}
		floor := 0.0
		if suspect = now.Before(c.suspectUntil) || l.wideSuspect(client, now); suspect {
			floor = l.burst / 2
		}
		if !l.total.takeAbove(now, l.rate, l.burst, floor) {
			l.mu.Unlock()
			return nil, errShedRate
		}
		c.active++
	}
	release = func() {
		<-l.slots
		if c != nil {
			l.mu.Lock()
			c.active--
			l.mu.Unlock()
		}
	}
	select {
	case l.slots <- struct{}{}:
		l.mu.Unlock()
		return release, nil
	default:
	}
	if l.waiting >= l.maxWaiting || suspect {
		// A suspect address takes a free slot or none: it never queues ahead of the
		// next real token.
		if c != nil {
			c.active--
		}
		l.mu.Unlock()
		return nil, errShedWaiters
	}
	l.waiting++
	l.mu.Unlock()

	// A sender blocked on a full channel gets the next free slot before any later
	// non-blocking attempt: waiters are served in order, not overtaken.
	wait := time.NewTimer(l.timeout)
	defer wait.Stop()
	select {
	case l.slots <- struct{}{}:
		l.mu.Lock()
		l.waiting--
		l.mu.Unlock()
		return release, nil
	case <-wait.C:
		l.mu.Lock()
		l.waiting--
		if c != nil {
			c.active--
		}
		l.mu.Unlock()
		return nil, errBusy
	}
}

// client returns the state of an address, making it if need be; nil when there are
// maxClients addresses already and none idle. Called with mu held.
func (l *limiter) client(p netip.Prefix, now time.Time) *clientState {
	if c := l.clients[p]; c != nil {
		return c
	}
	if len(l.clients) >= maxClients {
		// Sweep at most once a second: the sweep is linear in the addresses held.
		if now.Sub(l.lastSweep) < time.Second {
			return nil
		}
		l.lastSweep = now
		for k, c := range l.clients {
			// A suspect mark goes with its entry: forgetting it (the address may then use
			// the lower half of the rate again) is better than shedding new addresses.
			if c.active == 0 && c.rate.full(now, l.perRate, l.perBurst) {
				delete(l.clients, k)
			}
		}
		if len(l.clients) >= maxClients {
			return nil
		}
	}
	c := &clientState{}
	l.clients[p] = c
	return c
}

// suspect marks client after a call of its got an inactive answer.
func (l *limiter) suspect(client netip.Prefix, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[client]
	if c == nil {
		return
	}
	fresh := !now.Before(c.suspectUntil)
	c.suspectUntil = now.Add(suspectFor)
	w, ok := widePrefix(client)
	if !fresh || !ok {
		return
	}
	// One more /64 of this /48 turned suspect (a /64 that stays suspect counts once, so a
	// user retrying an expired token does not mark its neighbours).
	wc := l.client(w, now)
	if wc == nil {
		return
	}
	if !now.Before(wc.marksUntil) {
		wc.marks = 0
	}
	wc.marks++
	wc.marksUntil = now.Add(suspectFor)
	if wc.marks >= wideMarks {
		wc.suspectUntil = now.Add(suspectFor)
	}
}

// clientOf is the client address of r, grouped (ClientPrefix). Unknown without r.
func (v *Introspection) clientOf(r *http.Request) netip.Prefix {
	if r == nil {
		return netip.Prefix{}
	}
	var s string
	if v.ClientAddress != nil {
		s = v.ClientAddress(r)
	} else {
		s = r.RemoteAddr
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ClientPrefix(ap.Addr())
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ClientPrefix(a)
	}
	return netip.Prefix{}
}

// limited admits the call then makes it. It runs in the flight of the token, for the
// request that started it.
func (v *Introspection) limited(token string, client netip.Prefix, proven bool) (*answer, error) {
	start := time.Now()
	release, err := v.limits.admit(client, proven, v.now())
	if err != nil {
		v.shedLog.failed(v.Logger, v.now(), shedKind(err),
			zap.Int("max_in_flight", v.MaxInFlight), zap.Float64("max_rate", v.limits.rate))
		// No call was made: told as busy, with the time the request waited for a slot.
		v.OnCall.Observe(telemetry.KindIntrospection, telemetry.Busy, time.Since(start))
		return nil, failWith(ASUnavailable, err)
	}
	defer release()
	a, err := v.call(token)
	if err == nil && !a.active && !proven {
		v.limits.suspect(client, v.now())
	}
	return a, err
}

// shed reports whether err is a call the limits shed (no call was made).
func shed(err error) bool {
	for _, e := range [...]error{errShedClientShare, errShedClientRate, errShedRate, errShedWaiters, errShedClients, errBusy} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func shedKind(err error) string {
	switch err {
	case errShedClientShare:
		return "client address at its share of slots"
	case errShedClientRate:
		return "client address at its share of the rate"
	case errShedRate:
		return "total rate at its bound"
	case errShedWaiters:
		return "waiters at their bound"
	case errShedClients:
		return "too many client addresses"
	case errBusy:
		return "no slot free within timeout"
	}
	return "other"
}
