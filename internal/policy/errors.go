package policy

import (
	"errors"
	"fmt"
)

// ErrURINotNormal is wrapped by every refusal of a resource URI (a request's, answered 400
// invalid_request) and of a resource_uri pattern no URI in normal form could match (at load).
var ErrURINotNormal = errors.New("resource URI is not in normal form")

// Why a resource URI is not in normal form.
var (
	errURIEmpty     = fmt.Errorf("%w: empty", ErrURINotNormal)
	errURIChar      = fmt.Errorf("%w: a space, control, non-ASCII or unsafe character (\\ \" < > ` { }, or a second #)", ErrURINotNormal)
	errURIScheme    = fmt.Errorf("%w: no scheme in lowercase", ErrURINotNormal)
	errURIEscape    = fmt.Errorf("%w: a percent-escape that is malformed, in lowercase, or encodes an unreserved character, /, \\ or NUL", ErrURINotNormal)
	errURIAuthority = fmt.Errorf("%w: host or port not in canonical form, or user information", ErrURINotNormal)
	errURISlashes   = fmt.Errorf("%w: a special scheme without // and a host", ErrURINotNormal)
	errURIPath      = fmt.Errorf("%w: a dot segment or an empty segment (//) in the path", ErrURINotNormal)
	errURIFile      = fmt.Errorf("%w: a file: URI must be file:/// and a path, without host, query or fragment", ErrURINotNormal)
	errURIQuote     = fmt.Errorf("%w: a ' in the query of a special scheme", ErrURINotNormal)
)

// ErrWildcardHost refuses a client pattern with a `*` in its host other than whole leading
// labels (CheckClientPattern).
var ErrWildcardHost = errors.New("in a host, * stands only for whole leading labels (https://*.example.com/*): " +
	"a client chooses its URL, and https://app.example.com* also matches https://app.example.com.evil.net/")

// ErrImpliesCycle refuses a scope_implies cycle: it would make the scopes equal, which is
// surely not what was meant.
var ErrImpliesCycle = errors.New("cycle")

// ErrPublicNamedMethod refuses a public method pattern that covers a method whose tool,
// prompt or resource is judged: those are made public by name only.
var ErrPublicNamedMethod = errors.New("its names are judged: list them with tool, prompt or resource_uri (tool * for every tool)")
