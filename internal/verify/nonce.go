package verify

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Nonces are DPoP server nonces (RFC 9449 §8) without server state: a nonce is the HMAC of
// the current time step under a key, so every instance that shares the key issues and
// accepts the same nonces, and they rotate each step. A nonce of the current or the previous
// step is accepted, so one handed out just before a step ends still works.
type Nonces struct {
	key  []byte
	step time.Duration
	last atomic.Pointer[nonceAt]
}

type nonceAt struct {
	step  int64
	nonce string
}

// MinNonceKeyBytes is the shortest nonce key accepted.
const MinNonceKeyBytes = 16

// NewNonces makes nonces under key, or under a random key when key is empty (nonces then
// work in this process only), changing every step.
func NewNonces(key []byte, step time.Duration) *Nonces {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24)
	}
	return &Nonces{key: key, step: step}
}

// Current is the nonce to hand out at now (DPoP-Nonce header).
func (n *Nonces) Current(now time.Time) string {
	s := now.UnixNano() / int64(n.step)
	if l := n.last.Load(); l != nil && l.step == s {
		return l.nonce
	}
	v := n.at(s)
	n.last.Store(&nonceAt{step: s, nonce: v})
	return v
}

// Valid reports whether nonce is the current or the previous step's.
func (n *Nonces) Valid(nonce string, now time.Time) bool {
	if len(nonce) != nonceLen {
		return false
	}
	s := now.UnixNano() / int64(n.step)
	cur := n.Current(now)
	return subtle.ConstantTimeCompare([]byte(nonce), []byte(cur)) == 1 ||
		subtle.ConstantTimeCompare([]byte(nonce), []byte(n.at(s-1))) == 1
}

const nonceLen = 22 // 16 bytes of MAC, base64url

func (n *Nonces) at(step int64) string {
	m := hmac.New(sha256.New, n.key)
	var b [8 + len("dpop-nonce")]byte
	copy(b[:], "dpop-nonce")
	binary.BigEndian.PutUint64(b[len("dpop-nonce"):], uint64(step))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}
