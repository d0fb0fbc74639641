package mcpauth

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// exchangeCalls is the number of token exchange calls counted with outcome so far.
func exchangeCalls(t *testing.T, outcome string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := metrics.calls.WithLabelValues(telemetry.KindTokenExchange, outcome).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// exchangeHandler provisions, into a registry of its own, a handler for resource whose
// token exchange asks as; it returns the handler, the registry, a key that signs its tokens
// and a closer that takes the authorization server down.
func exchangeHandler(t *testing.T, resource string, answer func(subject string) (int, string)) (*Handler, *prometheus.Registry, *jwttest.Key, func()) {
	t.Helper()
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := answer(r.PostFormValue("subject_token"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(as.Close)
	k := jwttest.New(t, "k1", "EdDSA")
	h := &Handler{Resource: resource, AuthorizationServers: []string{cacheIss},
		JWKSURLs: []string{newJWKSServer(t, k).URL}, Scopes: []string{"mcp:read"},
		TokenExchange: &TokenExchange{Endpoint: as.URL, ClientID: "gw", ClientSecret: "s",
			ExchangeTarget: ExchangeTarget{Audience: []string{"https://api.example.com"}}}}
	reg := provisionWithRegistry(t, h)
	waitKeysLoaded(t, h)
	return h, reg, k, as.Close
}

const exchangeOK = `{"access_token":"exchanged","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}`

// TestExchangeMetrics: every call to the token endpoint a request makes is counted in
// remote_call_duration_seconds{kind="token_exchange"} with its outcome, and every lookup of
// an exchanged token in cache_lookups_total{cache="exchange"}: a cached token makes no call
// and counts a hit.
func TestExchangeMetrics(t *testing.T) {
	const res = "https://exchange-metrics.example.com/mcp"
	var mu sync.Mutex
	behave := map[string][2]string{} // subject token -> status, body
	h, _, k, down := exchangeHandler(t, res, func(subject string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := behave[subject]; ok {
			var status int
			fmt.Sscan(b[0], &status)
			return status, b[1]
		}
		return 200, exchangeOK
	})
	tokenOf := func(sub string) string {
		c := testClaims(cacheIss, res, "mcp:read")
		c["sub"] = sub
		return k.Token(t, c, nil)
	}
	set := func(tok, status, body string) {
		mu.Lock()
		behave[tok] = [2]string{status, body}
		mu.Unlock()
	}
	outcomes := []string{telemetry.OK, telemetry.Refused, telemetry.ServerError, telemetry.BadAnswer, telemetry.Unreachable}
	before := map[string]uint64{}
	for _, o := range outcomes {
		before[o] = exchangeCalls(t, o)
	}
	hit := metrics.lookups.WithLabelValues(res, cacheExchange, "hit")
	miss := metrics.lookups.WithLabelValues(res, cacheExchange, "miss")

	good := tokenOf("user-ok")
	refused, failing, garbled, unreachable := tokenOf("user-refused"), tokenOf("user-5xx"), tokenOf("user-bad"), tokenOf("user-down")
	set(refused, "400", `{"error":"invalid_grant"}`)
	set(failing, "502", `oops`)
	set(garbled, "200", `{"token_type":"Bearer"}`)
	for _, c := range []struct {
		token string
		want  int
	}{{good, 200}, {good, 200}, {good, 200}, {refused, 403}, {refused, 403}, {failing, 503}, {garbled, 503}} {
		if code, _ := serve(t, h, c.token); code != c.want {
			t.Fatalf("status %d, want %d", code, c.want)
		}
	}
	down()
	if code, _ := serve(t, h, unreachable); code != 503 {
		t.Fatalf("authorization server down: status %d, want 503", code)
	}

	// The refused token is remembered: its second request makes no call.
	want := map[string]uint64{telemetry.OK: 1, telemetry.Refused: 1, telemetry.ServerError: 1,
		telemetry.BadAnswer: 1, telemetry.Unreachable: 1}
	for _, o := range outcomes {
		if got := exchangeCalls(t, o) - before[o]; got != want[o] {
			t.Errorf("remote_call_duration_seconds{kind=token_exchange,outcome=%s} grew by %d, want %d", o, got, want[o])
		}
	}
	// Hits: the good token's second and third requests. Misses: each first lookup of a
	// token, and the refused token's second (refusals are remembered apart).
	if got := testutil.ToFloat64(hit); got != 2 {
		t.Errorf("cache_lookups_total{cache=exchange,result=hit} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(miss); got != 6 {
		t.Errorf("cache_lookups_total{cache=exchange,result=miss} = %v, want 6", got)
	}
}

// TestExchangeAlertQueriesEmittedSeries: the alert rules that watch token exchange
// (kind="token_exchange") select series a handler really emits once it exchanged tokens,
// ok and failing: each of their selectors that admits kind token_exchange matches at least
// one gathered series of that kind.
func TestExchangeAlertQueriesEmittedSeries(t *testing.T) {
	const res = "https://exchange-alerts.example.com/mcp"
	var failing string
	var mu sync.Mutex
	h, reg, k, _ := exchangeHandler(t, res, func(subject string) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if subject == failing {
			return 503, `down`
		}
		return 200, exchangeOK
	})
	c := testClaims(cacheIss, res, "mcp:read")
	serve(t, h, k.Token(t, c, nil))
	c["sub"] = "user-failing"
	mu.Lock()
	failing = k.Token(t, c, nil)
	mu.Unlock()
	serve(t, h, failing)

	series := gatheredSeries(t, reg)
	exprs, names := alertQueries(t)
	checked := 0
	for i, q := range exprs {
		sels, _, err := parsePromQL(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sels {
			if !admits(s, "kind", telemetry.KindTokenExchange) {
				continue
			}
			checked++
			found := false
			for _, ls := range series[s.metric] {
				if ls["kind"] == telemetry.KindTokenExchange && selectorMatches(s, ls) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("alert %s: selector %s%v matches no emitted token_exchange series (emitted: %v)",
					names[i], s.metric, s.matchers, series[s.metric])
			}
		}
	}
	if checked < 2 || !slices.Contains(names, "McpAuthTokenExchangeFailing") {
		t.Fatalf("%d selectors admit kind token_exchange, want the exchange alert's two at least", checked)
	}
}

// gatheredSeries are the label sets of every series reg exports with something counted in
// it (a series made and never counted in does not show what is emitted), by the names a
// query may use (a histogram's _count, _sum and _bucket).
func gatheredSeries(t *testing.T, reg prometheus.Gatherer) map[string][]map[string]string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]map[string]string{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if m.GetHistogram().GetSampleCount() == 0 && m.GetCounter().GetValue() == 0 && m.GetGauge().GetValue() == 0 {
				continue
			}
			if mf.GetType() == dto.MetricType_HISTOGRAM {
				for _, suffix := range []string{"_count", "_sum", "_bucket"} {
					out[mf.GetName()+suffix] = append(out[mf.GetName()+suffix], ls)
				}
				continue
			}
			out[mf.GetName()] = append(out[mf.GetName()], ls)
		}
	}
	return out
}

// admits reports whether the selector's matchers on label allow value.
func admits(s querySelector, label, value string) bool {
	seen := false
	for _, m := range s.matchers {
		if m[0] != label {
			continue
		}
		seen = true
		if !matchOne(m, value) {
			return false
		}
	}
	return seen
}

func selectorMatches(s querySelector, ls map[string]string) bool {
	for _, m := range s.matchers {
		if !matchOne(m, ls[m[0]]) {
			return false
		}
	}
	return true
}

// matchOne applies one PromQL matcher (label, operator, value) to v; regular expressions
// are anchored, as PromQL's are.
func matchOne(m [3]string, v string) bool {
	switch m[1] {
	case "=":
		return v == m[2]
	case "!=":
		return v != m[2]
	}
	re := regexp.MustCompile("^(?:" + strings.ReplaceAll(m[2], `\\`, `\`) + ")$")
	if m[1] == "=~" {
		return re.MatchString(v)
	}
	return !re.MatchString(v)
}

// TestExchangeCachedCostsNothing: a cached caller with a cached exchanged token costs no
// allocation, with no span and with a span that does not record (the exchange's child span
// and its outcome are computed only for a recording span), and its lookup is still counted
// as a hit.
func TestExchangeCachedCostsNothing(t *testing.T) {
	const res = "https://exchange-allocs.example.com/mcp"
	h, _, k, _ := exchangeHandler(t, res, func(string) (int, string) { return 200, exchangeOK })
	token := k.Token(t, testClaims(cacheIss, res, "mcp:read"), nil)
	// The handler writes the exchanged token into the request's own Authorization slice
	// (never a slice shared between requests), so each run puts the caller's token back.
	bearer := "Bearer " + token
	auth := []string{bearer}
	hit := metrics.lookups.WithLabelValues(res, cacheExchange, "hit")
	w := &nopWriter{h: make(http.Header)}
	for name, r := range map[string]*http.Request{
		"no span":        withReplacer(newBenchRequest(token)),
		"unsampled span": unsampledSpan(withReplacer(newBenchRequest(token))),
	} {
		_ = h.ServeHTTP(w, r, nextOK) // exchanges, fills the caches
		if got := r.Header.Get("Authorization"); got != "Bearer exchanged" {
			t.Fatalf("%s: upstream Authorization %q", name, got)
		}
		before := testutil.ToFloat64(hit)
		const runs = 200
		n := testing.AllocsPerRun(runs, func() {
			auth[0] = bearer
			r.Header["Authorization"] = auth
			_ = h.ServeHTTP(w, r, nextOK)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", name, n)
		}
		// AllocsPerRun runs the function once more to warm up.
		if got := testutil.ToFloat64(hit) - before; got != runs+1 {
			t.Errorf("%s: %v exchange cache hits counted, want %d", name, got, runs+1)
		}
	}
}

// TestExchangeAlertFiresOnEmittedSeries runs the shipped alert McpAuthTokenExchangeFailing
// through `promtool test rules` on the series a handler really emitted: the gathered
// token_exchange series of remote_call_duration_seconds_count, with their exact labels,
// each growing by its gathered count every minute. With one exchange in two failing it
// fires (with its labels and annotations); with the ok series alone it does not. Without
// promtool the test skips, unless MCPAUTH_PROMTOOL=1 makes it fail.
func TestExchangeAlertFiresOnEmittedSeries(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("MCPAUTH_PROMTOOL") == "1" {
			t.Fatalf("MCPAUTH_PROMTOOL=1 but promtool is not installed: %v", err)
		}
		t.Skip("promtool not installed (Debian: apt-get install prometheus); set MCPAUTH_PROMTOOL=1 to make this a failure")
	}
	const res = "https://exchange-promtool.example.com/mcp"
	var failing atomic.Pointer[string]
	h, reg, k, _ := exchangeHandler(t, res, func(subject string) (int, string) {
		if f := failing.Load(); f != nil && *f == subject {
			return 502, `bad gateway`
		}
		return 200, exchangeOK
	})
	// The histogram lives for the process (counts go on across reloads): other tests count
	// into it too, so what this handler emits is the growth of each series.
	counts := func() map[string]uint64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]uint64{}
		for _, mf := range mfs {
			if mf.GetName() != "caddy_mcp_auth_remote_call_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				out[labelKey(m)] = m.GetHistogram().GetSampleCount()
			}
		}
		return out
	}
	before := counts()
	c := testClaims(cacheIss, res, "mcp:read")
	serve(t, h, k.Token(t, c, nil))
	c["sub"] = "user-failing"
	bad := k.Token(t, c, nil)
	failing.Store(&bad)
	serve(t, h, bad)

	// The emitted series, as Prometheus would scrape them (plus the target's labels).
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type emitted struct {
		selector string
		count    uint64
		ok       bool
	}
	var series []emitted
	var total, failed uint64
	for _, mf := range mfs {
		if mf.GetName() != "caddy_mcp_auth_remote_call_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := []string{`instance="caddy-1:2019"`, `job="caddy"`}
			kind, outcome := "", ""
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				switch l.GetName() {
				case "kind":
					kind = l.GetValue()
				case "outcome":
					outcome = l.GetValue()
				}
			}
			n := m.GetHistogram().GetSampleCount() - before[labelKey(m)]
			if kind != telemetry.KindTokenExchange || n == 0 {
				continue
			}
			series = append(series, emitted{mf.GetName() + "_count{" + strings.Join(labels, ",") + "}", n, outcome == telemetry.OK})
			total += n
			if outcome != telemetry.OK {
				failed += n
			}
		}
	}
	if total != 2 || failed != 1 {
		t.Fatalf("emitted token_exchange calls %v: %d in all, %d failed; want 2 and 1", series, total, failed)
	}

	_, names := alertQueries(t)
	if !slices.Contains(names, "McpAuthTokenExchangeFailing") {
		t.Fatal("no McpAuthTokenExchangeFailing in " + alertsFile)
	}
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	var labels, annotations map[string]string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "McpAuthTokenExchangeFailing" {
				labels, annotations = r.Labels, map[string]string{}
				// The one template the annotations use, rendered as Prometheus does
				// (humanizePercentage: %.4g of the value times 100).
				pct := fmt.Sprintf("%.4g%%", float64(failed)/float64(total)*100)
				for k, v := range r.Annotations {
					annotations[k] = strings.ReplaceAll(v, "{{ $value | humanizePercentage }}", pct)
				}
			}
		}
	}

	input := func(onlyOK bool) []map[string]string {
		var out []map[string]string
		for _, s := range series {
			if onlyOK && !s.ok {
				continue
			}
			out = append(out, map[string]string{"series": s.selector, "values": fmt.Sprintf("0+%dx30", s.count)})
		}
		return out
	}
	abs, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{
		"rule_files":          []string{abs},
		"evaluation_interval": "1m",
		"tests": []any{
			map[string]any{"interval": "1m", "input_series": input(false), "alert_rule_test": []any{
				// Not yet: the condition holds from the start, and `for` is 5m.
				map[string]any{"eval_time": "3m", "alertname": "McpAuthTokenExchangeFailing", "exp_alerts": []any{}},
				map[string]any{"eval_time": "15m", "alertname": "McpAuthTokenExchangeFailing", "exp_alerts": []any{
					map[string]any{"exp_labels": labels, "exp_annotations": annotations},
				}},
			}},
			map[string]any{"interval": "1m", "input_series": input(true), "alert_rule_test": []any{
				map[string]any{"eval_time": "15m", "alertname": "McpAuthTokenExchangeFailing", "exp_alerts": []any{}},
			}},
		},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "exchange_alert_test.yml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "test", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n--- the test file:\n%s", err, out, b)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules said no SUCCESS:\n%s", out)
	}
}

// labelKey names a series by its labels.
func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.GetLabel() {
		b.WriteString(l.GetName() + "=" + l.GetValue() + ",")
	}
	return b.String()
}
