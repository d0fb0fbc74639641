package verify

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
	scope                        any
	cnf                          Confirmation
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
	bitFree
)

// read takes member name into c when it is one of the registered claims (known), and marks
// it in seen. scopeClaim is the configured scope claim ("" reads `scope`, else `scp`).
func (c *registered) read(name string, val []byte, scopeClaim string, seen *uint32) (known bool, err error) {
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
		switch scopeClaim {
		case "":
			// `scope` wins over `scp` when both are present.
			if name == "scope" || *seen&bitScope == 0 {
				c.scope, err = scopeValue(val)
			}
		case name:
			c.scope, err = scopeValue(val)
		}
	case "cnf":
		bit = bitCnf
		err = readConfirmation(val, &c.cnf)
	default:
		return false, nil
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
