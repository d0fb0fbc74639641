package mcpauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Fuzz targets. `go test` runs their seed corpora (f.Add and testdata/fuzz); explore with e.g.
//
//	go test -run '^$' -fuzz FuzzBearerToken -fuzztime 60s

// FuzzBearerToken: whatever the Authorization header holds, the outcome is one of the
// defined ones, and an accepted token is exactly the b64token after "Bearer ".
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer abc.def.ghi", "bearer x", "Bearer", "Bearer ", "Bearer a b",
		"Basic dXNlcjpwYXNz", "Bearer  two-spaces", "Bearer a==", "Bearer a=b", "Bearer \x00", "BEARER tok/+~_-.",
		"Bearer " + strings.Repeat("a", maxTokenBytes+1)} {
		f.Add(s, false)
	}
	f.Add("Bearer x", true)
	f.Fuzz(func(t *testing.T, v string, twice bool) {
		hdr := http.Header{"Authorization": {v}}
		if twice {
			hdr["Authorization"] = append(hdr["Authorization"], v)
		}
		tok, d := bearerToken(hdr)
		switch d {
		case denyNone:
			if twice {
				t.Fatal("two Authorization headers accepted")
			}
			if len(tok) > maxTokenBytes || !strings.HasSuffix(v, tok) || !strings.EqualFold(v[:6], "bearer") {
				t.Fatalf("accepted %q from %q", tok, v)
			}
			if isB64Token(tok) && strings.ContainsAny(tok, " \t\r\n\"\\,") {
				t.Fatalf("b64token with separators: %q", tok)
			}
		case denyMissing, denyMultipleHeaders, denyTooLarge:
		default:
			t.Fatalf("unexpected denial %d for %q", d, v)
		}
	})
}

// FuzzChallenge: every challenge is one RFC 9110 `Bearer` challenge whose auth-params are
// quoted-strings holding only characters RFC 6750 §3 allows (%x20-21 / %x23-5B / %x5D-7E).
func FuzzChallenge(f *testing.F) {
	f.Add("mcp:read", "mcp:write", "https://h/mcp", uint8(0))
	f.Add("", "", "https://h", uint8(5))
	f.Add("a\"b", "c\\d", "https://h/a b?q=\"x\"", uint8(15))
	f.Fuzz(func(t *testing.T, s1, s2, resource string, which uint8) {
		d := denial(which % uint8(numDenials))
		var scopes []string
		for _, s := range []string{s1, s2} {
			if validScopeToken(s) {
				scopes = append(scopes, s)
			}
		}
		if checkResourceURL(resource) != nil {
			return // refused at load
		}
		_, metaURL, err := metadataLocation(resource)
		if err != nil {
			return
		}
		info := denials[d]
		ch := buildChallenge(info.code, info.desc, scopes, metaURL)
		checkChallenge(t, ch)
	})
}

// checkChallenge parses `Bearer name="value", ...` strictly.
func checkChallenge(t *testing.T, ch string) {
	t.Helper()
	rest, ok := strings.CutPrefix(ch, "Bearer")
	if !ok {
		t.Fatalf("not a Bearer challenge: %q", ch)
	}
	if rest == "" {
		return
	}
	rest, ok = strings.CutPrefix(rest, " ")
	if !ok {
		t.Fatalf("no space after scheme: %q", ch)
	}
	seen := map[string]bool{}
	for i := 0; rest != ""; i++ {
		if i > 0 {
			if rest, ok = strings.CutPrefix(rest, ", "); !ok {
				t.Fatalf("params not separated by ', ': %q", ch)
			}
		}
		name, after, ok := strings.Cut(rest, `="`)
		if !ok || name == "" {
			t.Fatalf("bad auth-param in %q", ch)
		}
		switch name {
		case "error", "error_description", "scope", "resource_metadata":
		default:
			t.Fatalf("unknown param %q in %q", name, ch)
		}
		if seen[name] {
			t.Fatalf("param %q twice in %q", name, ch)
		}
		seen[name] = true
		end := strings.IndexByte(after, '"')
		if end < 0 {
			t.Fatalf("unterminated quoted-string in %q", ch)
		}
		for _, c := range []byte(after[:end]) {
			if c < 0x20 || c == 0x22 || c == 0x5C || c > 0x7E {
				t.Fatalf("character %q not allowed by RFC 6750 in %q", c, ch)
			}
		}
		rest = after[end+1:]
	}
}

// FuzzMetadataPath: the metadata path is the resource's path under the well-known prefix, the
// absolute URL points at it, and both slash forms of it are recognised.
func FuzzMetadataPath(f *testing.F) {
	for _, s := range []string{"https://h", "https://h/", "https://h/mcp", "https://h:8443/a/b/mcp/",
		"http://127.0.0.1:8080/mcp?x=1", "https://h/%2Fx", "https://h/a%20b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, resource string) {
		if checkResourceURL(resource) != nil {
			return
		}
		path, abs, err := metadataLocation(resource)
		if err != nil {
			return
		}
		if !strings.HasPrefix(path, wellKnownPRM) {
			t.Fatalf("path %q outside %s", path, wellKnownPRM)
		}
		u, err := url.Parse(abs)
		if err != nil {
			t.Fatalf("metadata URL %q does not parse: %v", abs, err)
		}
		r, _ := url.Parse(resource)
		if u.Host != r.Host || u.Scheme != r.Scheme {
			t.Fatalf("metadata URL %q left the resource's origin %q", abs, resource)
		}
		m := metadataDoc{path: path}
		if !m.isMetadataPath(u.Path) || !m.isMetadataPath(u.Path+"/") {
			t.Fatalf("metadata URL path %q not recognised (path %q)", u.Path, path)
		}
	})
}

// FuzzCaddyfile: no input makes the parser panic, and what it accepts survives Validate
// without panicking either.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"mcp_auth {\n resource https://h/mcp\n authorization_servers https://as\n scopes a b\n}",
		"mcp_auth {\n skip_scopes\n leeway 10s\n jwks_url https://as/jwks\n}",
		"mcp_auth {\n token_cache_size 0\n strip_token\n require_at_jwt\n algorithms ES256\n}",
		"mcp_auth {\n resource\n}", "mcp_auth arg", "mcp_auth {\n scopes {\n }\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// Tokenize as Caddy's adapter does: input the lexer refuses never reaches the parser
		// (NewTestDispenser would log.Fatal on it, ending the fuzzer, not finding a bug).
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		_ = h.Validate()
	})
}

// FuzzFilterToolsJSON: whatever a server answers, what the filter lets through is valid JSON
// in which no result.tools array (as encoding/json reads it, last duplicate winning) still
// lists the forbidden tool.
func FuzzFilterToolsJSON(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete","x":[1,{"a":"b"}]}]}},{"jsonrpc":"2.0","method":"m"}]`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"del\u0065te"}],"nextCursor":"x"}}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x\ud83d"}}`,
		`{"result":{"tools":[{"name":"read"}],"tools":[{"name":"delete"}]}}`,
		`{"result":{"Tools":[{"name":"delete"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := filterToolsJSON(data, func(name string) bool { return name != "delete" })
		if err != nil {
			return // refused: the filter answers 502 or drops the event, nothing passes
		}
		if !json.Valid(out) {
			t.Fatalf("filter output is not valid JSON: %q from %q", out, data)
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatal(err)
		}
		msgs, ok := v.([]any)
		if !ok {
			msgs = []any{v}
		}
		for _, m := range msgs {
			obj, _ := m.(map[string]any)
			for rk, res := range obj {
				if !strings.EqualFold(rk, "result") {
					continue
				}
				robj, _ := res.(map[string]any)
				for tk, tools := range robj {
					if !strings.EqualFold(tk, "tools") {
						continue
					}
					list, _ := tools.([]any)
					for _, tool := range list {
						if tm, _ := tool.(map[string]any); tm != nil {
							for nk, name := range tm {
								if strings.EqualFold(nk, "name") && name == "delete" {
									t.Fatalf("forbidden tool passed: %q from %q", out, data)
								}
							}
						}
					}
				}
			}
		}
	})
}
