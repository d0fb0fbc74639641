package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/internal/clientauth"
)

// fakeAS is a token endpoint served in memory (no network, so that it runs in a synctest
// bubble). answer decides the reply from the form.
type fakeAS struct {
	calls    atomic.Int64
	inFlight atomic.Int64
	peak     atomic.Int64
	release  chan struct{} // when set, each call waits for it
	mu       sync.Mutex
	forms    []url.Values
	answer   func(form url.Values) (int, string)
}

func (as *fakeAS) RoundTrip(r *http.Request) (*http.Response, error) {
	as.calls.Add(1)
	n := as.inFlight.Add(1)
	defer as.inFlight.Add(-1)
	for p := as.peak.Load(); n > p && !as.peak.CompareAndSwap(p, n); p = as.peak.Load() {
	}
	if as.release != nil {
		<-as.release
	}
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	if id, secret, ok := r.BasicAuth(); !ok || id != "rs" || secret != "s3cret" {
		return reply(401, `{"error":"invalid_client"}`), nil
	}
	as.mu.Lock()
	as.forms = append(as.forms, form)
	as.mu.Unlock()
	status, body := as.answer(form)
	return reply(status, body), nil
}

func reply(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body))}
}

func ok(token string, expiresIn int) string {
	b, _ := json.Marshal(map[string]any{"access_token": token, "issued_token_type": AccessTokenType,
		"token_type": "Bearer", "expires_in": expiresIn})
	return string(b)
}

func newClient(as *fakeAS) *Client {
	return &Client{
		Endpoint:    "https://as.example/token",
		Credentials: clientauth.Credentials{ClientID: "rs", ClientSecret: "s3cret"},
		Targets: []Target{
			{Audiences: []string{"https://api.example", "urn:two"}, Scopes: []string{"read", "write"}},
			{Resource: "https://other.example/"},
		},
		Bearer:   true,
		CacheTTL: 5 * time.Minute, Leeway: 30 * time.Second, Timeout: 5 * time.Second,
		MaxInFlight: 4, CacheSize: 100,
		HTTP: &http.Client{Transport: as},
	}
}

func TestRequestParameters(t *testing.T) {
	as := &fakeAS{answer: func(url.Values) (int, string) { return 200, ok("new-token", 600) }}
	c := newClient(as)
	tok, err := exchangeOf(c, context.Background(), "incoming.token", time.Now().Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Value(); got != "Bearer new-token" {
		t.Fatalf("header %q", got)
	}
	if _, err := exchangeOf(c, context.Background(), "incoming.token", time.Now().Add(time.Hour), 1); err != nil {
		t.Fatal(err)
	}
	f0, f1 := as.forms[0], as.forms[1]
	for k, want := range map[string]string{"grant_type": GrantType, "subject_token": "incoming.token",
		"subject_token_type": AccessTokenType, "requested_token_type": AccessTokenType, "scope": "read write"} {
		if f0.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, f0.Get(k), want)
		}
	}
	if a := f0["audience"]; len(a) != 2 || a[0] != "https://api.example" || a[1] != "urn:two" || f0.Has("resource") {
		t.Errorf("target 0: audience %q resource %q", a, f0["resource"])
	}
	if f1.Get("resource") != "https://other.example/" || f1.Has("audience") || f1.Has("scope") {
		t.Errorf("target 1: %v", f1)
	}
}

// TestCacheLifetime: one call for many requests; a new one once the new token's exp (less
// the leeway) passes, or cache_ttl; never past the incoming token's exp.
func TestCacheLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeAS{answer: func(url.Values) (int, string) { return 200, ok("new", 120) }}
		c := newClient(as)
		c.Now = time.Now // the bubble's clock
		ctx := context.Background()
		far := time.Now().Add(time.Hour)
		for range 10 {
			if _, err := exchangeOf(c, ctx, "a", far, 0); err != nil {
				t.Fatal(err)
			}
		}
		if n := as.calls.Load(); n != 1 {
			t.Fatalf("10 exchanges of one token: %d calls, want 1", n)
		}
		time.Sleep(89 * time.Second) // 120s - 30s leeway not reached
		exchangeOf(c, ctx, "a", far, 0)
		if n := as.calls.Load(); n != 1 {
			t.Fatalf("before exp-leeway: %d calls", n)
		}
		time.Sleep(2 * time.Second)
		exchangeOf(c, ctx, "a", far, 0)
		if n := as.calls.Load(); n != 2 {
			t.Fatalf("after exp-leeway: %d calls, want 2", n)
		}

		// The incoming token's exp, without leeway.
		soon := time.Now().Add(10 * time.Second)
		exchangeOf(c, ctx, "b", soon, 0)
		time.Sleep(9 * time.Second)
		exchangeOf(c, ctx, "b", soon, 0)
		if n := as.calls.Load(); n != 3 {
			t.Fatalf("before the incoming exp: %d calls, want 3", n)
		}
		time.Sleep(time.Second)
		tok, _ := exchangeOf(c, ctx, "b", soon, 0)
		if n := as.calls.Load(); n != 4 {
			t.Fatalf("at the incoming exp: %d calls, want 4", n)
		}
		if !tok.Until().Equal(soon) {
			t.Fatalf("served until %v, want the incoming exp %v", tok.Until(), soon)
		}

		// cache_ttl, and a JWT's own exp.
		c2 := newClient(&fakeAS{answer: func(url.Values) (int, string) {
			return 200, `{"access_token":"` + jwtWith(t, time.Now().Add(200*time.Second)) +
				`","issued_token_type":"` + AccessTokenType + `","token_type":"N_A"}`
		}})
		c2.Now, c2.CacheTTL = time.Now, time.Hour
		tok, err := exchangeOf(c2, ctx, "c", far, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := time.Now().Add(170 * time.Second); !tok.Until().Equal(want) {
			t.Fatalf("JWT exp: served until %v, want %v", tok.Until(), want)
		}
		if tok.JTI != "jti-1" {
			t.Fatalf("jti %q", tok.JTI)
		}
		c.CacheTTL = time.Minute
		c3 := newClient(&fakeAS{answer: func(url.Values) (int, string) { return 200, ok("x", 3600) }})
		c3.Now, c3.CacheTTL = time.Now, time.Minute
		tok, _ = exchangeOf(c3, ctx, "d", far, 0)
		if want := time.Now().Add(time.Minute); !tok.Until().Equal(want) {
			t.Fatalf("cache_ttl: served until %v, want %v", tok.Until(), want)
		}
	})
}

func jwtWith(t *testing.T, exp time.Time) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	p, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "jti": "jti-1", "aud": "https://api.example"})
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(p) + ".c2ln"
}

// TestBounded: concurrent requests for one key make one call; distinct keys never more than
// max_in_flight at once, and waiters give up after timeout.
func TestBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeAS{release: make(chan struct{}), answer: func(url.Values) (int, string) { return 200, ok("n", 600) }}
		c := newClient(as)
		c.Now = time.Now
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Go(func() {
				_, err := exchangeOf(c, ctx, "tok-"+string(rune('a'+i%10)), time.Now().Add(time.Hour), 0)
				errs <- err
			})
		}
		synctest.Wait()
		if p := as.peak.Load(); p != 4 {
			t.Fatalf("peak %d calls at once, want max_in_flight 4", p)
		}
		// The six other keys wait for a slot; after the timeout they give up.
		time.Sleep(6 * time.Second)
		synctest.Wait()
		close(as.release)
		wg.Wait()
		close(errs)
		var okN, busy int
		for err := range errs {
			switch {
			case err == nil:
				okN++
			case KindOf(err) == Unavailable:
				busy++
			default:
				t.Errorf("unexpected %v", err)
			}
		}
		if okN != 40 || busy != 60 || as.calls.Load() != 4 {
			t.Fatalf("ok %d busy %d calls %d, want 40, 60 (one flight per key), 4", okN, busy, as.calls.Load())
		}
	})
}

func TestErrors(t *testing.T) {
	at := AccessTokenType
	cases := []struct {
		name   string
		status int
		body   string
		kind   Kind
		code   string
	}{
		{"invalid_grant", 400, `{"error":"invalid_grant"}`, Refused, "invalid_grant"},
		{"invalid_target", 400, `{"error":"invalid_target"}`, Refused, "invalid_target"},
		{"invalid_scope", 400, `{"error":"invalid_scope"}`, Refused, "invalid_scope"},
		{"unauthorized_client", 400, `{"error":"unauthorized_client"}`, Refused, "unauthorized_client"},
		{"invalid_request", 400, `{"error":"invalid_request"}`, Refused, "invalid_request"},
		{"invalid_client", 401, `{"error":"invalid_client"}`, ClientRefused, "invalid_client"},
		{"unsupported_grant_type", 400, `{"error":"unsupported_grant_type"}`, ClientRefused, "unsupported_grant_type"},
		{"4xx without body", 403, ``, ClientRefused, ""},
		{"5xx", 502, `oops`, Unavailable, ""},
		{"redirect", 302, ``, BadAnswer, ""},
		{"no access_token", 200, `{"issued_token_type":"` + at + `","token_type":"Bearer"}`, BadAnswer, ""},
		{"empty access_token", 200, `{"access_token":"","issued_token_type":"` + at + `","token_type":"Bearer"}`, BadAnswer, ""},
		{"access_token not a string", 200, `{"access_token":12,"issued_token_type":"` + at + `","token_type":"Bearer"}`, BadAnswer, ""},
		{"access_token with CRLF", 200, `{"access_token":"a\r\nX-Evil: 1","issued_token_type":"` + at + `","token_type":"Bearer"}`, BadAnswer, ""},
		{"no issued_token_type", 200, `{"access_token":"t","token_type":"Bearer"}`, BadAnswer, ""},
		{"refresh token issued", 200, `{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token","token_type":"Bearer"}`, BadAnswer, ""},
		{"id_token issued", 200, `{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:id_token","token_type":"N_A"}`, BadAnswer, ""},
		{"DPoP token_type", 200, `{"access_token":"t","issued_token_type":"` + at + `","token_type":"DPoP"}`, BadAnswer, ""},
		{"no token_type", 200, `{"access_token":"t","issued_token_type":"` + at + `"}`, BadAnswer, ""},
		{"duplicate access_token", 200, `{"access_token":"t","access_token":"u","issued_token_type":"` + at + `","token_type":"Bearer"}`, BadAnswer, ""},
		{"duplicate by escape", 200, `{"access_token":"t","access\u005ftoken":"u","issued_token_type":"` + at + `","token_type":"Bearer"}`, BadAnswer, ""},
		{"expires_in string", 200, `{"access_token":"t","issued_token_type":"` + at + `","token_type":"Bearer","expires_in":"60"}`, BadAnswer, ""},
		{"expires_in negative", 200, `{"access_token":"t","issued_token_type":"` + at + `","token_type":"Bearer","expires_in":-1}`, BadAnswer, ""},
		{"expires_in fraction", 200, `{"access_token":"t","issued_token_type":"` + at + `","token_type":"Bearer","expires_in":1.5}`, BadAnswer, ""},
		{"array", 200, `[]`, BadAnswer, ""},
		{"not JSON", 200, `access_token=t`, BadAnswer, ""},
		{"invalid UTF-8", 200, "{\"access_token\":\"t\",\"issued_token_type\":\"" + at + "\",\"token_type\":\"Bearer\",\"x\":\"\xff\"}", BadAnswer, ""},
		{"oversized", 200, `{"access_token":"t","issued_token_type":"` + at + `","token_type":"Bearer","pad":"` + strings.Repeat("a", MaxAnswerBytes) + `"}`, BadAnswer, ""},
		{"trailing data", 200, `{"access_token":"t","issued_token_type":"` + at + `","token_type":"Bearer"} {}`, BadAnswer, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			as := &fakeAS{answer: func(url.Values) (int, string) { return tc.status, tc.body }}
			c := newClient(as)
			tok, err := exchangeOf(c, context.Background(), "subject-token", time.Now().Add(time.Hour), 0)
			if err == nil {
				t.Fatalf("got a token %q, want %v", tok.Value(), tc.kind)
			}
			var e *Error
			if !asError(err, &e) || e.Kind != tc.kind || e.Code != tc.code {
				t.Fatalf("err %v, want kind %d code %q", err, tc.kind, tc.code)
			}
			if strings.Contains(err.Error(), "subject-token") {
				t.Fatalf("the error names the token: %v", err)
			}
		})
	}
	// Accepted spellings: token_type in any case, N_A, no expires_in.
	for _, body := range []string{
		`{"access_token":"t","issued_token_type":"` + at + `","token_type":"bearer"}`,
		`{"access_token":"t==","issued_token_type":"` + at + `","token_type":"n_a","expires_in":60,"scope":"a b","refresh_token":"r"}`,
	} {
		c := newClient(&fakeAS{answer: func(url.Values) (int, string) { return 200, body }})
		if _, err := exchangeOf(c, context.Background(), "s", time.Now().Add(time.Hour), 0); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
	// Our client refused: the fake AS wants other credentials.
	c := newClient(&fakeAS{answer: func(url.Values) (int, string) { return 200, ok("x", 60) }})
	c.Credentials.ClientSecret = "wrong"
	if _, err := exchangeOf(c, context.Background(), "s", time.Now().Add(time.Hour), 0); KindOf(err) != ClientRefused {
		t.Fatalf("wrong secret: %v", err)
	}
}

func asError(err error, e **Error) bool {
	x, ok := err.(*Error)
	*e = x
	return ok
}

// exchangeOf is Exchange with the digest the handler computes once per request.
func exchangeOf(c *Client, ctx context.Context, subject string, subjectExp time.Time, target int) (*Token, error) {
	sum := sha256.Sum256([]byte(subject))
	return c.Exchange(ctx, subject, &sum, subjectExp, target)
}

// TestWaitersCapped: with every slot busy, four calls per slot wait for one; any further
// call is shed at once (Unavailable), without waiting for the timeout.
func TestWaitersCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeAS{release: make(chan struct{}), answer: func(url.Values) (int, string) { return 200, ok("n", 600) }}
		c := newClient(as)
		c.Now, c.MaxInFlight = time.Now, 1
		const total, admitted = 10, 1 + waitersPerSlot
		errs := make(chan error, total)
		var wg sync.WaitGroup
		for i := range total {
			wg.Go(func() {
				_, err := exchangeOf(c, context.Background(), "tok-"+string(rune('a'+i)), time.Now().Add(time.Hour), 0)
				errs <- err
			})
		}
		// Every goroutine is blocked now: in the call, waiting for its slot, or done.
		synctest.Wait()
		if len(errs) != total-admitted {
			t.Fatalf("%d calls answered while the slot is busy, want the %d beyond the waiters", len(errs), total-admitted)
		}
		for range total - admitted {
			if err := <-errs; KindOf(err) != Unavailable || !errors.Is(err, errShed) {
				t.Fatalf("shed call: %v, want Unavailable (shed)", err)
			}
		}
		close(as.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a waiter: %v", err)
			}
		}
		if n := as.calls.Load(); n != admitted {
			t.Fatalf("%d calls, want %d", n, admitted)
		}
	})
}

// TestRefusalRemembered: a refusal is remembered per incoming token and target for
// NegativeTTL, never past the incoming token's exp; other failures are not remembered.
func TestRefusalRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeAS{answer: func(f url.Values) (int, string) {
			switch f.Get("subject_token") {
			case "down":
				return 502, `oops`
			case "ok":
				return 200, ok("n", 600)
			}
			return 400, `{"error":"invalid_grant"}`
		}}
		c := newClient(as)
		c.Now = time.Now
		ctx := context.Background()
		far := time.Now().Add(time.Hour)
		expect := func(what, subject string, exp time.Time, target int, kind Kind, calls int64) {
			t.Helper()
			_, err := exchangeOf(c, ctx, subject, exp, target)
			if kind == 0 && err != nil || kind != 0 && KindOf(err) != kind {
				t.Fatalf("%s: %v, want kind %d", what, err, kind)
			}
			if kind == Refused {
				var e *Error
				if !errors.As(err, &e) || e.Code != "invalid_grant" {
					t.Fatalf("%s: %v, want the server's code", what, err)
				}
			}
			if n := as.calls.Load(); n != calls {
				t.Fatalf("%s: %d calls, want %d", what, n, calls)
			}
		}
		expect("refused", "r", far, 0, Refused, 1)
		expect("refused again", "r", far, 0, Refused, 1)
		expect("another target", "r", far, 1, Refused, 2)
		expect("another token", "r2", far, 0, Refused, 3)
		time.Sleep(DefaultNegativeTTL - time.Second)
		expect("within the negative TTL", "r", far, 0, Refused, 3)
		time.Sleep(time.Second)
		expect("after the negative TTL", "r", far, 0, Refused, 4)

		soon := time.Now().Add(5 * time.Second)
		expect("incoming token near exp", "s", soon, 0, Refused, 5)
		expect("again", "s", soon, 0, Refused, 5)
		time.Sleep(5 * time.Second)
		expect("past the incoming exp", "s", soon, 0, Refused, 6)

		expect("unavailable", "down", far, 0, Unavailable, 7)
		expect("unavailable again: asked again", "down", far, 0, Unavailable, 8)
		expect("a granted token", "ok", far, 0, 0, 9)
	})
}
