package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// MinEncryptionKeyBytes is the shortest secret Sealed accepts.
const MinEncryptionKeyBytes = 32

// HKDF labels (RFC 5869 info): one key seals values, another names keys, so that neither
// tells anything about the other.
const (
	sealLabel = "caddy-mcp-auth store seal v1"
	nameLabel = "caddy-mcp-auth store key names v1"
)

// SealedCache gets and sets values by (namespace, SHA-256 key), with a TTL. A value that
// cannot be opened (another key, tampered, truncated) reads as a miss.
type SealedCache interface {
	Get(ctx context.Context, namespace string, key [32]byte) ([]byte, bool, error)
	Set(ctx context.Context, namespace string, key [32]byte, val []byte, ttl time.Duration) error
}

// Sealed is a SealedCache on a Client. Values are sealed with AES-256-GCM under a key
// derived from the operator's secret; the store's key is the prefix, the namespace and the
// HMAC-SHA-256 of the caller's key, so that whoever reads the store learns neither values
// nor which token a key belongs to, and a value moved to another key does not open.
type Sealed struct {
	c    *Client
	aead cipher.AEAD
	name []byte // HMAC key for key names
}

// ErrShortKey refuses an encryption key shorter than MinEncryptionKeyBytes.
var ErrShortKey = errors.New("encryption key shorter than 32 bytes")

// Sealed returns a SealedCache keyed by secret (at least 32 bytes).
func (c *Client) Sealed(secret []byte) (*Sealed, error) {
	if len(secret) < MinEncryptionKeyBytes {
		return nil, ErrShortKey
	}
	sealKey, err := hkdf.Key(sha256.New, secret, nil, sealLabel, 32)
	if err != nil {
		return nil, err
	}
	nameKey, err := hkdf.Key(sha256.New, secret, nil, nameLabel, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealed{c: c, aead: aead, name: nameKey}, nil
}

// Key is the store key of (namespace, key): prefix, namespace, ':', hex HMAC.
func (s *Sealed) Key(namespace string, key [32]byte) string {
	m := hmac.New(sha256.New, s.name)
	m.Write([]byte(namespace))
	m.Write([]byte{0})
	m.Write(key[:])
	var sum [sha256.Size]byte
	return s.c.prefix + namespace + ":" + hex.EncodeToString(m.Sum(sum[:0]))
}

// Get returns the opened value of (namespace, key). A miss, or a value that does not open,
// is (nil, false, nil); err is set only when the store could not be asked.
func (s *Sealed) Get(ctx context.Context, namespace string, key [32]byte) ([]byte, bool, error) {
	k := s.Key(namespace, key)
	raw, ok, err := s.c.get(ctx, k)
	if err != nil || !ok {
		return nil, false, err
	}
	ns := s.aead.NonceSize()
	if len(raw) < ns+s.aead.Overhead() {
		return nil, false, nil
	}
	out, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(k))
	if err != nil {
		return nil, false, nil
	}
	return out, true, nil
}

// Set seals val under (namespace, key) for ttl.
func (s *Sealed) Set(ctx context.Context, namespace string, key [32]byte, val []byte, ttl time.Duration) error {
	k := s.Key(namespace, key)
	ns := s.aead.NonceSize()
	buf := make([]byte, ns, ns+len(val)+s.aead.Overhead())
	// A random 96-bit nonce per value: far below the 2^32 seals per key GCM allows for
	// random nonces at the rates a cache writes.
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	buf = s.aead.Seal(buf, buf[:ns], val, []byte(k))
	return s.c.set(ctx, k, buf, ttl)
}

// Interface guards.
var (
	_ Replay      = (*Client)(nil)
	_ SealedCache = (*Sealed)(nil)
)
