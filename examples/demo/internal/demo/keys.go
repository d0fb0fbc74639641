package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Key is the demo authorization server's ES256 signing key.
type Key struct {
	Private *ecdsa.PrivateKey
	KID     string // RFC 7638 thumbprint of the public key
}

// LoadOrCreateKey reads the signing key from dir, creating it (and dir) on first use, and
// (re)writes the public JWKS next to it, so the JWKS always matches the key.
func LoadOrCreateKey(dir string) (*Key, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	keyPath := filepath.Join(dir, KeyFile)
	priv, err := readKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		priv, err = createKey(keyPath)
	}
	if err != nil {
		return nil, err
	}
	k := &Key{Private: priv, KID: thumbprint(&priv.PublicKey)}
	if err := k.writeJWKS(filepath.Join(dir, JWKSFile)); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadKey reads the signing key that LoadOrCreateKey made in dir, and never creates one: a
// token signed by a new key would be refused by the Caddy that reads the old key's JWKS. The
// error wraps fs.ErrNotExist when there is no key.
func LoadKey(dir string) (*Key, error) {
	priv, err := readKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	return &Key{Private: priv, KID: thumbprint(&priv.PublicKey)}, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not a P-256 key", path)
	}
	return ec, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	// O_EXCL: two runs starting at once must not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("creating signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing signing key: %w", err)
	}
	return priv, nil
}

// JWK returns the public key as a JSON Web Key, as an authorization server publishes it.
func (k *Key) JWK() map[string]string {
	x, y := coords(&k.Private.PublicKey)
	return map[string]string{
		"kty": "EC", "crv": "P-256", "x": x, "y": y,
		"kid": k.KID, "use": "sig", "alg": "ES256",
	}
}

// JWKS returns the JSON Web Key Set holding the public key.
func (k *Key) JWKS() ([]byte, error) {
	return json.MarshalIndent(map[string]any{"keys": []any{k.JWK()}}, "", "  ")
}

func (k *Key) writeJWKS(path string) error {
	b, err := k.JWKS()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing JWKS: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing JWKS: %w", err)
	}
	return nil
}

func coords(pub *ecdsa.PublicKey) (x, y string) {
	raw, err := pub.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		panic(err) // a P-256 key from GenerateKey or x509 is always valid
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(raw[1:33]), enc.EncodeToString(raw[33:65])
}

// thumbprint is the RFC 7638 JWK thumbprint: SHA-256 over the required members in
// lexicographic order, without whitespace.
func thumbprint(pub *ecdsa.PublicKey) string {
	x, y := coords(pub)
	canon := `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
