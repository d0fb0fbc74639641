package verify

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
)

const (
	testClientID     = "rs client:1"  // characters that RFC 6749 §2.3.1 form-encoding changes
	testClientSecret = "s3cr%t+/:=&x" // never to be seen in a log
)

// fakeAS is an introspection endpoint: it checks the client authentication, counts calls
// and the most that ran at once, and answers per token.
type fakeAS struct {
	t        *testing.T
	srv      *httptest.Server
	method   string // expected client authentication
	pub      any    // private_key_jwt: the client's public key
	calls    atomic.Int64
	inFlight atomic.Int64
	peak     atomic.Int64
	authBad  atomic.Int64
	hold     chan struct{} // when set, each call waits for it (closed = go)
	holdFor  time.Duration // when set, each call lasts this long

	mu      sync.Mutex
	answers map[string]string // token -> JSON answer; default {"active":false}
	status  int
}

func newFakeAS(t *testing.T, method string) *fakeAS {
	t.Helper()
	as := &fakeAS{t: t, method: method, answers: map[string]string{}, status: http.StatusOK}
	as.srv = httptest.NewServer(http.HandlerFunc(as.serve))
	t.Cleanup(as.srv.Close)
	return as
}

func (as *fakeAS) answer(token, body string) {
	as.mu.Lock()
	as.answers[token] = body
	as.mu.Unlock()
}

func (as *fakeAS) serve(w http.ResponseWriter, r *http.Request) {
	n := as.inFlight.Add(1)
	defer as.inFlight.Add(-1)
	for {
		p := as.peak.Load()
		if n <= p || as.peak.CompareAndSwap(p, n) {
			break
		}
	}
	as.calls.Add(1)
	if r.URL.Path == "/followed" {
		// Reached only by following a redirect, which the verifier must not do.
		_, _ = w.Write([]byte(active("")))
		return
	}
	if as.hold != nil {
		<-as.hold
	}
	if as.holdFor > 0 {
		time.Sleep(as.holdFor)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token_type_hint") != "access_token" {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	if err := as.checkAuth(r); err != nil {
		as.authBad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"invalid_client","error_description":%q}`, err.Error())
		return
	}
	as.mu.Lock()
	body, ok := as.answers[r.PostForm.Get("token")]
	status := as.status
	as.mu.Unlock()
	if !ok {
		body = `{"active":false}`
	}
	w.Header().Set("Content-Type", "application/json")
	if status >= 300 && status < 400 {
		w.Header().Set("Location", "/followed")
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (as *fakeAS) checkAuth(r *http.Request) error {
	f := r.PostForm
	switch as.method {
	case AuthClientSecretBasic:
		h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Basic ")
		if !ok {
			return errors.New("no basic auth")
		}
		raw, err := base64.StdEncoding.DecodeString(h)
		if err != nil {
			return err
		}
		id, secret, _ := strings.Cut(string(raw), ":")
		id, err1 := url.QueryUnescape(id)
		secret, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil || id != testClientID || secret != testClientSecret {
			return errors.New("wrong basic credentials")
		}
		if f.Has("client_secret") {
			return errors.New("two methods")
		}
	case AuthClientSecretPost:
		if f.Get("client_id") != testClientID || f.Get("client_secret") != testClientSecret || r.Header.Get("Authorization") != "" {
			return errors.New("wrong post credentials")
		}
	case AuthPrivateKeyJWT:
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_id") != testClientID {
			return errors.New("no assertion")
		}
		tok, err := jwt.Parse(f.Get("client_assertion"), func(*jwt.Token) (any, error) { return as.pub, nil },
			jwt.WithAudience(testIss), jwt.WithIssuer(testClientID), jwt.WithSubject(testClientID),
			jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return testNow }))
		if err != nil {
			return err
		}
		c := tok.Claims.(jwt.MapClaims)
		exp, _ := c.GetExpirationTime()
		if jti, _ := c["jti"].(string); len(jti) < 16 || exp.Sub(testNow) > 5*time.Minute {
			return errors.New("assertion without jti or with a long exp")
		}
		if f.Has("client_secret") || r.Header.Get("Authorization") != "" {
			return errors.New("two methods")
		}
	}
	return nil
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mustStart starts v as the handler's introspection group does, with a client bounded by
// its timeout.
func mustStart(t testing.TB, v *Introspection) {
	t.Helper()
	if v.Client == nil {
		v.Client = NewIntrospectionClient(v.Timeout)
	}
	if v.Logger == nil {
		v.Logger = zap.NewNop()
	}
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
}

func newIntrospection(as *fakeAS, clk *clock, logger *zap.Logger) *Introspection {
	return &Introspection{
		Endpoint:          as.srv.URL,
		ClientID:          testClientID,
		ClientSecret:      testClientSecret,
		AuthMethod:        as.method,
		AssertionAudience: testIss,
		Issuers:           []string{testIss},
		Audiences:         []string{testRes},
		Leeway:            30 * time.Second,
		CacheTTL:          5 * time.Minute,
		NegativeTTL:       30 * time.Second,
		Timeout:           5 * time.Second,
		MaxInFlight:       16,
		NegativeCacheSize: 1000,
		Logger:            logger,
		Now:               clk.now,
	}
}

func active(over string) string {
	base := fmt.Sprintf(`"active":true,"iss":%q,"aud":%q,"sub":"alice","client_id":"app","scope":"mcp:read mcp:write","exp":%d,"iat":%d,"jti":"j1","token_type":"Bearer","tenant":"acme"`,
		testIss, testRes, testNow.Add(time.Hour).Unix(), testNow.Unix())
	if over != "" {
		base += "," + over
	}
	return "{" + base + "}"
}

// activeWithout is an active answer without the named member.
func activeWithout(member string) string {
	m := map[string]string{
		"iss": `"iss":"` + testIss + `",`, "aud": `"aud":"` + testRes + `",`, "token_type": `"token_type":"Bearer",`,
	}
	s := `{"active":true,` + m["iss"] + m["aud"] + m["token_type"] + `"exp":` + itoa(testNow.Add(time.Hour).Unix()) + `}`
	return strings.Replace(s, m[member], "", 1)
}

func TestIntrospectionAnswers(t *testing.T) {
	future := testNow.Add(time.Hour).Unix()
	cases := []struct {
		name   string
		answer string
		status int
		setup  func(v *Introspection)
		want   Reason // NumReasons: accepted
	}{
		{"active", active(""), 200, nil, NumReasons},
		{"inactive", `{"active":false}`, 200, nil, Inactive},
		{"inactive with claims", `{"active":false,"sub":"alice","aud":"` + testRes + `"}`, 200, nil, Inactive},
		{"active as a string", `{"active":"true","aud":"` + testRes + `"}`, 200, nil, BadAnswer},
		{"active as a number", `{"active":1}`, 200, nil, BadAnswer},
		{"active missing", `{"sub":"alice","aud":"` + testRes + `"}`, 200, nil, BadAnswer},
		{"active twice", `{"active":false,"active":true,"aud":"` + testRes + `"}`, 200, nil, BadAnswer},
		{"exp as a string", `{"active":true,"aud":"` + testRes + `","exp":"` + itoa(future) + `"}`, 200, nil, BadAnswer},
		{"exp beyond year 9999", `{"active":true,"aud":"` + testRes + `","exp":1e300}`, 200, nil, BadAnswer},
		{"nbf as a string", `{"active":true,"aud":"` + testRes + `","nbf":"1"}`, 200, nil, BadAnswer},
		{"not JSON", `active=true`, 200, nil, BadAnswer},
		{"JSON array", `[{"active":true}]`, 200, nil, BadAnswer},
		{"JSON string", `"active"`, 200, nil, BadAnswer},
		{"truncated", `{"active":true,"aud":"` + testRes, 200, nil, BadAnswer},
		{"over 64 KiB", active(`"pad":"` + strings.Repeat("x", 64<<10) + `"`), 200, nil, BadAnswer},
		{"aud as a number", `{"active":true,"aud":7}`, 200, nil, BadAnswer},
		{"exp twice", active(`"exp":` + itoa(testNow.Add(-time.Minute).Unix())), 200, nil, BadAnswer},
		{"exp passed", `{"active":true,"aud":"` + testRes + `","exp":` + itoa(testNow.Add(-time.Minute).Unix()) + `}`, 200, nil, Expired},
		{"exp passed within leeway", `{"active":true,"aud":"` + testRes + `","exp":` + itoa(testNow.Add(-10*time.Second).Unix()) + `}`, 200, nil, NumReasons},
		{"nbf future", `{"active":true,"aud":"` + testRes + `","nbf":` + itoa(testNow.Add(time.Hour).Unix()) + `}`, 200, nil, NotYetValid},
		{"iat future", `{"active":true,"aud":"` + testRes + `","iat":` + itoa(testNow.Add(time.Hour).Unix()) + `}`, 200, nil, IssuedInFuture},
		{"other issuer", `{"active":true,"aud":"` + testRes + `","iss":"https://evil.example"}`, 200, nil, Issuer},
		{"no iss", activeWithout("iss"), 200, nil, NumReasons},
		{"other audience", `{"active":true,"aud":"https://other.example/mcp"}`, 200, nil, Audience},
		{"aud array", `{"active":true,"aud":["x","` + testRes + `"]}`, 200, nil, NumReasons},
		{"resource", `{"active":true,"resource":"` + testRes + `"}`, 200, nil, NumReasons},
		{"resource array, other aud", `{"active":true,"aud":"x","resource":["` + testRes + `"]}`, 200, nil, NumReasons},
		{"empty aud array", `{"active":true,"aud":[]}`, 200, nil, Audience},
		{"no aud", activeWithout("aud"), 200, nil, Audience},
		{"no aud, allow_any_audience", activeWithout("aud"), 200, func(v *Introspection) { v.AnyAudience = true }, NumReasons},
		{"other aud, allow_any_audience", `{"active":true,"aud":"x"}`, 200, func(v *Introspection) { v.AnyAudience = true }, NumReasons},
		{"no aud, client allowed by the hook", `{"active":true,"client_id":"app"}`, 200,
			func(v *Introspection) { v.AllowMissingAudience = func(c string) bool { return c == "app" } }, NumReasons},
		{"no aud, client not allowed by the hook", `{"active":true,"client_id":"other"}`, 200,
			func(v *Introspection) { v.AllowMissingAudience = func(c string) bool { return c == "app" } }, Audience},
		// An answer's empty aud (Ory Hydra's for a token issued without its audience
		// parameter) names no audience: the hook decides, as for a missing one. (A JWT's
		// empty aud array is refused whatever the hook says: verify.JWT.)
		{"empty aud array, client allowed by the hook", `{"active":true,"aud":[],"client_id":"app"}`, 200,
			func(v *Introspection) { v.AllowMissingAudience = func(c string) bool { return c == "app" } }, NumReasons},
		{"empty aud array, client not allowed by the hook", `{"active":true,"aud":[],"client_id":"other"}`, 200,
			func(v *Introspection) { v.AllowMissingAudience = func(c string) bool { return c == "app" } }, Audience},
		{"refresh token", `{"active":true,"aud":"` + testRes + `","token_type":"refresh_token"}`, 200, nil, OtherKind},
		{"token_type bearer, lowercase", `{"active":true,"aud":"` + testRes + `","token_type":"bearer"}`, 200, nil, NumReasons},
		{"token_type DPoP", `{"active":true,"aud":"` + testRes + `","token_type":"DPoP","cnf":{"jkt":"abc"}}`, 200, nil, NumReasons},
		{"token_type not a string", `{"active":true,"aud":"` + testRes + `","token_type":1}`, 200, nil, BadAnswer},
		{"no token_type", activeWithout("token_type"), 200, nil, NumReasons},
		{"status 500", `{}`, 500, nil, ASUnavailable},
		{"status 503", ``, 503, nil, ASUnavailable},
		{"status 400", `{"error":"invalid_request"}`, 400, nil, ASUnavailable},
		{"redirect 302", ``, 302, nil, ASUnavailable},
		{"redirect 307", ``, 307, nil, ASUnavailable},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			as := newFakeAS(t, AuthClientSecretBasic)
			as.status = c.status
			token := fmt.Sprintf("opaque-%d", i)
			as.answer(token, c.answer)
			v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
			if c.setup != nil {
				c.setup(v)
			}
			mustStart(t, v)
			id, err := v.Verify(context.Background(), token, nil)
			if c.want == NumReasons {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id == nil || id.Expiry.IsZero() {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %s", c.want)
			}
			if got := ReasonOf(err); got != c.want {
				t.Fatalf("reason %s (%v), want %s", got, err, c.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q holds the token", err)
			}
		})
	}
}

func TestIntrospectionIdentity(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("tok", active(`"cnf":{"jkt":"thumb"}`))
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	mustStart(t, v)
	id, err := v.Verify(context.Background(), "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.Issuer != testIss || id.Subject != "alice" || id.ClientID != "app" || id.TokenID != "j1" ||
		strings.Join(id.Scopes, " ") != "mcp:read mcp:write" || !id.Expiry.Equal(testNow.Add(time.Hour)) {
		t.Errorf("identity %+v", id)
	}
	if !id.Confirmation.Present || id.Confirmation.JKT != "thumb" {
		t.Errorf("cnf %+v, want present with jkt", id.Confirmation)
	}
	if got, _ := id.Claim("tenant"); got != "acme" {
		t.Errorf("claim tenant = %v", got)
	}

	// scp, and a custom scope claim.
	as.answer("scp", `{"active":true,"aud":"`+testRes+`","scp":["a","b"],"exp":`+itoa(testNow.Add(time.Hour).Unix())+`}`)
	id, err = v.Verify(context.Background(), "scp", nil)
	if err != nil || strings.Join(id.Scopes, " ") != "a b" {
		t.Errorf("scp: %v %v", id, err)
	}
	v2 := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	v2.ScopeClaims = []string{"permissions"}
	as.answer("perm", `{"active":true,"aud":"`+testRes+`","scope":"x","permissions":["p:1"],"exp":`+itoa(testNow.Add(time.Hour).Unix())+`}`)
	mustStart(t, v2)
	id, err = v2.Verify(context.Background(), "perm", nil)
	if err != nil || strings.Join(id.Scopes, " ") != "p:1" {
		t.Errorf("permissions: %v %v", id, err)
	}
}

func TestIntrospectionClientAuth(t *testing.T) {
	k := jwttest.New(t, "", "ES256")
	for _, method := range []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT} {
		t.Run(method, func(t *testing.T) {
			as := newFakeAS(t, method)
			as.pub = k.Signer.Public()
			as.answer("tok", active(""))
			v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
			if method == AuthPrivateKeyJWT {
				v.ClientSecret = ""
				v.PrivateKey = k.Signer
			}
			mustStart(t, v)
			if _, err := v.Verify(context.Background(), "tok", nil); err != nil {
				t.Fatalf("refused: %v", err)
			}
			if as.authBad.Load() != 0 {
				t.Fatal("the authorization server refused the client authentication")
			}
			// The same credentials under another method are refused by the server: the
			// checks above do look at them.
			other := AuthClientSecretPost
			if method == AuthClientSecretPost {
				other = AuthClientSecretBasic
			}
			v2 := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
			v2.AuthMethod = other
			mustStart(t, v2)
			if _, err := v2.Verify(context.Background(), "tok", nil); ReasonOf(err) != ASUnavailable || as.authBad.Load() != 1 {
				t.Fatalf("wrong method: %v, server refusals %d", err, as.authBad.Load())
			}
		})
	}
}

// TestIntrospectionLogsNoSecret: whatever goes wrong, neither the client secret nor the
// token reaches a log line or an error.
func TestIntrospectionLogsNoSecret(t *testing.T) {
	const token = "opaque-token-value-1234567890"
	core, logs := observer.New(zap.DebugLevel)
	logger := zap.New(core)
	check := func(t *testing.T, err error) {
		t.Helper()
		for _, e := range logs.TakeAll() {
			line := e.Message + fmt.Sprint(e.ContextMap())
			for _, secret := range []string{testClientSecret, url.QueryEscape(testClientSecret), token} {
				if strings.Contains(line, secret) {
					t.Errorf("log line holds a secret or the token: %s", line)
				}
			}
		}
		if err != nil && (strings.Contains(err.Error(), testClientSecret) || strings.Contains(err.Error(), token)) {
			t.Errorf("error holds a secret or the token: %v", err)
		}
	}

	t.Run("credentials refused", func(t *testing.T) {
		as := newFakeAS(t, AuthClientSecretPost)
		v := newIntrospection(as, &clock{t: testNow}, logger)
		v.AuthMethod = AuthClientSecretBasic
		mustStart(t, v)
		_, err := v.Verify(context.Background(), token, nil)
		if ReasonOf(err) != ASUnavailable {
			t.Fatalf("reason %v", err)
		}
		for i := range 5 { // every new token meets the same refusal: logged once per 10s
			_, _ = v.Verify(context.Background(), fmt.Sprint(token, i), nil)
		}
		errs := logs.FilterLevelExact(zap.ErrorLevel).All()
		if len(errs) != 1 || !strings.Contains(errs[0].Message, "client_secret") {
			t.Fatalf("want one error log that says what to fix, got %v", errs)
		}
		check(t, err)
	})
	t.Run("bad answer", func(t *testing.T) {
		as := newFakeAS(t, AuthClientSecretBasic)
		as.answer(token, `{"active":"true","token":"`+token+`"}`)
		v := newIntrospection(as, &clock{t: testNow}, logger)
		mustStart(t, v)
		_, err := v.Verify(context.Background(), token, nil)
		if ReasonOf(err) != BadAnswer {
			t.Fatalf("reason %v", err)
		}
		if logs.Len() == 0 {
			t.Fatal("an unusable answer is not logged")
		}
		check(t, err)
	})
	t.Run("unreachable", func(t *testing.T) {
		as := newFakeAS(t, AuthClientSecretBasic)
		as.srv.Close()
		v := newIntrospection(as, &clock{t: testNow}, logger)
		mustStart(t, v)
		_, err := v.Verify(context.Background(), token, nil)
		if ReasonOf(err) != ASUnavailable {
			t.Fatalf("reason %v", err)
		}
		check(t, err)
	})
}

// TestIntrospectionOneCallPerToken: 100 concurrent requests with the same new token cause one
// call at the authorization server.
func TestIntrospectionOneCallPerToken(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.hold = make(chan struct{})
	as.answer("tok", active(""))
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	mustStart(t, v)
	var wg sync.WaitGroup
	var started sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			_, err := v.Verify(context.Background(), "tok", nil)
			errs <- err
		}()
	}
	started.Wait()
	// Let every goroutine reach the flight before the one call is answered.
	deadline := time.Now().Add(5 * time.Second)
	for as.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(as.hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := as.calls.Load(); n != 1 {
		t.Errorf("%d calls at the authorization server, want 1", n)
	}
}

// TestIntrospectionMaxInFlight: 10,000 distinct made-up tokens at once cause at most
// max_in_flight concurrent calls; requests that find no slot within timeout are refused as
// unavailable (503), not as bad tokens.
func TestIntrospectionMaxInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 goroutines")
	}
	as := newFakeAS(t, AuthClientSecretBasic)
	as.holdFor = 20 * time.Millisecond
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	v.MaxInFlight = 4
	v.Timeout = 300 * time.Millisecond
	mustStart(t, v)
	const n = 10000
	start := time.Now()
	var wg sync.WaitGroup
	var inactive, unavailable, other atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), fmt.Sprintf("made-up-%d", i), nil)
			switch ReasonOf(err) {
			case Inactive:
				inactive.Add(1)
			case ASUnavailable:
				unavailable.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	calls := as.calls.Load()
	t.Logf("%d calls at the authorization server (peak %d at once), %d inactive, %d unavailable",
		calls, as.peak.Load(), inactive.Load(), unavailable.Load())
	if p := as.peak.Load(); p > 4 || p < 1 {
		t.Errorf("peak of %d concurrent calls, want 1 to max_in_flight 4", p)
	}
	// A call the server counted may still time out at the client (a busy machine): it is
	// then unavailable too.
	if other.Load() != 0 || inactive.Load() > calls || inactive.Load()+unavailable.Load() != n {
		t.Errorf("outcomes: %d inactive, %d unavailable, %d other, for %d calls", inactive.Load(), unavailable.Load(), other.Load(), calls)
	}
	// Each slot serves at most one call per 20ms while the flood lasts.
	if limit := 4 * (int64(elapsed/(20*time.Millisecond)) + 1); calls > limit {
		t.Errorf("%d calls in %s, want at most %d", calls, elapsed, limit)
	}
	if unavailable.Load() == 0 {
		t.Error("no request was refused for want of a slot")
	}
}

// TestIntrospectionCacheBound: an active answer is served for min(exp, cache_ttl), never past
// exp; exp in the answer stays the Identity's Expiry.
func TestIntrospectionCacheBound(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("soon", `{"active":true,"aud":"`+testRes+`","exp":`+itoa(testNow.Add(10*time.Second).Unix())+`}`)
	as.answer("later", `{"active":true,"aud":"`+testRes+`","exp":`+itoa(testNow.Add(time.Hour).Unix())+`}`)
	as.answer("noexp", `{"active":true,"aud":"`+testRes+`"}`)
	v := newIntrospection(as, &clock{t: testNow}, zap.NewNop())
	v.CacheTTL = time.Minute
	mustStart(t, v)
	const leeway = 30 * time.Second
	for _, c := range []struct {
		token      string
		validUntil time.Duration // served before this, not at it
	}{{"soon", 10 * time.Second}, {"later", time.Minute}, {"noexp", time.Minute}} {
		id, err := v.Verify(context.Background(), c.token, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.token, err)
		}
		if !id.StillValid(testNow.Add(c.validUntil-time.Second), leeway) {
			t.Errorf("%s: not served %s before its bound", c.token, time.Second)
		}
		if id.StillValid(testNow.Add(c.validUntil), leeway) {
			t.Errorf("%s: served at %s, past min(exp, cache_ttl)", c.token, c.validUntil)
		}
	}
}

// TestIntrospectionNegativeCache: an inactive answer is remembered for negative_ttl, then
// asked again; a bad answer is not remembered.
func TestIntrospectionNegativeCache(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	clk := &clock{t: testNow}
	v := newIntrospection(as, clk, zap.NewNop())
	mustStart(t, v)
	for range 3 {
		if _, err := v.Verify(context.Background(), "revoked", nil); ReasonOf(err) != Inactive {
			t.Fatalf("reason %v", err)
		}
	}
	if n := as.calls.Load(); n != 1 {
		t.Fatalf("%d calls within negative_ttl, want 1", n)
	}
	clk.add(31 * time.Second)
	as.answer("revoked", active("")) // re-issued: the AS says active again
	if _, err := v.Verify(context.Background(), "revoked", nil); err != nil || as.calls.Load() != 2 {
		t.Fatalf("after negative_ttl: %v, calls %d", err, as.calls.Load())
	}
	as.answer("refresh", `{"active":true,"aud":"`+testRes+`","token_type":"refresh_token"}`)
	as.answer("bad", `{"active":"true"}`)
	for range 2 {
		_, err1 := v.Verify(context.Background(), "refresh", nil)
		_, err2 := v.Verify(context.Background(), "bad", nil)
		if ReasonOf(err1) != OtherKind || ReasonOf(err2) != BadAnswer {
			t.Fatalf("%v %v", err1, err2)
		}
	}
	if n := as.calls.Load(); n != 2+1+2 {
		t.Errorf("%d calls, want 5 (refresh token remembered, bad answer asked again)", n)
	}
}

func TestIntrospectionDiscovery(t *testing.T) {
	as := newFakeAS(t, AuthClientSecretBasic)
	as.answer("tok", active(""))
	clk := &clock{t: testNow}
	v := newIntrospection(as, clk, zap.NewNop())
	v.Endpoint = ""
	var discoveries atomic.Int64
	var fail atomic.Bool
	fail.Store(true)
	v.Discover = func(context.Context) (string, error) {
		discoveries.Add(1)
		if fail.Load() {
			return "", errors.New("metadata unreachable")
		}
		return as.srv.URL, nil
	}
	mustStart(t, v)
	for range 3 {
		if _, err := v.Verify(context.Background(), "tok", nil); ReasonOf(err) != ASUnavailable {
			t.Fatalf("reason %v", err)
		}
	}
	if n := discoveries.Load(); n != 1 {
		t.Fatalf("%d discoveries within 10s, want 1", n)
	}
	fail.Store(false)
	clk.add(11 * time.Second)
	for range 2 {
		if _, err := v.Verify(context.Background(), "tok", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := discoveries.Load(); n != 2 {
		t.Fatalf("%d discoveries, want 2", n)
	}
}

func TestChain(t *testing.T) {
	jv, k := newTestJWT(t)
	as := newFakeAS(t, AuthClientSecretBasic)
	good := k.Token(t, claims(nil), nil)
	revoked := k.Token(t, claims(map[string]any{"jti": "revoked"}), nil)
	as.answer(good, active(""))
	as.answer("opaque", active(""))
	iv := newIntrospection(as, &clock{t: testNow}, zap.NewNop())

	mustStart(t, iv)
	c := &Chain{JWT: jv, Introspection: iv}
	if _, err := c.Verify(context.Background(), good, nil); err != nil || as.calls.Load() != 0 {
		t.Fatalf("JWT: %v, %d calls (want local verification only)", err, as.calls.Load())
	}
	if _, err := c.Verify(context.Background(), "opaque", nil); err != nil || as.calls.Load() != 1 {
		t.Fatalf("opaque: %v, %d calls", err, as.calls.Load())
	}
	// A forged JWT is refused locally, not introspected.
	if _, err := c.Verify(context.Background(), good[:len(good)-4]+"AAAA", nil); err == nil || as.calls.Load() != 1 {
		t.Fatalf("forged JWT: %v, %d calls", err, as.calls.Load())
	}
	// A JWS-shaped string whose header is not JSON is opaque.
	if _, err := c.Verify(context.Background(), "eyJub3Qgw.eyJ9.c2ln", nil); ReasonOf(err) != Inactive {
		t.Fatalf("non-JSON header: %v", err)
	}

	c.JWTToo = true
	id, err := c.Verify(context.Background(), good, nil)
	if err != nil || id.Subject != "alice" {
		t.Fatalf("jwt_too, active: %v %v", id, err)
	}
	if !id.StillValid(testNow.Add(4*time.Minute), 0) || id.StillValid(testNow.Add(5*time.Minute), 0) {
		t.Error("jwt_too: the local identity is not bounded by cache_ttl")
	}
	if _, err := c.Verify(context.Background(), revoked, nil); ReasonOf(err) != Inactive {
		t.Fatalf("jwt_too, revoked: %v", err)
	}

	if _, err := (&Chain{JWT: jv}).Verify(context.Background(), "opaque", nil); ReasonOf(err) != Malformed {
		t.Fatalf("no introspection: %v", err)
	}
}

func TestIsJWS(t *testing.T) {
	k := jwttest.New(t, "k", "ES256")
	tok := k.Token(t, claims(nil), nil)
	for _, c := range []struct {
		tok  string
		want bool
	}{
		{tok, true},
		{"opaque", false},
		{"a.b", false},
		{"a.b.c.d", false},
		{"eyJ9.eyJ9.sig", false},              // header "}" is not an object
		{"e30.e30.c2ln", true},                // {} header
		{"e30.e30.", false},                   // empty signature
		{"e30.e30.c2ln=", false},              // padding is not base64url
		{"ory_at_abc.def", false},             // Hydra
		{base64URLOf(`[1]`) + ".x.y", false},  // not an object
		{base64URLOf(`{"a"`) + ".x.y", false}, // not JSON
	} {
		if got := IsJWS(c.tok); got != c.want {
			t.Errorf("IsJWS(%q) = %v, want %v", c.tok, got, c.want)
		}
		if IsJWS(c.tok) && !MaybeJWS(c.tok) {
			t.Errorf("MaybeJWS(%q) is false for a JWS", c.tok)
		}
	}
}

func base64URLOf(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
