package integration

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// exchangeAS is an authorization server with RFC 8414 metadata and an RFC 8693 token
// endpoint. It checks our client's credentials and the request's parameters, and answers
// per subject token: a behaviour set for that token, else a new token for the requested
// audience.
type exchangeAS struct {
	*httptest.Server
	calls    atomic.Int64
	inFlight atomic.Int64
	peak     atomic.Int64
	// gate, when set, holds every call until it receives; entered hears of each call.
	gate    chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	// behave maps a subject token to a raw answer "status body"; expiresIn per subject.
	behave    map[string]string
	expiresIn map[string]int
	issued    map[string]string // new token -> the subject it was issued for
	badParams []string
}

const (
	gwClientID     = "mcp-gateway"
	gwClientSecret = "gw-secret&with odd:chars"
)

func newExchangeAS(t *testing.T) *exchangeAS {
	t.Helper()
	as := &exchangeAS{behave: map[string]string{}, expiresIn: map[string]int{}, issued: map[string]string{}}
	var n atomic.Int64
	as.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": as.URL, "token_endpoint": as.URL + "/token"})
			return
		case "/token":
		default:
			http.NotFound(w, r)
			return
		}
		as.calls.Add(1)
		cur := as.inFlight.Add(1)
		defer as.inFlight.Add(-1)
		for p := as.peak.Load(); cur > p && !as.peak.CompareAndSwap(p, cur); p = as.peak.Load() {
		}
		if as.entered != nil {
			as.entered <- struct{}{}
		}
		if as.gate != nil {
			<-as.gate
		}
		id, secret, _ := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if err := r.ParseForm(); err != nil || id != gwClientID || secret != gwClientSecret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		f := r.PostForm
		subject := f.Get("subject_token")
		if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" ||
			f.Get("subject_token_type") != "urn:ietf:params:oauth:token-type:access_token" ||
			f.Get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token" || subject == "" {
			as.mu.Lock()
			as.badParams = append(as.badParams, f.Encode())
			as.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_request"}`)
			return
		}
		as.mu.Lock()
		b, special := as.behave[subject]
		exp, hasExp := as.expiresIn[subject]
		as.mu.Unlock()
		if special {
			if b == "hangup" {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			status, body, _ := strings.Cut(b, " ")
			code, _ := strconv.Atoi(status)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
			return
		}
		if !hasExp {
			exp = 3600
		}
		aud := strings.Join(f["audience"], " ")
		jti := "xt-" + strconv.FormatInt(n.Add(1), 10)
		enc := base64.RawURLEncoding.EncodeToString
		payload, _ := json.Marshal(map[string]any{"aud": aud, "jti": jti, "exp": time.Now().Add(time.Duration(exp) * time.Second).Unix()})
		tok := enc([]byte(`{"alg":"none"}`)) + "." + enc(payload) + ".sig-" + jti
		as.mu.Lock()
		as.issued[tok] = subject
		as.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer",
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "expires_in": exp})
	}))
	t.Cleanup(as.Close)
	return as
}

func (as *exchangeAS) set(subject, behaviour string) {
	as.mu.Lock()
	as.behave[subject] = behaviour
	as.mu.Unlock()
}

// seenUpstream is what the upstream received on one request.
type seenUpstream struct {
	auth, dpop, aud string
}

// credUpstream records the credentials of every request it receives.
type credUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenUpstream
}

func newCredUpstream(t *testing.T) *credUpstream {
	u := &credUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, seenUpstream{
			auth: strings.Join(r.Header.Values("Authorization"), ","),
			dpop: strings.Join(r.Header.Values("Dpop"), ","),
			aud:  r.Header.Get("X-Exchanged-Audience"),
		})
		u.mu.Unlock()
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *credUpstream) last() seenUpstream {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return seenUpstream{}
	}
	return u.seen[len(u.seen)-1]
}

// TestTokenExchangeThroughCaddy: the upstream gets a token exchanged for its audience (per
// tool), never the incoming one; exchanges are cached, bounded, and refused or failed
// exchanges get the right answers; no token reaches any log.
func TestTokenExchangeThroughCaddy(t *testing.T) {
	as := newExchangeAS(t)
	up := newCredUpstream(t)
	f := newFixture(t, server{up.Server})
	debugLog, auditLog, accessLog := newLogSink(t), newLogSink(t), newLogSink(t)
	f.start(t, caddyfileOf(logTo("", debugLog, "level DEBUG")+"\n"+logTo("audit", auditLog, "include http.handlers.mcp_auth.audit"),
		siteAt(":9080", logTo("", accessLog, ""),
			mcpAuthDirective(exchangeBlock(as.URL, f.jwksURL(), "scope api:read\nmax_in_flight 4\ntimeout 30s",
				"audit\ntool github_* {\nexchange {\naudience https://github.example.com\n}\n}\ntool github_admin {\nscopes mcp:admin\n}")),
			f.proxyDirective("header_up X-Exchanged-Audience {http.auth.mcp.exchanged_audience}"))), "caddyfile")

	var incoming []string // every incoming token, to look for in the logs
	var minted atomic.Int64
	// mint is a valid incoming token, its claims changed by set (see f.token).
	mint := func(set map[string]any) string {
		if set == nil {
			set = map[string]any{}
		}
		// RS256 is deterministic: a jti makes every token distinct.
		set["jti"] = "in-" + strconv.FormatInt(minted.Add(1), 10)
		tok := f.token(t, "mcp:read", set)
		incoming = append(incoming, tok)
		return tok
	}
	post := func(tok, body string, header ...string) (int, http.Header, string) {
		t.Helper()
		code, hdr, b := f.do(t, attackReq{auth: []string{bearer(tok)}, body: body, header: header})
		return code, hdr, string(b)
	}
	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	// checkUpstream: the upstream got a token the AS issued for subject, for audience aud.
	checkUpstream := func(what, subject, aud string) string {
		t.Helper()
		got := up.last()
		tok, ok := strings.CutPrefix(got.auth, "Bearer ")
		as.mu.Lock()
		issuedFor := as.issued[tok]
		as.mu.Unlock()
		if !ok || issuedFor != subject {
			t.Fatalf("%s: upstream Authorization %.40q is not a token exchanged for this caller", what, got.auth)
		}
		if got.aud != aud {
			t.Fatalf("%s: {http.auth.mcp.exchanged_audience} = %q, want %q", what, got.aud, aud)
		}
		if got.dpop != "" {
			t.Fatalf("%s: the DPoP header reached the upstream", what)
		}
		return tok
	}

	t.Run("one exchange for N calls, per target", func(t *testing.T) {
		tok := mint(nil)
		before := as.calls.Load()
		var first string
		for i := range 5 {
			if st, _, body := post(tok, call("search"), "DPoP: not-a-proof"); st != 200 {
				t.Fatalf("call %d: %d %s", i, st, body)
			}
			x := checkUpstream("site target", tok, "https://api.example.com")
			if first == "" {
				first = x
			} else if x != first {
				t.Fatalf("call %d got another exchanged token", i)
			}
		}
		if n := as.calls.Load() - before; n != 1 {
			t.Fatalf("5 calls with one token: %d exchanges, want 1", n)
		}
		// Other requests use the site's target too, from the same cache.
		if st, _, _ := post(tok, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); st != 200 {
			t.Fatalf("tools/list: %d", st)
		}
		if checkUpstream("tools/list", tok, "https://api.example.com") != first || as.calls.Load()-before != 1 {
			t.Fatal("tools/list: not served from the cached exchange")
		}
		// A tool with its own target: another exchange, then cached.
		for range 3 {
			if st, _, body := post(tok, call("github_search")); st != 200 {
				t.Fatalf("github_search: %d %s", st, body)
			}
			if checkUpstream("github target", tok, "https://github.example.com") == first {
				t.Fatal("github_search got the site's token")
			}
		}
		if n := as.calls.Load() - before; n != 2 {
			t.Fatalf("two targets: %d exchanges, want 2", n)
		}
	})

	t.Run("mixed-target batch", func(t *testing.T) {
		tok := mint(nil)
		before := as.calls.Load()
		st, hdr, _ := post(tok, "["+call("github_search")+","+strings.Replace(call("search"), `"id":1`, `"id":2`, 1)+"]")
		if st != 400 || !strings.Contains(hdr.Get("Www-Authenticate"), `error="invalid_request"`) {
			t.Fatalf("mixed batch: %d %q", st, hdr.Get("Www-Authenticate"))
		}
		if as.calls.Load() != before {
			t.Fatal("a refused batch was exchanged")
		}
		// A batch with one target passes.
		st, _, _ = post(tok, "["+call("github_a")+","+strings.Replace(call("github_b"), `"id":1`, `"id":2`, 1)+"]")
		if st != 200 {
			t.Fatalf("one-target batch: %d", st)
		}
		checkUpstream("one-target batch", tok, "https://github.example.com")
	})

	t.Run("new exchange once the new token expires", func(t *testing.T) {
		// expires_in 20s is inside the 30s leeway: the token is never reused.
		tok := mint(nil)
		as.mu.Lock()
		as.expiresIn[tok] = 20
		as.mu.Unlock()
		before := as.calls.Load()
		var seen []string
		for range 3 {
			if st, _, _ := post(tok, call("search")); st != 200 {
				t.Fatalf("status %d", st)
			}
			seen = append(seen, checkUpstream("short-lived", tok, "https://api.example.com"))
		}
		if n := as.calls.Load() - before; n != 3 || seen[0] == seen[1] || seen[1] == seen[2] {
			t.Fatalf("3 calls, new token inside the leeway: %d exchanges, want 3 distinct tokens", n)
		}
	})

	t.Run("none served past the incoming token's exp", func(t *testing.T) {
		// The incoming token expired 5s ago: still accepted within the 30s leeway, but an
		// exchanged token is never reused past the incoming exp.
		tok := mint(map[string]any{"exp": time.Now().Add(-5 * time.Second).Unix()})
		before := as.calls.Load()
		for range 3 {
			if st, _, _ := post(tok, call("search")); st != 200 {
				t.Fatalf("status %d", st)
			}
			checkUpstream("incoming in its leeway", tok, "https://api.example.com")
		}
		if n := as.calls.Load() - before; n != 3 {
			t.Fatalf("incoming token past exp: %d exchanges for 3 calls, want 3", n)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, code := range []string{"invalid_grant", "invalid_target", "invalid_scope", "unauthorized_client", "invalid_request"} {
			tok := mint(nil)
			as.set(tok, `400 {"error":"`+code+`","error_description":"no"}`)
			n := len(up.seen)
			st, hdr, body := post(tok, call("search"))
			want := `Bearer error="access_denied", error_description="The authorization server refused a token for the upstream of this request.", resource_metadata="` + prmURL + `"`
			if st != 403 || hdr.Get("Www-Authenticate") != want {
				t.Errorf("%s: %d %q %s", code, st, hdr.Get("Www-Authenticate"), body)
			}
			if len(up.seen) != n {
				t.Errorf("%s: the upstream was reached", code)
			}
		}
		// A refusal is remembered for this token and target: the client retrying gets the
		// same answer without a call to the AS. Another target is asked on its own.
		tok := mint(nil)
		as.set(tok, `400 {"error":"invalid_grant"}`)
		before := as.calls.Load()
		for i := range 3 {
			if st, _, _ := post(tok, call("search")); st != 403 {
				t.Fatalf("refused token, call %d: %d, want 403", i, st)
			}
		}
		if n := as.calls.Load() - before; n != 1 {
			t.Fatalf("3 calls with a refused token: %d exchanges, want 1 (the refusal remembered)", n)
		}
		if st, _, _ := post(tok, call("github_search")); st != 403 || as.calls.Load()-before != 2 {
			t.Fatalf("the refused token for another target: %d after %d exchanges, want 403 after 2", st, as.calls.Load()-before)
		}
		// Once the AS grants it, the remembered refusal still answers until it lapses, and
		// never for a token past its exp: that one is asked every time.
		late := mint(map[string]any{"exp": time.Now().Add(-5 * time.Second).Unix()})
		as.set(late, `400 {"error":"invalid_grant"}`)
		before = as.calls.Load()
		for range 2 {
			// 401 invalid_token: the client gets a new token (see attack_exchange_test.go).
			if st, _, _ := post(late, call("search")); st != 401 {
				t.Fatalf("refused token in its leeway: %d, want 401", st)
			}
		}
		if n := as.calls.Load() - before; n != 2 {
			t.Fatalf("refused token past its exp: %d exchanges for 2 calls, want 2 (no refusal remembered past exp)", n)
		}
	})

	t.Run("unavailable", func(t *testing.T) {
		at := "urn:ietf:params:oauth:token-type:access_token"
		for name, b := range map[string]string{
			"invalid_client":         `401 {"error":"invalid_client"}`,
			"unsupported_grant_type": `400 {"error":"unsupported_grant_type"}`,
			"5xx":                    `502 bad gateway`,
			"connection closed":      "hangup",
			"no access_token":        `200 {"issued_token_type":"` + at + `","token_type":"Bearer"}`,
			"refresh token issued":   `200 {"access_token":"r","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token","token_type":"Bearer"}`,
			"no issued_token_type":   `200 {"access_token":"r","token_type":"Bearer"}`,
			"token_type DPoP":        `200 {"access_token":"r","issued_token_type":"` + at + `","token_type":"DPoP"}`,
			"token_type MAC":         `200 {"access_token":"r","issued_token_type":"` + at + `","token_type":"mac"}`,
			"duplicate access_token": `200 {"access_token":"r","access_token":"s","issued_token_type":"` + at + `","token_type":"Bearer"}`,
			"header injection":       `200 {"access_token":"r\r\nX-Admin: 1","issued_token_type":"` + at + `","token_type":"Bearer"}`,
			"oversized":              `200 {"access_token":"r","issued_token_type":"` + at + `","token_type":"Bearer","pad":"` + strings.Repeat("x", 70000) + `"}`,
			"not JSON":               `200 access_token=r`,
			"expires_in string":      `200 {"access_token":"r","issued_token_type":"` + at + `","token_type":"Bearer","expires_in":"60"}`,
		} {
			tok := mint(nil)
			as.set(tok, b)
			n := len(up.seen)
			st, hdr, _ := post(tok, call("search"))
			if st != 503 || hdr.Get("Retry-After") == "" {
				t.Errorf("%s: %d, Retry-After %q; want 503 with Retry-After", name, st, hdr.Get("Retry-After"))
			}
			if len(up.seen) != n {
				t.Errorf("%s: the upstream was reached", name)
			}
		}
		debugLog.through(t)
		logs := debugLog.text()
		for _, want := range []string{"token exchange: the authorization server refused our client",
			"token exchange: the token endpoint's answer is not a well-formed RFC 8693 response"} {
			if !strings.Contains(logs, want) {
				t.Errorf("no error log %q", want)
			}
		}
	})

	t.Run("1000 distinct tokens: bounded exchanges, excess waiters shed at once", func(t *testing.T) {
		// max_in_flight 4: four exchanges in flight, four per slot waiting (16), and every
		// other request is answered 503 with Retry-After at once, while the four are held.
		const total, limit, waiters = 1000, 4, 16
		toks := make([]string, total)
		for i := range toks {
			toks[i] = mint(nil)
		}
		as.peak.Store(0)
		as.gate, as.entered = make(chan struct{}), make(chan struct{}, total)
		defer func() { as.gate, as.entered = nil, nil }()
		gateOpen := false
		defer func() {
			if !gateOpen {
				close(as.gate)
			}
		}()
		before := as.calls.Load()
		type result struct {
			status     int
			retryAfter string
		}
		results := make(chan result, total)
		var wg sync.WaitGroup
		for i := range total {
			wg.Go(func() {
				code, hdr, _, err := f.try(bearerCall(toks[i]))
				if err != nil {
					results <- result{}
					return
				}
				results <- result{code, hdr.Get("Retry-After")}
			})
		}
		// While the AS holds the four calls, every request beyond them and their waiters is
		// answered: 503 with Retry-After.
		guard := time.After(2 * time.Minute) // against a hang, not a timing
		for i := range total - limit - waiters {
			select {
			case r := <-results:
				if r.status != 503 || r.retryAfter == "" {
					t.Fatalf("answer %d while every slot and waiter is taken: %d, Retry-After %q; want 503 with Retry-After", i, r.status, r.retryAfter)
				}
			case <-guard:
				t.Fatalf("only %d of %d requests answered while the AS holds its calls: waiters are not capped", i, total-limit-waiters)
			}
		}
		for range limit {
			select {
			case <-as.entered:
			case <-guard:
				t.Fatal("the calls in flight never reached the AS")
			}
		}
		if p := as.peak.Load(); p > limit {
			t.Fatalf("peak %d exchanges at once, want at most max_in_flight %d", p, limit)
		}
		gateOpen = true
		close(as.gate)
		wg.Wait()
		close(results)
		for r := range results {
			if r.status != 200 {
				t.Fatalf("a request in flight or waiting: %d, want 200", r.status)
			}
		}
		if n := as.calls.Load() - before; n != limit+waiters {
			t.Fatalf("%d exchanges, want %d (the calls in flight and their waiters)", n, limit+waiters)
		}
		if p := as.peak.Load(); p > limit {
			t.Fatalf("peak %d exchanges at once, want at most max_in_flight %d", p, limit)
		}
		debugLog.through(t)
		if n := strings.Count(debugLog.text(), "wait for a slot, answering 503 at once"); n < 1 || n > 2 {
			t.Fatalf("%d warnings of shed exchanges in the log, want one (at most one per 10s)", n)
		}
	})

	t.Run("audit and logs", func(t *testing.T) {
		tok := mint(nil)
		if st, _, _ := post(tok, call("github_x")); st != 200 {
			t.Fatalf("status %d", st)
		}
		x := checkUpstream("audit", tok, "https://github.example.com")
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(x, ".")[1])
		var p struct{ JTI string }
		_ = json.Unmarshal(payload, &p)
		found := false
		auditLog.wait(func(lines []map[string]any) bool {
			for _, l := range lines {
				if l["exchange_target"] == "tool github_*" && l["exchanged_token_id"] == p.JTI {
					found = true
				}
			}
			return found
		})
		if !found {
			t.Fatalf("no audit event names the target and the new token's jti %q", p.JTI)
		}
		var exchanged []string
		as.mu.Lock()
		for k := range as.issued {
			exchanged = append(exchanged, k)
		}
		as.mu.Unlock()
		debugLog.through(t)
		for name, b := range map[string]string{"caddy log": debugLog.text(), "audit log": auditLog.text(), "access log": accessLog.text()} {
			for _, tok := range append(append([]string{}, incoming...), exchanged...) {
				// A token's signature part is enough to find it, whole or cut.
				sig := tok[strings.LastIndexByte(tok, '.')+1:]
				if strings.Contains(b, sig) {
					t.Fatalf("%s holds a token", name)
				}
			}
		}
	})
}
