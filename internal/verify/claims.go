package verify

import "slices"

// registered are the claims a JWT payload (RFC 7519 §4.1, RFC 9068 §2.2) and an
// introspection answer (RFC 7662 §2.2) share, read with their registered JSON types: a
// string that is not a string, a date that is not a bounded number, or a member that appears
// twice makes the whole token or answer unreadable, so that no two readers of it see
// different claims.
type registered struct {
	iss, sub, clientID, azp, jti string
	aud                          []string
	hasAud                       bool
	exp, nbf, iat                float64
	hasExp, hasNbf, hasIat       bool
	tid                          string
	// scope is the scope claim when none is configured (`scope`, else `scp`); claimScope[i]
	// is the value of the i-th configured scope claim.
	scope      any
	claimScope [MaxScopeClaims]any
	cnf        Confirmation
}

// MaxScopeClaims bounds how many claims may hold scopes (scope_claim): each has a bit of its
// own for the duplicate check.
const MaxScopeClaims = 8

// grantedScopes are the scopes the claims grant, read strictly (ParseScopes): from the n
// configured scope claims, in their order and without repeats, else from `scope` or `scp`.
func (c *registered) grantedScopes(n int) []string {
	switch n {
	case 0:
		return ParseScopes(c.scope)
	case 1:
		return ParseScopes(c.claimScope[0])
	}
	out := ParseScopes(c.claimScope[0])
	for _, v := range c.claimScope[1:n] {
		for _, s := range ParseScopes(v) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Member bits for the duplicate check; readers of more members go on from bitFree.
const (
	bitIss uint32 = 1 << iota
	bitSub
	bitAud
	bitExp
	bitNbf
	bitIat
	bitClientID
	bitAzp
	bitJTI
	bitScope
	bitScp
	bitCnf
	bitTid
	bitFree
	// bitScopeClaim is the bit of the first configured scope claim; the others follow.
	bitScopeClaim uint32 = 1 << (32 - MaxScopeClaims)
)

// read takes member name into c when it is one of the registered claims or a configured scope
// claim (known), and marks it in seen, so that no member this module decides by can appear
// twice. scopeClaims are the configured scope claims (none reads `scope`, else `scp`).
func (c *registered) read(name string, val []byte, scopeClaims []string, seen *uint32) (known bool, err error) {
	var bit uint32
	switch name {
	case "iss":
		bit = bitIss
		c.iss, err = jsonString(val)
	case "sub":
		bit = bitSub
		c.sub, err = jsonString(val)
	case "aud":
		bit = bitAud
		c.aud, err = stringOrStrings(val, c.aud)
		c.hasAud = true
	case "exp":
		bit = bitExp
		c.exp, err = numericDate(val)
		c.hasExp = true
	case "nbf":
		bit = bitNbf
		c.nbf, err = numericDate(val)
		c.hasNbf = true
	case "iat":
		bit = bitIat
		c.iat, err = numericDate(val)
		c.hasIat = true
	case "client_id":
		bit = bitClientID
		c.clientID, err = jsonString(val)
	case "azp":
		bit = bitAzp
		c.azp, err = jsonString(val)
	case "jti":
		bit = bitJTI
		c.jti, err = jsonString(val)
	case "scope", "scp":
		bit = bitScope
		if name == "scp" {
			bit = bitScp
		}
		if len(scopeClaims) == 0 {
			// `scope` wins over `scp` when both are present.
			if name == "scope" || *seen&bitScope == 0 {
				c.scope, err = scopeValue(val)
			}
		} else if i := slices.Index(scopeClaims, name); i >= 0 {
			c.claimScope[i], err = scopeValue(val)
		}
	case "cnf":
		bit = bitCnf
		err = readConfirmation(val, &c.cnf)
	case "tid":
		bit = bitTid
		c.tid, err = jsonString(val)
	default:
		// A configured scope claim of another name (Auth0 `permissions`, Entra `roles`).
		i := slices.Index(scopeClaims, name)
		if i < 0 {
			return false, nil
		}
		bit = bitScopeClaim << i
		c.claimScope[i], err = scopeValue(val)
	}
	if err != nil {
		return true, err
	}
	return true, mark(seen, bit)
}

// mark records a member in seen, refusing a second one of the same name.
func mark(seen *uint32, bit uint32) error {
	if *seen&bit != 0 {
		return errDuplicate
	}
	*seen |= bit
	return nil
}
