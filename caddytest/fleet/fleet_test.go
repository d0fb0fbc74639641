// Package fleet runs several real Caddy processes (built from ./cmd/caddy) that share one
// real redis-server, as instances behind a load balancer do: DPoP proofs used at one are
// refused at the others, the store going down and coming back, a slow store, a dropped
// connection, reloads, and what the store holds.
//
// The processes bind free ports on 127.0.0.1; like every test that starts Caddy, run it in
// its own network namespace on a shared machine:
//
//	unshare -n bash -c 'ip link set lo up; go test ./caddytest/fleet/'
//
// Without redis-server the tests are skipped with one line saying how to run them, unless
// MCPAUTH_STORE=1 (as .ci/run sets).
package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	// The module, imported for go test's cache only: the instances run a Caddy built from
	// ./cmd/caddy by `go build`, which the cache does not see, so without this a change to
	// the module left this package's last result cached (a stale pass).
	_ "github.com/mcpauth/caddy-mcp-auth"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/store/storetest"
	"github.com/redis/go-redis/v9"
)

const (
	resource = "https://mcp.example.com/mcp"
	issuer   = "https://auth.example.com"
	// host is the Host every request carries, whichever instance it goes to (as behind a
	// load balancer).
	host = "mcp.test"
	// htu is what a client's proof names: the resource's origin and the path it addresses,
	// whatever Host says (RFC 9449 §4.3; the instances are addressed on their own ports).
	htu      = resource
	upstream = "upstream reached"
	// waitLimit bounds every wait for an event; reaching it is a failure, not a pace.
	waitLimit = 60 * time.Second
)

var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcpauth-fleet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Once
var buildErr error

// build builds Caddy with this module once for the package.
func build(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", caddyBin, "github.com/mcpauth/caddy-mcp-auth/cmd/caddy").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	// The kernel may hand out a port it has just handed out (the listener here is closed
	// again at once): an instance whose HTTP port is another's admin port would start
	// "ready" against the wrong server. No port is given twice in one test process.
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
	t.Fatal("no fresh loopback port after 100 tries")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// env is what the instances share: keys, a JWKS server, an introspection endpoint, a store.
type env struct {
	as      *jwttest.Key
	jwks    *httptest.Server
	intro   *httptest.Server
	introN  atomic.Int64
	redis   *storetest.Server
	storeTo string // the address the instances dial (the server, or a proxy before it)
	// exch is an RFC 8693 token endpoint: it refuses the subject tokens in refuse
	// (invalid_grant) and issues "exchanged-<n>" for any other; exchN counts its calls.
	exch    *httptest.Server
	exchN   atomic.Int64
	refuse  sync.Map
	issuedN atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{as: jwttest.New(t, "as-1", "RS256")}
	e.redis = storetest.Start(t) // skips without redis-server
	build(t)
	e.storeTo = e.redis.Addr
	body := jwttest.JWKS(e.as)
	e.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(e.jwks.Close)
	// The introspection endpoint: opaque tokens "opaque-<name>" are active for user-<name>.
	e.intro = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.introN.Add(1)
		tok := r.PostFormValue("token")
		w.Header().Set("Content-Type", "application/json")
		if !strings.HasPrefix(tok, "opaque-") {
			_, _ = io.WriteString(w, `{"active":false}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"active": true, "iss": issuer, "aud": resource, "scope": "mcp:read",
			"sub": "user-" + strings.TrimPrefix(tok, "opaque-"), "client_id": "client-1",
			"exp": time.Now().Add(time.Hour).Unix(),
		})
	}))
	t.Cleanup(e.intro.Close)
	e.exch = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.exchN.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if id, secret, _ := r.BasicAuth(); id != "gw" || secret != "gw-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		if _, refused := e.refuse.Load(r.PostFormValue("subject_token")); refused {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token":      fmt.Sprintf("exchanged-%d-for-api", e.issuedN.Add(1)),
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
			"token_type":        "Bearer", "expires_in": 3600,
		})
	}))
	t.Cleanup(e.exch.Close)
	return e
}

// token is a JWT for the resource; bound to jkt when it is not empty.
func (e *env) token(t *testing.T, jkt string) string {
	now := time.Now()
	c := jwt.MapClaims{"iss": issuer, "aud": resource, "sub": "user-1", "client_id": "client-1",
		"scope": "mcp:read", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if jkt != "" {
		c["cnf"] = map[string]any{"jkt": jkt}
	}
	return e.as.Token(t, c, nil)
}

// tokenFor is a bearer JWT for the resource with subject sub (tokens made in the same
// second for the same subject are the same token).
func (e *env) tokenFor(t *testing.T, sub string) string {
	now := time.Now()
	return e.as.Token(t, jwt.MapClaims{"iss": issuer, "aud": resource, "sub": sub, "client_id": "client-1",
		"scope": "mcp:read", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, nil)
}

// opts are the per-instance settings of the store group and the handler.
type opts struct {
	onError    string
	timeout    string
	introspect bool   // introspection on, answers sealed in the store
	exchange   bool   // token exchange on, exchanged tokens sealed in the store
	name       string // resource_name, changed to force a reload
	prefix     string
	encKey     string // with introspect: another encryption_key than encKey
}

const encKey = "0123456789abcdef0123456789abcdef-fleet"

func (e *env) config(adminPort, port int, o opts) []byte {
	storeCfg := map[string]any{"addresses": []string{e.storeTo}, "on_error": o.onError}
	// Tests that are not about the timeout get a generous one: on a busy two-core machine
	// under the race detector a healthy store's answer can take longer than the default
	// 100 ms, and a test must not depend on how fast it runs.
	timeout := "5s"
	if o.timeout != "" {
		timeout = o.timeout
	}
	d, _ := time.ParseDuration(timeout)
	storeCfg["timeout"] = d
	if o.prefix != "" {
		storeCfg["key_prefix"] = o.prefix
	}
	h := map[string]any{
		"handler": "mcp_auth", "resource": resource, "authorization_servers": []string{issuer},
		"jwks_urls": []string{e.jwks.URL}, "scopes": []string{"mcp:read"}, "dpop": map[string]any{},
		"store": map[string]any{"redis": storeCfg},
	}
	if o.name != "" {
		h["resource_name"] = o.name
	}
	if o.introspect {
		storeCfg["encryption_key"] = encKey
		if o.encKey != "" {
			storeCfg["encryption_key"] = o.encKey
		}
		h["introspection"] = map[string]any{"endpoint": e.intro.URL, "client_id": "rs", "client_secret": "rs-secret"}
	}
	body := upstream
	if o.exchange {
		storeCfg["encryption_key"] = encKey
		h["token_exchange"] = map[string]any{"endpoint": e.exch.URL, "client_id": "gw", "client_secret": "gw-secret",
			"audience": []string{"https://api.example.com"}}
		// The upstream answers with the Authorization header it received.
		body = upstream + " with {http.request.header.Authorization}"
	}
	cfg := map[string]any{
		"admin": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", adminPort)},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
			"level": "INFO", "encoder": map[string]any{"format": "json"}, "writer": map[string]any{"output": "stderr"},
		}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"s": map[string]any{
			"listen": []string{fmt.Sprintf("127.0.0.1:%d", port)},
			"routes": []any{
				map[string]any{"handle": []any{h}},
				map[string]any{"handle": []any{map[string]any{"handler": "static_response", "body": body}}},
			},
		}}}},
	}
	b, _ := json.Marshal(cfg)
	return b
}

// instance is one Caddy process; its log lines arrive on a channel as they are written.
type instance struct {
	t         *testing.T
	e         *env
	cmd       *exec.Cmd
	port      int
	adminPort int
	url       string

	mu    sync.Mutex
	lines []map[string]any
	cond  *sync.Cond
	done  bool
}

func (e *env) start(t *testing.T, o opts) *instance {
	t.Helper()
	in := &instance{t: t, e: e, port: freePort(t), adminPort: freePort(t)}
	in.cond = sync.NewCond(&in.mu)
	in.url = fmt.Sprintf("http://127.0.0.1:%d/mcp", in.port)
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, e.config(in.adminPort, in.port, o), 0o600); err != nil {
		t.Fatal(err)
	}
	in.cmd = exec.Command(caddyBin, "run", "--config", path)
	in.cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	stderr, err := in.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go in.read(stderr)
	t.Cleanup(func() {
		_ = in.cmd.Process.Kill()
		_ = in.cmd.Wait()
		if t.Failed() {
			in.mu.Lock()
			for _, l := range in.lines {
				b, _ := json.Marshal(l)
				t.Logf("caddy :%d: %s", in.port, b)
			}
			in.mu.Unlock()
		}
	})
	in.waitLog("serving initial configuration", 1)
	return in
}

func (in *instance) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			m = map[string]any{"msg": sc.Text()}
		}
		in.mu.Lock()
		in.lines = append(in.lines, m)
		in.cond.Broadcast()
		in.mu.Unlock()
	}
	in.mu.Lock()
	in.done = true
	in.cond.Broadcast()
	in.mu.Unlock()
}

// count is how many log lines so far contain msg.
func (in *instance) count(msg string) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	n := 0
	for _, l := range in.lines {
		if s, _ := l["msg"].(string); strings.Contains(s, msg) {
			n++
		}
	}
	return n
}

// waitLog waits until n log lines contain msg (an event the process reports), bounded by
// waitLimit as a safety net.
func (in *instance) waitLog(msg string, n int) {
	in.t.Helper()
	timer := time.AfterFunc(waitLimit, func() {
		in.mu.Lock()
		in.done = true
		in.cond.Broadcast()
		in.mu.Unlock()
	})
	defer timer.Stop()
	in.mu.Lock()
	for {
		c := 0
		for _, l := range in.lines {
			if s, _ := l["msg"].(string); strings.Contains(s, msg) {
				c++
			}
		}
		if c >= n {
			in.mu.Unlock()
			return
		}
		if in.done {
			in.mu.Unlock()
			in.t.Fatalf("caddy :%d: no log line %q (%d of %d seen)", in.port, msg, c, n)
		}
		in.cond.Wait()
	}
}

var client = &http.Client{Timeout: 30 * time.Second}

type answer struct {
	code int
	hdr  http.Header
	body string
}

// send posts to the instance with Host mcp.test; proof "" sends no DPoP header.
func (in *instance) send(auth, proof string) answer {
	in.t.Helper()
	a, err := in.do(auth, proof)
	if err != nil {
		in.t.Fatal(err)
	}
	return a
}

// do is send for any goroutine: it returns the error instead of failing the test.
func (in *instance) do(auth, proof string) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, in.url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		return answer{}, err
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, nil
}

// load replaces the config through the admin API, as `caddy reload` does.
func (in *instance) load(o opts) {
	in.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", in.adminPort),
		bytes.NewReader(in.e.config(in.adminPort, in.port, o)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		in.t.Fatalf("POST /load: %d %s", resp.StatusCode, b)
	}
	// The old server closes its idle connections as it stops; a POST on one of them would
	// fail (and is not retried). The listener is kept, so new connections reach the new one.
	client.CloseIdleConnections()
}

// dpopClient is a client with its DPoP key and a token bound to it.
type dpopClient struct {
	key   *jwttest.Key
	token string
}

func (e *env) dpopClient(t *testing.T) dpopClient {
	k := jwttest.New(t, "", "ES256")
	return dpopClient{key: k, token: e.token(t, k.Thumbprint())}
}

func (c dpopClient) proof(t *testing.T) string {
	return c.key.Proof(t, http.MethodPost, htu, c.token, time.Now().Unix())
}

func (c dpopClient) auth() string { return "DPoP " + c.token }

func admin(t *testing.T, addr string) *redis.Client {
	r := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	t.Cleanup(func() { r.Close() })
	return r
}

// setCalls is how many SET commands the server ran so far.
func setCalls(t *testing.T, r *redis.Client) int64 {
	t.Helper()
	info, err := r.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_set:calls="); ok {
			var n int64
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

func checkDenied(t *testing.T, what string, a answer, code int, errCode string) {
	t.Helper()
	if a.code != code {
		t.Errorf("%s: status %d, want %d (body %q)", what, a.code, code, a.body)
		return
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || body["error"] != errCode {
		t.Errorf("%s: body %q, want error %q", what, a.body, errCode)
	}
	// A 503 carries no challenge (nothing the client's credentials can fix), as every 503.
	if code != 503 && !strings.Contains(strings.Join(a.hdr.Values("WWW-Authenticate"), ", "), `error="`+errCode+`"`) {
		t.Errorf("%s: WWW-Authenticate %q does not carry error=%q", what, a.hdr.Values("WWW-Authenticate"), errCode)
	}
}

// A proof used at A is refused at B, and the other way round; a proof A already knows is
// refused by A's own cache without a store call.
func TestProofUsedAtOneInstanceIsRefusedAtAnother(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed"})
	b := e.start(t, opts{onError: "closed"})
	c := e.dpopClient(t)
	r := admin(t, e.redis.Addr)

	p1 := c.proof(t)
	if got := a.send(c.auth(), p1); got.code != 200 || got.body != upstream {
		t.Fatalf("p1 at A: %d %q", got.code, got.body)
	}
	checkDenied(t, "p1 replayed at B", b.send(c.auth(), p1), 401, "invalid_dpop_proof")
	p2 := c.proof(t)
	if got := b.send(c.auth(), p2); got.code != 200 {
		t.Fatalf("p2 at B: %d %q", got.code, got.body)
	}
	checkDenied(t, "p2 replayed at A", a.send(c.auth(), p2), 401, "invalid_dpop_proof")

	// A knows p1 itself: refused before the store is asked.
	before := setCalls(t, r)
	checkDenied(t, "p1 replayed at A", a.send(c.auth(), p1), 401, "invalid_dpop_proof")
	if after := setCalls(t, r); after != before {
		t.Errorf("a proof the instance had seen went to the store (%d SET calls, want %d)", after, before)
	}
	// A bearer request with an unbound token makes no store call either.
	if got := a.send("Bearer "+e.token(t, ""), ""); got.code != 200 {
		t.Fatalf("bearer: %d", got.code)
	}
	if after := setCalls(t, r); after != before {
		t.Errorf("a bearer request went to the store")
	}

	// The calls are counted: A claimed p1 and p2 (one fresh, one seen) in the store, and
	// made no other store call.
	m := a.metrics()
	for _, want := range []string{
		`caddy_mcp_auth_store_calls_total{op="claim",outcome="ok"} 2`,
		`caddy_mcp_auth_remote_call_duration_seconds_count{kind="store",outcome="ok"} 2`,
		`caddy_mcp_auth_stores{state="up"} 1`,
		`caddy_mcp_auth_stores{state="down"} 0`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// metrics is the admin endpoint's /metrics page.
func (in *instance) metrics() string {
	in.t.Helper()
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", in.adminPort))
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The store down: closed answers 503 with Retry-After to DPoP requests, bearer requests
// pass; open serves from its own cache and warns once; both recover without a reload.
func TestStoreDownAndBack(t *testing.T) {
	e := newEnv(t)
	closed := e.start(t, opts{onError: "closed"})
	open := e.start(t, opts{onError: "open"})
	c := e.dpopClient(t)
	bearer := "Bearer " + e.token(t, "")
	for _, in := range []*instance{closed, open} {
		if got := in.send(c.auth(), c.proof(t)); got.code != 200 {
			t.Fatalf("before: %d %q", got.code, got.body)
		}
	}

	e.redis.Stop()
	got := closed.send(c.auth(), c.proof(t))
	checkDenied(t, "closed, store down, DPoP", got, 503, "temporarily_unavailable")
	if got.hdr.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if got := closed.send(bearer, ""); got.code != 200 {
		t.Errorf("closed, store down, bearer: %d, want 200", got.code)
	}
	closed.waitLog("store unreachable", 1)
	if m := closed.metrics(); !strings.Contains(m, `caddy_mcp_auth_stores{state="down"} 1`+"\n") ||
		!strings.Contains(m, `caddy_mcp_auth_store_calls_total{op="claim",outcome="unreachable"}`) ||
		!strings.Contains(m, `caddy_mcp_auth_remote_call_duration_seconds_count{kind="store",outcome="unreachable"}`) ||
		!strings.Contains(m, `caddy_mcp_auth_decisions_total{outcome="unavailable",reason="store_unavailable",resource="`+resource+`"} 1`+"\n") {
		t.Error("metrics do not show the store down, the failed claim and the 503 it gave")
	}

	seen := ""
	for i := range 3 {
		p := c.proof(t)
		if got := open.send(c.auth(), p); got.code != 200 {
			t.Errorf("open, store down, DPoP %d: %d %q", i, got.code, got.body)
		}
		seen = p
	}
	// The local cache still refuses a replay at this instance.
	checkDenied(t, "open, store down, replay at the same instance", open.send(c.auth(), seen), 401, "invalid_dpop_proof")
	open.waitLog("on_error is open", 1)
	if n := open.count("on_error is open"); n != 1 {
		t.Errorf("open warned %d times for 3 requests, want once a minute", n)
	}

	e.redis.Restart()
	closed.waitLog("store reachable again", 1)
	open.waitLog("store reachable again", 1)
	if got := closed.send(c.auth(), c.proof(t)); got.code != 200 {
		t.Errorf("closed, store back: %d %q", got.code, got.body)
	}
	// Sharing works again: a proof used at one is refused at the other.
	p := c.proof(t)
	if got := open.send(c.auth(), p); got.code != 200 {
		t.Fatalf("open, store back: %d", got.code)
	}
	checkDenied(t, "store back, replay at the other", closed.send(c.auth(), p), 401, "invalid_dpop_proof")
	if n := closed.count("store unreachable"); n != 1 {
		t.Errorf("the down transition was logged %d times, want once", n)
	}
}

// 10,000 distinct proofs make 10,000 keys, each with a TTL within the proof window; neither
// keys nor values hold a token, proof, jti or key thumbprint.
func TestTenThousandProofs(t *testing.T) {
	e := newEnv(t)
	// The test counts keys, not time: a generous timeout, so that a busy machine (race
	// detector, two cores) cannot turn a slow SET into a 503.
	a := e.start(t, opts{onError: "closed", prefix: "fleet:", timeout: "10s"})
	r := admin(t, e.redis.Addr)
	ctx := context.Background()

	const n, workers = 10000, 4
	clients := make([]dpopClient, workers)
	for i := range clients {
		clients[i] = e.dpopClient(t)
	}
	// Tokens and key thumbprints, looked for in every key and value. Each key is checked to
	// be the prefix and 64 lowercase hex digits holding "1", which leaves no room for a jti
	// or a proof in clear.
	var secrets sync.Map
	for _, c := range clients {
		secrets.Store(c.token, true)
		secrets.Store(c.key.Thumbprint(), true)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w]
			for range n / workers {
				claims := jwttest.ProofClaims(http.MethodPost, htu, c.token, time.Now().Unix())
				p, err := c.key.SignProof(claims, nil)
				if err != nil {
					failed.Add(1)
					return
				}
				if got := a.send(c.auth(), p); got.code != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failed.Load(), n)
	}
	keys, err := r.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != n {
		t.Fatalf("%d keys in the store, want %d", len(keys), n)
	}
	limit := 5*time.Minute + 30*time.Second // max_age + leeway
	shape := regexp.MustCompile(`^fleet:[0-9a-f]{64}$`)
	pipe := r.Pipeline()
	ttls := make([]*redis.DurationCmd, len(keys))
	vals := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		ttls[i], vals[i] = pipe.PTTL(ctx, k), pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if !shape.MatchString(k) {
			t.Fatalf("key %q: want the prefix and 64 lowercase hex digits", k)
		}
		if ttl := ttls[i].Val(); ttl <= 0 || ttl > limit {
			t.Fatalf("key %q: PTTL %v, want within (0, %v]", k, ttl, limit)
		}
		if v := vals[i].Val(); v != "1" {
			t.Fatalf("key %q holds %q, want \"1\"", k, v)
		}
		checkNoSecret(t, &secrets, k)
	}
}

func checkNoSecret(t *testing.T, secrets *sync.Map, s string) {
	t.Helper()
	secrets.Range(func(k, _ any) bool {
		if strings.Contains(s, k.(string)) {
			t.Fatalf("the store holds a secret in clear in %q", s)
		}
		return true
	})
}

// A store that answers slowly is cut at the timeout (closed: 503); once it answers again,
// requests pass without a reload.
func TestSlowStore(t *testing.T) {
	e := newEnv(t)
	px := storetest.NewProxy(t, e.redis.Addr)
	e.storeTo = px.Addr
	a := e.start(t, opts{onError: "closed", timeout: "200ms"})
	c := e.dpopClient(t)
	if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
		t.Fatalf("before: %d", got.code)
	}
	px.Hold()
	checkDenied(t, "store holding its answers", a.send(c.auth(), c.proof(t)), 503, "temporarily_unavailable")
	a.waitLog("store unreachable", 1)
	px.Release()
	a.waitLog("store reachable again", 1)
	if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
		t.Errorf("after: %d %q", got.code, got.body)
	}
}

// A connection dropped while a request waits on it: that request gets 503 (closed), the next
// passes. CLIENT KILL between requests costs at most the request that meets the killed
// connection.
func TestDroppedConnection(t *testing.T) {
	e := newEnv(t)
	px := storetest.NewProxy(t, e.redis.Addr)
	e.storeTo = px.Addr
	a := e.start(t, opts{onError: "closed", timeout: "10s"})
	c := e.dpopClient(t)
	if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
		t.Fatalf("before: %d", got.code)
	}
	px.Hold()
	res := make(chan answer, 1)
	p := c.proof(t)
	go func() { res <- a.send(c.auth(), p) }()
	<-px.Held()
	px.Drop()
	checkDenied(t, "connection dropped mid-request", <-res, 503, "temporarily_unavailable")
	px.Release()
	a.waitLog("store reachable again", 1)
	if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
		t.Errorf("after the drop: %d %q", got.code, got.body)
	}

	r := admin(t, e.redis.Addr)
	if err := r.Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	got := a.send(c.auth(), c.proof(t))
	if got.code != 200 {
		// The request met a killed connection before its close arrived: the next may not.
		checkDenied(t, "the request after CLIENT KILL", got, 503, "temporarily_unavailable")
		if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
			t.Errorf("the second request after CLIENT KILL: %d %q", got.code, got.body)
		}
	}
}

// clientIDs are the ids of the store's client connections other than the caller's.
func clientIDs(t *testing.T, r *redis.Client) []int64 {
	t.Helper()
	list, err := r.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := r.ClientID(context.Background()).Result()
	var ids []int64
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		var id int64
		fmt.Sscanf(line, "id=%d", &id)
		if id != self && id != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// A reload keeps the client: the connections the first config opened serve the next.
func TestReloadKeepsClient(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed", name: "first"})
	c := e.dpopClient(t)
	r := admin(t, e.redis.Addr)
	if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
		t.Fatalf("before: %d", got.code)
	}
	before := clientIDs(t, r)
	if len(before) == 0 {
		t.Fatal("no client connection after a DPoP request")
	}
	maxID := before[0]
	for _, id := range before {
		maxID = max(maxID, id)
	}
	for i, name := range []string{"second", "third"} {
		a.load(opts{onError: "closed", name: name})
		if got := a.send(c.auth(), c.proof(t)); got.code != 200 {
			t.Fatalf("after reload %d: %d", i, got.code)
		}
	}
	for _, id := range clientIDs(t, r) {
		if id > maxID {
			t.Errorf("connection %d opened after the reloads: the client was made again (before: %v)", id, before)
		}
	}
	if n := a.count("store unreachable"); n != 0 {
		t.Errorf("the reload made the store unreachable (%d)", n)
	}
}

// Introspection answers are shared, sealed: B serves a token A introspected without asking
// the authorization server; the store holds neither the token nor the answer in clear. With
// the store down, introspection asks the authorization server (closed or not).
func TestIntrospectionSharedSealed(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed", introspect: true})
	b := e.start(t, opts{onError: "closed", introspect: true})
	r := admin(t, e.redis.Addr)
	ctx := context.Background()

	tok := "opaque-alice-4f1b2c"
	if got := a.send("Bearer "+tok, ""); got.code != 200 {
		t.Fatalf("opaque token at A: %d %q", got.code, got.body)
	}
	if n := e.introN.Load(); n != 1 {
		t.Fatalf("introspection calls after A: %d, want 1", n)
	}
	if got := b.send("Bearer "+tok, ""); got.code != 200 {
		t.Fatalf("opaque token at B: %d %q", got.code, got.body)
	}
	if n := e.introN.Load(); n != 1 {
		t.Errorf("introspection calls after B: %d, want 1 (B reads A's answer from the store)", n)
	}

	keys, _ := r.Keys(ctx, "*").Result()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "mcp_auth:introspection:") {
		t.Fatalf("keys = %v, want one introspection entry", keys)
	}
	v, _ := r.Get(ctx, keys[0]).Bytes()
	for _, s := range []string{tok, "alice", "active", "mcp:read", "client-1"} {
		if strings.Contains(keys[0], s) || bytes.Contains(v, []byte(s)) {
			t.Errorf("the store holds %q in clear", s)
		}
	}
	if ttl := r.PTTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > 5*time.Minute {
		t.Errorf("PTTL %v, want within (0, cache_ttl]", ttl)
	}

	e.redis.Stop()
	if got := a.send("Bearer opaque-bob-77", ""); got.code != 200 {
		t.Errorf("store down, new opaque token: %d, want 200 from the authorization server", got.code)
	}
	if n := e.introN.Load(); n != 2 {
		t.Errorf("introspection calls: %d, want 2", n)
	}
}

// Exchanged tokens are shared, sealed: B serves a token A exchanged without calling the
// token endpoint, and its upstream gets the same exchanged token; the store holds neither
// token in clear, and the entry expires with the cache. Refusals stay per instance. With
// the store down, the exchange asks the authorization server.
func TestExchangedTokenSharedSealed(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed", exchange: true})
	b := e.start(t, opts{onError: "closed", exchange: true})
	r := admin(t, e.redis.Addr)
	ctx := context.Background()

	tok := e.token(t, "")
	got := a.send("Bearer "+tok, "")
	if got.code != 200 || got.body != upstream+" with Bearer exchanged-1-for-api" {
		t.Fatalf("token at A: %d %q, want the upstream with the exchanged token", got.code, got.body)
	}
	if n := e.exchN.Load(); n != 1 {
		t.Fatalf("token endpoint calls after A: %d, want 1", n)
	}
	got = b.send("Bearer "+tok, "")
	if got.code != 200 || got.body != upstream+" with Bearer exchanged-1-for-api" {
		t.Errorf("same token at B: %d %q, want the token A exchanged", got.code, got.body)
	}
	if n := e.exchN.Load(); n != 1 {
		t.Errorf("token endpoint calls after B: %d, want 1 (B reads A's token from the store)", n)
	}

	keys, _ := r.Keys(ctx, "*").Result()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "mcp_auth:exchange:") {
		t.Fatalf("keys = %v, want one exchange entry", keys)
	}
	v, _ := r.Get(ctx, keys[0]).Bytes()
	for _, s := range []string{tok, "exchanged-1-for-api", "exchanged", "user-1", "api.example.com", "Bearer"} {
		if strings.Contains(keys[0], s) || bytes.Contains(v, []byte(s)) {
			t.Errorf("the store holds %q in clear", s)
		}
	}
	if ttl := r.PTTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > 5*time.Minute {
		t.Errorf("PTTL %v, want within (0, cache_ttl 5m]", ttl)
	}

	// Counted: A made one call, B none; B's lookup missed its own cache (and found the store's).
	am, bm := a.metrics(), b.metrics()
	if !strings.Contains(am, `caddy_mcp_auth_remote_call_duration_seconds_count{kind="token_exchange",outcome="ok"} 1`) {
		t.Errorf("A's metrics do not count one exchange call:\n%s", grepLines(am, "token_exchange"))
	}
	if strings.Contains(bm, `kind="token_exchange"`) {
		t.Errorf("B's metrics count an exchange call:\n%s", grepLines(bm, "token_exchange"))
	}
	if !strings.Contains(bm, `caddy_mcp_auth_cache_lookups_total{cache="exchange",resource="`+resource+`",result="miss"} 1`) {
		t.Errorf("B's metrics do not count one exchange cache miss:\n%s", grepLines(bm, `cache="exchange"`))
	}

	// A refusal is not shared: B asks the token endpoint itself.
	refused := e.tokenFor(t, "user-refused")
	e.refuse.Store(refused, true)
	if got := a.send("Bearer "+refused, ""); got.code != 403 {
		t.Fatalf("refused exchange at A: %d %q, want 403", got.code, got.body)
	}
	if got := b.send("Bearer "+refused, ""); got.code != 403 {
		t.Fatalf("refused exchange at B: %d %q, want 403", got.code, got.body)
	}
	if n := e.exchN.Load(); n != 3 {
		t.Errorf("token endpoint calls after a refusal at A then B: %d, want 3 (refusals stay per instance)", n)
	}
	if keys, _ := r.Keys(ctx, "*").Result(); len(keys) != 1 {
		t.Errorf("keys after refusals = %v, want still one", keys)
	}
	if !strings.Contains(b.metrics(), `caddy_mcp_auth_remote_call_duration_seconds_count{kind="token_exchange",outcome="refused"} 1`) {
		t.Errorf("B's metrics do not count the refused exchange:\n%s", grepLines(b.metrics(), "token_exchange"))
	}

	// The store down: the exchange asks the authorization server, whatever on_error says.
	e.redis.Stop()
	other := e.tokenFor(t, "user-2")
	if got := b.send("Bearer "+other, ""); got.code != 200 || !strings.HasPrefix(got.body, upstream+" with Bearer exchanged-") {
		t.Errorf("store down, new token at B: %d %q, want 200 with a token from the authorization server", got.code, got.body)
	}
	if n := e.exchN.Load(); n != 4 {
		t.Errorf("token endpoint calls: %d, want 4", n)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
