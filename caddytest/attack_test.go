package integration

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// The module's own attack suite: every request an attacker can shape, sent byte for byte over
// TCP through a real Caddy in front of a real go-sdk MCP server, with tokens signed by the
// authorization server's keys or by an attacker's. Each case states the answer the module
// owes (status, challenge) and whether the MCP server may see the request and run the
// protected tool. The families are split by file: attack_tokens_test.go (what a token can
// carry), attack_http_test.go (what HTTP can carry), attack_jsonrpc_test.go (what the body
// can carry, and what the server's answer can carry).

// attackAuth: the base policy needs mcp:read; the tool delete_file and the resources under
// file:///secret/ and https://internal.example.com/admin/ need mcp:admin as well; the
// tools/list result is filtered.
const attackAuth = `
scopes mcp:read
tool delete_* {
	scopes mcp:admin
}
resource_uri file:///secret/* https://internal.example.com/admin/* {
	scopes mcp:admin
}
filter_tools_list
max_body_size 64KiB
`

// Scopes named by the challenges of the attack configuration.
const (
	baseScope    = "mcp:read"
	stepUpScope  = "mcp:read mcp:admin"
	attackSecret = "file:///secret/key"
)

// Bodies sent by the suite (the session is opened beforehand).
const (
	callRead   = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/x"}}}`
	callDelete = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`
)

// attackEnv is one Caddy running attackAuth in front of a go-sdk MCP server, with an MCP
// session opened by a valid token.
type attackEnv struct {
	*fixture
	up *mcpUpstream
}

func newAttackEnv(t *testing.T, name string) *attackEnv {
	t.Helper()
	e := &attackEnv{up: newMCPUpstream(t, true)}
	e.fixture = newFixture(t, e.up)
	name = "Attack " + name
	e.start(t, e.caddyfile(`resource_name "`+name+`"`+attackAuth), "caddyfile", name)
	c := newMCPClient(t)
	c.open(t, e.token(t, baseScope))
	e.session = c.session
	return e
}

// token is a valid access token of the test issuer for this resource, with scope.
func (e *attackEnv) token(t testing.TB, scope string) string {
	t.Helper()
	return e.fixture.token(t, scope, nil)
}

// attackReq is one request, written on the wire as described: nothing is normalised.
type attackReq struct {
	method    string   // default POST
	target    string   // request target, default /mcp
	auth      []string // Authorization header lines, in order; none when empty
	header    []string // further header lines, "Name: value"
	body      string
	chunked   bool // send the body with chunked transfer coding instead of Content-Length
	noSession bool // leave out Mcp-Session-Id (and the default Content-Type and Accept)
	noCT      bool // leave out the default Content-Type
}

// wire renders the request as bytes. Unless the case sets its own, it carries the headers an
// MCP client sends: Content-Type and Accept, and the session (when not "").
func wire(session string, r attackReq) string {
	method, target := r.method, r.target
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/mcp"
	}
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: localhost:9080\r\nConnection: close\r\n")
	has := func(name string) bool {
		for _, h := range r.header {
			if n, _, _ := strings.Cut(h, ":"); strings.EqualFold(n, name) {
				return true
			}
		}
		return false
	}
	if !r.noSession {
		if r.body != "" && !r.noCT && !has("Content-Type") {
			b.WriteString("Content-Type: application/json\r\n")
		}
		if !has("Accept") {
			b.WriteString("Accept: application/json, text/event-stream\r\n")
		}
		if session != "" {
			b.WriteString("Mcp-Session-Id: " + session + "\r\nMcp-Protocol-Version: " + protocolHeader + "\r\n")
		}
	}
	for _, a := range r.auth {
		b.WriteString("Authorization: " + a + "\r\n")
	}
	for _, h := range r.header {
		b.WriteString(h + "\r\n")
	}
	switch {
	case r.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		if r.body != "" {
			b.WriteString(strconv.FormatInt(int64(len(r.body)), 16) + "\r\n" + r.body + "\r\n")
		}
		b.WriteString("0\r\n\r\n")
	case r.body != "":
		b.WriteString("Content-Length: " + strconv.Itoa(len(r.body)) + "\r\n\r\n" + r.body)
	default:
		b.WriteString("\r\n")
	}
	return b.String()
}

// send writes the request to Caddy on a new connection and reads the answer. A connection
// that fails before any answer (the previous config's server closing) is tried again at
// once, on a new connection; an HTTP answer never is.
func (e *attackEnv) send(t *testing.T, r attackReq) (int, http.Header, []byte) {
	t.Helper()
	return e.do(t, r)
}

// sendRaw is the one request sender: r, with the session, written byte for byte on a new
// connection (see send).
func sendRaw(t *testing.T, session string, r attackReq) (int, http.Header, []byte) {
	t.Helper()
	raw := wire(session, r)
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	for attempt := 1; ; attempt++ {
		code, hdr, body, err := exchange(raw, method)
		if err == nil {
			return code, hdr, body
		}
		if attempt == 10 {
			t.Fatalf("%s %s: %v", method, r.target, err)
		}
	}
}

func exchange(raw, method string) (int, http.Header, []byte, error) {
	conn, err := net.DialTimeout("tcp", "localhost:9080", 10*time.Second)
	if err != nil {
		return 0, nil, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	// The server may answer (and close) before reading a whole body it refuses; the answer
	// is what counts, so a failed write is not an error yet.
	_, werr := io.WriteString(conn, raw)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return 0, nil, nil, errors.Join(err, werr)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, body, nil
}

// outcome is what a case owes: the status (0: any the MCP server gives when it is reached, any
// 4xx when it is not); for a 400, 401 or 403 the challenge's error code ("" for none: no
// credentials) and scope; whether the MCP server receives the request; and which tool runs
// there, if any.
type outcome struct {
	status int
	code   string
	scope  string // default baseScope
	reach  bool
	ran    string
	// server: answered by Caddy's HTTP server before any handler runs (a malformed request),
	// so without a challenge.
	server bool
}

// Outcomes that recur.
var (
	noToken   = outcome{status: http.StatusUnauthorized}
	badToken  = outcome{status: http.StatusUnauthorized, code: "invalid_token"}
	badHeader = outcome{status: http.StatusBadRequest, code: "invalid_request"}
	badBody   = outcome{status: http.StatusBadRequest, code: "invalid_request"}
	forbidden = outcome{status: http.StatusForbidden, code: "insufficient_scope", scope: stepUpScope}
	noBase    = outcome{status: http.StatusForbidden, code: "insufficient_scope"}
	ranRead   = outcome{status: http.StatusOK, reach: true, ran: "read_file"}
	reached   = outcome{reach: true} // any status the MCP server chooses
	refused   = outcome{}            // any 4xx of the module's, the MCP server untouched
)

// attackCase is one row of a family.
type attackCase struct {
	name string
	req  attackReq
	want outcome
}

// run sends each case, one subtest each, and checks its outcome.
func (e *attackEnv) run(t *testing.T, cases []attackCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { e.check(t, c.name, c.req, c.want) })
	}
}

// check sends r and asserts want: status, challenge and error body, and what the MCP server
// saw and ran.
func (e *attackEnv) check(t *testing.T, name string, r attackReq, want outcome) {
	t.Helper()
	before := e.up.snapshot()
	code, hdr, body := e.send(t, r)
	after := e.up.snapshot()
	switch {
	case want.status != 0 && code != want.status:
		t.Errorf("%s: status %d, want %d (body %.200q)", name, code, want.status, body)
	case want.status == 0 && !want.reach && (code < 400 || code > 499):
		t.Errorf("%s: status %d, want a refusal (4xx) (body %.200q)", name, code, body)
	}
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		if want.status == code && !want.reach && !want.server {
			scope := want.scope
			if scope == "" {
				scope = baseScope
			}
			// The answer to a HEAD has no body to check.
			checkAttackChallenge(t, name, hdr, body, want.code, scope, r.method != http.MethodHead)
		}
	}
	if n := after.requests - before.requests; want.reach && n != 1 {
		t.Errorf("%s: the MCP server received %d requests, want 1", name, n)
	} else if !want.reach && n != 0 {
		t.Errorf("%s: the MCP server received the request (status %d)", name, code)
	}
	for tool, n := range after.ran {
		d := n - before.ran[tool]
		switch {
		case tool == want.ran && d != 1:
			t.Errorf("%s: %s ran %d times, want once", name, tool, d)
		case tool != want.ran && d != 0:
			t.Errorf("%s: %s ran on the MCP server", name, tool)
		}
	}
	if want.ran != "" && after.ran[want.ran] == 0 {
		t.Errorf("%s: %s did not run", name, want.ran)
	}
}

// challengeRE is the one Bearer challenge a denial carries, parameters in their order.
var challengeRE = regexp.MustCompile(`^Bearer error="([^"\\]+)", error_description="([ -!#-\[\]-~]+)"` +
	`(?:, scope="([^"\\]+)")?, resource_metadata="([^"\\]+)"$`)

// checkAttackChallenge asserts the challenge and body of a denial. With an error code the
// description is not pinned (it is one of the module's fixed ASCII sentences), but the body
// must repeat it.
func checkAttackChallenge(t *testing.T, name string, hdr http.Header, body []byte, code, scope string, withBody bool) {
	t.Helper()
	if code == "" {
		vals := hdr.Values("WWW-Authenticate")
		if want := challenge("", "", scope); len(vals) != 1 || vals[0] != want {
			t.Errorf("%s: WWW-Authenticate = %q, want %q", name, vals, want)
		}
		return
	}
	vals := hdr.Values("WWW-Authenticate")
	if len(vals) != 1 {
		t.Errorf("%s: %d WWW-Authenticate headers %q, want one", name, len(vals), vals)
		return
	}
	m := challengeRE.FindStringSubmatch(vals[0])
	if m == nil {
		t.Errorf("%s: WWW-Authenticate %q is not a Bearer challenge with error, error_description, scope, resource_metadata", name, vals[0])
		return
	}
	if m[1] != code || m[3] != scope || m[4] != prmURL {
		t.Errorf("%s: challenge error=%q scope=%q resource_metadata=%q, want %q %q %q", name, m[1], m[3], m[4], code, scope, prmURL)
	}
	if v := hdr.Get("Access-Control-Expose-Headers"); v != "WWW-Authenticate" {
		t.Errorf("%s: Access-Control-Expose-Headers = %q", name, v)
	}
	if !withBody {
		return
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil || got["error"] != code || got["error_description"] != m[2] {
		t.Errorf("%s: error body %q, want error %q and the challenge's description", name, body, code)
	}
}

// Token forging: header and payload are signed exactly as written, so that duplicate
// members, odd types and foreign algorithms reach the verifier unchanged.

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// mustJSON marshals v (maps marshal with sorted keys).
func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// forge signs header.payload with key under the JWS algorithm signAlg (which need not be the
// header's alg); signAlg "" leaves the signature empty.
func forge(t testing.TB, signAlg string, key any, header, payload string) string {
	t.Helper()
	input := b64url([]byte(header)) + "." + b64url([]byte(payload))
	if signAlg == "" {
		return input + "."
	}
	sig, err := jwt.GetSigningMethod(signAlg).Sign(input, key)
	if err != nil {
		t.Fatalf("signing with %s: %v", signAlg, err)
	}
	return input + "." + b64url(sig)
}

// joseHeader is a JOSE header of the test issuer's tokens, with extra members set (nil values
// are kept as JSON null).
func joseHeader(alg, kid string, extra map[string]any) map[string]any {
	h := map[string]any{"alg": alg, "kid": kid, "typ": "at+jwt"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// signWith signs claims with k's own algorithm under a header of its kid with extra members.
func signWith(t testing.TB, k *jwttest.Key, c jwt.MapClaims, extra map[string]any) string {
	t.Helper()
	return forge(t, k.Alg, k.Signer, mustJSON(t, joseHeader(k.Alg, k.KID, extra)), mustJSON(t, c))
}

// with returns the valid claims for scope with some members replaced (nil values are kept as
// JSON null).
func with(scope string, set map[string]any) jwt.MapClaims {
	c := claims(resource, scope)
	for k, v := range set {
		c[k] = v
	}
	return c
}

// post is a POST of body on the session, with the Authorization lines given.
func post(body string, auth ...string) attackReq { return attackReq{body: body, auth: auth} }
