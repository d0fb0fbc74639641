package mcpauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// The fixed error descriptions, written out here so that a change to the sentences clients
// may match on is a deliberate one.
const (
	descMultiple    = "The request has more than one Authorization header."
	descBadHeader   = "The Authorization header is not a valid Bearer credential."
	descTooLarge    = "The access token is too large."
	descMalformed   = "The access token is not a well-formed JWT."
	descSignature   = "The access token signature is invalid."
	descUnknownKey  = "The access token was not signed by a known key."
	descAlgorithm   = "The access token signing algorithm is not accepted."
	descExpired     = "The access token has expired."
	descNoExpiry    = "The access token has no expiry."
	descNotYet      = "The access token is not valid yet."
	descIatFuture   = "The access token was issued in the future."
	descIssuer      = "The access token issuer is not accepted."
	descAudience    = "The access token was not issued for this resource."
	descType        = "The access token type is not at+jwt."
	descBound       = "The access token is bound to a key and cannot be used as a bearer token."
	descScope       = "The access token does not have the scope this request requires."
	descUnavailable = "The signing keys of the authorization server are not available yet."
)

const testMetaURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"

// wantChallenge is the RFC 6750 §3 challenge, built independently of buildChallenge.
func wantChallenge(code, desc, scope, metaURL string) string {
	s := "Bearer "
	if code != "" {
		s += `error="` + code + `", error_description="` + desc + `", `
	}
	if scope != "" {
		s += `scope="` + scope + `", `
	}
	return s + `resource_metadata="` + metaURL + `"`
}

func wantBody(code, desc string) string {
	if code == "" {
		return ""
	}
	return `{"error":"` + code + `","error_description":"` + desc + `"}`
}

func TestBuildChallenge(t *testing.T) {
	const meta = "https://h/.well-known/oauth-protected-resource"
	tests := []struct {
		name  string
		code  string
		desc  string
		scope []string
		want  string
	}{
		{"no token", "", "", []string{"mcp:read"}, `Bearer scope="mcp:read", resource_metadata="` + meta + `"`},
		{"no token no scope", "", "", nil, `Bearer resource_metadata="` + meta + `"`},
		{"no token empty scope list", "", "", []string{}, `Bearer resource_metadata="` + meta + `"`},
		{"error with scope", codeInvalidToken, descExpired, []string{"a", "b"},
			`Bearer error="invalid_token", error_description="The access token has expired.", scope="a b", resource_metadata="` + meta + `"`},
		{"error without scope", codeInvalidRequest, descMultiple, nil,
			`Bearer error="invalid_request", error_description="The request has more than one Authorization header.", resource_metadata="` + meta + `"`},
		{"insufficient scope", codeInsufficientScope, descScope, []string{"mcp:read", "mcp:write"},
			`Bearer error="insufficient_scope", error_description="The access token does not have the scope this request requires.", scope="mcp:read mcp:write", resource_metadata="` + meta + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := buildChallenge(tt.code, tt.desc, tt.scope, meta); got != tt.want {
				t.Errorf("challenge\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// wantDenials is, per denial, the status, code and description the spec and README promise.
var wantDenials = map[denial]struct {
	status int
	code   string
	desc   string
}{
	denyMissing:                  {401, "", ""},
	denyMultipleHeaders:          {400, "invalid_request", descMultiple},
	denyMalformedHeader:          {400, "invalid_request", descBadHeader},
	denyTooLarge:                 {401, "invalid_token", descTooLarge},
	denyMalformed:                {401, "invalid_token", descMalformed},
	denySignature:                {401, "invalid_token", descSignature},
	denyUnknownKey:               {401, "invalid_token", descUnknownKey},
	denyAlgorithm:                {401, "invalid_token", descAlgorithm},
	denyExpired:                  {401, "invalid_token", descExpired},
	denyNoExpiry:                 {401, "invalid_token", descNoExpiry},
	denyNotYetValid:              {401, "invalid_token", descNotYet},
	denyIssuedInFuture:           {401, "invalid_token", descIatFuture},
	denyIssuer:                   {401, "invalid_token", descIssuer},
	denyAudience:                 {401, "invalid_token", descAudience},
	denyType:                     {401, "invalid_token", descType},
	denyBound:                    {401, "invalid_token", descBound},
	denyInsufficientScope:        {403, "insufficient_scope", descScope},
	denyUnavailable:              {503, "temporarily_unavailable", descUnavailable},
	denyBadMessage:               {400, "invalid_request", "The request body is not a valid JSON-RPC message."},
	denyHeaderMismatch:           {400, "invalid_request", "The Mcp-Method or Mcp-Name header does not match the request body."},
	denyBodyUnreadable:           {400, "invalid_request", "The request body could not be read."},
	denyBodyTooLarge:             {413, "invalid_request", "The request body is larger than the server accepts."},
	denyUnsupportedBody:          {415, "invalid_request", "The request body must be UTF-8 application/json without content coding."},
	denyBodyNotAllowed:           {400, "invalid_request", "Only POST requests may carry a body."},
	denyMethodOverride:           {400, "invalid_request", "Method override headers are not accepted."},
	denyUpgrade:                  {400, "invalid_request", "Connection upgrades are not accepted."},
	denyResourceURI:              {400, "invalid_request", "The resource URI is not in normal form."},
	denyClientNotAllowed:         {403, "access_denied", "The client is not allowed to access this resource."},
	denyClaimNotSatisfied:        {403, "access_denied", "The access token does not carry the claims this request requires."},
	denyInactive:                 {401, "invalid_token", "The access token is not active."},
	denyBadAnswer:                {401, "invalid_token", "The authorization server gave no usable answer about the access token."},
	denyIntrospectionUnavailable: {503, "temporarily_unavailable", "The authorization server cannot check the access token now."},
	denyDPoPProof:                {401, "invalid_dpop_proof", "The DPoP proof is invalid."},
	denyDPoPNonce:                {401, "use_dpop_nonce", "The DPoP proof must carry the nonce of the DPoP-Nonce header."},
	denyNotBound:                 {401, "invalid_token", "The access token is not bound to a DPoP key."},
	denyWrongKey:                 {401, "invalid_token", "The access token is bound to another key than the DPoP proof."},
	denyWrongCert:                {401, "invalid_token", "The access token is bound to another client certificate."},
	denyDPoPRequired:             {401, "invalid_token", "This resource accepts only DPoP-bound access tokens."},
	denySession:                  {404, "", ""},
	denyExchangeRefused:          {403, "access_denied", "The authorization server refused a token for the upstream of this request."},
	denyExchangeUnavailable:      {503, "temporarily_unavailable", "The authorization server cannot issue a token for the upstream now."},
	denyExchangeMixed:            {400, "invalid_request", "The messages of this batch need tokens for different upstreams."},
	denyNotOffered:               {405, "", ""},
	denyTokenInQuery:             {400, "invalid_request", "Access tokens are accepted only in the Authorization header."},
	denyStoreUnavailable:         {503, "temporarily_unavailable", "The DPoP proof cannot be checked for replay now."},
	denyExchangeTrailers:         {400, "invalid_request", "The request carries trailer fields, which would reach the upstream unchecked."},
}

func TestChallengesEveryDenial(t *testing.T) {
	if len(wantDenials) != int(numDenials) {
		t.Fatalf("test covers %d denials, code has %d", len(wantDenials), numDenials)
	}
	for _, scope := range [][]string{{"mcp:read", "mcp:write"}, nil} {
		c := newChallenges(scope, testMetaURL)
		for d := denial(0); d < numDenials; d++ {
			want := wantDenials[d]
			t.Run(denials[d].label+"/scope="+strings.Join(scope, "+"), func(t *testing.T) {
				rec := httptest.NewRecorder()
				c.write(rec, d)
				res := rec.Result()
				if res.StatusCode != want.status {
					t.Errorf("status %d, want %d", res.StatusCode, want.status)
				}
				if got := res.Header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control %q, want no-store", got)
				}
				ch := res.Header.Values("WWW-Authenticate")
				if want.status == 413 || want.status == 415 || want.status == 404 || want.status == 405 {
					// Not about the credentials: no challenge.
					if len(ch) != 0 {
						t.Errorf("%d carries a challenge %q", want.status, ch)
					}
				} else if want.status == 503 {
					// 503 is not a challenge: the token is not at fault.
					if len(ch) != 0 {
						t.Errorf("503 carries a challenge %q", ch)
					}
					ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
					if err != nil || ra <= 0 {
						t.Errorf("Retry-After %q, want a positive number of seconds", res.Header.Get("Retry-After"))
					}
				} else {
					wantScope := strings.Join(scope, " ")
					if want.code == "access_denied" {
						// No scope fixes it: naming one would invite a step-up loop.
						wantScope = ""
					}
					wantCh := wantChallenge(want.code, want.desc, wantScope, testMetaURL)
					if dpopOnlyCode(want.code) {
						// RFC 9449 §7.1: a DPoP error code never goes on a Bearer challenge.
						wantCh = wantChallenge("", "", wantScope, testMetaURL)
					}
					if len(ch) != 1 || ch[0] != wantCh {
						t.Errorf("WWW-Authenticate\n got %q\nwant %q", ch, wantCh)
					}
					wantExpose := "WWW-Authenticate"
					if d == denyDPoPNonce {
						wantExpose = "WWW-Authenticate, DPoP-Nonce"
					}
					if got := res.Header.Get("Access-Control-Expose-Headers"); got != wantExpose {
						t.Errorf("Access-Control-Expose-Headers %q", got)
					}
					if res.Header.Get("Retry-After") != "" {
						t.Errorf("Retry-After on a %d", want.status)
					}
				}
				body := rec.Body.String()
				wb := wantBody(want.code, want.desc)
				if d == denySession {
					// The transport's unknown session, as the SDK servers answer it.
					wb = `{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}`
				}
				if body != wb {
					t.Errorf("body %q, want %q", body, wb)
				}
				if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
					t.Errorf("Content-Length %q for a body of %d bytes", cl, len(body))
				}
				if want.code == "" {
					return
				}
				if ct := res.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var doc map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
					t.Fatalf("body is not JSON: %v", err)
				}
				if len(doc) != 2 || doc["error"] != want.code || doc["error_description"] != want.desc {
					t.Errorf("body %v", doc)
				}
			})
		}
	}
}

// Descriptions go into a quoted-string unescaped, so they must not need escaping, and must
// never carry request data: they are fixed per denial.
func TestDescriptionsAreSafeASCII(t *testing.T) {
	seen := make(map[string]denial)
	for d := denial(0); d < numDenials; d++ {
		info := denials[d]
		if info.code == "" {
			if info.desc != "" {
				t.Errorf("%s: description without an error code", info.label)
			}
			continue
		}
		if info.desc == "" {
			t.Errorf("%s: no description", info.label)
		}
		for i := 0; i < len(info.desc); i++ {
			c := info.desc[i]
			if c < 0x20 || c > 0x7E || c == '"' || c == '\\' {
				t.Errorf("%s: description has byte %#x at %d", info.label, c, i)
			}
		}
		if prev, dup := seen[info.desc]; dup {
			t.Errorf("%s and %s share a description", denials[prev].label, info.label)
		}
		seen[info.desc] = d
		if info.label == "" || strings.ContainsAny(info.label, " \"\\") {
			t.Errorf("label %q", info.label)
		}
	}
}

func TestChallengeStatusCodes(t *testing.T) {
	for d := denial(0); d < numDenials; d++ {
		info := denials[d]
		var want string
		switch info.status {
		case http.StatusUnauthorized:
			want = codeInvalidToken
			if d == denyMissing {
				want = ""
			}
			if d == denyDPoPProof {
				want = codeInvalidDPoPProof
			}
			if d == denyDPoPNonce {
				want = codeUseDPoPNonce
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			want = codeInvalidRequest
		case http.StatusForbidden:
			want = codeInsufficientScope
			if d == denyClientNotAllowed || d == denyClaimNotSatisfied || d == denyExchangeRefused {
				want = codeAccessDenied
			}
		case http.StatusServiceUnavailable:
			want = codeUnavailable
		case http.StatusNotFound:
			want = "" // an unknown session: the token is fine
		case http.StatusMethodNotAllowed:
			want = "" // no anonymous stream offered (public): not about a token
		default:
			t.Errorf("%s: unexpected status %d", info.label, info.status)
		}
		if info.code != want {
			t.Errorf("%s: status %d with code %q, want %q", info.label, info.status, info.code, want)
		}
	}
}

// TestChallengesPerScheme: every scheme that is on gets its own challenge with the same
// parameters, then its own, in one field value (RFC 9110 §11.6.1).
func TestChallengesPerScheme(t *testing.T) {
	c := newChallenges([]string{"mcp:read"}, testMetaURL, bearerScheme, scheme{name: "DPoP", params: `algs="ES256 EdDSA"`})
	want := `Bearer error="invalid_token", error_description="` + denials[denyExpired].desc + `", scope="mcp:read", resource_metadata="` + testMetaURL + `", ` +
		`DPoP error="invalid_token", error_description="` + denials[denyExpired].desc + `", scope="mcp:read", resource_metadata="` + testMetaURL + `", algs="ES256 EdDSA"`
	if got := c.header[denyExpired]; got != want {
		t.Errorf("challenge\n got %s\nwant %s", got, want)
	}
	if got := c.header[denyMissing]; got != `Bearer scope="mcp:read", resource_metadata="`+testMetaURL+`", DPoP scope="mcp:read", resource_metadata="`+testMetaURL+`", algs="ES256 EdDSA"` {
		t.Errorf("no-token challenge: %s", got)
	}
	if got := newChallenges(nil, testMetaURL).header[denyMissing]; got != `Bearer resource_metadata="`+testMetaURL+`"` {
		t.Errorf("default scheme: %s", got)
	}
}

// buildChallenge writes one RFC 6750 Bearer challenge; only tests call it.
func buildChallenge(code, desc string, scope []string, metaURL string) string {
	return bearerScheme.challenge(code, desc, scope, metaURL)
}

// write sends the precomputed answer for d; only tests call it.
func (c *challenges) write(w http.ResponseWriter, d denial) {
	c.writeWith(w, d, c.header[d])
}
