package mcpauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// ClaimNames are the claims that hold the granted scopes (scope_claim). Several may be
// named, so that one configuration accepts tokens that carry their scopes in different
// claims (Entra ID: delegated tokens in `scp`, app-only tokens in `roles`); the granted
// scopes are the union of what each holds.
//
// In JSON it is a string (one claim, as before several were accepted) or an array of
// strings; it is written back as a string when it names one claim, so that existing
// configurations and adapted Caddyfiles read the same.
type ClaimNames []string

// UnmarshalJSON reads a string or an array of strings. null and "" are the default, as
// they were when the field was a string.
func (c *ClaimNames) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*c = nil
		if one != "" {
			*c = ClaimNames{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("scope_claim: not a claim name or an array of claim names")
	}
	*c = many
	return nil
}

// MarshalJSON writes one claim as a string, several as an array.
func (c ClaimNames) MarshalJSON() ([]byte, error) {
	if len(c) == 1 {
		return json.Marshal(c[0])
	}
	return json.Marshal([]string(c))
}

// registeredClaims mean something else than granted scopes: a scope claim of one of these
// names would grant scopes from an issuer, an audience or a date.
var registeredClaims = []string{
	"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "azp", "cnf", "tid",
	// introspection answers (RFC 7662 §2.2)
	"active", "token_type", "resource", "username",
}

// checkScopeClaimName refuses what cannot be the name of a claim holding scopes.
func checkScopeClaimName(v string) error {
	switch {
	case v == "" || strings.ContainsAny(v, " \t\r\n"):
		return fmt.Errorf("scope_claim: %q is not a claim name", v)
	case slices.Contains(registeredClaims, v):
		return fmt.Errorf("scope_claim: %q is a registered claim that does not hold scopes", v)
	}
	return nil
}

// validateScopeClaims checks the whole list: names, repeats, and how many.
func validateScopeClaims(names ClaimNames) error {
	if len(names) > verify.MaxScopeClaims {
		return fmt.Errorf("scope_claim: %d claims, at most %d", len(names), verify.MaxScopeClaims)
	}
	for i, n := range names {
		if err := checkScopeClaimName(n); err != nil {
			return err
		}
		if slices.Contains(names[:i], n) {
			return fmt.Errorf("scope_claim: %q is named twice", n)
		}
	}
	return nil
}

// parseScopeClaim reads `scope_claim <claim...>`, given once.
func parseScopeClaim(d *caddyfile.Dispenser, h *Handler) error {
	if len(h.ScopeClaim) > 0 {
		return d.Errf("scope_claim: given more than once (name every claim on one line)")
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	for {
		h.ScopeClaim = append(h.ScopeClaim, d.Val())
		if err := validateScopeClaims(h.ScopeClaim); err != nil {
			return d.WrapErr(err)
		}
		if !d.NextArg() {
			return nil
		}
	}
}
