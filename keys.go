package mcpauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// keyPool holds one remote key set per JWKS URL (or per issuer to discover), shared by every
// handler instance and kept across config reloads while any config still uses it.
var keyPool = caddy.NewUsagePool()

// Tunables of remote key sets. Variables, not constants, so tests can shorten them.
var (
	// unknownKIDInterval is the least time between two fetches caused by tokens whose kid is
	// not in the set: a flood of made-up kids makes at most one request per interval.
	unknownKIDInterval = time.Minute
	// fetchTimeout bounds one discovery or JWKS request.
	fetchTimeout = 10 * time.Second
	// retryMin and retryMax bound the back-off while a set has never been loaded.
	retryMin = time.Second
	retryMax = 15 * time.Second
	// maxDocBytes bounds a JWKS or metadata document.
	maxDocBytes int64 = 1 << 20
	// keysLogger gives the logger of remote key sets when no config is running (tests).
	keysLogger = func() *zap.Logger { return caddy.Log().Named("http.handlers.mcp_auth.keys") }
)

// Key-set errors. errKeysUnavailable is the server's fault (503), the others the token's (401).
var (
	errKeysUnavailable = errors.New("no signing keys could be loaded yet")
	errUnknownKey      = errors.New("no key matches the token's kid and alg")
)

// verifyKey is one usable public key of a JWKS.
type verifyKey struct {
	// retired is set when a refresh no longer lists the key; cached tokens it signed are
	// then refused. Keys still listed keep their *verifyKey across refreshes.
	retired atomic.Bool
	kid     string
	alg     string // the JWK's alg, or "" when the JWK does not restrict it
	key     crypto.PublicKey
}

// keyIndex is an immutable snapshot of a key set, swapped atomically on refresh.
type keyIndex struct {
	byKID map[string][]*verifyKey
	all   []*verifyKey
}

func (ix *keyIndex) size() int {
	if ix == nil {
		return 0
	}
	return len(ix.all)
}

// find returns the keys that may verify a token with this kid and alg. A token without kid
// is tried against every compatible key.
func (ix *keyIndex) find(kid, alg string, out []*verifyKey) []*verifyKey {
	if ix == nil {
		return out
	}
	cands := ix.all
	if kid != "" {
		cands = ix.byKID[kid]
	}
	for _, k := range cands {
		if k.usableFor(alg) {
			out = append(out, k)
		}
	}
	return out
}

// usableFor matches the key type (and the JWK's own alg) to the token's alg, so that a key is
// never handed to a verification method of another family.
func (k *verifyKey) usableFor(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		_, ok := k.key.(*rsa.PublicKey)
		return ok
	case "ES256":
		return ecCurve(k.key, elliptic.P256())
	case "ES384":
		return ecCurve(k.key, elliptic.P384())
	case "ES512":
		return ecCurve(k.key, elliptic.P521())
	case "EdDSA":
		_, ok := k.key.(ed25519.PublicKey)
		return ok
	}
	return false
}

func ecCurve(key crypto.PublicKey, c elliptic.Curve) bool {
	k, ok := key.(*ecdsa.PublicKey)
	return ok && k.Curve == c
}

// parseJWKS reads a JWK Set. Keys that cannot verify signatures (encryption keys, symmetric
// keys, unsupported types) are skipped, not fatal: one odd key must not take the others down.
func parseJWKS(raw []byte) (*keyIndex, int, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, 0, fmt.Errorf("parsing JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, 0, errors.New(`parsing JWK set: no "keys" member`)
	}
	ix := &keyIndex{byKID: make(map[string][]*verifyKey)}
	skipped := 0
	for _, rawKey := range doc.Keys {
		kf, err := keyfunc.NewJWKJSON(rawKey)
		if err != nil {
			skipped++
			continue
		}
		jwks, err := kf.Storage().KeyReadAll(context.Background())
		if err != nil || len(jwks) != 1 {
			skipped++
			continue
		}
		jwk := jwks[0]
		m := jwk.Marshal()
		if m.USE != "" && m.USE != jwkset.UseSig {
			skipped++
			continue
		}
		pub := publicOf(jwk.Key())
		if pub == nil {
			skipped++
			continue
		}
		k := &verifyKey{kid: m.KID, alg: m.ALG.String(), key: pub}
		ix.all = append(ix.all, k)
		ix.byKID[k.kid] = append(ix.byKID[k.kid], k)
	}
	return ix, skipped, nil
}

// publicOf returns the public half of an asymmetric key, or nil for anything else.
func publicOf(key any) crypto.PublicKey {
	switch k := key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}

// keySources are the key sets one handler verifies with.
type keySources struct {
	static   *keyIndex             // jwks_file
	file     string                // its path, for logs
	shared   []*remoteSet          // jwks_url: valid for every accepted issuer
	byIssuer map[string]*remoteSet // discovered, valid only for their own issuer
	poolKeys []string
}

// acquireKeySources takes the handler's key sets from the pool. On failure it releases what
// it had acquired, so a failed Provision leaves no pool entry behind even without Cleanup.
func acquireKeySources(h *Handler, logger *zap.Logger) (*keySources, error) {
	ks := &keySources{byIssuer: make(map[string]*remoteSet)}
	if err := ks.acquireAll(h); err != nil {
		_ = ks.release()
		return nil, err
	}
	return ks, nil
}

func (ks *keySources) acquireAll(h *Handler) error {
	if h.JWKSFile != "" {
		raw, err := os.ReadFile(h.JWKSFile)
		if err != nil {
			return fmt.Errorf("jwks_file: %w", err)
		}
		ix, _, err := parseJWKS(raw)
		if err != nil {
			return fmt.Errorf("jwks_file %s: %w", h.JWKSFile, err)
		}
		if ix.size() == 0 {
			return fmt.Errorf("jwks_file %s: no usable signing key", h.JWKSFile)
		}
		ks.static, ks.file = ix, h.JWKSFile
	}
	refresh := time.Duration(h.JWKSRefresh)
	for _, u := range h.JWKSURLs {
		rs, err := ks.acquire("jwks|"+u+"|"+refresh.String(), func() *remoteSet {
			return newRemoteSet(u, "", refresh)
		})
		if err != nil {
			return err
		}
		ks.shared = append(ks.shared, rs)
	}
	if h.JWKSFile == "" && len(h.JWKSURLs) == 0 {
		for _, iss := range h.Issuers {
			// Checked before the set exists: an issuer that is not a URL can never be
			// discovered, and its set would retry in the background forever.
			if _, err := discoveryURLs(iss); err != nil {
				return fmt.Errorf("issuers: %w; set jwks_url or jwks_file for it", err)
			}
			rs, err := ks.acquire("issuer|"+iss+"|"+refresh.String(), func() *remoteSet {
				return newRemoteSet("", iss, refresh)
			})
			if err != nil {
				return err
			}
			ks.byIssuer[iss] = rs
		}
	}
	return nil
}

func (ks *keySources) acquire(poolKey string, mk func() *remoteSet) (*remoteSet, error) {
	v, _, err := keyPool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		rs := mk()
		rs.start()
		return rs, nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading key set %s: %w", poolKey, err)
	}
	ks.poolKeys = append(ks.poolKeys, poolKey)
	return v.(*remoteSet), nil
}

func (ks *keySources) release() error {
	var errs []error
	for _, k := range ks.poolKeys {
		if _, err := keyPool.Delete(k); err != nil {
			errs = append(errs, err)
		}
	}
	ks.poolKeys = nil
	return errors.Join(errs...)
}

func (ks *keySources) logStart(logger *zap.Logger, resource string) {
	if ks.static != nil {
		logger.Info("signing keys loaded from file", zap.String("resource", resource),
			zap.String("jwks_file", ks.file), zap.Int("keys", ks.static.size()))
	}
	for _, rs := range ks.shared {
		logger.Info("signing keys from JWKS URL", zap.String("resource", resource),
			zap.String("jwks_url", rs.jwksURL), zap.Int("keys_loaded", rs.current().size()))
	}
	for iss, rs := range ks.byIssuer {
		logger.Info("signing keys discovered from issuer metadata", zap.String("resource", resource),
			zap.String("issuer", iss), zap.Int("keys_loaded", rs.current().size()))
	}
}

// sets returns the remote sets that may hold keys for a token of this issuer.
func (ks *keySources) sets(iss string, buf []*remoteSet) []*remoteSet {
	buf = append(buf, ks.shared...)
	if rs := ks.byIssuer[iss]; rs != nil {
		buf = append(buf, rs)
	}
	return buf
}

// lookup finds the keys for a token of issuer iss with this kid and alg. An unknown kid
// makes the remote sets fetch again, within their rate limit.
func (ks *keySources) lookup(ctx context.Context, iss, kid, alg string) ([]*verifyKey, error) {
	var setBuf [4]*remoteSet
	sets := ks.sets(iss, setBuf[:0])
	var found []*verifyKey
	found = ks.static.find(kid, alg, found)
	for _, rs := range sets {
		found = rs.current().find(kid, alg, found)
	}
	if len(found) > 0 {
		return found, nil
	}
	anyLoaded := ks.static.size() > 0
	for _, rs := range sets {
		rs.refreshForUnknownKID(ctx)
		ix := rs.current()
		found = ix.find(kid, alg, found)
		if ix != nil {
			anyLoaded = true
		}
	}
	if len(found) > 0 {
		return found, nil
	}
	if !anyLoaded {
		return nil, errKeysUnavailable
	}
	return nil, errUnknownKey
}

// remoteSet is a JWKS fetched over HTTP, either from a fixed URL or from the jwks_uri of an
// issuer's metadata, refreshed in the background. It lives in keyPool, not in a config, so it
// has its own context: the caddy.Context of the config that created it dies at the next reload
// while the new config still uses the set.
type remoteSet struct {
	issuer  string // set when the JWKS URL is discovered from this issuer's metadata
	jwksURL string // fixed URL; for discovered sets, guarded by mu
	refresh time.Duration
	client  *http.Client
	logger  *zap.Logger // set only by tests; see log

	// Tunables, read once at creation so that a running set never races with tests that
	// change the package variables.
	unknownKIDInterval time.Duration
	retryMin, retryMax time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	keys atomic.Pointer[keyIndex]

	mu            sync.Mutex
	inflight      *fetchCall
	fetchers      sync.WaitGroup // fetch goroutines, waited for by Destruct
	lastOnDemand  time.Time
	discoveredURL string

	fetches atomic.Int64 // JWKS requests made, for tests and metrics
}

type fetchCall struct {
	done chan struct{}
	err  error
}

func newRemoteSet(jwksURL, issuer string, refresh time.Duration) *remoteSet {
	ctx, cancel := context.WithCancel(context.Background())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &remoteSet{
		issuer:  issuer,
		jwksURL: jwksURL,
		refresh: refresh,
		client:  &http.Client{Transport: tr, Timeout: fetchTimeout},
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),

		unknownKIDInterval: unknownKIDInterval,
		retryMin:           retryMin,
		retryMax:           retryMax,
	}
}

func (rs *remoteSet) name() string {
	if rs.issuer != "" {
		return "issuer " + rs.issuer
	}
	return rs.jwksURL
}

func (rs *remoteSet) current() *keyIndex { return rs.keys.Load() }

// log returns the logger of the config running now. A set outlives the config that created
// it, and a logger taken at creation would keep writing to that config's log sinks (closed
// or replaced by a reload) instead of the ones configured now.
func (rs *remoteSet) log() *zap.Logger {
	if rs.logger != nil {
		return rs.logger
	}
	if ctx := caddy.ActiveContext(); ctx.Context != nil {
		return ctx.Logger(Handler{}).Named("keys")
	}
	return keysLogger()
}

func (rs *remoteSet) start() {
	go rs.run()
}

// run loads the set, retrying with back-off until the first success, then refreshes it
// every rs.refresh. It ends when the set leaves the pool.
func (rs *remoteSet) run() {
	defer close(rs.done)
	wait := rs.retryMin
	for {
		err := rs.fetchShared()
		var next time.Duration
		switch {
		case err == nil || rs.current() != nil:
			next, wait = rs.refresh, rs.retryMin
		default:
			next, wait = wait, min(wait*2, rs.retryMax)
		}
		t := time.NewTimer(next)
		select {
		case <-rs.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Destruct stops the background refresh and closes idle connections. Called by keyPool when
// the last config using the set is gone.
func (rs *remoteSet) Destruct() error {
	rs.cancel()
	// After this lock no fetch can start (startFetchLocked sees the cancelled context), so
	// the Wait below covers every fetch goroutine: a fetch that finished after
	// CloseIdleConnections would otherwise park its connection in the pool for good.
	rs.mu.Lock()
	rs.mu.Unlock() //nolint:staticcheck // empty critical section: a barrier for fetchers.Add
	<-rs.done
	rs.fetchers.Wait()
	rs.client.CloseIdleConnections()
	return nil
}

// refreshForUnknownKID fetches the set again, at most once per unknownKIDInterval. Callers
// that arrive while a fetch is running wait for it instead of starting their own.
func (rs *remoteSet) refreshForUnknownKID(ctx context.Context) {
	rs.mu.Lock()
	call := rs.inflight
	if call == nil {
		if !rs.lastOnDemand.IsZero() && time.Since(rs.lastOnDemand) < rs.unknownKIDInterval {
			rs.mu.Unlock()
			return
		}
		rs.lastOnDemand = time.Now()
		call = rs.startFetchLocked()
	}
	rs.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
	}
}

// fetchShared fetches the set, joining a fetch already in flight.
func (rs *remoteSet) fetchShared() error {
	rs.mu.Lock()
	call := rs.inflight
	if call == nil {
		call = rs.startFetchLocked()
	}
	rs.mu.Unlock()
	<-call.done
	return call.err
}

func (rs *remoteSet) startFetchLocked() *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	if err := rs.ctx.Err(); err != nil {
		// The set left the pool: a handler of a config being stopped must not start a fetch.
		call.err = err
		close(call.done)
		return call
	}
	rs.inflight = call
	rs.fetchers.Add(1)
	go func() {
		defer rs.fetchers.Done()
		call.err = rs.fetch()
		rs.mu.Lock()
		rs.inflight = nil
		rs.mu.Unlock()
		close(call.done)
	}()
	return call
}

// fetch loads the JWKS once. A failure keeps the keys already loaded and is logged as a warning.
func (rs *remoteSet) fetch() error {
	ctx, cancel := context.WithTimeout(rs.ctx, fetchTimeout)
	defer cancel()
	err := rs.fetchOnce(ctx)
	if err != nil {
		if rs.ctx.Err() != nil {
			return err // the set is being destroyed; not a failure of the server
		}
		countRefresh(err)
		rs.log().Warn("refreshing signing keys failed; keeping the last good keys",
			zap.String("key_set", rs.name()), zap.Int("keys_kept", rs.current().size()), zap.Error(err))
		return err
	}
	countRefresh(nil)
	return nil
}

func (rs *remoteSet) fetchOnce(ctx context.Context) error {
	u := rs.jwksURL
	if rs.issuer != "" {
		rs.mu.Lock()
		u = rs.discoveredURL
		rs.mu.Unlock()
		if u == "" {
			var err error
			if u, err = discoverJWKSURL(ctx, rs.client, rs.issuer); err != nil {
				return err
			}
			rs.mu.Lock()
			rs.discoveredURL = u
			rs.mu.Unlock()
		}
	}
	rs.fetches.Add(1)
	raw, err := getDoc(ctx, rs.client, u)
	if err != nil {
		if rs.issuer != "" {
			// The jwks_uri may have moved: discover again next time.
			rs.mu.Lock()
			rs.discoveredURL = ""
			rs.mu.Unlock()
		}
		return fmt.Errorf("loading key set %s: %w", u, err)
	}
	ix, skipped, err := parseJWKS(raw)
	if err != nil {
		return fmt.Errorf("loading key set %s: %w", u, err)
	}
	if ix.size() == 0 {
		return fmt.Errorf("loading key set %s: no usable signing key (%d skipped)", u, skipped)
	}
	old := rs.current()
	ix = carryOver(old, ix)
	first := rs.keys.Swap(ix) == nil
	if first {
		rs.log().Info("signing keys loaded", zap.String("key_set", rs.name()),
			zap.String("jwks_url", u), zap.Int("keys", ix.size()), zap.Int("skipped", skipped))
	} else if ce := rs.log().Check(zap.DebugLevel, "signing keys refreshed"); ce != nil {
		ce.Write(zap.String("key_set", rs.name()), zap.Int("keys", ix.size()), zap.Int("skipped", skipped))
	}
	return nil
}

// getDoc GETs a JSON document of bounded size.
func getDoc(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > maxDocBytes {
		return nil, fmt.Errorf("document larger than %d bytes", maxDocBytes)
	}
	return raw, nil
}

// discoveryURLs are the metadata locations tried for an issuer, in order: RFC 8414 with the
// well-known segment inserted before the path, then OpenID Connect Discovery inserted, then
// appended (the form Keycloak realms and Entra's /v2.0 issuers use).
func discoveryURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("issuer %q: %w", issuer, errNotURL)
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

// discoverJWKSURL finds the issuer's jwks_uri. A document whose issuer differs from the
// configured one is refused (RFC 8414 §3.3), and the next location is tried.
func discoverJWKSURL(ctx context.Context, client *http.Client, issuer string) (string, error) {
	cands, err := discoveryURLs(issuer)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, c := range cands {
		raw, err := getDoc(ctx, client, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(raw, &md); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		if md.Issuer != issuer {
			errs = append(errs, fmt.Errorf("%s: issuer %q does not match the configured %q", c, md.Issuer, issuer))
			continue
		}
		if err := checkHTTPURL(md.JWKSURI); err != nil {
			errs = append(errs, fmt.Errorf("%s: jwks_uri %q: %w", c, md.JWKSURI, err))
			continue
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("discovering the JWKS of issuer %s: %w", issuer, errors.Join(errs...))
}

// carryOver builds the index that replaces old: a key present in both keeps its old
// *verifyKey, so tokens it verified stay cached; a key that left is marked retired.
func carryOver(old, next *keyIndex) *keyIndex {
	if old == nil {
		return next
	}
	kept := make(map[*verifyKey]bool, len(old.all))
	out := &keyIndex{byKID: make(map[string][]*verifyKey, len(next.byKID)), all: make([]*verifyKey, 0, len(next.all))}
	for _, k := range next.all {
		for _, o := range old.byKID[k.kid] {
			if o.alg == k.alg && sameKey(o.key, k.key) {
				k = o
				kept[o] = true
				break
			}
		}
		out.all = append(out.all, k)
		out.byKID[k.kid] = append(out.byKID[k.kid], k)
	}
	for _, o := range old.all {
		if !kept[o] {
			o.retired.Store(true)
		}
	}
	return out
}

func sameKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
