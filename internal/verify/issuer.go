package verify

import (
	"errors"
	"slices"
	"strings"
)

// TenantPlaceholder in an accepted issuer stands for the token's `tid` claim, as Entra ID's
// multi-tenant metadata writes its issuer: https://login.microsoftonline.com/{tenantid}/v2.0.
const TenantPlaceholder = "{tenantid}"

var (
	errNoIssuer    = errors.New("the answer has no iss, and an accepted issuer is a {tenantid} template")
	errOtherIssuer = errors.New("the answer's iss is not the token's")
)

// matchIssuer returns the accepted issuer that iss matches: the same string, or a template
// with TenantPlaceholder that gives iss when tid is put in (and tid is one of tenants, when
// tenants are listed). The template is what keys are looked up by. JWTs and introspection
// answers are judged by this one function, so that neither mechanism accepts an issuer the
// other refuses. The plain case costs one comparison per issuer and no allocation.
func matchIssuer(issuers, tenants []string, iss, tid string) (string, bool) {
	if slices.Contains(issuers, iss) {
		// A template matches only with a tenant put in, never as written.
		if !strings.Contains(iss, TenantPlaceholder) {
			return iss, true
		}
		return "", false
	}
	if !validTenantID(tid) {
		return "", false
	}
	for _, tmpl := range issuers {
		i := strings.Index(tmpl, TenantPlaceholder)
		if i < 0 {
			continue
		}
		prefix, suffix := tmpl[:i], tmpl[i+len(TenantPlaceholder):]
		if len(iss) == len(prefix)+len(tid)+len(suffix) && strings.HasPrefix(iss, prefix) &&
			strings.HasSuffix(iss, suffix) && iss[len(prefix):len(prefix)+len(tid)] == tid {
			if len(tenants) > 0 && !slices.Contains(tenants, tid) {
				return "", false
			}
			return tmpl, true
		}
	}
	return "", false
}

// hasTenantTemplate reports whether an accepted issuer is a {tenantid} template.
func hasTenantTemplate(issuers []string) bool {
	for _, iss := range issuers {
		if strings.Contains(iss, TenantPlaceholder) {
			return true
		}
	}
	return false
}

// validTenantID accepts what Entra tenant ids are (GUIDs): letters, digits and '-', at most
// 64. Anything else in tid (a '/', a '.', an empty value) never completes an issuer: a tid
// must not be able to reshape the URL it is put into.
func validTenantID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkIssuer judges an introspection answer's iss (RFC 7662 §2.2) exactly as the JWT
// verifier judges a token's: the same string as an accepted issuer, or a {tenantid} template
// completed by the answer's own tid. An answer without iss is attributed to the one accepted
// issuer, but never to a template: which tenant it speaks for would be unknown. For a JWT
// that verified locally (jwt_too, local set), an iss in the answer must also be the token's
// own: the answer describes that token.
func (v *Introspection) checkIssuer(a *answer, local *Identity) error {
	switch {
	case a.iss == "":
		if hasTenantTemplate(v.Issuers) {
			return failWith(Issuer, errNoIssuer)
		}
	case local != nil && a.iss != local.Issuer:
		return failWith(Issuer, errOtherIssuer)
	default:
		if _, ok := matchIssuer(v.Issuers, v.Tenants, a.iss, a.tid); !ok {
			return fail(Issuer)
		}
	}
	return nil
}
