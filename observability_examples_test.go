package mcpauth

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

const (
	dashboardFile = "examples/observability/grafana-dashboard.json"
	alertsFile    = "examples/observability/alerts.yml"
)

// exportedFamilies provisions a handler whose key set loads (so that every family has a
// series, the remote-call histogram included) and returns what its config's registry
// exports: the names a query may use (a histogram's _bucket, _sum and _count) with their
// label names.
func exportedFamilies(t *testing.T) map[string]map[string]bool {
	t.Helper()
	k := jwttest.New(t, "k1", "EdDSA")
	h := &Handler{Resource: "https://dashboard.example.com/mcp", AuthorizationServers: []string{cacheIss},
		JWKSURLs: []string{newJWKSServer(t, k).URL}, Scopes: []string{"mcp:read"}}
	reg := provisionWithRegistry(t, h)
	waitKeysLoaded(t, h)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]map[string]bool{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "caddy_mcp_auth_") {
			continue
		}
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			out[mf.GetName()+"_sum"] = labels
			out[mf.GetName()+"_count"] = labels
			withLE := map[string]bool{"le": true}
			for l := range labels {
				withLE[l] = true
			}
			out[mf.GetName()+"_bucket"] = withLE
			continue
		}
		out[mf.GetName()] = labels
	}
	return out
}

// knownValues are the label values the module can emit, per metric prefix and label: a query
// matching another value would never match anything.
func knownValues() map[string]map[string][]string {
	var reasons []string
	for d := denial(0); d < numDenials; d++ {
		reasons = append(reasons, denialReason(d))
	}
	outcomes := []string{outcomeAllowed}
	for o := range refusalOutcomes {
		outcomes = append(outcomes, o)
	}
	return map[string]map[string][]string{
		"caddy_mcp_auth_decisions_total":              {"outcome": outcomes, "reason": reasons},
		"caddy_mcp_auth_remote_call_duration_seconds": {"kind": telemetry.Kinds, "outcome": telemetry.Outcomes},
		"caddy_mcp_auth_cache_lookups_total":          {"cache": {cacheToken, cacheIntrospection, cacheIntrospectionAnswers, cacheExchange}, "result": {"hit", "miss"}},
		"caddy_mcp_auth_key_sets":                     {"state": {"loaded", "loading"}},
		"caddy_mcp_auth_stores":                       {"state": {"up", "down"}},
		"caddy_mcp_auth_key_refreshes_total":          {"outcome": {"success", "failure"}},
		"caddy_mcp_auth_token_cache_total":            {"result": {"hit", "miss"}},
	}
}

// promqlWords are the functions, aggregations and keywords the example queries may use;
// any other identifier outside a label matcher is taken for a metric name.
var promqlWords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "rate": true, "irate": true,
	"increase": true, "histogram_quantile": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "and": true, "or": true,
	"unless": true, "offset": true, "bool": true, "clamp_min": true, "topk": true, "abs": true,
	"absent": true, "vector": true, "label_values": true,
}

// selector is a metric name with the label matchers written after it, and the labels an
// expression groups by.
type querySelector struct {
	metric   string
	matchers [][3]string // label, operator, value
}

var (
	identRe   = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)
	matcherRe = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?`)
)

// parsePromQL extracts the selectors of a query and the label names of its by/on/... lists.
// It knows enough PromQL for the example files; what it cannot read fails the test.
func parsePromQL(q string) (sels []querySelector, grouping []string, err error) {
	var lastIdent string
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == ',' || c == ')' || strings.IndexByte("+-*/<>=!^%", c) >= 0:
			i++
		case c == '[': // a range, a subquery or $__rate_interval
			j := strings.IndexByte(q[i:], ']')
			if j < 0 {
				return nil, nil, fmt.Errorf("query %q: unclosed [", q)
			}
			i += j + 1
		case c == '"':
			j := strings.IndexByte(q[i+1:], '"')
			i += j + 2
		case c >= '0' && c <= '9' || c == '.': // a number or a duration (offset 5m)
			for i < len(q) && (q[i] >= '0' && q[i] <= '9' || q[i] == '.' || q[i] >= 'a' && q[i] <= 'z') {
				i++
			}
		case c == '{':
			if lastIdent == "" {
				return nil, nil, fmt.Errorf("query %q: a matcher without a metric name", q)
			}
			end := strings.IndexByte(q[i:], '}')
			if end < 0 {
				return nil, nil, fmt.Errorf("query %q: unclosed {", q)
			}
			body := q[i+1 : i+end]
			for body = strings.TrimSpace(body); body != ""; body = strings.TrimSpace(body) {
				m := matcherRe.FindStringSubmatch(body)
				if m == nil {
					return nil, nil, fmt.Errorf("query %q: cannot read matchers %q", q, body)
				}
				sels[len(sels)-1].matchers = append(sels[len(sels)-1].matchers, [3]string{m[1], m[2], m[3]})
				body = body[len(m[0]):]
			}
			i += end + 1
			lastIdent = ""
		case c == '(':
			i++
		default:
			id := identRe.FindString(q[i:])
			if id == "" {
				return nil, nil, fmt.Errorf("query %q: unexpected %q at %d", q, c, i)
			}
			i += len(id)
			switch {
			case slices.Contains([]string{"by", "without", "on", "ignoring", "group_left", "group_right"}, id):
				rest := strings.TrimLeft(q[i:], " ")
				if !strings.HasPrefix(rest, "(") {
					continue // group_left without labels
				}
				end := strings.IndexByte(rest, ')')
				for _, l := range strings.Split(rest[1:end], ",") {
					if l = strings.TrimSpace(l); l != "" {
						grouping = append(grouping, l)
					}
				}
				i = len(q) - len(rest) + end + 1
			case promqlWords[id]:
			default:
				sels = append(sels, querySelector{metric: id})
				lastIdent = id
				continue
			}
			lastIdent = ""
		}
	}
	return sels, grouping, nil
}

// checkQueries checks that every metric a query names is exported, with the labels it
// matches or groups by, and that matched values are ones the module emits. It returns the
// problems found and the number of selectors checked.
func checkQueries(file string, queries []string, exported map[string]map[string]bool) (problems []string, n int) {
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	known := knownValues()
	targetLabels := map[string]bool{"instance": true, "job": true}
	for _, q := range queries {
		sels, grouping, err := parsePromQL(q)
		if err != nil {
			errorf("%s: %v", file, err)
			continue
		}
		if len(sels) == 0 {
			errorf("%s: query %q names no metric", file, q)
		}
		usable := map[string]bool{}
		for _, s := range sels {
			n++
			labels, ok := exported[s.metric]
			if !ok {
				errorf("%s: query %q uses %s, which the module does not export", file, q, s.metric)
				continue
			}
			for l := range labels {
				usable[l] = true
			}
			family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s.metric, "_bucket"), "_count"), "_sum")
			for _, m := range s.matchers {
				if !labels[m[0]] && !targetLabels[m[0]] {
					errorf("%s: query %q matches label %q, which %s does not have", file, q, m[0], s.metric)
					continue
				}
				values := known[family][m[0]]
				if values == nil || strings.Contains(m[2], "$") || strings.Contains(m[2], ".*") {
					continue
				}
				for _, v := range strings.Split(m[2], "|") {
					if !slices.Contains(values, v) {
						errorf("%s: query %q matches %s=%q, a value %s never has (known: %v)", file, q, m[0], v, s.metric, values)
					}
				}
			}
		}
		for _, l := range grouping {
			if !usable[l] && !targetLabels[l] {
				errorf("%s: query %q groups by %q, a label none of its metrics has", file, q, l)
			}
		}
	}
	return problems, n
}

// dashboardQueries returns the PromQL of every panel target and query variable.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(e, k)
			}
		case []any:
			for _, e := range v {
				walk(e, key)
			}
		case string:
			// Panel targets are `expr`; a query variable's PromQL is its `query`
			// (Grafana's label_values(metric, label) reads as a function call here).
			if key == "expr" {
				out = append(out, v)
			}
			// A query variable's label_values(metric, label) is checked as the PromQL
			// that asks the same: count by (label) (metric).
			if m := labelValuesRe.FindStringSubmatch(v); key == "query" && m != nil {
				out = append(out, "count by ("+m[2]+") ("+m[1]+")")
			}
		}
	}
	walk(doc, "")
	return out
}

var labelValuesRe = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

// alertQueries returns the expr of every rule.
func alertQueries(t *testing.T) (exprs []string, names []string) {
	t.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			names = append(names, r.Alert)
		}
	}
	return exprs, names
}

// TestDashboardAndAlertsQueryExportedMetrics reads the shipped Grafana dashboard and alert
// rules and checks every metric, label and label value they query against what a
// provisioned handler's registry really exports.
func TestDashboardAndAlertsQueryExportedMetrics(t *testing.T) {
	exported := exportedFamilies(t)
	for _, want := range []string{"caddy_mcp_auth_decisions_total", "caddy_mcp_auth_remote_call_duration_seconds_bucket",
		"caddy_mcp_auth_cache_lookups_total", "caddy_mcp_auth_key_sets"} {
		if exported[want] == nil {
			t.Fatalf("the registry does not export %s (exported: %v)", want, exported)
		}
	}

	dq := dashboardQueries(t)
	if len(dq) < 10 {
		t.Fatalf("%s: %d queries found, the dashboard has more", dashboardFile, len(dq))
	}
	problems, n := checkQueries(dashboardFile, dq, exported)
	if n < len(dq) {
		t.Errorf("%s: %d selectors in %d queries", dashboardFile, n, len(dq))
	}
	aq, names := alertQueries(t)
	more, _ := checkQueries(alertsFile, aq, exported)
	for _, p := range append(problems, more...) {
		t.Error(p)
	}
	// The alerts the issue asks for, each present.
	for _, want := range []string{"McpAuthAuthorizationServerUnreachable", "McpAuthSigningKeysNotLoaded",
		"McpAuthIntrospectionFailing", "McpAuthTokenExchangeFailing", "McpAuthRefusalsSpiking", "McpAuthStoreDown"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s: no alert %s (have %v)", alertsFile, want, names)
		}
	}
}

// TestQueryCheckerCatchesMistakes feeds the checker queries that are wrong in each way it
// looks for, so that a passing check above means something.
func TestQueryCheckerCatchesMistakes(t *testing.T) {
	exported := exportedFamilies(t)
	for _, q := range []string{
		`rate(caddy_mcp_auth_decision_total[5m])`,                                 // misspelt metric
		`rate(caddy_mcp_auth_decisions_total{result="hit"}[5m])`,                  // label of another metric
		`sum by (cache) (rate(caddy_mcp_auth_decisions_total[5m]))`,               // grouping by a label it lacks
		`rate(caddy_mcp_auth_remote_call_duration_seconds_count{kind="jwk"}[5m])`, // value never emitted
		`rate(caddy_mcp_auth_decisions_total{reason="expired|exprd"}[5m])`,        // one of an alternation
		`count by (tool) (caddy_mcp_auth_decisions_total)`,                        // a label_values variable on a label it lacks
		`rate(caddy_mcp_auth_decisions_total{reason=expired}[5m])`,                // unreadable
	} {
		if problems, _ := checkQueries("test", []string{q}, exported); len(problems) == 0 {
			t.Errorf("query %q passed the check", q)
		} else {
			t.Logf("%s", problems[0])
		}
	}
}

// TestAlertRulesPassPromtool runs `promtool check rules` on the shipped rules. Without
// promtool the test skips, unless MCPAUTH_PROMTOOL=1 (as .ci/run sets) makes it fail.
func TestAlertRulesPassPromtool(t *testing.T) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("MCPAUTH_PROMTOOL") == "1" {
			t.Fatalf("MCPAUTH_PROMTOOL=1 but promtool is not installed: %v", err)
		}
		t.Skip("promtool not installed (Debian: apt-get install prometheus); set MCPAUTH_PROMTOOL=1 to make this a failure")
	}
	out, err := exec.Command(path, "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules %s said no SUCCESS:\n%s", alertsFile, out)
	}
	t.Logf("%s", out)
}
