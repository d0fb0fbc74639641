package verify

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/rfc3986"
)

// DPoP checks DPoP proofs (RFC 9449 §4.3) presented with a DPoP-bound access token. It knows
// nothing of HTTP servers: the caller passes the proof, the request's method and URI as the
// client addressed it, and the access token. Binding the token to the proof's key is the
// caller's, through CheckBinding, so that tokens of every mechanism bind the same way; the
// replay check comes last (Remember), once the request passed everything else.
type DPoP struct {
	// Algorithms are the accepted proof algs, asymmetric only (RFC 9449 §4.3 check 5).
	Algorithms []string
	// MaxAge is how far iat may lie from now, in either direction.
	MaxAge time.Duration
	// Replay remembers jtis (RFC 9449 §11.1); nil turns the replay check off.
	Replay *ReplayCache
	// Nonces, when set, demand a server nonce in every proof (RFC 9449 §8).
	Nonces *Nonces
	// Keys, when set, remembers parsed proof keys by their thumbprint: a client signs every
	// proof with the same key, and parsing (and validating) an EC point costs more than the
	// lookup. Nil parses every key.
	Keys *ProofKeyCache
	Now  func() time.Time
}

// DefaultDPoPAlgorithms are the proof algorithms accepted when none are configured.
var DefaultDPoPAlgorithms = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// DPoPAlgorithms are every proof algorithm this package can check.
var DPoPAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}

// MaxProofBytes bounds a DPoP header value: a proof is a few hundred bytes, an RSA one a
// little more; anything larger is refused unread.
const MaxProofBytes = 8 << 10

// minRSABits is the smallest RSA proof key accepted (RFC 7518 §3.3 asks for 2048).
const minRSABits = 2048

// Proof is a proof that passed every check of RFC 9449 §4.3 but the binding to the token
// (CheckBinding) and the replay check (Remember).
type Proof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof key, base64url.
	JKT   string
	jti   string
	until int64 // unix seconds after which the proof's iat is outside the window
	// NonceStale: the proof's nonce is the previous step's; the answer should carry the
	// current one (DPoP-Nonce on a success, RFC 9449 §8.2), so the next proof has it.
	NonceStale bool
}

// Why a proof was refused, for debug logs. They never hold proof or token data.
var (
	ErrProofMissing    = errors.New("no DPoP header")
	ErrProofMultiple   = errors.New("more than one DPoP header")
	ErrProofTooLarge   = errors.New("DPoP proof larger than 8 KiB")
	ErrProofForm       = errors.New("DPoP proof is not a compact JWS")
	ErrProofType       = errors.New("DPoP proof typ is not dpop+jwt")
	ErrProofAlg        = errors.New("DPoP proof alg not accepted")
	ErrProofJWK        = errors.New("DPoP proof jwk missing or not a supported public key")
	ErrProofPrivateKey = errors.New("DPoP proof jwk holds private key members")
	ErrProofSignature  = errors.New("DPoP proof signature invalid")
	ErrProofClaims     = errors.New("DPoP proof claims missing or of the wrong type")
	ErrProofMethod     = errors.New("DPoP proof htm does not match the request method")
	ErrProofURI        = errors.New("DPoP proof htu does not match the request URI")
	ErrProofIAT        = errors.New("DPoP proof iat outside the accepted window")
	ErrProofATH        = errors.New("DPoP proof ath does not match the access token")
	ErrProofReplayed   = errors.New("DPoP proof jti seen before")
	ErrProofNonce      = errors.New("DPoP proof nonce missing or stale")
	ErrProofCrit       = errors.New("DPoP proof crit header parameter not understood")
)

// Check validates proof for a request with this method and URI (scheme, host and path as the
// client addressed it) carrying accessToken. Failures are *Error with Reason BadProof, or
// UseNonce when a fresh nonce is what is missing.
func (d *DPoP) Check(proof, method, uri string, accessToken *TokenHash) (Proof, error) {
	if len(proof) > MaxProofBytes {
		return Proof{}, failWith(BadProof, ErrProofTooLarge)
	}
	h64, rest, ok1 := strings.Cut(proof, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h64 == "" || p64 == "" || s64 == "" || strings.IndexByte(s64, '.') >= 0 {
		return Proof{}, failWith(BadProof, ErrProofForm)
	}

	// Header: typ, alg, jwk (RFC 9449 §4.2).
	hb, err := b64Object(h64)
	if err != nil {
		return Proof{}, failWith(BadProof, ErrProofForm)
	}
	var alg, typ string
	var jwk []byte
	seen := 0
	err = members(hb, func(name string, v []byte) error {
		switch name {
		case "alg":
			return onceString(&seen, 1, v, &alg)
		case "typ":
			return onceString(&seen, 2, v, &typ)
		case "jwk":
			if seen&4 != 0 {
				return errDuplicate
			}
			seen |= 4
			jwk = v
		case "crit":
			return ErrProofCrit
		}
		return nil
	})
	switch {
	case err == ErrProofCrit:
		return Proof{}, failWith(BadProof, err)
	case err != nil:
		return Proof{}, failWith(BadProof, ErrProofForm)
	case typ != "dpop+jwt":
		return Proof{}, failWith(BadProof, ErrProofType)
	case alg == "" || !slices.Contains(d.Algorithms, alg) || !slices.Contains(DPoPAlgorithms, alg):
		return Proof{}, failWith(BadProof, ErrProofAlg)
	case jwk == nil:
		return Proof{}, failWith(BadProof, ErrProofJWK)
	}
	key, jkt, err := parseProofKey(jwk, alg, d.Keys)
	if err != nil {
		return Proof{}, failWith(BadProof, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s64)
	if err != nil {
		return Proof{}, failWith(BadProof, ErrProofForm)
	}
	if err := jwt.GetSigningMethod(alg).Verify(proof[:len(h64)+1+len(p64)], sig, key); err != nil {
		return Proof{}, failWith(BadProof, ErrProofSignature)
	}

	// Payload (RFC 9449 §4.2): jti, htm, htu, iat; ath with an access token; nonce when
	// the server gave one.
	pb, err := b64Object(p64)
	if err != nil {
		return Proof{}, failWith(BadProof, ErrProofForm)
	}
	var jti, htm, htu, ath, nonce string
	var iat float64
	seen = 0
	err = members(pb, func(name string, v []byte) error {
		switch name {
		case "jti":
			return onceString(&seen, 1, v, &jti)
		case "htm":
			return onceString(&seen, 2, v, &htm)
		case "htu":
			return onceString(&seen, 4, v, &htu)
		case "ath":
			return onceString(&seen, 8, v, &ath)
		case "nonce":
			return onceString(&seen, 16, v, &nonce)
		case "iat":
			if seen&32 != 0 {
				return errDuplicate
			}
			seen |= 32
			var err error
			iat, err = numericDate(v)
			return err
		}
		return nil
	})
	if err != nil || jti == "" || htm == "" || htu == "" || seen&32 == 0 {
		return Proof{}, failWith(BadProof, ErrProofClaims)
	}
	if htm != method {
		return Proof{}, failWith(BadProof, ErrProofMethod)
	}
	if !SameHTU(htu, uri) {
		return Proof{}, failWith(BadProof, ErrProofURI)
	}
	now := d.Now()
	age := float64(now.Unix()) - iat
	if math.Abs(age) > d.MaxAge.Seconds() {
		return Proof{}, failWith(BadProof, ErrProofIAT)
	}
	if !accessToken.matchesATH(ath) {
		return Proof{}, failWith(BadProof, ErrProofATH)
	}
	stale := false
	if d.Nonces != nil {
		if !d.Nonces.Valid(nonce, now) {
			return Proof{}, failWith(UseNonce, ErrProofNonce)
		}
		stale = nonce != d.Nonces.Current(now)
	}
	return Proof{JKT: jkt, jti: jti, until: int64(math.Ceil(iat + d.MaxAge.Seconds())), NonceStale: stale}, nil
}

// Remember records the proof's jti and reports a replay: a proof whose jti was seen before
// is refused (RFC 9449 §11.1). It is called last, so that a request refused for another
// reason does not use up its proof.
func (d *DPoP) Remember(p Proof) error {
	if d.Replay != nil && d.Replay.Seen(p.JKT, p.jti, p.until, d.Now().Unix()) {
		return failWith(BadProof, ErrProofReplayed)
	}
	return nil
}

// onceString reads a string member that may appear once; bit marks it seen.
func onceString(seen *int, bit int, v []byte, dst *string) error {
	if *seen&bit != 0 {
		return errDuplicate
	}
	*seen |= bit
	if len(v) == 0 || v[0] != '"' {
		return errNotString
	}
	s, err := jsonString(v)
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

// b64Object decodes a base64url JWS segment that must hold a JSON object.
func b64Object(seg string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || !json.Valid(b) {
		return nil, errNotObject
	}
	return b, nil
}

// privateMembers are JWK members that only a private or symmetric key has (RFC 7518 §6):
// a proof carrying one is refused (RFC 9449 §4.3 check 7).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseProofKey reads the jwk header of a proof: a public EC (P-256, P-384, P-521), OKP
// (Ed25519) or RSA (>= 2048 bits) key matching alg. It returns the key and its RFC 7638
// thumbprint, from cache when it holds the key of that thumbprint (nil cache: none).
func parseProofKey(raw []byte, alg string, cache *ProofKeyCache) (any, string, error) {
	var kty, crv, x, y, n, e string
	seen := 0
	err := members(raw, func(name string, v []byte) error {
		if slices.Contains(privateMembers, name) {
			return ErrProofPrivateKey
		}
		switch name {
		case "kty":
			return onceString(&seen, 1, v, &kty)
		case "crv":
			return onceString(&seen, 2, v, &crv)
		case "x":
			return onceString(&seen, 4, v, &x)
		case "y":
			return onceString(&seen, 8, v, &y)
		case "n":
			return onceString(&seen, 16, v, &n)
		case "e":
			return onceString(&seen, 32, v, &e)
		}
		return nil
	})
	if err == ErrProofPrivateKey {
		return nil, "", err
	}
	if err != nil {
		return nil, "", ErrProofJWK
	}
	dec := base64.RawURLEncoding.Strict()
	switch kty {
	case "EC":
		var curve elliptic.Curve
		var want string
		switch crv {
		case "P-256":
			curve, want = elliptic.P256(), "ES256"
		case "P-384":
			curve, want = elliptic.P384(), "ES384"
		case "P-521":
			curve, want = elliptic.P521(), "ES512"
		default:
			return nil, "", ErrProofJWK
		}
		if alg != want {
			return nil, "", ErrProofJWK
		}
		jkt := thumbprint(`{"crv":"` + crv + `","kty":"EC","x":"` + x + `","y":"` + y + `"}`)
		if key, ok := cache.get(jkt); ok {
			return key, jkt, nil
		}
		size := (curve.Params().BitSize + 7) / 8
		xb, err1 := dec.DecodeString(x)
		yb, err2 := dec.DecodeString(y)
		if alg != want || err1 != nil || err2 != nil || len(xb) != size || len(yb) != size {
			return nil, "", ErrProofJWK
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), xb...), yb...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, "", ErrProofJWK
		}
		cache.put(jkt, pub)
		return pub, jkt, nil
	case "OKP":
		xb, err := dec.DecodeString(x)
		if crv != "Ed25519" || alg != "EdDSA" || err != nil || len(xb) != ed25519.PublicKeySize {
			return nil, "", ErrProofJWK
		}
		return ed25519.PublicKey(xb), thumbprint(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`), nil
	case "RSA":
		nb, err1 := dec.DecodeString(n)
		eb, err2 := dec.DecodeString(e)
		if (alg[0] != 'R' && alg[0] != 'P') || err1 != nil || err2 != nil ||
			len(nb) == 0 || nb[0] == 0 || len(eb) == 0 || eb[0] == 0 || len(eb) > 4 {
			return nil, "", ErrProofJWK
		}
		jkt := thumbprint(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`)
		if key, ok := cache.get(jkt); ok {
			return key, jkt, nil
		}
		mod := new(big.Int).SetBytes(nb)
		exp := int(new(big.Int).SetBytes(eb).Int64())
		if mod.BitLen() < minRSABits || exp < 3 || exp%2 == 0 {
			return nil, "", ErrProofJWK
		}
		pub := &rsa.PublicKey{N: mod, E: exp}
		cache.put(jkt, pub)
		return pub, jkt, nil
	}
	// oct keys (symmetric) and anything else.
	return nil, "", ErrProofJWK
}

// ProofKeyCache holds parsed proof keys by RFC 7638 thumbprint, which names one key (SHA-256
// of its canonical members): a hit is the key the proof carries. It is bounded; when full it
// starts over, so that a flood of fresh keys costs what parsing them costs anyway.
type ProofKeyCache struct {
	max  int
	mu   sync.RWMutex
	keys map[string]any
}

// NewProofKeyCache makes a cache of at most max keys.
func NewProofKeyCache(max int) *ProofKeyCache {
	return &ProofKeyCache{max: max, keys: make(map[string]any)}
}

func (c *ProofKeyCache) get(jkt string) (any, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	k, ok := c.keys[jkt]
	c.mu.RUnlock()
	return k, ok
}

func (c *ProofKeyCache) put(jkt string, key any) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.keys) >= c.max {
		clear(c.keys)
	}
	c.keys[jkt] = key
	c.mu.Unlock()
}

// Len is how many keys the cache holds.
func (c *ProofKeyCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys)
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of a JWK's required members, given in their
// canonical JSON form (members sorted, no whitespace). The values were checked to be strict
// base64url, so they need no escaping.
func thumbprint(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SameHTU compares a proof's htu with the request URI as RFC 9449 §4.3 check 9 asks: query
// and fragment ignored, after RFC 3986 §6.2.2 syntax-based and §6.2.3 scheme-based
// normalization (case of scheme and host, default port, percent-encoding, dot segments,
// empty path).
func SameHTU(htu, uri string) bool {
	if i := strings.IndexAny(htu, "?#"); i >= 0 {
		htu = htu[:i]
	}
	if htu == uri {
		return true
	}
	a, ok1 := NormalizeHTU(htu)
	b, ok2 := NormalizeHTU(uri)
	return ok1 && ok2 && a == b
}

// NormalizeHTU returns the normal form of an absolute http(s) URI without its query and
// fragment, or false when it is not one.
func NormalizeHTU(s string) (string, bool) {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	if port := u.Port(); port != "" {
		// A port is a decimal number (RFC 3986 §3.2.3): "0443" is 443, and the WHATWG URL
		// parser of browser and Node clients writes it so (then drops it as the default).
		p := strings.TrimLeft(port, "0")
		if p == "" {
			p = "0"
		}
		host = host[:len(host)-len(port)] + p
	}
	switch scheme {
	case "https":
		host = strings.TrimSuffix(host, ":443")
	case "http":
		host = strings.TrimSuffix(host, ":80")
	default:
		return "", false
	}
	host = strings.TrimSuffix(host, ":") // an empty port is the default one (RFC 3986 §6.2.3)
	p := rfc3986.NormalizePercent(u.EscapedPath())
	p = rfc3986.RemoveDotSegments(p)
	if p == "" {
		p = "/"
	}
	return scheme + "://" + host + p, true
}
