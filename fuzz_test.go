package mcpauth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
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
		tok, _, d := bearerToken(hdr, false)
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

// FuzzFilterToolsSSE: whatever a server answers a list request with, no client reading what the
// filter (filter_lists: every kind of list) lets through finds a forbidden entry in a message
// (the tool or prompt delete, the resource file:///secret, the template file:///secret/{n}): not the TypeScript SDK
// (TextDecoderStream, then eventsource-parser, whose first-chunk "ï»¿" check depends on how
// the body arrives), not a WHATWG EventSource, not the Go SDK (its own line scanner, then a
// JSON decoder that reads the first value and ignores what follows). The answer goes to a
// POST or a GET, as an event stream, JSON or another type; what the filter sends does not
// depend on how the answer was cut into writes.
func FuzzFilterToolsSSE(f *testing.F) {
	const list = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read","inputSchema":{"type":"object"}},{"name":"delete"}]}}`
	for _, s := range []string{
		// As the Go SDK and the TypeScript SDK servers write it.
		"event: message\nid: 1_0\ndata: " + list + "\n\n",
		"event: message\ndata: " + list + "\n\n",
		"\xEF\xBB\xBFevent: message\ndata: " + list + "\n\n",
		"\xEF\xBB\xBF\xC3\xAF\xC2\xBB\xC2\xBFdata: " + list + "\n\n",
		"\xEF\xBB\xBF\xEF\xBB\xBFdata: " + list + "\n\n",
		"event: message\r\ndata: " + list + "\r\n\r\n",
		"event: message\rdata: " + list + "\r\r",
		"data: \r" + list + "\n\n",
		"\xEF\xBB\xBFdata: x\ndata: " + list + "\n\n",
		"data: {\n\n\xEF\xBB\xBFdata: " + list + "\n\n",
		"data: \u00a0" + list + "\n\n",
		"data: " + list,
		"data: " + list + "\n",
		"data: {\"a\":\ndata: " + list + "}\n\n",
		": keep-alive\nretry: 100\nid: 7\n\ndata:{\"jsonrpc\":\"2.0\",\"id\":1,\ndata:\"result\":{\"tools\":[{\"name\":\"delete\"}]}}\n\n",
		"event: endpoint\ndata: /messages?sessionId=abc\n\n",
		list,
		"\xEF\xBB\xBF" + list,
		"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":[{\"name\":\"delete\"}],\"cacheScope\":\"public\",\"nextCursor\":\"x\"}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"resources\":[{\"uri\":\"file:///secret\",\"name\":\"s\"},{\"uri\":\"file:///pub\"}]}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resourceTemplates\":[{\"uriTemplate\":\"file:///secret/{n}\"}]}}\r\n\r\n",
	} {
		for how := range uint8(5) {
			f.Add([]byte(s), how, uint8(3))
		}
	}
	forbidden := [...]string{"delete", "delete", "file:///secret", "file:///secret/{n}"}
	f.Fuzz(func(t *testing.T, answer []byte, how, chunk uint8) {
		get := how%5 != 0 && how%5 != 4
		ct := [...]string{"text/event-stream", "text/event-stream", "text/plain", "application/json", "application/json"}[how%5]
		run := func(n int) (int, []byte) {
			rec := httptest.NewRecorder()
			tf := newListFilter(rec, nil, nil, mcpjson.AllLists)
			tf.lists.Allowed = func(k mcpjson.ListKind, key string) bool { return key != forbidden[k] }
			tf.sseOnly = get
			tf.Header().Set("Content-Type", ct)
			tf.WriteHeader(http.StatusOK)
			for i := 0; i < len(answer); i += n {
				if _, err := tf.Write(answer[i:min(i+n, len(answer))]); err != nil {
					t.Fatal(err)
				}
			}
			tf.finish()
			return rec.Code, rec.Body.Bytes()
		}
		code, out := run(max(len(answer), 1))
		if code2, out2 := run(1 + int(chunk%16)); code2 != code || !bytes.Equal(out2, out) {
			t.Fatalf("output depends on the writes: %d %q, in pieces %d %q", code, out, code2, out2)
		}
		if code == http.StatusBadGateway {
			return
		}
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		check := func(reader string, msg []byte, goJSON bool) {
			for kind, keys := range listEntriesRead(msg, goJSON) {
				if slices.Contains(keys, forbidden[kind]) {
					t.Fatalf("%s reads %q in %q\nfilter output %q\nfrom %q", reader, forbidden[kind], msg, out, answer)
				}
			}
		}
		// Every reader of an event stream: a GET answer is one whatever its type.
		if ct == "text/event-stream" || get {
			for _, firstChunk := range []bool{true, false} {
				for _, ev := range whatwgEvents(decodeUTF8Stream(out, firstChunk)) {
					check("eventsource-parser", []byte(ev), false)
				}
			}
			for _, ev := range goSDKEvents(out) {
				check("Go SDK event scanner", ev, true)
			}
		}
		if ct == "application/json" {
			check("fetch Response.json()", bytes.TrimPrefix(out, []byte("\xEF\xBB\xBF")), false)
			check("Go SDK", out, true)
		}
	})
}

// decodeUTF8Stream is the TypeScript SDK's way from body bytes to what eventsource-parser
// parses: TextDecoderStream drops a leading UTF-8 BOM and replaces invalid bytes, and
// eventsource-parser 3 drops "ï»¿" at the start of its first chunk (when the first chunk holds
// those three characters whole: firstChunk).
func decodeUTF8Stream(b []byte, firstChunk bool) string {
	s := strings.ToValidUTF8(string(bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))), "\uFFFD")
	if firstChunk {
		s = strings.TrimPrefix(s, "\u00EF\u00BB\u00BF")
	}
	return s
}

// whatwgEvents is HTML's event stream interpretation (eventsource-parser follows it): lines end
// at CRLF, LF or CR; a line starting with ":" is a comment; a field's value loses one leading
// space; data lines are joined with LF; an empty line dispatches an event that has data. It
// returns the data of every event, whatever its name. A CR at the very end counts as a line
// end, as WHATWG has it (eventsource-parser waits for a possible LF and never dispatches).
func whatwgEvents(s string) []string {
	var events []string
	var data []string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return events // an unfinished line and event are not dispatched
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
		if line == "" {
			if data != nil {
				events = append(events, strings.Join(data, "\n"))
			}
			data = nil
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if !found {
			value = ""
		}
		if field == "data" {
			data = append(data, strings.TrimPrefix(value, " "))
		}
	}
}

// goSDKEvents is the Go SDK's scanEventsLimited (mcp/event.go, v1.8.0): lines end at LF only,
// trailing CRs and LFs are cut, a line without ":" ends the stream, data values are trimmed
// of white space, and the event pending at the end of the stream is dispatched.
func goSDKEvents(b []byte) [][]byte {
	r := bufio.NewReader(bytes.NewReader(b))
	var events [][]byte
	var data *bytes.Buffer
	yield := func() {
		if data != nil && data.Len() > 0 {
			events = append(events, data.Bytes())
		}
		data = nil
	}
	for {
		line, err := r.ReadBytes('\n')
		eof := err != nil
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			yield()
			if eof {
				return events
			}
			continue
		}
		before, after, found := bytes.Cut(line, []byte(":"))
		if !found {
			return events
		}
		if string(before) == "data" {
			if data == nil {
				data = new(bytes.Buffer)
			} else {
				data.WriteByte('\n')
			}
			data.Write(bytes.TrimSpace(after))
		}
		if eof {
			yield()
			return events
		}
	}
}

// listKeys are the result key and the entry key of each kind of list, by mcpjson.ListKind.
var listKeys = [...][2]string{{"tools", "name"}, {"prompts", "name"}, {"resources", "uri"}, {"resourceTemplates", "uriTemplate"}}

// listEntriesRead returns, by kind of list, the entry keys (names, URIs, URI templates) a
// client reads from msg, a message or a batch. JavaScript's JSON.parse reads a whole text
// with exact keys; the Go SDK decodes the first value and ignores the rest, and clients built
// on encoding/json match keys in any case: with goJSON, keys are matched case-insensitively.
// Of duplicate keys the last counts, in both.
func listEntriesRead(msg []byte, goJSON bool) [][]string {
	var v any
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return nil
	}
	if !goJSON {
		if _, err := dec.Token(); err != io.EOF {
			return nil // JSON.parse refuses data after the value
		}
	}
	key := func(k, want string) bool { return k == want || goJSON && strings.EqualFold(k, want) }
	msgs, ok := v.([]any)
	if !ok {
		msgs = []any{v}
	}
	out := make([][]string, len(listKeys))
	for _, m := range msgs {
		obj, _ := m.(map[string]any)
		for rk, res := range obj {
			robj, _ := res.(map[string]any)
			for lk, entries := range robj {
				list, _ := entries.([]any)
				for _, entry := range list {
					em, _ := entry.(map[string]any)
					for ek, name := range em {
						s, ok := name.(string)
						if !ok || !key(rk, "result") {
							continue
						}
						for kind, keys := range listKeys {
							if key(lk, keys[0]) && key(ek, keys[1]) {
								out[kind] = append(out[kind], s)
							}
						}
					}
				}
			}
		}
	}
	return out
}
