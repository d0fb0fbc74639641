package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestAttackJSONRPC: what a request body can carry. The module reads JSON-RPC exactly as the
// MCP server will, or refuses it: no message is judged as one operation and run as another.
func TestAttackJSONRPC(t *testing.T) {
	e := newAttackEnv(t, "jsonrpc")
	read := e.token(t, baseScope)
	call := func(body string) attackReq { return post(body, bearer(read)) }
	callName := func(params string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`
	}

	t.Run("smuggling a protected tools/call", func(t *testing.T) {
		deep := func(n int) string {
			return callName(`{"name":"read_file","arguments":{"path":"/x"},"_meta":{"x":` +
				strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`)
		}
		e.run(t, []attackCase{
			{"duplicate name, protected last", call(callName(`{"name":"read_file","name":"delete_file"}`)), badBody},
			{"duplicate name, protected first", call(callName(`{"name":"delete_file","name":"read_file"}`)), badBody},
			{"duplicate name, escaped", call(callName(`{"name":"read_file","n\u0061me":"delete_file"}`)), badBody},
			{"duplicate method", call(`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_file"}}`), badBody},
			{"duplicate params", call(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"},"params":{"name":"delete_file"}}`), badBody},
			{"Name", call(callName(`{"Name":"delete_file"}`)), badBody},
			{"nAme beside name", call(callName(`{"name":"read_file","nAme":"delete_file","arguments":{"path":"/x"}}`)), badBody},
			{"NAME beside name", call(callName(`{"name":"read_file","NAME":"delete_file"}`)), badBody},
			{"escaped Name", call(callName(`{"name":"read_file","N\u0061me":"delete_file"}`)), badBody},
			{"Method", call(`{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"delete_file"}}`), badBody},
			{"Params beside params", call(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"},"Params":{"name":"delete_file"}}`), badBody},
			// U+017F LATIN SMALL LETTER LONG S folds to "s" (encoding/json matches keys so).
			{"paramſ beside params", call(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"},"paramſ":{"name":"delete_file"}}`), badBody},
			{"jſonrpc", call(`{"jſonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}`), badBody},
			{"batch with the protected call second", call(`[` + callRead + `,` + strings.Replace(callDelete, `"id":1`, `"id":2`, 1) + `]`), forbidden},
			{"batch with a notification, then the protected call", call(`[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}},` + callDelete + `]`), forbidden},
			{"batch with a non-object element", call(`[` + callRead + `,1,` + callDelete + `]`), badBody},
			{"nested batch", call(`[[` + callDelete + `]]`), badBody},
			{"empty batch", call(`[]`), badBody},
			{`"\u006dethod"`, call(`{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call","params":{"name":"delete_file","arguments":{"path":"/x"}}}`), forbidden},
			{"method with escapes", call(`{"jsonrpc":"2.0","id":1,"method":"tools\/c\u0061ll","params":{"name":"delete_file","arguments":{"path":"/x"}}}`), forbidden},
			{"name with escapes", call(callName(`{"name":"delete\u005ffile","arguments":{"path":"/x"}}`)), forbidden},
			{"name as an object", call(callName(`{"name":{"name":"delete_file"}}`)), badBody},
			{"name as an array", call(callName(`{"name":["delete_file"]}`)), badBody},
			{"params as an array", call(callName(`["delete_file"]`)), badBody},
			{"no params", call(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`), badBody},
			{"method as an array", call(`{"jsonrpc":"2.0","id":1,"method":["tools/call"],"params":{"name":"delete_file"}}`), badBody},
			{"no jsonrpc member", call(`{"id":1,"method":"tools/call","params":{"name":"delete_file"}}`), badBody},
			{"jsonrpc 1.0", call(`{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}`), badBody},
			{"second value after the first", call(callRead + callDelete), badBody},
			{"second value on a new line", call(callRead + "\n" + callDelete), badBody},
			{"trailing garbage", call(callRead + " x"), badBody},
			{"trailing comma", call(strings.TrimSuffix(callDelete, "}") + ",}"), badBody},
			{"comment", call("/* */" + callDelete), badBody},
			{"single quotes", call(strings.ReplaceAll(callDelete, `"`, `'`)), badBody},
			{"NaN", call(callName(`{"name":"delete_file","arguments":{"n":NaN}}`)), badBody},
			{"BOM", call("\ufeff" + callDelete), badBody},
			{"NBSP before the message", call("\u00a0" + callDelete), badBody},
			{"invalid UTF-8 in the name", call(callName(`{"name":"delete_file` + "\xff" + `"}`)), badBody},
			{"invalid UTF-8 in an argument", call(callName(`{"name":"delete_file","arguments":{"path":"` + "\xc0\xaf" + `"}}`)), badBody},
			{"overlong encoding of '_'", call(callName(`{"name":"delete` + "\xc1\x9f" + `file"}`)), badBody},
			{"lone surrogate in the name", call(callName(`{"name":"delete_file\ud800"}`)), badBody},
			{"NUL byte in the name", call(callName(`{"name":"delete_file` + "\x00" + `"}`)), badBody},
			{"depth 1001", call(deep(1001)), badBody},
			{"depth 30000", call(deep(30000)), badBody},
			{"Mcp-Method header naming another method", attackReq{body: callDelete, auth: []string{bearer(read)}, header: []string{"Mcp-Method: tools/list"}}, badBody},
			{"Mcp-Name header naming another tool", attackReq{body: callDelete, auth: []string{bearer(read)}, header: []string{"Mcp-Method: tools/call", "Mcp-Name: read_file"}}, badBody},
			// What only the top-level params.name names is what runs.
			{"control: a nested params names the protected tool", call(callName(`{"name":"read_file","arguments":{"path":"/x"},"params":{"name":"delete_file"}}`)), ranRead},
			{"control: _meta names the protected tool", call(callName(`{"name":"read_file","arguments":{"path":"/x"},"_meta":{"name":"delete_file"}}`)), ranRead},
			{"control: the protected name as an argument value", call(callName(`{"name":"read_file","arguments":{"path":"delete_file"}}`)), outcome{status: http.StatusOK, reach: true, ran: "read_file"}},
			{"control: depth 50", call(deep(50)), ranRead},
			{"control: the protected call", call(callDelete), forbidden},
			{"control: the protected call with mcp:admin", post(callDelete, bearer(e.token(t, stepUpScope))), outcome{status: http.StatusOK, reach: true, ran: "delete_file"}},
		})
	})

	t.Run("completion and subscription by resource URI", func(t *testing.T) {
		complete := func(ref string) attackReq {
			return call(`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":` + ref + `,"argument":{"name":"name","value":""}}}`)
		}
		resourceRef := func(uri string) attackReq {
			return complete(`{"type":"ref/resource","uri":` + mustJSON(t, uri) + `}`)
		}
		subscribe := func(method, uri string) attackReq {
			return call(`{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{"uri":` + mustJSON(t, uri) + `}}`)
		}
		e.run(t, []attackCase{
			{"completion on a protected template", resourceRef("file:///secret/{name}"), forbidden},
			{"completion on a template over the protected files", resourceRef("file:///{path}"), forbidden},
			{"completion on a protected URL template", resourceRef("https://internal.example.com/admin/{x}"), forbidden},
			{"completion on the protected file", resourceRef(attackSecret), forbidden},
			{"completion on a template in upper case", resourceRef("FILE:///secret/{name}"), badBody},
			{"completion on a template with a dot segment", resourceRef("file:///public/../secret/{name}"), badBody},
			{"completion on a template with an escaped letter", resourceRef("file:///%73ecret/{name}"), badBody},
			{"completion with two uris", complete(`{"type":"ref/resource","uri":"file:///public/{n}","uri":"file:///secret/{n}"}`), badBody},
			{"completion with URI beside uri", complete(`{"type":"ref/resource","uri":"file:///public/{n}","URI":"file:///secret/{n}"}`), badBody},
			{"completion with Ref beside ref", call(`{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///public/{n}"},"Ref":{"type":"ref/resource","uri":"file:///secret/{n}"}}}`), badBody},
			{"completion with two types", complete(`{"type":"ref/prompt","type":"ref/resource","name":"x","uri":"file:///secret/{n}"}`), badBody},
			{"completion with an unknown ref type", complete(`{"type":"ref/Resource","uri":"file:///secret/{n}"}`), badBody},
			{"subscribe to the protected file", subscribe("resources/subscribe", attackSecret), forbidden},
			{"unsubscribe from the protected file", subscribe("resources/unsubscribe", attackSecret), forbidden},
			{"subscribe to the protected file in upper case", subscribe("resources/subscribe", "FILE:///secret/key"), badBody},
			{"subscribe with a duplicate uri", call(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///public/x","uri":"file:///secret/key"}}`), badBody},
			{"control: completion on a public template", resourceRef("file:///public/{name}"), reached},
			{"control: completion on a prompt", complete(`{"type":"ref/prompt","name":"p"}`), reached},
		})
	})

	t.Run("resource URIs in normal form only", func(t *testing.T) {
		// MCP servers resolve URIs with the WHATWG URL parser (and fileURLToPath): a URI
		// that resolves to another one is refused rather than matched as written.
		readURI := func(uri string) attackReq {
			return call(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":` + mustJSON(t, uri) + `}}`)
		}
		var cases []attackCase
		for _, uri := range []string{
			"file:///public/../secret/key",
			"file:///public/./../secret/key",
			"file:///public/%2e%2e/secret/key",
			"file:///public/%2E%2E/secret/key",
			"file:///public/.%2e/secret/key",
			"file:///secret/./key",
			"FILE:///secret/key",
			"File:///secret/key",
			"file://localhost/secret/key",
			"file://LOCALHOST/secret/key",
			"file://host.example/secret/key",
			"file:////secret/key",
			"file:///secret//key",
			"file:///public//..//secret/key",
			"file:///secret/key?x=1",
			"file:///secret/key#x",
			"file:///public%2F..%2Fsecret/key",
			"file:///public/..%2Fsecret/key",
			"file:///public\\..\\secret\\key",
			"file:///public%5C..%5Csecret%5Ckey",
			"file:///%73ecret/key",
			"file:///secret/k%00ey",
			" file:///secret/key",
			"file:///secret/key ",
			"file:///sec\tret/key",
			"file:///sec\nret/key",
			"file:\\\\\\secret\\key",
			"https://INTERNAL.example.com/admin/x",
			"HTTPS://internal.example.com/admin/x",
			"https://internal.example.com:443/admin/x",
			"https://internal.example.com:/admin/x",
			"https://internal.example.com/public/../admin/x",
			"https://internal.example.com/public/%2e%2e/admin/x",
			"https://internal.example.com/./admin/x",
			"https://internal.example.com\\admin\\x",
			"https://internal.example.com/admin%2Fx",
			"https:internal.example.com/admin/x",
			"https:///internal.example.com/admin/x",
			"\thttps://internal.example.com/admin/x",
		} {
			cases = append(cases, attackCase{fmt.Sprintf("%q", uri), readURI(uri), badBody})
		}
		cases = append(cases,
			attackCase{"control: the protected file", readURI(attackSecret), forbidden},
			attackCase{"control: the protected URL", readURI("https://internal.example.com/admin/x"), forbidden},
			attackCase{"control: the protected URL with a query", readURI("https://internal.example.com/admin/x?q=1"), forbidden},
			attackCase{"control: a public file", readURI("file:///public/readme"), reached},
			attackCase{"control: a public URL", readURI("https://internal.example.com/public/x"), reached},
		)
		e.run(t, cases)
	})
}

// TestAttackToolsListAnswers: filter_tools_list reads the server's answer as the most lenient
// official client would. Whatever its status, content type, byte-order mark or line endings,
// the tool the caller may not call never reaches it: the list is filtered, or refused with 502.
func TestAttackToolsListAnswers(t *testing.T) {
	type answer struct {
		status   int
		ctype    string
		encoding string
		body     string
	}
	var current atomic.Pointer[answer]
	var hits atomic.Int64
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		a := current.Load()
		h := w.Header()
		h["Content-Type"] = []string{a.ctype}
		if a.encoding != "" {
			h.Set("Content-Encoding", a.encoding)
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	}))
	t.Cleanup(fake.Close)

	e := &attackEnv{fixture: newFixture(t, server{fake})}
	const name = "Attack tools/list answers"
	e.start(t, e.caddyfile(`resource_name "`+name+`"`+attackAuth), "caddyfile", name)

	list := `{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}},` +
		`{"name":"delete_file","inputSchema":{"type":"object"}}]}}`
	sse := func(nl string) string { return "event: message" + nl + "data: " + list + nl + nl }
	// Data lines are joined with a newline, which JSON reads as whitespace between members.
	at := strings.Index(list, `{"tools"`)
	split := "event: message\ndata: " + list[:at] + "\ndata: " + list[at:] + "\n\n"
	cases := []struct {
		name string
		a    answer
	}{
		{"JSON", answer{200, "application/json", "", list}},
		{"SSE", answer{200, "text/event-stream", "", sse("\n")}},
		{"JSON with charset", answer{200, "application/json; charset=utf-8", "", list}},
		{"JSON in upper case", answer{200, "Application/JSON", "", list}},
		{"JSON with odd spacing", answer{200, " application/json ;charset=UTF-8", "", list}},
		{"JSON subtype a substring test accepts", answer{200, "application/json-rpc", "", list}},
		{"JSON named in a parameter", answer{200, "text/plain; profile=application/json", "", list}},
		{"JSON with a BOM", answer{200, "application/json", "", "\ufeff" + list}},
		{"JSON with leading whitespace", answer{200, "application/json", "", "\r\n " + list}},
		{"JSON batch answer", answer{200, "application/json", "", "[" + list + "]"}},
		{"JSON, status 201", answer{201, "application/json", "", list}},
		{"JSON, status 203", answer{203, "application/json", "", list}},
		{"JSON, status 206", answer{206, "application/json", "", list}},
		{"JSON, status 299", answer{299, "application/json", "", list}},
		{"JSON, gzip", answer{200, "application/json", "gzip", gzipped(t, list)}},
		{"SSE with charset", answer{200, "text/event-stream; charset=utf-8", "", sse("\n")}},
		{"SSE in mixed case", answer{200, "Text/Event-Stream", "", sse("\n")}},
		{"SSE with a BOM", answer{200, "text/event-stream", "", "\ufeff" + sse("\n")}},
		{"SSE with CRLF", answer{200, "text/event-stream", "", sse("\r\n")}},
		{"SSE with CR", answer{200, "text/event-stream", "", sse("\r")}},
		{"SSE with data split over two lines", answer{200, "text/event-stream", "", split}},
		{"SSE with data: and no space", answer{200, "text/event-stream", "", "data:" + list + "\n\n"}},
		{"SSE, status 201", answer{201, "text/event-stream", "", sse("\n")}},
		{"SSE, gzip", answer{200, "text/event-stream", "gzip", gzipped(t, sse("\n"))}},
	}
	body := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			current.Store(&c.a)
			before := hits.Load()
			code, _, got := e.send(t, post(body, bearer(e.token(t, baseScope))))
			if hits.Load() != before+1 {
				t.Errorf("the MCP server was not asked")
			}
			plain := decodeIfGzip(got)
			switch {
			case code == http.StatusBadGateway:
				if bytes.Contains(plain, []byte("delete_file")) {
					t.Errorf("the 502 answer holds the hidden tool: %q", plain)
				}
			case code >= 200 && code < 300:
				if bytes.Contains(plain, []byte("delete_file")) || !bytes.Contains(plain, []byte("read_file")) {
					t.Errorf("status %d, answer %q: want read_file only, or 502", code, plain)
				}
			default:
				t.Errorf("status %d, want the filtered list or 502", code)
			}
		})
	}
	t.Run("control: a caller that may call delete_file sees it", func(t *testing.T) {
		current.Store(&answer{200, "application/json", "", list})
		if code, _, got := e.send(t, post(body, bearer(e.token(t, stepUpScope)))); code != http.StatusOK || !bytes.Contains(got, []byte("delete_file")) {
			t.Errorf("status %d, answer %q; want delete_file listed", code, got)
		}
	})
}

// decodeIfGzip returns the gzip-decoded body when it is gzip, else the body: a proxy may or
// may not decode a compressed answer, and the hidden tool must be absent either way.
func decodeIfGzip(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return b
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(zr); err != nil {
		return b
	}
	return out.Bytes()
}

// TestAttackListAnswers: with filter_lists, a server answer that clients could read as a list
// holding the protected resource (a key in another case, a duplicate key, a cacheScope that a
// lenient client reads last) is refused with 502; the resource never reaches the caller.
func TestAttackListAnswers(t *testing.T) {
	var body atomic.Pointer[string]
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(*body.Load()))
	}))
	t.Cleanup(fake.Close)
	e := &attackEnv{fixture: newFixture(t, server{fake})}
	const name = "Attack list answers"
	e.start(t, e.caddyfile(`resource_name "`+name+`"`+strings.Replace(attackAuth, "filter_tools_list", "filter_lists", 1)), "caddyfile", name)

	const pub, secret = `{"uri":"file:///public/readme","name":"readme"}`, `{"uri":"file:///secret/key","name":"key"}`
	result := func(r string) string { return `{"jsonrpc":"2.0","id":3,"result":` + r + `}` }
	cases := []struct{ name, method, answer string }{
		{"Resources", "resources/list", result(`{"resources":[` + pub + `],"Resources":[` + secret + `]}`)},
		{"RESOURCES alone", "resources/list", result(`{"RESOURCES":[` + secret + `]}`)},
		{"Prompts", "prompts/list", result(`{"prompts":[],"Prompts":[{"name":"x"}],"resources":[` + secret + `]}`)},
		{"ResourceTemplates", "resources/templates/list", result(`{"ResourceTemplates":[{"uriTemplate":"file:///secret/{n}"}],"resources":[` + secret + `]}`)},
		{"duplicate uri", "resources/list", result(`{"resources":[{"uri":"file:///public/readme","uri":"file:///secret/key"}]}`)},
		{"duplicate uri by escape", "resources/list", result(`{"resources":[{"uri":"file:///public/readme","u\u0072i":"file:///secret/key"}]}`)},
		{"URI beside uri", "resources/list", result(`{"resources":[{"uri":"file:///public/readme","URI":"file:///secret/key"}]}`)},
		{"duplicate resources", "resources/list", result(`{"resources":[` + pub + `],"resources":[` + secret + `]}`)},
		{"duplicate uriTemplate", "resources/templates/list", result(`{"resourceTemplates":[{"uriTemplate":"file:///public/{n}","uriTemplate":"file:///secret/{n}"}]}`)},
		{"uritemplate", "resources/templates/list", result(`{"resourceTemplates":[{"uriTemplate":"file:///public/{n}","uritemplate":"file:///secret/{n}"}]}`)},
		{"CacheScope", "resources/list", result(`{"resources":[` + pub + `],"CacheScope":"public"}`)},
		{"duplicate cacheScope", "resources/list", result(`{"resources":[` + pub + `],"cacheScope":"private","cacheScope":"public"}`)},
		{"Result", "resources/list", `{"jsonrpc":"2.0","id":3,"result":{"resources":[]},"Result":{"resources":[` + secret + `]}}`},
	}
	read := e.token(t, baseScope)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body.Store(&c.answer)
			code, _, got := e.send(t, post(`{"jsonrpc":"2.0","id":3,"method":"`+c.method+`"}`, bearer(read)))
			if code != http.StatusBadGateway || bytes.Contains(got, []byte("secret")) {
				t.Errorf("status %d, answer %q: want 502 without the protected entry", code, got)
			}
		})
	}
	t.Run("control: the list filtered and marked private", func(t *testing.T) {
		a := result(`{"resources":[` + pub + `,` + secret + `],"cacheScope":"public","nextCursor":"2"}`)
		body.Store(&a)
		code, _, got := e.send(t, post(`{"jsonrpc":"2.0","id":3,"method":"resources/list"}`, bearer(read)))
		want := result(`{"resources":[` + pub + `],"cacheScope":"private","nextCursor":"2"}`)
		if code != http.StatusOK || string(got) != want {
			t.Errorf("status %d, answer %s; want 200 %s", code, got, want)
		}
		code, _, got = e.send(t, post(`{"jsonrpc":"2.0","id":3,"method":"resources/list"}`, bearer(e.token(t, stepUpScope))))
		if code != http.StatusOK || !bytes.Contains(got, []byte("file:///secret/key")) || !bytes.Contains(got, []byte(`"cacheScope":"private"`)) {
			t.Errorf("status %d, answer %s; want the protected entry for mcp:admin, private", code, got)
		}
	})
}
