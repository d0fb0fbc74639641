package integration

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

// Red team of issue 21 (token exchange toward the upstream): what reaches the upstream, and
// how a client or a later handler can change it.

// fullUpstream records every header and trailer of every request it receives.
type fullUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []xSeen
}

type xSeen struct {
	header, trailer http.Header
	body            string
}

func newFullUpstream(t *testing.T) *fullUpstream {
	u := &fullUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // trailers are known once the body is read
		u.mu.Lock()
		u.seen = append(u.seen, xSeen{header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: string(b)})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *fullUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *fullUpstream) last(t *testing.T) xSeen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream was never reached")
	}
	return u.seen[len(u.seen)-1]
}

// xConfig is what a test changes of the exchanging site: header is the token_exchange
// header line (or other lines of that group), rules more of the mcp_auth block, after
// handlers between mcp_auth and reverse_proxy (in a route, in order), proxy the
// reverse_proxy subdirectives, global more global options; as and upstream replace the
// exchange authorization server and the upstream.
type xConfig struct {
	header, rules, after, proxy, global string
	as                                  string
	upstream                            upstreamServer
}

type attackExchange struct {
	f   *fixture
	as  *exchangeAS
	up  *fullUpstream
	log *logSink // Caddy's default log
	n   int
}

// startAttackExchange runs a site that exchanges each caller's token for one toward the
// upstream (client mcp-gateway, audience https://api.example.com, the token endpoint
// discovered at the authorization server), logging at DEBUG level to a sink of its own.
func startAttackExchange(t *testing.T, c xConfig) *attackExchange {
	t.Helper()
	x := &attackExchange{as: newExchangeAS(t), up: newFullUpstream(t), log: newLogSink(t)}
	if c.upstream == nil {
		c.upstream = server{x.up.Server}
	}
	if c.as == "" {
		c.as = x.as.URL
	}
	x.f = newFixture(t, c.upstream)
	var proxy []string
	if c.proxy != "" {
		proxy = append(proxy, c.proxy)
	}
	block := exchangeBlock(c.as, x.f.jwksURL(), c.header, c.rules)
	x.f.start(t, caddyfileOf(logTo("", x.log, "level DEBUG")+"\n"+c.global,
		siteAt(":9080", "route {\n"+mcpAuthDirective(block)+"\n"+c.after+"\n"+x.f.proxyDirective(proxy...)+"\n}")), "caddyfile")
	return x
}

// token mints a distinct valid incoming token.
func (x *attackExchange) token(t *testing.T) string {
	x.n++
	return x.f.token(t, "mcp:read", map[string]any{"jti": "rt21-" + strconv.Itoa(x.n)})
}

// issuedFor is the subject the AS issued tok for; "" when it did not issue it.
func (x *attackExchange) issuedFor(tok string) string {
	x.as.mu.Lock()
	defer x.as.mu.Unlock()
	return x.as.issued[tok]
}

// bearerCall is a tools/call with tok as a bearer token.
func bearerCall(tok string) attackReq { return attackReq{auth: []string{bearer(tok)}, body: toolsCall} }

func chunkedPost(tok, body string, announce bool, trailers ...string) string {
	var b strings.Builder
	b.WriteString("POST /mcp HTTP/1.1\r\nHost: localhost:9080\r\nContent-Type: application/json\r\n" +
		"Accept: application/json, text/event-stream\r\nAuthorization: Bearer " + tok + "\r\n" +
		"Transfer-Encoding: chunked\r\nConnection: close\r\n")
	if announce {
		var names []string
		for _, tr := range trailers {
			n, _, _ := strings.Cut(tr, ":")
			names = append(names, n)
		}
		b.WriteString("Trailer: " + strings.Join(names, ", ") + "\r\n")
	}
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "%x\r\n%s\r\n0\r\n", len(body), body)
	for _, tr := range trailers {
		b.WriteString(tr + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

const toolsCall = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}`

// TestAttackExchangeTrailers: a client puts its own token, or a forged upstream token, in an
// HTTP/1.1 request trailer. reverse_proxy forwards request trailers: the upstream must get
// neither.
func TestAttackExchangeTrailers(t *testing.T) {
	for _, c := range []struct {
		name, header, rules string
	}{
		{"Authorization, body not read", "", ""},
		{"Authorization, body read for rules", "", "tool admin_* {\n\t\t\t\tscopes mcp:admin\n\t\t\t}"},
		{"custom header, body not read", "header X-Upstream-Token", ""},
		{"custom header, body read for rules", "header X-Upstream-Token", "tool admin_* {\n\t\t\t\tscopes mcp:admin\n\t\t\t}"},
	} {
		for _, announce := range []bool{false, true} {
			t.Run(c.name+" announced "+strconv.FormatBool(announce), func(t *testing.T) {
				x := startAttackExchange(t, xConfig{header: c.header, rules: c.rules})
				tok := x.token(t)
				n := x.up.count()
				st, _, _ := doRaw(t, chunkedPost(tok, toolsCall, announce,
					"Authorization: Bearer "+tok, "X-Upstream-Token: forged", "Dpop: forged-proof", "X-Other: kept"))
				if announce {
					// Refused before the upstream: nothing would replace what comes after
					// the body, and reverse_proxy forwards it.
					if st != 400 || x.up.count() != n {
						t.Fatalf("a request announcing trailers: status %d, upstream reached %v; want 400, not reached", st, x.up.count() != n)
					}
					return
				}
				if st != 200 {
					t.Fatalf("status %d", st)
				}
				got := x.up.last(t)
				if got.body != toolsCall {
					t.Fatalf("the upstream got the body %q", got.body)
				}
				for _, name := range []string{"Authorization", "X-Upstream-Token", "Dpop"} {
					if v := got.trailer.Values(name); len(v) > 0 {
						t.Errorf("the upstream got a %s trailer from the client: %.30q", name, v)
					}
				}
				// The upstream did get the token exchanged for this caller.
				hv := got.header.Get("Authorization")
				if c.header != "" {
					hv = "Bearer " + got.header.Get("X-Upstream-Token")
				}
				if x.issuedFor(strings.TrimPrefix(hv, "Bearer ")) != tok {
					t.Fatalf("the upstream header is not the exchanged token")
				}
			})
		}
	}
}

// TestAttackExchangeHeaderNotShared: a handler after mcp_auth that rewrites the upstream
// header in place (request_header with a replacement) must change this request's value
// only, never the cached exchanged token that the next request gets too.
func TestAttackExchangeHeaderNotShared(t *testing.T) {
	for _, c := range []struct{ name, header, field string }{
		{"Authorization", "", "Authorization"},
		{"custom header", "header X-Upstream-Token", "X-Upstream-Token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := startAttackExchange(t, xConfig{header: c.header,
				after: `request_header ` + c.field + ` "^(.*)$" "${1}+v"`})
			tok := x.token(t)
			var vals []string
			for i := range 3 {
				if code, _, _ := x.f.do(t, bearerCall(tok)); code != 200 {
					t.Fatalf("call %d: status %d", i, code)
				}
				vals = append(vals, x.up.last(t).header.Get(c.field))
			}
			if x.as.calls.Load() != 1 {
				t.Fatalf("%d exchanges, want 1 (cached)", x.as.calls.Load())
			}
			for i, v := range vals {
				if v != vals[0] || !strings.HasSuffix(v, "+v") || strings.HasSuffix(v, "+v+v") {
					t.Fatalf("call %d: the upstream got %q, call 1 %q: the rewrite of one request reached the cached token", i+1, clipString(v), clipString(vals[0]))
				}
			}
		})
	}
}

func clipString(s string) string {
	if len(s) > 12 {
		return "…" + s[len(s)-12:]
	}
	return s
}

// TestAttackExchangeHeaderSpellings: CGI-style servers (FastCGI, WSGI, Rack, PHP) read
// X-Upstream-Token and X_Upstream_Token as one variable, HTTP_X_UPSTREAM_TOKEN (PHP folds
// dots too). Caddy drops headers with underscores or dots unless the operator expects them
// (expected_underscore_headers, expected_dot_headers; then it drops their hyphenated
// spelling instead, but mcp_auth adds that spelling afterwards). A client that sends an
// expected spelling must not reach the upstream with it beside the exchanged token: Caddy's
// FastCGI transport builds the variable from both, the last one written (in map order)
// winning.
func TestAttackExchangeHeaderSpellings(t *testing.T) {
	var mu sync.Mutex
	var got []string
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		_ = fcgi.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got = append(got, r.Header.Get("X-Upstream-Token"))
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
		}))
	}()
	x := startAttackExchange(t, xConfig{header: "header X-Upstream-Token",
		upstream: dialAddr(l.Addr().String()), proxy: "transport fastcgi",
		global: "servers {\nexpected_underscore_headers x_*\n}"})
	tok := x.token(t)
	// The variable is built from a map: each request is a coin toss, 20 of them miss the
	// forged value with odds of one in a million when it passes at all.
	const calls = 20
	for i := range calls {
		r := bearerCall(tok)
		r.header = []string{"X_Upstream_Token: forged", "X-upstream_token: forged"}
		if code, _, _ := x.f.do(t, r); code != 200 {
			t.Fatalf("call %d: status %d", i, code)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != calls {
		t.Fatalf("the upstream got %d requests, want %d", len(got), calls)
	}
	for i, v := range got {
		if strings.Contains(v, "forged") || x.issuedFor(v) != tok {
			t.Fatalf("call %d: the upstream read %q as X-Upstream-Token, not the exchanged token", i, clipString(v))
		}
	}
}

// TestAttackExchangeRefusedInLeeway: an incoming token past its exp but inside the leeway
// passes here, and the authorization server, which has no such leeway, refuses to exchange
// it. The answer must send the client to get a new token (401 invalid_token, expired), not
// 403 access_denied, after which an MCP client gives up on the call without refreshing.
// A token that is not expired and refused still gets 403.
func TestAttackExchangeRefusedInLeeway(t *testing.T) {
	x := startAttackExchange(t, xConfig{})
	post := func(tok string) (int, string) {
		code, hdr, _ := x.f.do(t, bearerCall(tok))
		return code, hdr.Get("Www-Authenticate")
	}
	late := x.f.token(t, "mcp:read", map[string]any{"exp": time.Now().Add(-5 * time.Second).Unix(), "jti": "rt21-late"})
	x.as.set(late, `400 {"error":"invalid_grant","error_description":"token expired"}`)
	for i := range 2 {
		st, ch := post(late)
		if st != 401 || !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, "expired") {
			t.Fatalf("call %d, incoming token in its leeway refused by the AS: %d %q; want 401 invalid_token (expired)", i, st, ch)
		}
	}
	fresh := x.token(t)
	x.as.set(fresh, `400 {"error":"invalid_grant"}`)
	if st, ch := post(fresh); st != 403 || !strings.Contains(ch, `error="access_denied"`) {
		t.Fatalf("a valid token refused by the AS: %d %q; want 403 access_denied", st, ch)
	}
	if x.up.count() != 0 {
		t.Fatal("a refused exchange reached the upstream")
	}
}

// TestAttackExchangeCustomHeaderInLogs: Caddy redacts only Authorization, Cookie and
// Proxy-Authorization when it logs headers, and reverse_proxy logs the upstream request's
// headers at debug level: with a custom header, the exchanged token is in that log. mcp_auth
// cannot change reverse_proxy's log; it says so at load, and with the default header no
// exchanged token reaches the debug log.
func TestAttackExchangeCustomHeaderInLogs(t *testing.T) {
	for _, c := range []struct {
		header string
		leaks  bool
	}{{"", false}, {"header X-Upstream-Token", true}} {
		t.Run(c.header, func(t *testing.T) {
			x := startAttackExchange(t, xConfig{header: c.header})
			tok := x.token(t)
			x.f.do(t, bearerCall(tok))
			got := x.up.last(t).header
			v := strings.TrimPrefix(got.Get("Authorization"), "Bearer ")
			if c.leaks {
				v = got.Get("X-Upstream-Token")
			}
			if x.issuedFor(v) != tok {
				t.Fatal("the upstream did not get the exchanged token")
			}
			// Wait for the round trip's log line, then look for the token's signature.
			x.log.wait(func(entries []map[string]any) bool {
				for _, e := range entries {
					if e["msg"] == "upstream roundtrip" {
						return true
					}
				}
				return false
			})
			logs := x.log.text()
			if !strings.Contains(logs, "upstream roundtrip") {
				t.Fatal("no reverse_proxy debug log")
			}
			sig := v[strings.LastIndexByte(v, '.')+1:]
			warned := strings.Contains(logs, "Caddy does not redact this header in its logs")
			if inLog := strings.Contains(logs, sig); inLog != c.leaks || warned != c.leaks {
				t.Fatalf("exchanged token in the debug log: %v, load warning: %v; want both %v", inLog, warned, c.leaks)
			}
		})
	}
}

// TestAttackExchangeReservedHeaders: the new token must not go in a header that means
// something else on the way to the upstream or to the MCP server: a hop-by-hop header
// (reverse_proxy drops it), a method override (the token read as a method), MCP's resumption
// header, the forwarded-for family, a browser's Sec- header, or any of them spelled as a
// CGI-style server reads it. Such a config is refused at load, naming the field; another
// spelling of Authorization is the default header.
func TestAttackExchangeReservedHeaders(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t, f.caddyfile("scopes mcp:read"), "caddyfile")
	block := func(header string) string {
		return f.siteCaddyfile(f.usualBlock("scopes mcp:read\ntoken_exchange {\nendpoint https://auth.example.com/token\n"+
			"client_id gw\nclient_secret s\naudience https://api.example.com\nheader "+header+"\n}"), `respond "should never be served"`)
	}
	for _, h := range []string{"X-HTTP-Method-Override", "x_http_method_override", "Keep-Alive", "Proxy-Connection",
		"Last-Event-ID", "Forwarded", "X-Real-IP", "X-Forwarded-Prefix", "X_Forwarded_For", "Sec-Fetch-Site",
		"Accept-Encoding", "Expect", "Mcp.Session.Id", "Dpop", "Cookie"} {
		code, body := loadConfig(t, block(h), "text/caddyfile", true)
		if code == http.StatusOK || !strings.Contains(body, "token_exchange header") {
			t.Errorf("header %s: load answered %d %.200s; want refused, naming token_exchange header", h, code, body)
		}
	}
	for _, h := range []string{"authorization", "X-Upstream-Token"} {
		if code, body := loadConfig(t, block(h), "text/caddyfile", true); code != http.StatusOK {
			t.Errorf("header %s: refused: %.200s", h, body)
		}
	}
	// Credentials in the endpoint URL: refused, without repeating them (the URL is logged
	// at load, and net/http would send them as Basic authentication too).
	cfg := strings.Replace(block("X-Upstream-Token"), "endpoint https://auth.example.com/token", "endpoint https://gw:hunter2@auth.example.com/token", 1)
	if code, body := loadConfig(t, cfg, "text/caddyfile", true); code == http.StatusOK ||
		!strings.Contains(body, "token_exchange endpoint") || strings.Contains(body, "hunter2") {
		t.Errorf("endpoint with user information: load answered %d %.300s; want refused, naming the field, not the secret", code, body)
	}
}

// TestAttackExchangeAnswers: token endpoint answers an authorization server (or whoever
// answers at its address) may give, through Caddy: what passes, what is refused, what is
// cached, and that nothing follows a redirect or reaches a log.
func TestAttackExchangeAnswers(t *testing.T) {
	const at = "urn:ietf:params:oauth:token-type:access_token"
	var other atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { other.Add(1) }))
	t.Cleanup(elsewhere.Close)
	var mu sync.Mutex
	behave := map[string]func(w http.ResponseWriter){}
	calls := map[string]int{}
	release := make(chan struct{})
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "http://" + r.Host, "token_endpoint": "http://" + r.Host + "/token"})
			return
		}
		_ = r.ParseForm()
		sub := r.PostForm.Get("subject_token")
		mu.Lock()
		calls[sub]++
		b := behave[sub]
		mu.Unlock()
		if b == nil {
			w.WriteHeader(500)
			return
		}
		b(w)
	}))
	t.Cleanup(as.Close)
	t.Cleanup(func() { close(release) }) // before as.Close: a held answer must end first
	x := startAttackExchange(t, xConfig{as: as.URL, header: "timeout 2s"})
	answer := func(status int, body string, hdr ...string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	ok := func(tok, tt string, extra string) string {
		return `{"access_token":"` + tok + `","issued_token_type":"` + at + `","token_type":"` + tt + `"` + extra + `}`
	}
	gz := func(s string) string {
		var b strings.Builder
		zw := gzip.NewWriter(&b)
		_, _ = io.WriteString(zw, s)
		_ = zw.Close()
		return b.String()
	}
	enc := base64.RawURLEncoding.EncodeToString
	pastJWT := enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"exp":1000000000,"jti":"old"}`)) + ".sig-past"
	for _, c := range []struct {
		name   string
		b      func(incoming string) func(w http.ResponseWriter)
		status int    // of each of two requests
		calls  int    // exchanges for the two
		header string // the upstream's Authorization on success
	}{
		{"redirect to another host", func(string) func(http.ResponseWriter) {
			return answer(307, "", "Location", elsewhere.URL+"/token")
		}, 503, 2, ""},
		{"token_type bearer", func(string) func(http.ResponseWriter) { return answer(200, ok("lower", "bearer", "")) }, 200, 1, "Bearer lower"},
		{"token_type BEARER", func(string) func(http.ResponseWriter) { return answer(200, ok("upper", "BEARER", "")) }, 200, 1, "Bearer upper"},
		{"token_type N_A", func(string) func(http.ResponseWriter) { return answer(200, ok("na", "N_A", "")) }, 200, 1, "Bearer na"},
		{"token_type missing", func(string) func(http.ResponseWriter) {
			return answer(200, `{"access_token":"t","issued_token_type":"`+at+`"}`)
		}, 503, 2, ""},
		{"id token issued", func(string) func(http.ResponseWriter) {
			return answer(200, `{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:id_token","token_type":"N_A"}`)
		}, 503, 2, ""},
		{"jwt token type issued", func(string) func(http.ResponseWriter) {
			return answer(200, `{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","token_type":"Bearer"}`)
		}, 503, 2, ""},
		{"non-ASCII token", func(string) func(http.ResponseWriter) { return answer(200, ok("t\u00f6k", "Bearer", "")) }, 503, 2, ""},
		{"token with a space", func(string) func(http.ResponseWriter) { return answer(200, ok("a b", "Bearer", "")) }, 503, 2, ""},
		{"escaped CRLF in the token", func(string) func(http.ResponseWriter) { return answer(200, ok(`a\r\nX-Admin: 1`, "Bearer", "")) }, 503, 2, ""},
		{"empty token", func(string) func(http.ResponseWriter) { return answer(200, ok("", "Bearer", "")) }, 503, 2, ""},
		{"expires_in 1e300", func(string) func(http.ResponseWriter) { return answer(200, ok("t", "Bearer", `,"expires_in":1e300`)) }, 503, 2, ""},
		{"expires_in -1", func(string) func(http.ResponseWriter) { return answer(200, ok("t", "Bearer", `,"expires_in":-1`)) }, 503, 2, ""},
		{"expires_in 0: used once, never cached", func(string) func(http.ResponseWriter) {
			return answer(200, ok("zero", "Bearer", `,"expires_in":0`))
		}, 200, 2, "Bearer zero"},
		{"JWT exp earlier than expires_in: never cached", func(string) func(http.ResponseWriter) {
			return answer(200, ok(pastJWT, "Bearer", `,"expires_in":3600`))
		}, 200, 2, "Bearer " + pastJWT},
		{"gzip answer", func(string) func(http.ResponseWriter) {
			return answer(200, gz(ok("zipped", "Bearer", "")), "Content-Encoding", "gzip")
		}, 200, 1, "Bearer zipped"},
		{"HTML 200", func(string) func(http.ResponseWriter) {
			return answer(200, "<html>login</html>", "Content-Type", "text/html")
		}, 503, 2, ""},
		{"HTML 500", func(string) func(http.ResponseWriter) {
			return answer(500, "<html>oops</html>", "Content-Type", "text/html")
		}, 503, 2, ""},
		{"error_description with CRLF and the token", func(in string) func(http.ResponseWriter) {
			return answer(400, `{"error":"invalid_grant","error_description":"bad\r\nX-Injected: `+in+`"}`)
		}, 403, 1, ""},
		{"error code with CRLF", func(in string) func(http.ResponseWriter) {
			return answer(400, `{"error":"invalid_grant\r\nX-Injected: `+in+`"}`)
		}, 503, 2, ""},
		{"headers, then a body that never ends", func(string) func(http.ResponseWriter) {
			return func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(200)
				_, _ = io.WriteString(w, `{"access_token":"slow`)
				w.(http.Flusher).Flush()
				<-release
			}
		}, 503, 2, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := x.token(t)
			mu.Lock()
			behave[tok] = c.b(tok)
			mu.Unlock()
			n := x.up.count()
			for i := range 2 {
				code, hdr, body := x.f.do(t, bearerCall(tok))
				if code != c.status {
					t.Fatalf("request %d: %d %q, want %d", i, code, body, c.status)
				}
				if strings.Contains(string(body)+fmt.Sprint(hdr), "Injected") {
					t.Fatalf("request %d: the AS's answer reached the client", i)
				}
				if c.status == 200 {
					if got := x.up.last(t).header.Get("Authorization"); got != c.header {
						t.Fatalf("request %d: the upstream got %.40q, want %.40q", i, got, c.header)
					}
				}
			}
			if c.status != 200 && x.up.count() != n {
				t.Fatal("the upstream was reached")
			}
			mu.Lock()
			got := calls[tok]
			mu.Unlock()
			if got != c.calls {
				t.Fatalf("%d exchanges for two requests, want %d", got, c.calls)
			}
			if other.Load() != 0 {
				t.Fatal("a redirect was followed")
			}
			x.log.through(t)
			logs := x.log.text()
			if sig := tok[strings.LastIndexByte(tok, '.')+1:]; strings.Contains(string(logs), sig) || strings.Contains(string(logs), "Injected") {
				t.Fatal("the incoming token or the AS's description is in the log")
			}
		})
	}
}

// TestAttackExchangeTargets: a tools/call gets the token of its own rule's target and no
// other, however the calls of one token interleave, and whatever a client does to the name
// (another case, a look-alike, a duplicate key, a batch with other messages).
func TestAttackExchangeTargets(t *testing.T) {
	x := startAttackExchange(t, xConfig{rules: "tool github_* {\nexchange {\naudience https://github.example.com\n}\n}\n" +
		"tool cal_* {\nexchange {\naudience https://calendar.example.com\n}\n}"})
	tok := x.token(t)
	post := func(body string) int {
		code, _, _ := x.f.do(t, attackReq{auth: []string{bearer(tok)}, body: body})
		return code
	}
	// audOf is the audience the AS issued the upstream's last token for.
	audOf := func() string {
		v := strings.TrimPrefix(x.up.last(t).header.Get("Authorization"), "Bearer ")
		if x.issuedFor(v) != tok {
			t.Fatal("the upstream did not get a token exchanged for this caller")
		}
		p, _ := base64.RawURLEncoding.DecodeString(strings.Split(v, ".")[1])
		var c struct{ Aud string }
		_ = json.Unmarshal(p, &c)
		return c.Aud
	}
	call := func(id int, name string) string {
		return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	// Interleaved, the same token: each call gets its own target's token, from the cache
	// after the first of each.
	for i, c := range []struct{ name, aud string }{
		{"github_a", "https://github.example.com"}, {"cal_a", "https://calendar.example.com"}, {"search", "https://api.example.com"},
		{"cal_b", "https://calendar.example.com"}, {"github_b", "https://github.example.com"}, {"search", "https://api.example.com"},
		// Other spellings are other tools: the server looks names up exactly.
		{"GitHub_a", "https://api.example.com"}, {"github\u2010a", "https://api.example.com"}, {"ｇithub_a", "https://api.example.com"},
	} {
		if st := post(call(i, c.name)); st != 200 {
			t.Fatalf("%s: %d", c.name, st)
		}
		if got := audOf(); got != c.aud {
			t.Fatalf("call %d, %s: the upstream got a token for %q, want %q", i, c.name, got, c.aud)
		}
	}
	if n := x.as.calls.Load(); n != 3 {
		t.Fatalf("%d exchanges, want 3 (one per target)", n)
	}
	n := x.up.count()
	for name, body := range map[string]string{
		"duplicate name":                   `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"github_a"}}`,
		"escaped duplicate name":           `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_a","n\u0061me":"search"}}`,
		"two targets in a batch":           "[" + call(1, "github_a") + "," + call(2, "cal_a") + "]",
		"rule and site targets in a batch": "[" + call(1, "github_a") + "," + `{"jsonrpc":"2.0","id":2,"method":"tools/list"}` + "]",
		"rule target and a notification":   "[" + call(1, "github_a") + "," + `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}}` + "]",
		"rule target and a response":       "[" + call(1, "github_a") + "," + `{"jsonrpc":"2.0","id":"s1","result":{}}` + "]",
	} {
		if st := post(body); st != 400 {
			t.Errorf("%s: %d, want 400", name, st)
		}
	}
	if x.up.count() != n {
		t.Fatal("a refused message reached the upstream")
	}
	// A batch of one target passes with that target's token.
	if st := post("[" + call(1, "github_a") + "," + call(2, "github_b") + "]"); st != 200 || audOf() != "https://github.example.com" {
		t.Fatalf("one-target batch: %d", st)
	}
}

// TestAttackExchangeDPoP: a DPoP-bound incoming token is exchanged only once its proof for
// this request holds (no call to the token endpoint for a missing, foreign or replayed
// proof), and the upstream gets the new token as a bearer token without the proof.
func TestAttackExchangeDPoP(t *testing.T) {
	x := startAttackExchange(t, xConfig{rules: "dpop"})
	client := jwttest.New(t, "", "ES256")
	other := jwttest.New(t, "", "ES256")
	tok := x.f.token(t, "mcp:read", map[string]any{"cnf": map[string]any{"jkt": client.Thumbprint()}})
	send := func(proofs ...string) int {
		r := attackReq{auth: []string{"DPoP " + tok}, body: toolsCall}
		for _, p := range proofs {
			r.header = append(r.header, "Dpop: "+p)
		}
		code, _, _ := x.f.do(t, r)
		return code
	}
	now := time.Now().Unix()
	good := client.Proof(t, http.MethodPost, dpopHTU, tok, now)
	for name, proofs := range map[string][]string{
		"no proof":          nil,
		"another key":       {other.Proof(t, http.MethodPost, dpopHTU, tok, now)},
		"another method":    {client.Proof(t, http.MethodGet, dpopHTU, tok, now)},
		"two proofs":        {good, good},
		"for another token": {client.Proof(t, http.MethodPost, dpopHTU, "other.token.value", now)},
	} {
		if st := send(proofs...); st != 401 && st != 400 {
			t.Errorf("%s: %d, want 401 or 400", name, st)
		}
	}
	if n := x.as.calls.Load(); n != 0 {
		t.Fatalf("%d exchanges before any good proof, want 0", n)
	}
	if st := send(good); st != 200 {
		t.Fatalf("good proof: %d", st)
	}
	got := x.up.last(t).header
	v, ok := strings.CutPrefix(got.Get("Authorization"), "Bearer ")
	if !ok || x.issuedFor(v) != tok || len(got.Values("Dpop")) != 0 {
		t.Fatalf("the upstream got Authorization %.30q and %d DPoP headers; want the exchanged token as Bearer and no proof", got.Get("Authorization"), len(got.Values("Dpop")))
	}
	// The same proof again is a replay, refused before the (cached) exchange is used.
	n := x.up.count()
	if st := send(good); st != 401 || x.up.count() != n {
		t.Fatalf("replayed proof: %d, upstream reached %v", st, x.up.count() != n)
	}
}

// TestAttackExchangePublicForged: a public tool passes without a token and without an
// exchange. The upstream trusts the token header as mcp_auth's: a client must not fill it
// (nor a CGI spelling of it, nor a DPoP proof, nor a trailer) on such a request.
func TestAttackExchangePublicForged(t *testing.T) {
	// Caddy drops X_Upstream_Token by default, and X-Upstream-Token when the first is expected.
	for _, global := range []string{"", "servers {\nexpected_underscore_headers x_*\n}"} {
		t.Run(strconv.FormatBool(global != ""), func(t *testing.T) { testPublicForged(t, global) })
	}
}

func testPublicForged(t *testing.T, global string) {
	x := startAttackExchange(t, xConfig{header: "header X-Upstream-Token",
		rules: "public {\ntool search\n}", global: global})
	send := func(header []string, trailer bool) int {
		if trailer {
			code, _, _ := doRaw(t, strings.Replace(chunkedPost("", toolsCall, true, "X-Upstream-Token: forged"), "Authorization: Bearer \r\n", "", 1))
			return code
		}
		code, _, _ := x.f.do(t, attackReq{body: toolsCall, header: header})
		return code
	}
	if st := send(nil, false); st != 200 {
		t.Fatalf("anonymous public call: %d", st)
	}
	if st := send([]string{"X-Upstream-Token: forged", "X_Upstream_Token: forged", "Dpop: forged"}, false); st != 200 {
		t.Fatalf("anonymous public call with forged headers: %d", st)
	}
	got := x.up.last(t).header
	for _, name := range []string{"X-Upstream-Token", "X_upstream_token", "Dpop"} {
		if v := got.Values(name); len(v) != 0 {
			t.Errorf("the upstream got the client's %s on an anonymous call: %q", name, v)
		}
	}
	n := x.up.count()
	if st := send(nil, true); st != 400 || x.up.count() != n {
		t.Fatalf("anonymous call announcing trailers: %d, upstream reached %v; want 400, not reached", st, x.up.count() != n)
	}
	if x.as.calls.Load() != 0 {
		t.Fatal("an anonymous call was exchanged")
	}
}
