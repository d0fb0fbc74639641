package mcpauth

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestTokenExchangeConfigErrors: every bad token_exchange or exchange configuration is
// refused at load with an error naming the field.
func TestTokenExchangeConfigErrors(t *testing.T) {
	const head = "mcp_auth {\n resource https://mcp.example.com/mcp\n authorization_servers https://auth.example.com\n scopes mcp:read\n"
	te := func(body string) string { return head + "token_exchange {\n" + body + "\n}\n}" }
	const ok = "client_id gw\nclient_secret s\naudience https://api.example.com\n"
	cases := []struct {
		name, cfg, want string
	}{
		{"no client_id", te("client_secret s\naudience https://api.example.com"), "token_exchange client_id: required"},
		{"no secret", te("client_id gw\naudience https://api.example.com"), "token_exchange client_secret: required"},
		{"key without private_key_jwt", te(ok + "private_key /k.pem"), "token_exchange private_key: only for auth_method private_key_jwt"},
		{"private_key_jwt without key", te("client_id gw\nauth_method private_key_jwt\naudience https://api.example.com"), "token_exchange private_key: required"},
		{"bad auth_method", te(ok + "auth_method tls_client_auth"), `token_exchange auth_method "tls_client_auth"`},
		{"no target", te("client_id gw\nclient_secret s"), "token_exchange: required: audience or resource"},
		{"resource not a URL", te(ok + "resource api"), `token_exchange resource "api"`},
		{"resource with fragment", te(ok + "resource https://api.example.com/#x"), "must not have a fragment"},
		{"two resources", te(ok + "resource https://a.example.com https://b.example.com"), "token_exchange resource: takes one URI"},
		{"bad scope", te(ok + `scope "a\"b"`), `token_exchange scope`},
		{"header Host", te(ok + "header Host"), `token_exchange header "Host": a header HTTP or MCP gives another meaning`},
		{"header DPoP", te(ok + "header dpop"), `token_exchange header "dpop"`},
		{"header not a token", te(ok + `header "X Y"`), "not a header field name"},
		{"endpoint not a URL", te(ok + "endpoint ftp://x"), `token_exchange endpoint "ftp://x"`},
		{"max_in_flight 0", te(ok + "max_in_flight 0"), "token_exchange max_in_flight"},
		{"cache_ttl negative", te(ok + "cache_ttl -1s"), "token_exchange cache_ttl"},
		{"unknown", te(ok + "actor_token x"), `unrecognized token_exchange subdirective "actor_token"`},
		{"twice", te(ok + "audience https://b.example.com"), "token_exchange audience: given more than once"},
		{"exchange in a prompt rule", head + "prompt p {\n scopes a\n exchange {\n audience x\n }\n}\n}", "prompt: exchange: only in tool rules"},
		{"exchange without target", head + "tool t {\n exchange {\n scope a\n }\n}\n}", "tool exchange: needs audience or resource"},
		{"exchange unknown", head + "tool t {\n exchange {\n header X\n }\n}\n}", `tool exchange: unrecognized subdirective "header"`},
		{"strip_token", head + "strip_token\ntoken_exchange {\n" + ok + "}\n}", "strip_token: cannot be combined with token_exchange"},
		{"exchange without token_exchange", head + "tool t {\n exchange {\n audience x\n }\n}\n}", "rules[0].exchange: needs the token_exchange group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseTestCaddyfile(tc.cfg)
			if err == nil {
				err = h.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A valid one, with a rule holding exchange alone.
	h, err := parseTestCaddyfile(head + "token_exchange {\n" + ok + "}\ntool gh_* {\n exchange {\n audience https://gh.example.com\n }\n}\n}")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	if h.Rules[0].Exchange == nil || h.Rules[0].Exchange.Audience[0] != "https://gh.example.com" {
		t.Fatalf("rule %+v", h.Rules[0])
	}
}

// TestTokenExchangeLogsNoToken: with every log at debug level (a zap observer), exchanges that
// succeed, are refused, fail, or get a malformed answer (one that echoes the subject token
// back) write neither the incoming nor the exchanged token anywhere.
func TestTokenExchangeLogsNoToken(t *testing.T) {
	k := jwttest.New(t, "rs", "RS256")
	var mu sync.Mutex
	behaviour := map[string]string{}
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		subject := r.PostForm.Get("subject_token")
		mu.Lock()
		b := behaviour[subject]
		mu.Unlock()
		status, body, _ := strings.Cut(b, " ")
		code, _ := strconv.Atoi(status)
		body = strings.ReplaceAll(body, "SUBJECT", subject)
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(as.Close)
	js := newJWKSServer(t, k)
	h := &Handler{
		Resource: cacheRes, AuthorizationServers: []string{cacheIss}, JWKSURLs: []string{js.URL},
		Scopes: []string{"mcp:read"},
		TokenExchange: &TokenExchange{Endpoint: as.URL, ClientID: "gw", ClientSecret: "s",
			ExchangeTarget: ExchangeTarget{Audience: []string{"https://api.example.com"}}},
	}
	provisionHandler(t, h)
	waitKeysLoaded(t, h)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.TokenExchange.client.Logger = h.logger.Named("token_exchange")

	at := `"issued_token_type":"urn:ietf:params:oauth:token-type:access_token"`
	cases := []struct{ answer, wantReason string }{
		{`200 {"access_token":"NEW-TOKEN-abc",` + at + `,"token_type":"Bearer"}`, ""},
		{`400 {"error":"invalid_grant","error_description":"bad SUBJECT"}`, "exchange_refused"},
		{`401 {"error":"invalid_client"}`, "exchange_unavailable"},
		{`500 SUBJECT`, "exchange_unavailable"},
		{`200 {"access_token":"SUBJECT",` + at + `,"token_type":"DPoP"}`, "exchange_unavailable"},
		{`200 {"access_token":"NEW-TOKEN-def","access_token":"SUBJECT",` + at + `,"token_type":"Bearer"}`, "exchange_unavailable"},
		{`200 {"access_token":"NEW-TOKEN\nSUBJECT",` + at + `,"token_type":"Bearer"}`, "exchange_unavailable"},
	}
	var tokens []string
	for i, tc := range cases {
		c := testClaims(cacheIss, cacheRes, "mcp:read")
		c["jti"] = "in-" + strconv.Itoa(i)
		tok := k.Token(t, c, nil)
		tokens = append(tokens, tok)
		mu.Lock()
		behaviour[tok] = tc.answer
		mu.Unlock()
		r := withReplacer(newBenchRequest(tok))
		w := httptest.NewRecorder()
		ran := false
		err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { ran = true; return nil }))
		if err != nil {
			t.Fatal(err)
		}
		if tc.wantReason == "" {
			if !ran || r.Header.Get("Authorization") != "Bearer NEW-TOKEN-abc" {
				t.Fatalf("case %d: ran %v, upstream Authorization %q", i, ran, r.Header.Get("Authorization"))
			}
			continue
		}
		if ran || w.Code != denials[map[string]denial{"exchange_refused": denyExchangeRefused, "exchange_unavailable": denyExchangeUnavailable}[tc.wantReason]].status {
			t.Fatalf("case %d: ran %v, status %d, want %s", i, ran, w.Code, tc.wantReason)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("nothing was logged: the test would prove nothing")
	}
	for _, e := range logs.All() {
		line := e.Message
		for _, f := range e.Context {
			line += " " + f.Key + "=" + f.String
			if f.Interface != nil {
				line += fmt.Sprint(f.Interface)
			}
		}
		for _, tok := range tokens {
			if strings.Contains(line, tok) || strings.Contains(line, tok[strings.LastIndexByte(tok, '.')+1:]) {
				t.Fatalf("a log entry holds an incoming token: %q", e.Message)
			}
		}
		if strings.Contains(line, "NEW-TOKEN") {
			t.Fatalf("a log entry holds an exchanged token: %q", e.Message)
		}
	}
}
