package mcpauth

import "errors"

// The sentinel errors of the handler, in one place. Configuration errors name their field
// when they are wrapped (fmt.Errorf("scopes: %w", errNoPolicy)).

// Sentinel errors of configuration checks.
var (
	errRequired  = errors.New("required")
	errNoPolicy  = errors.New("no scope policy: set scopes, any_of, or skip_scopes to require none")
	errBadScope  = errors.New("not a valid scope token (RFC 6749 §3.3)")
	errFragment  = errors.New("must not have a fragment")
	errSymmetric = errors.New("symmetric algorithms are refused: a public JWKS key would be usable as an HMAC secret")
	errAlgNone   = errors.New(`"none" is refused: unsigned tokens are never accepted`)
	errAlgUnk    = errors.New("unknown algorithm")
)

// errNoOrigin refuses a resource whose origin a proof's htu cannot name.
var errNoOrigin = errors.New("has no origin a DPoP proof can name (an absolute http or https URL with a host and no user information)")

// errScopeComma names the slip `scopes a,b`.
var errScopeComma = errors.New("contains a comma: scopes are separated by spaces, not commas")

// Configuration errors of rules.
var (
	errRuleNoTarget   = errors.New("names no tools, prompts, resource_uris or methods")
	errRuleNoScope    = errors.New("requires nothing: set scopes, any_of, clients or require_claim")
	errRuleEmptyMatch = errors.New("empty pattern")
)

// Configuration errors of the access policy.
var (
	errOfflineAccess = errors.New("offline_access is refused: a resource never asks for a refresh token (MCP 2026-07-28); the client requests it from the authorization server itself")
	errEmptyClient   = errors.New("empty client pattern")
)

// errBodyTooLarge is the body read's own over-limit error.
var errBodyTooLarge = errors.New("request body too large")

// errRequestTrailers refuses a request body followed by trailer fields.
var errRequestTrailers = errors.New("request trailer fields are not accepted")

// errSSEEventTooLarge cuts off a filtered event stream whose event outgrows maxListAnswer.
var errSSEEventTooLarge = errors.New("list filter: event stream event larger than 32 MiB")

// errNoHijack refuses to hand over the connection of a filtered answer.
var errNoHijack = errors.New("list filter: the connection of a filtered answer cannot be taken over")
