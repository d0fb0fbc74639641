package mcpauth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwks"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"go.uber.org/zap"
)

// Key sets: the Caddy side of internal/jwks. Provision takes the handler's remote sets from
// keyPool, Cleanup gives them back.

// keyPool holds one remote key set per JWKS URL (or per issuer to discover) and refresh
// interval, shared by every handler instance and kept across config reloads while any config
// still uses it. The set's own context, not the config's, runs its refresh.
var keyPool = caddy.NewUsagePool()

// keyLookup hands the key sets to the JWT verifier.
type keyLookup struct{ *jwks.Sources }

func (k keyLookup) Lookup(ctx context.Context, iss, kid, alg string, buf []verify.VerificationKey) ([]verify.VerificationKey, error) {
	keys, err := k.Sources.Lookup(ctx, iss, kid, alg)
	switch {
	case errors.Is(err, jwks.ErrKeysUnavailable):
		return nil, verify.ErrKeysUnavailable
	case err != nil:
		return nil, verify.ErrUnknownKey
	}
	for _, key := range keys {
		buf = append(buf, key)
	}
	return buf, nil
}

// pooledSet is a remote set as keyPool holds it.
type pooledSet struct{ *jwks.Remote }

func (p pooledSet) Destruct() error { return p.Close() }

// keySources are the key sets one handler verifies with, and the pool entries it holds.
type keySources struct {
	jwks.Sources
	file     string // the jwks_file, for logs
	poolKeys []string
}

// acquireKeySources takes the handler's key sets from the pool. On failure it releases what
// it had acquired, so a failed Provision leaves no pool entry behind even without Cleanup.
func acquireKeySources(h *Handler) (*keySources, error) {
	ks := &keySources{Sources: jwks.Sources{Issuers: make(map[string]*jwks.Remote)}}
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
		set, _, err := jwks.Parse(raw)
		if err != nil {
			return fmt.Errorf("jwks_file %s: %w", h.JWKSFile, err)
		}
		if set.Len() == 0 {
			return fmt.Errorf("jwks_file %s: no usable signing key", h.JWKSFile)
		}
		ks.File, ks.file = set, h.JWKSFile
	}
	refresh := time.Duration(h.JWKSRefresh)
	opts := jwks.Options{Refresh: refresh, Logger: keysLogger, OnFetch: countRefresh, OnCall: observeASCall}
	for _, u := range h.JWKSURLs {
		rs, err := ks.acquire("jwks|"+u+"|"+refresh.String(), func() *jwks.Remote {
			return jwks.NewRemote(u, opts)
		})
		if err != nil {
			return err
		}
		ks.URLs = append(ks.URLs, rs)
	}
	if h.JWKSFile == "" && len(h.JWKSURLs) == 0 {
		for _, iss := range h.Issuers {
			// An issuer template ({tenantid}) has no metadata of its own: it is published by
			// the authorization server's (Entra: .../organizations/v2.0 names the issuer
			// https://login.microsoftonline.com/{tenantid}/v2.0). Never discovered literally.
			base := iss
			if isTenantTemplate(iss) {
				base = templateMetadataBase(iss, h.AuthorizationServers)
			}
			// Checked before the set exists: an issuer that is not a URL can never be
			// discovered, and its set would retry in the background forever.
			if _, err := jwks.DiscoveryURLs(base); err != nil {
				return fmt.Errorf("issuers: %w; set jwks_url or jwks_file for it", err)
			}
			rs, err := ks.acquire("issuer|"+base+"|"+iss+"|"+refresh.String(), func() *jwks.Remote {
				if base != iss {
					return jwks.NewDiscoveredAt(base, iss, opts)
				}
				return jwks.NewDiscovered(iss, opts)
			})
			if err != nil {
				return err
			}
			ks.Issuers[iss] = rs
		}
	}
	return nil
}

func (ks *keySources) acquire(poolKey string, mk func() *jwks.Remote) (*jwks.Remote, error) {
	v, _, err := keyPool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return pooledSet{mk()}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading key set %s: %w", poolKey, err)
	}
	ks.poolKeys = append(ks.poolKeys, poolKey)
	return v.(pooledSet).Remote, nil
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
	if ks.File != nil {
		logger.Info("signing keys loaded from file", zap.String("resource", resource),
			zap.String("jwks_file", ks.file), zap.Int("keys", ks.File.Len()))
	}
	// A set still loading is normal at start: the first fetch runs in the background and
	// usually ends milliseconds later ("signing keys loaded"). Only a fetch that fails or
	// times out is a warning, and the set logs it ("loading signing keys failed").
	for _, rs := range ks.URLs {
		if rs.Keys() == nil {
			logger.Info("signing keys loading in the background; requests with a token get 503 until they load",
				zap.String("resource", resource), zap.String("jwks_url", rs.URL()))
			continue
		}
		logger.Info("signing keys from JWKS URL", zap.String("resource", resource),
			zap.String("jwks_url", rs.URL()), zap.Int("keys_loaded", rs.Keys().Len()))
	}
	for iss, rs := range ks.Issuers {
		if rs.Keys() == nil {
			logger.Info("signing keys loading in the background from the issuer's metadata; requests with a token get 503 until they load",
				zap.String("resource", resource), zap.String("issuer", iss))
			continue
		}
		logger.Info("signing keys discovered from issuer metadata", zap.String("resource", resource),
			zap.String("issuer", iss), zap.Int("keys_loaded", rs.Keys().Len()))
	}
}

// keysLogger is the logger of the config running now. A set outlives the config that created
// it, and a logger taken at creation would keep writing to that config's log sinks (closed
// or replaced by a reload) instead of the ones configured now.
func keysLogger() *zap.Logger {
	if ctx := caddy.ActiveContext(); ctx.Context != nil {
		return ctx.Logger(Handler{}).Named("keys")
	}
	return caddy.Log().Named("http.handlers.mcp_auth.keys")
}

// templateMetadataBase picks the authorization server whose metadata publishes an issuer
// template: the first on the template's scheme and host, else the first one.
func templateMetadataBase(tmpl string, servers []string) string {
	origin := tmpl
	if i := strings.Index(tmpl, "://"); i >= 0 {
		if j := strings.IndexByte(tmpl[i+3:], '/'); j >= 0 {
			origin = tmpl[:i+3+j+1]
		}
	}
	for _, as := range servers {
		if strings.HasPrefix(as+"/", origin) {
			return as
		}
	}
	return servers[0]
}
