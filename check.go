package mcpauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
	"github.com/spf13/cobra"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// `caddy mcp-auth check`: what mcp_auth decides for a token, and why. It loads the
// configuration as `caddy run` would, provisions the mcp_auth handler of the resource, and
// sends it one request with the token, as a client would: the decision is the module's own.
// The steps around it (the token's header and claims, the key, the times) are read from the
// token to explain that decision. The token itself is never printed.

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mcp-auth",
		Usage: "check --config <file> [--adapter <name>] [--resource <url>] --token <token|-> [--method <m>] [--name <name>] [--json]",
		Short: "Explains what mcp_auth decides for an access token",
		Long: `
mcp-auth check loads the configuration as 'caddy run' would, takes the mcp_auth handler
whose resource is given (--resource, required when there are several), and prints, step by
step, what it decides for the token and why: the key, iss, aud, the times against now and
the leeway, the binding, the scopes granted, the client, the rule that matched for
--method/--name, and the challenge it would send. Key sets are fetched and tokens introspected
as the module does.

The token comes from --token, or from standard input with --token -. It is never printed.

Exit status: 0 allowed, 1 refused (503 included), 2 configuration or usage error.`,
		CobraFunc: func(cmd *cobra.Command) {
			check := &cobra.Command{
				Use:   "check --config <file> --token <token|-> [flags]",
				Short: "Explains what mcp_auth decides for an access token",
				RunE: func(c *cobra.Command, args []string) error {
					if len(args) > 0 {
						fmt.Fprintf(c.ErrOrStderr(), "mcp-auth check: unexpected argument %q (the token goes in --token)\n", args[0])
						return exitCheck(c, 2)
					}
					fl := caddycmd.Flags{FlagSet: c.Flags()}
					o := checkOptions{
						config: fl.String("config"), adapter: fl.String("adapter"),
						resource: fl.String("resource"), token: fl.String("token"),
						method: fl.String("method"), name: fl.String("name"), json: fl.Bool("json"),
					}
					return exitCheck(c, runCheck(o, c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr()))
				},
			}
			check.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
				fmt.Fprintf(c.ErrOrStderr(), "mcp-auth check: %v (see caddy mcp-auth check --help)\n", err)
				return exitCheck(c, 2)
			})
			check.Flags().StringP("config", "c", "", "Configuration file (Caddyfile or JSON)")
			check.Flags().StringP("adapter", "a", "", "Name of the config adapter (inferred as caddy run does)")
			check.Flags().String("resource", "", "Resource of the mcp_auth handler to check (required when there are several)")
			check.Flags().String("token", "", "The access token, or - to read it from standard input")
			check.Flags().String("method", "", "JSON-RPC method of the request (e.g. tools/call); without it, a GET of the resource")
			check.Flags().String("name", "", "Tool or prompt name, or resource URI, for --method")
			check.Flags().Bool("json", false, "Print the report as JSON")
			cmd.AddCommand(check)
		},
	})
}

// errCheckRefused ends `caddy mcp-auth check` with status 1: Caddy's Main exits 1 for any
// error but its own exit status error. Its text is never printed (the command is silenced).
var errCheckRefused = errors.New("refused")

// exitCheck ends the command c with status code. runCheck printed all there is to say, so
// cobra must add nothing: no "Error: ..." line, no usage. Status 2 rides on Caddy's exit
// status error, which only its wrapper makes (for a status above 1, with no error to log).
func exitCheck(c *cobra.Command, code int) error {
	c.SilenceErrors, c.SilenceUsage = true, true
	switch code {
	case 0:
		return nil
	case 1:
		return errCheckRefused
	}
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })(c, nil)
}

// checkOptions are the flags of `caddy mcp-auth check`.
type checkOptions struct {
	config, adapter, resource, token, method, name string
	json                                           bool
	now                                            func() time.Time // tests: the handler's clock
}

// checkReport is what check prints: the steps in order, then the decision.
type checkReport struct {
	Config    string      `json:"config"`
	Resource  string      `json:"resource"`
	Steps     []checkStep `json:"steps"`
	Decision  string      `json:"decision"` // allow or deny
	Status    int         `json:"status"`
	Error     string      `json:"error,omitempty"`  // the error code answered
	Reason    string      `json:"reason,omitempty"` // which refusal (the metrics' reason)
	Rule      string      `json:"rule,omitempty"`
	Challenge string      `json:"challenge,omitempty"`
}

type checkStep struct {
	Step   string `json:"step"`
	Detail string `json:"detail"`
}

func (r *checkReport) add(step, format string, args ...any) {
	r.Steps = append(r.Steps, checkStep{step, fmt.Sprintf(format, args...)})
}

// usageError is an error of the flags or the configuration: exit status 2.
type usageError struct{ error }

// runCheck runs the check and returns the exit status.
func runCheck(o checkOptions, stdin io.Reader, stdout, stderr io.Writer) int {
	rep, err := check(o, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "mcp-auth check: %v\n", err)
		if errors.As(err, new(usageError)) {
			return 2
		}
		return 1
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		writeCheckText(stdout, rep)
	}
	if rep.Decision == "allow" {
		return 0
	}
	return 1
}

func writeCheckText(w io.Writer, rep *checkReport) {
	line := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k, v) }
	line("config", rep.Config)
	line("resource", rep.Resource)
	for _, s := range rep.Steps {
		line(s.Step, s.Detail)
	}
	if rep.Decision == "allow" {
		line("decision", fmt.Sprintf("allowed (%d from the server behind)", rep.Status))
	} else {
		line("decision", fmt.Sprintf("refused: %d %s (%s)", rep.Status, rep.Error, rep.Reason))
	}
	if rep.Challenge != "" {
		line("challenge", rep.Challenge)
	}
}

func usageErr(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func check(o checkOptions, stdin io.Reader) (*checkReport, error) {
	token := o.token
	if token == "-" {
		raw, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return nil, usageErr("reading the token from standard input: %v", err)
		}
		token = strings.TrimSpace(string(raw))
	}
	if token == "" {
		return nil, usageErr("--token is required (--token - reads it from standard input)")
	}
	if o.name != "" && o.method == "" {
		return nil, usageErr("--name needs --method")
	}
	if o.config == "" {
		return nil, usageErr("--config is required")
	}
	cfgJSON, _, adapter, err := caddycmd.LoadConfig(o.config, o.adapter)
	if err != nil {
		return nil, usageErr("loading %s: %v", o.config, err)
	}
	h, err := pickHandler(cfgJSON, o.resource)
	if err != nil {
		return nil, usageErr("%s: %v", o.config, err)
	}
	rep := &checkReport{Config: o.config, Resource: h.Resource}
	if adapter != "" {
		rep.Config += " (adapter " + adapter + ")"
	}

	h.now = o.now
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		_ = h.Cleanup()
		return nil, usageErr("provisioning mcp_auth for %s: %v", h.Resource, err)
	}
	defer h.Cleanup()
	if err := h.Validate(); err != nil {
		return nil, usageErr("mcp_auth for %s: %v", h.Resource, err)
	}

	explainToken(rep, h, token)

	// The request, through the handler, in a span that records: the handler puts its
	// decision, the operation, the caller and the rule on it, and its calls to the
	// authorization server are child spans.
	req, err := checkRequest(h.Resource, token, o.method, o.name)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer tp.Shutdown(context.Background())
	rctx, span := tp.Tracer("mcp-auth check").Start(req.Context(), "check")
	repl := caddy.NewReplacer()
	rctx = context.WithValue(rctx, caddy.ReplacerCtxKey, repl)
	rctx = context.WithValue(rctx, caddyhttp.VarsCtxKey, map[string]any{})
	req = req.WithContext(rctx)
	w := httptest.NewRecorder()
	passed := false
	err = h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		passed = true
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	span.End()
	if err != nil {
		return nil, fmt.Errorf("the handler failed: %w", err)
	}

	attrs := map[string]string{}
	for _, s := range recorder.Ended() {
		for _, kv := range s.Attributes() {
			if s.Name() == "check" {
				attrs[string(kv.Key)] = kv.Value.String()
			}
		}
		if s.Name() != "check" {
			for _, kv := range s.Attributes() {
				if kv.Key == "mcp_auth.outcome" {
					rep.add("call", "%s: %s", strings.TrimPrefix(s.Name(), "mcp_auth."), kv.Value.String())
				}
			}
		}
	}
	// The caller, once the token verified: its scopes as the policy reads them.
	if rec := auditRecordOf(req); rec != nil && rec.caller != nil {
		rep.add("scopes", "granted (after scope_claim, scope_prefix, scope_implies): %s",
			orNone(strings.Join(rec.caller.subject.Granted(), " ")))
		rep.add("client", "%s", orNone(rec.caller.identity.ClientID))
	}
	switch m := attrs["mcp.method.name"]; {
	case m != "":
		op := m
		for _, k := range []string{"gen_ai.tool.name", "gen_ai.prompt.name", "mcp.resource.uri"} {
			if v := attrs[k]; v != "" {
				op += " " + v
			}
		}
		rep.add("operation", "%s", op)
	case o.method != "" && h.ops == nil:
		rep.add("operation", "%s %s: not read (no per-operation rules, list filters or audit): the base policy decides", o.method, o.name)
	}
	rep.Rule = attrs["mcp_auth.rule"]
	if rep.Rule != "" {
		rep.add("rule", "%s", rep.Rule)
	}
	rep.Status = w.Code
	rep.Challenge = w.Header().Get("WWW-Authenticate")
	if passed {
		rep.Decision = "allow"
		return rep, nil
	}
	rep.Decision = "deny"
	if v, ok := repl.GetString("http.auth.mcp.error"); ok {
		rep.Error = v
	}
	rep.Reason = attrs["mcp_auth.detail"]
	return rep, nil
}

// pickHandler finds the mcp_auth handlers of the adapted configuration and returns the one
// of resource (any one when resource is empty and there is only one).
func pickHandler(cfgJSON []byte, resource string) (*Handler, error) {
	var doc any
	if err := json.Unmarshal(cfgJSON, &doc); err != nil {
		return nil, err
	}
	var found []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "mcp_auth" {
				raw, _ := json.Marshal(v)
				found = append(found, raw)
				return
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	var resources []string
	for _, raw := range found {
		h := new(Handler)
		if err := json.Unmarshal(raw, h); err != nil {
			return nil, fmt.Errorf("reading an mcp_auth handler: %w", err)
		}
		if resource == "" && len(found) == 1 || h.Resource == resource {
			return h, nil
		}
		resources = append(resources, h.Resource)
	}
	switch {
	case len(found) == 0:
		return nil, errors.New("no mcp_auth handler in the configuration")
	case resource == "":
		return nil, fmt.Errorf("several mcp_auth handlers; choose one with --resource (%s)", strings.Join(resources, ", "))
	}
	return nil, fmt.Errorf("no mcp_auth handler for resource %s (there are: %s)", resource, strings.Join(resources, ", "))
}

// checkRequest is the request a client would send to the resource: a POST with one JSON-RPC
// message for method, else a GET (the SSE stream, judged by the base policy alone).
func checkRequest(resource, token, method, name string) (*http.Request, error) {
	u, err := url.Parse(resource)
	if err != nil {
		return nil, err
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if method == "" {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Host = u.Host
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Accept", "text/event-stream")
		return r, nil
	}
	params := map[string]any{}
	if name != "" {
		key := "name"
		if strings.HasPrefix(method, "resources/") {
			key = "uri"
		}
		params[key] = name
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Host = u.Host
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	return r, nil
}

// explainToken adds what the token says of itself: its kind, and for a JWT its header, the
// key that matches it, iss, aud, times and binding. Nothing here decides: the handler does.
func explainToken(rep *checkReport, h *Handler, token string) {
	if !verify.MaybeJWS(token) {
		if h.Introspection != nil {
			rep.add("token", "opaque (not a JWT): asked of the authorization server (introspection)")
		} else {
			rep.add("token", "opaque (not a JWT), and introspection is off: it cannot be verified")
		}
		return
	}
	claims := jwt.MapClaims{}
	t, _, err := jwt.NewParser().ParseUnverified(token, claims)
	if err != nil {
		rep.add("token", "shaped like a JWT but unreadable: %v", err)
		return
	}
	kid, _ := t.Header["kid"].(string)
	alg, _ := t.Header["alg"].(string)
	typ, _ := t.Header["typ"].(string)
	rep.add("token", "JWT: alg %s, kid %s, typ %s", orNone(alg), orNone(kid), orNone(typ))

	iss, _ := claims["iss"].(string)
	if h.keySets != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		keys, err := h.keySets.Lookup(ctx, iss, kid, alg)
		cancel()
		switch {
		case err != nil:
			rep.add("key", "none: %v", err)
		default:
			rep.add("key", "%d key(s) of the configured sets match kid %s and alg %s", len(keys), orNone(kid), orNone(alg))
		}
	}
	rep.add("iss", "%s: %s", orNone(iss), listed(slices.Contains(h.Issuers, iss), "listed in issuers", "not listed in issuers ("+strings.Join(h.Issuers, ", ")+")"))
	aud := verify.ParseScopes(claims["aud"]) // a string or an array of strings, as scopes are
	if h.AllowAnyAudience {
		rep.add("aud", "%s: any audience accepted (allow_any_audience)", orNone(strings.Join(aud, " ")))
	} else {
		match := slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(h.Audiences, a) })
		rep.add("aud", "%s: %s", orNone(strings.Join(aud, " ")), listed(match, "names this resource", "does not name "+strings.Join(h.Audiences, " or ")))
	}
	now := h.now()
	var times []string
	for _, c := range []string{"exp", "nbf", "iat"} {
		v, ok := claims[c].(float64)
		if !ok {
			times = append(times, c+" absent")
			continue
		}
		at := time.Unix(int64(v), 0)
		switch d := at.Sub(now).Round(time.Second); {
		case d == 0:
			times = append(times, c+" now")
		case d > 0:
			times = append(times, fmt.Sprintf("%s in %s", c, d))
		default:
			times = append(times, fmt.Sprintf("%s %s ago", c, -d))
		}
	}
	rep.add("times", "%s (now %s, leeway %s)", strings.Join(times, ", "), now.UTC().Format(time.RFC3339), h.leeway)
	switch cnf, _ := claims["cnf"].(map[string]any); {
	case cnf == nil:
		rep.add("binding", "none (a bearer token)")
	case cnf["jkt"] != nil:
		rep.add("binding", "cnf.jkt: bound to a DPoP key; each request needs a DPoP proof of it, which check does not make")
	case cnf["x5t#S256"] != nil:
		rep.add("binding", "cnf.x5t#S256: bound to a client certificate (mtls_bound); check sends none")
	default:
		rep.add("binding", "cnf without jkt or x5t#S256: a binding the module cannot check")
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func listed(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}
