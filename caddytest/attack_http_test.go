package integration

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
	"unicode/utf16"
)

// TestAttackHTTP: what HTTP can carry around a token. Credentials only ever come from one
// well-formed Authorization: Bearer header; no path, method or header spelling reaches the
// MCP server without a valid token; and with rules in place no body reaches it that the
// module did not read as the server will (UTF-8 JSON, POST only, no content coding).
func TestAttackHTTP(t *testing.T) {
	e := newAttackEnv(t, "http")
	tok := e.token(t, baseScope)

	t.Run("Authorization header shapes", func(t *testing.T) {
		other := e.token(t, baseScope+" mcp:admin")
		e.run(t, []attackCase{
			{"bearer", post(callRead, "bearer "+tok), ranRead},
			{"BEARER", post(callRead, "BEARER "+tok), ranRead},
			{"BeArEr", post(callRead, "BeArEr "+tok), ranRead},
			{"two spaces", post(callRead, "Bearer  "+tok), ranRead},
			{"many spaces", post(callRead, "Bearer "+strings.Repeat(" ", 40)+tok), ranRead},
			// Leading and trailing whitespace is not part of a field value (RFC 9110 §5.5).
			{"trailing spaces", post(callRead, bearer(tok)+"   "), ranRead},
			{"trailing tab", post(callRead, bearer(tok)+"\t"), ranRead},
			{"leading spaces", post(callRead, "   "+bearer(tok)), ranRead},
			// RFC 9110 §11.4: the scheme is followed by 1*SP. With a tab, the credentials
			// are not Bearer credentials.
			{"tab after the scheme", post(callRead, "Bearer\t"+tok), noToken},
			{"trailing comma", post(callRead, bearer(tok)+","), badHeader},
			{"comma-separated second credential", post(callRead, bearer(tok)+", "+bearer(other)), badHeader},
			{"Bearer a, Bearer b", post(callRead, "Bearer a, Bearer b"), badHeader},
			{"two tokens separated by a space", post(callRead, bearer(tok)+" "+other), badHeader},
			{"two Authorization headers, same token", post(callRead, bearer(tok), bearer(tok)), badHeader},
			{"two Authorization headers, Basic then Bearer", post(callRead, "Basic dXNlcjpwYXNz", bearer(tok)), badHeader},
			{"two Authorization headers of different case", attackReq{body: callRead, header: []string{
				"authorization: " + bearer(tok), "AUTHORIZATION: " + bearer(other)}}, badHeader},
			{"Bearer alone", post(callRead, "Bearer"), badHeader},
			{"Bearer and a space", post(callRead, "Bearer "), badHeader},
			{"empty value", post(callRead, ""), noToken},
			{"spaces only", post(callRead, "   "), noToken},
			{"Basic", post(callRead, "Basic dXNlcjpwYXNz"), noToken},
			{"DPoP scheme (DPoP is off)", post(callRead, "DPoP "+tok), noToken},
			{"token without a scheme", post(callRead, tok), noToken},
			{"scheme glued to the token", post(callRead, "Bearer"+tok), noToken},
			{"Bearer: token", post(callRead, "Bearer:"+tok), noToken},
			{"Bearer=token", post(callRead, "Bearer="+tok), noToken},
			{"another scheme named like Bearer", post(callRead, "Bearerx "+tok), noToken},
			{"'=' inside the token", post(callRead, bearer(tok[:20]+"="+tok[20:])), badHeader},
			{"'=' padding at the end", post(callRead, bearer(tok+"==")), badToken},
			{"non-ASCII letter", post(callRead, bearer(tok+"é")), badHeader},
			{"obs-text byte", post(callRead, bearer(tok+"\x80")), badHeader},
			{"quoted token", post(callRead, `Bearer "`+tok+`"`), badHeader},
			{"token68 with a parameter", post(callRead, bearer(tok)+`, realm="x"`), badHeader},
			{"NUL inside", post(callRead, bearer(tok[:20]+"\x00"+tok[20:])), outcome{status: http.StatusBadRequest, server: true}},
			{"DEL inside", post(callRead, bearer(tok[:20]+"\x7f"+tok[20:])), outcome{status: http.StatusBadRequest, server: true}},
			{"Proxy-Authorization only", attackReq{body: callRead, header: []string{"Proxy-Authorization: " + bearer(tok)}}, noToken},
			{"token in the query", attackReq{target: "/mcp?access_token=" + tok, body: callRead}, noToken},
			{"token in a form body", attackReq{body: "access_token=" + tok,
				header: []string{"Content-Type: application/x-www-form-urlencoded"}}, noToken},
			{"token in a cookie", attackReq{body: callRead, header: []string{"Cookie: access_token=" + tok}}, noToken},
		})
	})

	t.Run("paths and methods need a token", func(t *testing.T) {
		targets := []string{
			"/mcp", "/mcp/", "/MCP", "//mcp", "/mcp/../", "/x/../mcp", "/%2e/mcp", "/%2e%2e/mcp",
			"/mcp%2F", "/mcp;jsessionid=1", "/mcp?x=1", "/mcp%00", "/", "/anything/else",
			"/.well-known/oauth-protected-resource/../../mcp",
			"/.well-known/oauth-protected-resource/mcp/../../../mcp",
			"/.well-known/oauth-protected-resource/mcp//",
			"http://localhost:9080/mcp", "http://mcp.example.com/mcp",
		}
		methods := []string{"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "post", "Options"}
		var cases []attackCase
		for _, target := range targets {
			for _, m := range methods {
				cases = append(cases, attackCase{m + " " + target, attackReq{method: m, target: target, body: bodyFor(m)}, noToken})
			}
		}
		cases = append(cases,
			attackCase{"CONNECT to a path", attackReq{method: "CONNECT", target: "/mcp"}, noToken},
			attackCase{"CONNECT to an authority", attackReq{method: "CONNECT", target: "localhost:9080"}, noToken},
			// Go's HTTP server answers OPTIONS * itself; no handler runs.
			attackCase{"OPTIONS *", attackReq{method: "OPTIONS", target: "*"}, outcome{status: http.StatusOK, server: true}},
			attackCase{"preflight with a lower-case method", attackReq{method: "options", header: []string{
				"Origin: https://app.example.com", "Access-Control-Request-Method: POST"}}, noToken},
			// The metadata document is public, and served by the module itself.
			attackCase{"metadata, POST", attackReq{target: prmPath, body: callRead}, outcome{status: http.StatusMethodNotAllowed}},
			attackCase{"metadata with a trailing slash", attackReq{method: "GET", target: prmPath + "/"}, outcome{status: http.StatusOK}},
			attackCase{"metadata with an escaped slash", attackReq{method: "GET", target: "/.well-known/oauth-protected-resource%2Fmcp"}, outcome{status: http.StatusOK}},
			// A CORS preflight carries no credentials and no body (Fetch standard): it goes to the
			// next handler without a token.
			attackCase{"control: preflight", attackReq{method: "OPTIONS", header: []string{
				"Origin: https://app.example.com", "Access-Control-Request-Method: POST"}}, reached},
			attackCase{"control: preflight with Content-Length: 0", attackReq{method: "OPTIONS", header: []string{
				"Origin: https://app.example.com", "Access-Control-Request-Method: POST", "Content-Length: 0"}}, reached},
		)
		e.run(t, cases)
	})

	t.Run("body charsets and content codings", func(t *testing.T) {
		// A UTF-7 reader sees delete_file where a UTF-8 reader sees a tool that no rule names.
		utf7 := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"+AGQ-elete+AF8-file","arguments":{"path":"/x"}}}`
		ct := func(v string) string { return "Content-Type: " + v }
		unsupported := outcome{status: http.StatusUnsupportedMediaType}
		enc := func(body, coding string) attackReq {
			return attackReq{body: body, auth: []string{bearer(tok)}, header: []string{"Content-Encoding: " + coding}}
		}
		typed := func(body string, header ...string) attackReq {
			return attackReq{body: body, auth: []string{bearer(tok)}, header: header}
		}
		e.run(t, []attackCase{
			{"utf-7", typed(utf7, ct("application/json; charset=utf-7")), unsupported},
			{"UTF-7 quoted", typed(utf7, ct(`application/json; charset="UTF-7"`)), unsupported},
			{"utf-16le", typed(encodeUTF16LE(callDelete), ct("application/json; charset=utf-16le")), unsupported},
			{"UTF-16 with a BOM", typed(encodeUTF16BE(callDelete, true), ct("application/json; charset=UTF-16")), unsupported},
			{"utf-32", typed(callDelete, ct("application/json; charset=utf-32")), unsupported},
			{"latin1", typed(callDelete, ct("application/json; charset=latin1")), unsupported},
			{"iso-8859-1 on an allowed call", typed(callRead, ct("application/json; charset=iso-8859-1")), unsupported},
			{"two charsets, utf-8 first", typed(utf7, ct("application/json; charset=utf-8; charset=utf-7")), unsupported},
			{"two charsets, utf-8 last", typed(utf7, ct("application/json; charset=utf-7; charset=utf-8")), unsupported},
			{"two Content-Type headers", typed(utf7, ct("application/json"), ct("application/json; charset=utf-7")), unsupported},
			{"text/plain", typed(callDelete, ct("text/plain")), unsupported},
			{"form", typed(callDelete, ct("application/x-www-form-urlencoded")), unsupported},
			{"application/json-rpc", typed(callDelete, ct("application/json-rpc")), unsupported},
			{"no Content-Type", attackReq{body: callDelete, auth: []string{bearer(tok)}, noCT: true}, unsupported},
			{"gzip", enc(gzipped(t, callDelete), "gzip"), unsupported},
			{"GZIP", enc(gzipped(t, callDelete), "GZIP"), unsupported},
			{"x-gzip", enc(gzipped(t, callDelete), "x-gzip"), unsupported},
			{"deflate", enc(deflated(t, callDelete), "deflate"), unsupported},
			{"br", enc(callDelete, "br"), unsupported},
			{"zstd", enc(callDelete, "zstd"), unsupported},
			{"identity", enc(callDelete, "identity"), unsupported},
			{"identity on an allowed call", enc(callRead, "identity"), unsupported},
			{"gzip on an allowed call", enc(gzipped(t, callRead), "gzip"), unsupported},
			{"identity, gzip", enc(gzipped(t, callDelete), "identity, gzip"), unsupported},
			{"two Content-Encoding headers", attackReq{body: gzipped(t, callDelete), auth: []string{bearer(tok)},
				header: []string{"Content-Encoding: identity", "Content-Encoding: gzip"}}, unsupported},
			// Transfer codings other than chunked: Go's HTTP server refuses them itself.
			{"Transfer-Encoding gzip, chunked", attackReq{body: gzipped(t, callDelete), chunked: true, auth: []string{bearer(tok)},
				header: []string{"Transfer-Encoding: gzip"}}, outcome{status: http.StatusNotImplemented, server: true}},
			{"control: charset=\"utf-8\", allowed", typed(callRead, ct(`application/json; charset="utf-8"`)), ranRead},
			{"control: charset=\"utf-8\", protected", typed(callDelete, ct(`application/json; charset="utf-8"`)), forbidden},
			{"control: charset=UTF-8", typed(callRead, ct("application/json; charset=UTF-8")), ranRead},
			{"control: charset=Utf-8 without space", typed(callRead, ct("application/json;charset=Utf-8")), ranRead},
			{"control: APPLICATION/JSON is read too", typed(callDelete, ct("APPLICATION/JSON")), forbidden},
		})
	})

	t.Run("bodies on methods other than POST", func(t *testing.T) {
		// MCP sends messages by POST only. With rules in place, a body on any other method is
		// refused: a method override or a lenient framework must not turn it into a call
		// that the module never read. The go-sdk server would end the session on a DELETE
		// and hold a GET open, so these requests name another session and accept JSON only.
		body := func(method string, chunked bool, header ...string) attackReq {
			return attackReq{method: method, body: callDelete, chunked: chunked, auth: []string{bearer(tok)},
				header: append([]string{"Accept: application/json"}, header...)}
		}
		other := func(r attackReq) attackReq {
			r.noSession = true
			r.header = append(r.header, "Content-Type: application/json", "Mcp-Session-Id: other-session", "Mcp-Protocol-Version: "+protocolHeader)
			return r
		}
		preflight := []string{"Origin: https://app.example.com", "Access-Control-Request-Method: POST"}
		var cases []attackCase
		for _, m := range []string{"PUT", "PATCH", "GET", "DELETE", "OPTIONS", "HEAD", "post", "Post", "FOO", "PROPFIND"} {
			for _, chunked := range []bool{false, true} {
				name := m + " with Content-Length"
				if chunked {
					name = m + " chunked"
				}
				r := body(m, chunked)
				if m == "DELETE" {
					r = other(r)
				}
				cases = append(cases, attackCase{name, r, badBody})
			}
		}
		cases = append(cases,
			attackCase{"PUT with X-HTTP-Method-Override: POST", body("PUT", false, "X-HTTP-Method-Override: POST"), badBody},
			attackCase{"GET with method overrides", body("GET", false, "X-HTTP-Method-Override: POST", "X-HTTP-Method: POST", "X-Method-Override: POST"), badBody},
			attackCase{"PATCH chunked with X-HTTP-Method-Override: POST", body("PATCH", true, "X-HTTP-Method-Override: POST"), badBody},
			attackCase{"preflight with a body, token", body("OPTIONS", false, preflight...), badBody},
			attackCase{"preflight with a body, no token", attackReq{method: "OPTIONS", body: callDelete, header: preflight}, noToken},
			attackCase{"preflight chunked, no token", attackReq{method: "OPTIONS", body: callDelete, chunked: true, header: preflight}, noToken},
			// Judged as the POST it is (403), or refused for the override itself (400).
			attackCase{"POST with X-HTTP-Method-Override: GET", body("POST", false, "X-HTTP-Method-Override: GET"), refused},
			attackCase{"control: GET without a body", attackReq{method: "GET", auth: []string{bearer(tok)}, header: []string{"Accept: application/json"}}, reached},
			attackCase{"control: GET with Content-Length: 0", attackReq{method: "GET", auth: []string{bearer(tok)},
				header: []string{"Accept: application/json", "Content-Length: 0"}}, reached},
			attackCase{"control: HEAD without a body", attackReq{method: "HEAD", auth: []string{bearer(tok)}, header: []string{"Accept: application/json"}}, reached},
			attackCase{"control: DELETE without a body", other(attackReq{method: "DELETE", auth: []string{bearer(tok)}}), reached},
			attackCase{"control: OPTIONS without a body, token", attackReq{method: "OPTIONS", auth: []string{bearer(tok)}}, reached},
			attackCase{"control: GET without a body needs the base scope", attackReq{method: "GET",
				auth: []string{bearer(e.token(t, "mcp:admin"))}, header: []string{"Accept: application/json"}}, noBase},
		)
		e.run(t, cases)
	})
}

// bodyFor is a JSON-RPC body for methods that usually carry one.
func bodyFor(method string) string {
	switch method {
	case "POST", "PUT", "PATCH", "post":
		return callRead
	}
	return ""
}

func encodeUTF16LE(s string) string {
	var b bytes.Buffer
	for _, u := range utf16.Encode([]rune(s)) {
		_ = binary.Write(&b, binary.LittleEndian, u)
	}
	return b.String()
}

func encodeUTF16BE(s string, bom bool) string {
	var b bytes.Buffer
	if bom {
		b.WriteString("\xfe\xff")
	}
	for _, u := range utf16.Encode([]rune(s)) {
		_ = binary.Write(&b, binary.BigEndian, u)
	}
	return b.String()
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func deflated(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
